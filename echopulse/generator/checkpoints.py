"""Model files: our checkpoint directories, and the released ECHOPulse / ST-MEM weights.

Our format is a directory with `config.json` (a `GeneratorConfig`) and `model.safetensors`, whose keys
carry the part they belong to (`stmem.`, `tokenizer.`, `transformer.`). A directory may hold only some
parts (a tokenizer from stage-1 training, say). The safetensors metadata records the format, the config
hash and the parts, so weights and a config that do not belong together are refused, not half-loaded.

The official files are PyTorch pickles. They are only ever read with `torch.load(weights_only=True)`, which
refuses any pickle that would import or call something besides tensors and plain containers, so a
tampered file cannot run code. Their keys go through `official_keys.map_official_keys`; a key no rule
knows is an error. Every problem with a file is a `ModelError` naming the file, never a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from echopulse.errors import ModelError
from echopulse.generator.config import GeneratorConfig, paper_config
from echopulse.generator.official_keys import DROPPED_PREFIXES, STAGE2_PREFIXES, map_official_keys

log = logging.getLogger(__name__)

FORMAT = "echopulse-generator/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PARTS: tuple[str, ...] = ("stmem", "tokenizer", "transformer")
RESERVED_METADATA = ("format", "config_hash", "parts")

# What to pass for each part when converting the released weights (the CLI's option names).
_OFFICIAL_SOURCE = {
    "tokenizer": "--tokenizer CVIVIT_pytorch_model_finetune.bin or --stage2 model-*.pt",
    "transformer": "--stage2 model-*.pt",
    "stmem": "--stmem st_mem_vit_base.pth or --stage2 model-*.pt",
}
# The decoder of ST-MEM's masked-autoencoder pre-training checkpoint (its encoder keys carry `encoder.`).
_STMEM_DECODER_PREFIXES = (
    "to_decoder_embedding", "mask_embedding", "decoder_pos_embed", "decoder_blocks.", "decoder_norm",
    "decoder_head",
)
_SHOW = 5  # keys named in an error message; the rest are counted


# --------------------------------------------------------------------------------------------------------
# Our format
# --------------------------------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    """A loaded model directory: its config, the state dict of each part present, the file metadata."""

    config: GeneratorConfig
    state: dict[str, dict[str, Tensor]]
    metadata: dict[str, str] = field(default_factory=dict)
    path: Path = Path()

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(part for part in PARTS if part in self.state)

    def build(
        self, parts: Sequence[str] | None = None, device: str | torch.device = "cpu"
    ) -> dict[str, nn.Module]:
        """The modules of `parts` (default: every part present), weights loaded, in eval mode."""
        return build_parts(self.config, self.state, self.parts if parts is None else parts, device,
                           source=self.path / WEIGHTS_FILE)


def save_checkpoint(
    directory: str | Path,
    config: GeneratorConfig,
    parts: Mapping[str, nn.Module | Mapping[str, Tensor]],
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write `config.json` and `model.safetensors` into `directory` (created if needed); returns it.

    `parts` maps part names to modules or state dicts. Each file is written to a temporary name in the
    directory and renamed over the old one, weights first: an interrupted save leaves either the old files or
    weights whose config hash does not match `config.json`, which `load_checkpoint` refuses.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise ValueError(f"parts must be some of {PARTS}, got {sorted(parts)}")
    extra = dict(metadata or {})
    clash = sorted(set(extra) & set(RESERVED_METADATA))
    if clash:
        raise ValueError(f"metadata keys {clash} are reserved")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        raise ValueError("metadata keys and values must be strings")

    tensors: dict[str, Tensor] = {}
    for part in PARTS:
        if part not in parts:
            continue
        source = parts[part]
        state = source.state_dict() if isinstance(source, nn.Module) else source
        for key, value in state.items():
            if not isinstance(value, Tensor):
                raise ValueError(f"{part}.{key} is a {type(value).__name__}, not a tensor")
            tensors[f"{part}.{key}"] = _standalone(value)
    present = [part for part in PARTS if part in parts]
    file_metadata = {**extra, "format": FORMAT, "config_hash": config.hash, "parts": ",".join(present)}

    directory.mkdir(parents=True, exist_ok=True)
    _atomic_write(directory / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp), metadata=file_metadata))
    _atomic_write(directory / CONFIG_FILE, lambda tmp: tmp.write_text(config.to_json() + "\n"))
    return directory


def _standalone(value: Tensor) -> Tensor:
    """A detached, contiguous CPU tensor that owns its storage (safetensors refuses shared storage)."""
    value = value.detach().to("cpu").contiguous()
    if value.untyped_storage().nbytes() != value.numel() * value.element_size() or value.storage_offset():
        value = value.clone()
    return value


def _atomic_write(target: Path, write: Any) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(directory: str | Path) -> Checkpoint:
    """Read a model directory written by `save_checkpoint`; every problem is a `ModelError`."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    directory = Path(directory)
    if not directory.is_dir():
        why = "not a directory" if directory.exists() else "missing"
        raise ModelError(f"{directory}: not a model directory ({why})")
    config = read_config(directory / CONFIG_FILE)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"{weights}: weights file missing")
    try:
        with safe_open(str(weights), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        flat = load_file(str(weights))
    except Exception as error:  # SafetensorError, OSError, ...: corrupt or truncated
        raise ModelError(f"{weights}: not a readable safetensors file ({_one_line(error)})") from None

    if metadata.get("format") != FORMAT:
        raise ModelError(f"{weights}: format {metadata.get('format')!r}, expected {FORMAT!r}")
    if metadata.get("config_hash") != config.hash:
        raise ModelError(
            f"{weights}: written for config hash {metadata.get('config_hash')}, but {CONFIG_FILE} has hash "
            f"{config.hash} (weights and config do not belong together)"
        )
    state: dict[str, dict[str, Tensor]] = {}
    stray = []
    for key, value in flat.items():
        part, _, rest = key.partition(".")
        if part in PARTS and rest:
            state.setdefault(part, {})[rest] = value
        else:
            stray.append(key)
    if stray:
        raise ModelError(f"{weights}: keys outside the parts {PARTS}: {_listing(stray)}")
    declared = [p for p in metadata.get("parts", "").split(",") if p]
    if sorted(declared) != sorted(state):
        raise ModelError(f"{weights}: metadata lists parts {declared}, the file holds {sorted(state)}")
    return Checkpoint(config=config, state=state, metadata=metadata, path=directory)


def read_config(path: Path) -> GeneratorConfig:
    if not path.is_file():
        raise ModelError(f"{path}: config file missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"{path}: not valid JSON ({_one_line(error)})") from None
    except OSError as error:
        raise ModelError(f"{path}: cannot be read ({_one_line(error)})") from None
    try:
        return config_from_dict(data)
    except ValueError as error:
        raise ModelError(f"{path}: {_one_line(error)}") from None


def config_from_dict(data: Any) -> GeneratorConfig:
    """`GeneratorConfig.from_dict` plus the checks a file needs: no unknown fields, values of the right type.

    Raises ValueError naming the offending field.
    """
    if not isinstance(data, dict):
        raise ValueError(f"the config must be a JSON object, not {type(data).__name__}")
    known = {f.name for f in fields(GeneratorConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown config fields: {unknown}")
    if "name" in data and not isinstance(data["name"], str):
        raise ValueError("config field name must be a string")
    defaults = GeneratorConfig()
    for part in ("stmem", "tokenizer", "transformer", "sampling"):
        given = data.get(part)
        if given is None:
            continue
        if not isinstance(given, dict):
            raise ValueError(f"config field {part} must be an object")
        template = getattr(defaults, part)
        for name, value in given.items():
            if not hasattr(template, name):
                continue  # from_dict names the unknown fields
            expected = getattr(template, name)
            if expected is None:  # an optional count (sampling.guidance_steps): None or a positive integer
                ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0)
                if not ok:
                    raise ValueError(f"config field {part}.{name} = {value!r} is not null or a count")
                continue
            if isinstance(expected, bool | str):
                ok = type(value) is type(expected)
            elif isinstance(expected, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:  # float
                ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok:
                raise ValueError(f"config field {part}.{name} = {value!r} is not a {type(expected).__name__}")
    try:
        return GeneratorConfig.from_dict(data)
    except TypeError as error:
        raise ValueError(str(error)) from None


# --------------------------------------------------------------------------------------------------------
# Building modules
# --------------------------------------------------------------------------------------------------------


def _module_class(part: str) -> Any:
    if part == "stmem":
        from echopulse.generator.stmem import STMEMEncoder

        return STMEMEncoder
    if part == "tokenizer":
        from echopulse.generator.tokenizer import VideoTokenizer

        return VideoTokenizer
    if part == "transformer":
        from echopulse.generator.transformer import MaskedTokenTransformer

        return MaskedTokenTransformer
    raise ValueError(f"unknown part {part!r}; parts are {PARTS}")


def new_module(config: GeneratorConfig, part: str) -> nn.Module:
    """A freshly initialised module of `part` (in the current default device, so `meta` works)."""
    return _module_class(part)(getattr(config, part))


def expected_shapes(config: GeneratorConfig, part: str) -> dict[str, tuple[int, ...]]:
    """Key → shape of `part`'s state dict under `config`, from a module built on the meta device."""
    with torch.device("meta"):
        module = new_module(config, part)
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def build_parts(
    config: GeneratorConfig,
    state: Mapping[str, Mapping[str, Tensor]],
    parts: Iterable[str] = PARTS,
    device: str | torch.device = "cpu",
    *,
    source: str | Path | None = None,
) -> dict[str, nn.Module]:
    """Instantiate each part and load its weights strictly; modules come back in eval mode.

    A part missing from `state`, missing or unexpected keys, or a shape that differs is a `ModelError`
    (naming `source`, the weights file, when given).
    """
    where = f"{source}: " if source is not None else ""
    modules: dict[str, nn.Module] = {}
    for part in parts:
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}; parts are {PARTS}")
        if part not in state:
            held = sorted(state) or "none"
            raise ModelError(f"{where}no {part} weights (the checkpoint holds: {held})")
        with torch.device(device):
            module = new_module(config, part)
        expected = {key: tuple(value.shape) for key, value in module.state_dict().items()}
        problems = _compare(expected, state[part])
        if problems:
            raise ModelError(f"{where}{part} weights do not fit the config: {problems}")
        module.load_state_dict(dict(state[part]), strict=True)
        modules[part] = module.eval()
    return modules


def _compare(expected: Mapping[str, tuple[int, ...]], state: Mapping[str, Tensor]) -> str:
    """'' when `state` has exactly the keys and shapes of `expected`, else what differs (one line)."""
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    shapes = [
        f"{key} expected {list(expected[key])} found {list(state[key].shape)}"
        for key in expected
        if key in state and tuple(state[key].shape) != tuple(expected[key])
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listing(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches {_listing(shapes)}")
    return "; ".join(problems)


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_SHOW])
    more = f", ... ({len(items)} in all)" if len(items) > _SHOW else f" ({len(items)})"
    return shown + more


def _one_line(error: BaseException | str) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."


# --------------------------------------------------------------------------------------------------------
# Official files
# --------------------------------------------------------------------------------------------------------


def _torch_load(path: str | Path) -> Any:
    """`torch.load` with `weights_only=True` (never a plain unpickle); memory-mapped for zip checkpoints."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: file missing" if not path.exists() else f"{path}: not a file")
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as error:
        raise ModelError(f"{path}: cannot be read ({_one_line(error)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except Exception as error:
        text = str(error)
        if isinstance(error, pickle.UnpicklingError) and "weights only" in text.lower():
            found = re.search(r"GLOBAL ([\w.]+)", text)
            what = f" (it references {found.group(1)})" if found else ""
            raise ModelError(
                f"{path}: refused: the file holds pickled objects other than tensors{what}; "
                "nothing in it was run (only weights-only files are loaded)"
            ) from None
        raise ModelError(
            f"{path}: not a readable PyTorch checkpoint, corrupt or truncated ({_one_line(error)})"
        ) from None


def _state_dict(obj: Any, path: Path, *, wrapped: bool) -> dict[str, Tensor]:
    """The state dict inside a loaded file: `obj['model']` when `wrapped`, else `obj` itself (a bare state
    dict; a `{'model': ...}` wrapper is accepted too). Strips a `module.` prefix (DataParallel)."""
    if not isinstance(obj, Mapping):
        raise ModelError(f"{path}: holds a {type(obj).__name__}, not a dict of weights")
    if "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    elif wrapped and not _is_state_dict(obj):
        keys = ", ".join(sorted(map(str, obj))[:_SHOW])
        raise ModelError(f"{path}: has no 'model' entry (top-level keys: {keys or 'none'})")
    if not obj:
        raise ModelError(f"{path}: holds no weights (empty state dict)")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise ModelError(f"{path}: not a state dict: entries that are not tensors: {_listing(bad)}")
    return {key.removeprefix("module."): value for key, value in obj.items()}


def _is_state_dict(obj: Mapping[Any, Any]) -> bool:
    return bool(obj) and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


def _map_part(state: Mapping[str, Tensor], part: str, path: Path, label: str = "") -> dict[str, Tensor]:
    mapped, dropped, unknown = map_official_keys(state, part)
    if unknown:
        raise ModelError(f"{path}: {label}keys no {part} rule knows: {_listing(unknown)}")
    if dropped:
        log.info(
            "%s: dropped %d %s tensors of the training losses (%s)",
            path.name, len(dropped), part, ", ".join(f"{label}{p}*" for p in DROPPED_PREFIXES),
        )
    return mapped  # type: ignore[return-value]


def load_official_tokenizer(path: str | Path) -> dict[str, Tensor]:
    """`CVIVIT_pytorch_model_finetune.bin` (a plain C-ViViT state dict) → our tokenizer state dict.

    The LPIPS and I3D networks of the training loss (`loss_fn_lpips.*`, `i3d.*`) are dropped with one log
    line.
    """
    path = Path(path)
    return _map_part(_state_dict(_torch_load(path), path, wrapped=False), "tokenizer", path)


def load_official_stmem(path: str | Path) -> dict[str, Tensor]:
    """`st_mem_vit_base.pth` (`{'epoch', 'model', ...}`, or a bare state dict) → our ST-MEM state dict.

    A full pre-training checkpoint (encoder keys under `encoder.`, plus the MAE decoder) gives its encoder;
    the decoder keys are dropped with a log line.
    """
    path = Path(path)
    state = _state_dict(_torch_load(path), path, wrapped=True)
    if any(key.startswith("encoder.") for key in state):
        encoder = {key.removeprefix("encoder."): v for key, v in state.items() if key.startswith("encoder.")}
        decoder = [key for key in state if key.startswith(_STMEM_DECODER_PREFIXES)]
        other = [key for key in state if not key.startswith("encoder.") and key not in set(decoder)]
        if other:
            raise ModelError(f"{path}: keys neither encoder nor decoder of ST-MEM: {_listing(other)}")
        log.info("%s: pre-training checkpoint: kept the encoder, dropped %d decoder tensors", path.name,
                 len(decoder))
        state = encoder
    return _map_part(state, "stmem", path)


def load_official_stage2(path: str | Path) -> dict[str, dict[str, Tensor]]:
    """Stage-2 `model-*.pt` (`{'step', 'model', 'opt', 'scaler'}`) → our state dict per part.

    `model` is split by prefix (`cvivit.` → tokenizer, `maskgit.` → transformer, `encode_ekg.` → stmem);
    the optimizer state is ignored.
    """
    path = Path(path)
    return split_stage2(_state_dict(_torch_load(path), path, wrapped=True), path)


def split_stage2(state: Mapping[str, Tensor], source: str | Path) -> dict[str, dict[str, Tensor]]:
    """Split a stage-2 `ckpt['model']` by `STAGE2_PREFIXES` and map each part's keys to ours.

    `source` names the file in errors and log lines. A key under no prefix, or one no rule of its part
    knows, is a `ModelError`.
    """
    source = Path(source)
    split: dict[str, dict[str, Tensor]] = {}
    stray = []
    for key, value in state.items():
        key = key.removeprefix("module.")
        for prefix, part in STAGE2_PREFIXES.items():
            if key.startswith(prefix):
                split.setdefault(part, {})[key[len(prefix):]] = value
                break
        else:
            stray.append(key)
    if stray:
        raise ModelError(f"{source}: keys outside {sorted(STAGE2_PREFIXES)}: {_listing(stray)}")
    prefix_of = {part: prefix for prefix, part in STAGE2_PREFIXES.items()}
    return {part: _map_part(split[part], part, source, prefix_of[part]) for part in PARTS if part in split}


def load_official(
    tokenizer: str | Path | None = None,
    stage2: str | Path | None = None,
    stmem: str | Path | None = None,
    config: GeneratorConfig | None = None,
    *,
    parts: Sequence[str] = PARTS,
) -> tuple[GeneratorConfig, dict[str, dict[str, Tensor]]]:
    """Read the released weights into our state dicts, checked against `config` (default `paper_config()`).

    Parts come from the separate files first, then the stage-2 file overrides them (the official load
    order). See `fit_official` for what is filled in, dropped and checked. `parts` are the parts required
    (all three by default); a missing one is a `ModelError` saying which file to pass.
    """
    config = config or paper_config()
    state: dict[str, dict[str, Tensor]] = {}
    origin: dict[str, Path] = {}
    if tokenizer is not None:
        state["tokenizer"], origin["tokenizer"] = load_official_tokenizer(tokenizer), Path(tokenizer)
    if stmem is not None:
        state["stmem"], origin["stmem"] = load_official_stmem(stmem), Path(stmem)
    if stage2 is not None:
        for part, part_state in load_official_stage2(stage2).items():
            if part in state:
                log.info("%s: %s weights replace those of %s", Path(stage2).name, part, origin[part].name)
            state[part], origin[part] = part_state, Path(stage2)
    missing = [part for part in parts if part not in state]
    if missing:
        needed = "; ".join(f"{part} (pass {_OFFICIAL_SOURCE[part]})" for part in missing)
        raise ModelError(f"no official weights for {needed}")
    state = {part: state[part] for part in parts}
    fit_official(config, state, origin)
    return config, state


def fit_official(
    config: GeneratorConfig,
    state: dict[str, dict[str, Tensor]],
    sources: Mapping[str, str | Path] | None = None,
) -> None:
    """Make official part states fit `config`'s modules in place, or raise a `ModelError`.

    The transformer's `null_context` is not in the official files: it is set to zeros (the official
    training had no condition dropout, so guidance has no trained meaning for these weights). An ST-MEM
    classification head the config has no place for (`num_classes = 0`; ECHOPulse never uses it, and the
    stage-2 file's head is random) is dropped. Then keys and shapes must match exactly; a difference is
    listed as key, expected, found. `sources` names each part's file in messages.
    """
    sources = sources or {}
    for part, part_state in state.items():
        where = Path(sources.get(part, f"<{part}>"))
        expected = expected_shapes(config, part)
        if part == "transformer" and "null_context" in expected and "null_context" not in part_state:
            part_state["null_context"] = torch.zeros(expected["null_context"])
            log.info(
                "transformer null_context set to zeros: the official weights were trained without condition "
                "dropout, so classifier-free guidance has no trained meaning for them"
            )
        if part == "stmem":
            head = [key for key in part_state if key.startswith("head.") and key not in expected]
            for key in head:
                del part_state[key]
            if head:
                log.info("%s: dropped the ST-MEM classification head (ECHOPulse never uses it)", where.name)
        problems = _compare(expected, part_state)
        if problems:
            raise ModelError(f"{where}: {part} weights do not fit config {config.name!r}: {problems}")


def convert_official(
    out_dir: str | Path,
    tokenizer: str | Path | None = None,
    stage2: str | Path | None = None,
    stmem: str | Path | None = None,
    config: GeneratorConfig | None = None,
    *,
    parts: Sequence[str] = PARTS,
) -> Path:
    """`load_official` then `save_checkpoint` into `out_dir`; the metadata names the input files."""
    config, state = load_official(tokenizer=tokenizer, stage2=stage2, stmem=stmem, config=config, parts=parts)
    inputs = {"tokenizer": tokenizer, "stage2": stage2, "stmem": stmem}
    names = ", ".join(f"{kind}={Path(p).name}" for kind, p in inputs.items() if p is not None)
    metadata = {"source": f"official ECHOPulse/ST-MEM conversion ({names})", "official_compatible": "1"}
    return save_checkpoint(out_dir, config, state, metadata=metadata)

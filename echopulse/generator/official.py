"""The released ECHOPulse / ST-MEM weights, read into our state dict per part.

The official files are PyTorch pickles. They are only ever read with `torch.load(weights_only=True)`, which
refuses any pickle that would import or call something besides tensors and plain containers, so a
tampered file cannot run code. Their keys go through `official_keys.map_official_keys`; a key no rule
knows is an error. Every problem with a file is a `ModelError` naming the file, never a traceback.
`convert_official` writes them out as one of our checkpoint directories (see `checkpoints.py`).
"""

from __future__ import annotations

import logging
import pickle
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from echopulse.errors import ModelError, one_line
from echopulse.generator.checkpoints import ERROR_TEXT_LIMIT, save_checkpoint
from echopulse.generator.config import GeneratorConfig, paper_config
from echopulse.generator.official_keys import DROPPED_PREFIXES, STAGE2_PREFIXES, map_official_keys
from echopulse.generator.parts import PARTS, SHOWN_KEYS, expected_shapes, key_listing, state_mismatch

log = logging.getLogger(__name__)

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


def _torch_load(path: str | Path) -> Any:
    """`torch.load` with `weights_only=True` (never a plain unpickle); memory-mapped for zip checkpoints."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: file missing" if not path.exists() else f"{path}: not a file")
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as error:
        raise ModelError(f"{path}: cannot be read ({one_line(error, ERROR_TEXT_LIMIT)})") from None
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
        why = one_line(error, ERROR_TEXT_LIMIT)
        raise ModelError(f"{path}: not a readable PyTorch checkpoint, corrupt or truncated ({why})") from None


def _state_dict(obj: Any, path: Path, *, wrapped: bool) -> dict[str, Tensor]:
    """The state dict inside a loaded file: `obj['model']` when `wrapped`, else `obj` itself (a bare state
    dict; a `{'model': ...}` wrapper is accepted too). Strips a `module.` prefix (DataParallel)."""
    if not isinstance(obj, Mapping):
        raise ModelError(f"{path}: holds a {type(obj).__name__}, not a dict of weights")
    if "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    elif wrapped and not _is_state_dict(obj):
        keys = ", ".join(sorted(map(str, obj))[:SHOWN_KEYS])
        raise ModelError(f"{path}: has no 'model' entry (top-level keys: {keys or 'none'})")
    if not obj:
        raise ModelError(f"{path}: holds no weights (empty state dict)")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise ModelError(f"{path}: not a state dict: entries that are not tensors: {key_listing(bad)}")
    return {key.removeprefix("module."): value for key, value in obj.items()}


def _is_state_dict(obj: Mapping[Any, Any]) -> bool:
    return bool(obj) and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


def _map_part(state: Mapping[str, Tensor], part: str, path: Path, label: str = "") -> dict[str, Tensor]:
    mapped, dropped, unknown = map_official_keys(state, part)
    if unknown:
        raise ModelError(f"{path}: {label}keys no {part} rule knows: {key_listing(unknown)}")
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
            raise ModelError(f"{path}: keys neither encoder nor decoder of ST-MEM: {key_listing(other)}")
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
        raise ModelError(f"{source}: keys outside {sorted(STAGE2_PREFIXES)}: {key_listing(stray)}")
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
        problems = state_mismatch(expected, part_state)
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

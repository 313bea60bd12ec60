"""Our model files: a checkpoint directory, written and read back whole or refused.

The format is a directory with `config.json` (a `GeneratorConfig`) and `model.safetensors`, whose keys
carry the part they belong to (`stmem.`, `tokenizer.`, `transformer.`). A directory may hold only some
parts (a tokenizer from stage-1 training, say). The safetensors metadata records the format, the config
hash and the parts, so weights and a config that do not belong together are refused, not half-loaded.
Every problem with a directory is a `ModelError` naming the file, never a traceback. The released official
weights are read by `official.py`; the parts are built into modules by `parts.py`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from echopulse.errors import ModelError, one_line
from echopulse.generator.config import GeneratorConfig
from echopulse.generator.parts import PARTS, build_parts, key_listing

FORMAT = "echopulse-generator/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
RESERVED_METADATA = ("format", "config_hash", "parts")
ERROR_TEXT_LIMIT = 300
"""Characters of a library's own error text (safetensors, json, torch) quoted in a refusal."""


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
        why = one_line(error, ERROR_TEXT_LIMIT)
        raise ModelError(f"{weights}: not a readable safetensors file ({why})") from None

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
        raise ModelError(f"{weights}: keys outside the parts {PARTS}: {key_listing(stray)}")
    declared = [p for p in metadata.get("parts", "").split(",") if p]
    if sorted(declared) != sorted(state):
        raise ModelError(f"{weights}: metadata lists parts {declared}, the file holds {sorted(state)}")
    return Checkpoint(config=config, state=state, metadata=metadata, path=directory)


def read_config(path: Path) -> GeneratorConfig:
    """The config a `config.json` holds, checked by `config_from_dict`; every problem is a `ModelError`."""
    if not path.is_file():
        raise ModelError(f"{path}: config file missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"{path}: not valid JSON ({one_line(error, ERROR_TEXT_LIMIT)})") from None
    except OSError as error:
        raise ModelError(f"{path}: cannot be read ({one_line(error, ERROR_TEXT_LIMIT)})") from None
    try:
        return config_from_dict(data)
    except ValueError as error:
        raise ModelError(f"{path}: {one_line(error, ERROR_TEXT_LIMIT)}") from None


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

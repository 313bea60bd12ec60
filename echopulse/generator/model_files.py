"""Which model a list of paths names: nothing (the bundled model), one echopulse model folder, or the
released ECHOPulse files told apart by extension. Every front end (`--model` of the CLI, the service) loads
through here, so they accept and refuse the same things."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from echopulse.errors import ModelError
from echopulse.generator.echo_generator import EchoGenerator

OFFICIAL_SUFFIXES = {".pt": "stage2", ".bin": "tokenizer", ".pth": "stmem"}


def load_generator(
    models: Sequence[str | Path] | None = None, device: str = "auto", precision: str = "auto"
) -> EchoGenerator:
    """The bundled model, a model folder, or official files mapped by extension; `ModelError` else."""
    paths = [Path(m) for m in models or ()]
    if not paths:
        return EchoGenerator.from_pretrained(None, device=device, precision=precision)
    if len(paths) == 1 and (paths[0].is_dir() or paths[0].suffix.lower() not in OFFICIAL_SUFFIXES):
        return EchoGenerator.from_pretrained(paths[0], device=device, precision=precision)
    parts: dict[str, Path] = {}
    for path in paths:
        role = OFFICIAL_SUFFIXES.get(path.suffix.lower())
        if role is None or path.is_dir():
            raise ModelError(f"{path}: with several --model, each must be an official .pt, .bin or .pth file")
        if role in parts:
            raise ModelError(f"{path}: a second {role} file (first {parts[role]})")
        if not path.is_file():
            raise ModelError(f"{path}: no such model file")
        parts[role] = path
    if "stage2" not in parts:
        raise ModelError(f"{paths[0]}: official weights need the stage-2 .pt file (the masked transformer)")
    return EchoGenerator.from_official(**parts, device=device, precision=precision)

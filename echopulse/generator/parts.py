"""The three networks of a model, by name: `stmem`, `tokenizer`, `transformer`.

Every way of getting weights (our checkpoint directories, the released official files, training) ends in a
state dict per part; this module turns those into modules. Loading is strict: a missing or unexpected key,
or a shape the config does not give, is a `ModelError` listing what differs, never a half-loaded network.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from echopulse.errors import ModelError
from echopulse.generator.config import GeneratorConfig

PARTS: tuple[str, ...] = ("stmem", "tokenizer", "transformer")
SHOWN_KEYS = 5
"""Keys an error message names; the rest are counted."""


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
    if part == "tokenizer" and config.tokenizer.cycle_dim:
        from echopulse.generator.cycle_tokenizer import CycleTokenizer

        return CycleTokenizer(config.tokenizer)
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
        problems = state_mismatch(expected, state[part])
        if problems:
            raise ModelError(f"{where}{part} weights do not fit the config: {problems}")
        module.load_state_dict(dict(state[part]), strict=True)
        modules[part] = module.eval()
    return modules


def state_mismatch(expected: Mapping[str, tuple[int, ...]], state: Mapping[str, Tensor]) -> str:
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
        problems.append(f"missing keys {key_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {key_listing(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches {key_listing(shapes)}")
    return "; ".join(problems)


def key_listing(items: Sequence[str]) -> str:
    """The first `SHOWN_KEYS` items and how many there are in all, so a message stays one short line."""
    shown = ", ".join(items[:SHOWN_KEYS])
    more = f", ... ({len(items)} in all)" if len(items) > SHOWN_KEYS else f" ({len(items)})"
    return shown + more

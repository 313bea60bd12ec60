"""A checkpoint for a new config started from a trained one: every weight whose name and shape match is
copied, the rest keep a fresh (seeded) initialisation.

Why: a change of one small part (the cycle tokenizer's cycle estimator and cycle input, going from a learnt
4-number code to the 1-number LV area label) should not throw away what the rest (anatomy encoder, codebook,
decoder) learnt in 40 CPU minutes. `echopulse train … --init` then starts from the result; `--init` itself
insists on the same config, so a mismatch is always a deliberate step like this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from echopulse.generator.checkpoints import load_checkpoint, save_checkpoint
from echopulse.generator.config import GeneratorConfig
from echopulse.generator.parts import new_module


@dataclass(frozen=True)
class WarmStart:
    out: Path
    carried: dict[str, list[str]]  # per part: tensor names copied from the source
    fresh: dict[str, list[str]]  # per part: tensor names left at their new initialisation


def warm_start(source: str | Path, config: GeneratorConfig, out: str | Path, seed: int = 0) -> WarmStart:
    """Write into `out` a checkpoint of `config` holding `source`'s parts, matching weights carried over."""
    torch.manual_seed(seed)
    old = load_checkpoint(source)
    state, carried, fresh = {}, {}, {}
    for part, weights in old.state.items():
        new = new_module(config, part).state_dict()
        kept = {k: v for k, v in weights.items() if k in new and new[k].shape == v.shape}
        state[part] = {**new, **kept}
        carried[part] = sorted(kept)
        fresh[part] = sorted(set(new) - set(kept))
    save_checkpoint(out, config, state, metadata={"warm_start_from": Path(source).name})
    return WarmStart(Path(out), carried, fresh)

"""The held-out phantom set: N (ECG window, true clip, labels) samples from seeds S, S+1, ….

The windows are built exactly as training builds them (`training.data.ECGSource.window`): 9 s ending at the
closing R-peak (10.0 s in the phantom), band-passed, z-scored over the kept leads, in ST-MEM's 12 slots.
The default seed, 900 000, is the one `benchmarks/measure.py` uses: training shards are made from small
seeds, so these beats are unseen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from echopulse.ecg import STMEM_LEADS
from echopulse.echo.ecg_phantom import CLOSING_R_S
from echopulse.echo.phantom import make_phantom
from echopulse.errors import EchopulseError

DEFAULT_SEED = 900_000
DEFAULT_N = 200
MAX_N = 100_000


class EvalError(EchopulseError):
    """Arguments or inputs `echopulse eval` cannot honour."""


@dataclass(frozen=True)
class HeldoutSample:
    seed: int
    window: np.ndarray  # float32 (12, 2250)
    clip: np.ndarray  # uint8 (frames, H, W): the true cycle
    ef: float
    ed_frame: int
    es_frame: int
    hr_bpm: float
    rr_s: float


def eval_leads(spec: str | None) -> tuple[tuple[str, ...] | None, str, str | None]:
    """(leads to keep (None: all), the name reported, a note) for a model's training lead spec.

    A model trained on random lead subsets is evaluated on lead I, what a watch records.
    """
    from echopulse.generator.training.data import parse_leads

    spec = spec or "I"
    try:
        parsed = parse_leads(spec)
    except EchopulseError as error:
        raise EvalError(f"model metadata 'leads' = {spec!r} is not a lead set: {error}") from error
    if parsed == "all":
        return None, "all", None
    if parsed == "random":
        return ("I",), "I", "model trained on random lead subsets; evaluated on lead I (a watch)"
    return tuple(parsed), ",".join(parsed), None


def heldout_set(
    n: int,
    seed: int,
    size: int,
    frames: int,
    keep_leads: tuple[str, ...] | None = ("I",),
    layout: str = "stmem",
    progress: Callable[[int], object] | None = None,
) -> list[HeldoutSample]:
    """`n` one-cycle phantom samples at the model's size and frame count, from seeds seed … seed+n-1."""
    from echopulse.generator.training.data import ECGSource

    check_count(n, seed)
    out = []
    for i in range(n):
        sample = make_phantom(seed + i, size=size, frames=frames, layout="cycle")
        source = ECGSource(sample.ecg, sample.ecg_fs, STMEM_LEADS, round(CLOSING_R_S * sample.ecg_fs))
        labels = sample.labels
        out.append(
            HeldoutSample(
                seed=seed + i,
                window=source.window(keep_leads, layout).astype(np.float32),
                clip=sample.clip,
                ef=float(labels.ef),
                ed_frame=int(labels.ed_frame),
                es_frame=int(labels.es_frame),
                hr_bpm=float(labels.hr_bpm),
                rr_s=float(labels.rr_s),
            )
        )
        if progress is not None:
            progress(1)
    return out


def check_count(n: int, seed: int) -> None:
    if not isinstance(n, int | np.integer) or not 2 <= n <= MAX_N:
        raise EvalError(f"eval: --n must be an integer from 2 to {MAX_N} (R² needs two beats), got {n!r}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise EvalError(f"eval: --seed must be a non-negative integer, got {seed!r}")

"""The core every front end calls: record → beats and windows → which beats get a clip (and why not) → clips.

The CLI, the live service and the Beam pipeline all run these steps, so a beat gets the same window, the
same decision and the same clip whichever way its samples arrived. Nothing here writes a file: sinks
(`echopulse.video`, `echopulse.outputs`) do that with what these functions return.

>>> result = preprocess_record(read_record("ecg.csv"), layout=generator.window_layout)  # doctest: +SKIP
>>> plan = plan_clips(result)                       # every beat: a window to generate, or why not
>>> clips = list(generate_clips(generator, clip_windows(result, "ecg.csv"), ClipOptions(seed=3)))
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from echopulse.errors import PreprocessError
from echopulse.preprocess.beats import Beat
from echopulse.preprocess.offline import Preprocessed, preprocess_record
from echopulse.preprocess.windows import STMEMWindow

if TYPE_CHECKING:
    from echopulse.generator.clip import EchoClip
    from echopulse.generator.echo_generator import EchoGenerator

__all__ = [
    "NO_RR_REASON",
    "BeatPlan",
    "ClipOptions",
    "clip_windows",
    "generate_clips",
    "plan_clips",
    "preprocess_record",
    "skip_reason",
]

NO_RR_REASON = "no RR interval (no accepted beat before it)"
"""Why a record's first beat (or the first after refused ones) gets no clip: a clip spans R-peak to R-peak,
and without the previous R-peak its length and frame rate would be a guess."""


def skip_reason(window: STMEMWindow) -> str | None:
    """Why a beat gets no clip (its window was refused, or it has no RR), or None when it gets one."""
    if not window.accepted:
        return window.reason or "refused"
    if not window.rr_s:
        return NO_RR_REASON
    return None


@dataclass(frozen=True)
class BeatPlan:
    """One beat and what becomes of it: `reason` None means its window gets a clip."""

    beat: Beat
    window: STMEMWindow | None
    reason: str | None

    @property
    def gets_clip(self) -> bool:
        return self.reason is None


def plan_clips(result: Preprocessed) -> list[BeatPlan]:
    """Every beat of a record in order, with its window and why it gets no clip (None when it gets one)."""
    windows = {w.beat_index: w for w in result.windows}
    plans = []
    for beat in result.beats:
        window = windows.get(beat.index)
        reason = NO_RR_REASON if window is None else skip_reason(window)
        plans.append(BeatPlan(beat, window, reason))
    return plans


def refusal_summary(reasons: Sequence[str], most: int = 4) -> str:
    """`quality 0.2 < 0.6 ×2, no RR interval (…)`: distinct reasons, most common first, counted."""
    counted = Counter(reasons).most_common()
    listed = [f"{reason} ×{count}" if count > 1 else reason for reason, count in counted[:most]]
    return ", ".join(listed) + (", …" if len(counted) > most else "")


def clip_windows(result: Preprocessed, source: str) -> list[STMEMWindow]:
    """The windows that get a clip; `PreprocessError` (one line, the reasons counted) when there is none."""
    plans = plan_clips(result)
    usable = [p.window for p in plans if p.window is not None and p.gets_clip]
    if usable:
        return usable
    if not plans:
        raise PreprocessError(f"{source}: no usable beat (0 beats found)")
    listing = refusal_summary([str(p.reason) for p in plans])
    raise PreprocessError(f"{source}: no usable beat ({len(plans)} beats found, all refused: {listing})")


@dataclass(frozen=True)
class ClipOptions:
    """How clips are drawn. `seed`: beat b's clip uses `seed + b`, however the windows are batched.

    `chain`: one clip at a time in beat order, each continuing the previous clip (`generate(after=…)`: its
    heart, or its last frame as the prime), so a video of the whole recording runs on without a jump at
    each R-peak (slower than batches). `prime` fixes frame 0 of every clip, or with `chain` of the first
    one only.
    """

    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    batch_size: int = 16
    prime: np.ndarray | None = None
    chain: bool = False


def generate_clips(
    generator: EchoGenerator,
    windows: Sequence[STMEMWindow],
    options: ClipOptions = ClipOptions(),
    progress: Callable[[int], Any] | None = None,
) -> Iterator[EchoClip]:
    """The clip of each window, in order, batch by batch (`progress(n)` after each batch).

    A generator: a sink can write each clip as it comes and a caller can stop early.
    """
    if options.batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {options.batch_size}")
    size = 1 if options.chain else options.batch_size
    prime, previous = options.prime, None
    for start in range(0, len(windows), size):
        batch = windows[start : start + size]
        clips = generator.generate(
            batch, prime_frame=prime, steps=options.steps, guidance=options.guidance, seed=options.seed,
            batch_size=len(batch), after=previous,
        )
        if options.chain:
            prime, previous = None, clips[-1]
        if progress is not None:
            progress(len(clips))
        yield from clips

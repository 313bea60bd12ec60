"""Does each generated clip follow its ECG? Generate, measure, compare with the held-out labels.

For every held-out beat one clip is made from its ECG window and measured by `measure_clip` (no learned
weights) at the clip's own rate, fps = frames / RR (the cycle layout: frame 0 at the opening R-peak,
frame k at k·RR/frames). The measurement is compared with the beat's labels:

- EF: MAE, RMSE and R² (1 − SS_res/SS_tot over the measured beats);
- ED frame: the phantom's ED label is frame 0 of a cycle clip (the R-peak); a measured ED counts as
  within 1 when its cyclic distance to the label is ≤ 1 frame, so the last frame (one step before the next
  R-peak) counts too; the same for ES;
- heart rate: the measured period of a one-cycle clip is its length at the rate it is played, so this is
  the RR of the ECG the clip was made from against the label's; 0 by construction for the default run,
  informative only for the shuffled control.

Controls, each with the same clip seeds (clip i uses seed + i in every run):

- shuffled: sample i is generated from the ECG of sample perm[i] (a fixed derangement) and compared with
  sample i's labels. A model that follows the ECG loses its EF R² here; a model that ignores the ECG
  scores the same in both runs;
- guidance 1: the model's default guidance replaced by 1 (no classifier-free guidance).

A clip the measurement refuses (no LV found, or no volume) is counted in `measure_failures` and left
out of that run's metrics; it is never scored as some default value.

The clips come from a `ClipSource`, so the same machinery scores two references beside the model:

- `TrueClips`, the beat's own clip: an oracle that knows what no ECG says (the EF rule's random part,
  the anatomy), so it shows the measurement's own error and nothing else;
- `IdealGeneratorClips`, the phantom drawing another heart for the same ECG: what a generator that had
  learnt the phantom's conditional distribution exactly would make. A single such clip differs from the
  beat's own by the EF rule's random part twice over (σ 3 in each), so this is the best a sampling
  generator can score on one clip per beat, and the yardstick for the model's figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from echopulse.echo.measure import MeasureError, measure_clip
from echopulse.evaluation.heldout import HeldoutSample
from echopulse.evaluation.metrics import cyclic_distance, derangement
from echopulse.generator.training.scores import mae, r2, rmse

RUNS = ("default", "shuffled", "guidance1")
MEASURE_SIZE = 128
"""Clips smaller than this are upscaled (bicubic) before measuring. On the true 64×64×11 phantom clips of
seeds 900 000–900 199, upscaled to 128: EF MAE ≈ 2.5 points, R² ≈ 0.81 (ED and ES within a frame: all).
Since `measure_clip` scales its partial-volume band with the frame size, measuring at a native 64 px gives
the same (MAE ≈ 2.5, R² ≈ 0.80) at ~3.5× the speed, and 192 px does no better on the development seeds;
128 is kept so that numbers stay comparable with earlier runs. On the same clips passed through the small
video tokenizer (smoother, speckle partly lost) EF reads ≈ 6 points low at 128 px (≈ 6.5 at 64 px): the
tokenizer's frames differ in sharpness, and blurrier frames read smaller cavities."""
Samples = Sequence[HeldoutSample]


class ClipSource(Protocol):
    def __call__(self, samples: Samples, guidance: float | None, seed: int) -> list[np.ndarray]:
        """One uint8 (frames, H, W) clip per sample, made from that sample's ECG window (in order)."""


@dataclass
class TrueClips:
    """The phantom's own clip of whichever beat's ECG is given: an oracle, for validating the measurement."""

    def __call__(self, samples: Samples, guidance: float | None, seed: int) -> list[np.ndarray]:
        return [s.clip for s in samples]


@dataclass
class IdealGeneratorClips:
    """For each beat's ECG, another heart from the phantom's own rule (`make_phantom(heart_draw=draw)`).

    Only the ECG is shared with the beat's own sample: the EF rule's random part, the filling, the anatomy
    and the speckle are drawn afresh, as a generator that samples the right distribution would draw them.
    """

    size: int
    frames: int
    draw: int = 1
    progress: Callable[[int], object] | None = None
    ef_noise_sd: float | None = None  # None: the phantom's own; 0: every heart gets the EF its ECG decides

    def __call__(self, samples: Samples, guidance: float | None, seed: int) -> list[np.ndarray]:
        from echopulse.echo.phantom import make_phantom

        noise = {} if self.ef_noise_sd is None else {"ef_noise_sd": self.ef_noise_sd}
        out = []
        for s in samples:
            sample = make_phantom(
                s.seed, self.size, self.frames, layout="cycle", heart_draw=self.draw, **noise
            )
            out.append(sample.clip)
            if self.progress is not None:
                self.progress(1)
        return out


def ideal_generator_runs(
    samples: Samples,
    size: int,
    frames: int,
    draws: int,
    ef_noise_sd: float | None = None,
    progress: Callable[[int], object] | None = None,
) -> list[RunResult]:
    """Heart draws 1 … `draws` of `IdealGeneratorClips`, each measured against the beats' labels."""
    every_beat = np.arange(len(samples))
    runs = []
    for draw in range(1, draws + 1):
        clips = IdealGeneratorClips(size, frames, draw, progress, ef_noise_sd)(samples, None, 0)
        runs.append(measure_run("ideal_generator", samples, clips, every_beat, None))
    return runs


@dataclass
class GeneratorClips:
    """Clips from an `EchoGenerator`, batch by batch; clip i of a call uses seed + i whatever the batching.

    `chained`: one clip at a time, each continuing the one before (as `generate --video` makes a recording's
    clips: the same heart, or the last frame as the prime), the same seeds; what priming does to the clips
    is then measurable."""

    generator: object
    steps: int | None
    batch_size: int = 16
    progress: Callable[[int], object] | None = None
    chained: bool = False

    def __call__(self, samples: Samples, guidance: float | None, seed: int) -> list[np.ndarray]:
        windows = np.stack([s.window for s in samples]).astype(np.float32)
        out: list[np.ndarray] = []
        if self.chained:
            previous = None
            for i, window in enumerate(windows):
                clip = self.generator.generate(  # type: ignore[attr-defined]
                    window[np.newaxis], steps=self.steps, guidance=guidance, seed=seed + i, batch_size=1,
                    after=previous,
                )[0]
                out.append(clip.frames)
                previous = clip
                if self.progress is not None:
                    self.progress(1)
            return out
        for start in range(0, len(windows), self.batch_size):
            chunk = windows[start : start + self.batch_size]
            clips = self.generator.generate(  # type: ignore[attr-defined]
                chunk, steps=self.steps, guidance=guidance, seed=seed + start, batch_size=self.batch_size
            )
            out.extend(c.frames for c in clips)
            if self.progress is not None:
                self.progress(len(chunk))
        return out


@dataclass
class RunResult:
    """One run: the clip of each sample and what the measurement found (NaN / -1 where it refused)."""

    name: str
    guidance: float | None
    condition: np.ndarray  # index of the sample whose ECG made clip i
    clips: list[np.ndarray]
    ef: np.ndarray
    ed_frame: np.ndarray
    es_frame: np.ndarray
    hr_bpm: np.ndarray
    errors: list[str | None] = field(default_factory=list)

    @property
    def ok(self) -> np.ndarray:
        return np.isfinite(self.ef)

    @property
    def failures(self) -> int:
        return int((~self.ok).sum())


def measure_run(
    name: str,
    samples: Sequence[HeldoutSample],
    clips: Sequence[np.ndarray],
    condition: np.ndarray,
    guidance: float | None,
) -> RunResult:
    """Measure clip i at the rate of the beat it was made from (fps = frames / RR of sample condition[i])."""
    n = len(samples)
    if len(clips) != n:
        raise ValueError(f"{name}: {len(clips)} clips for {n} samples")
    ef, hr = np.full(n, math.nan), np.full(n, math.nan)
    ed, es = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
    errors: list[str | None] = []
    for i, clip in enumerate(clips):
        frames = int(np.asarray(clip).shape[0])
        rr = samples[int(condition[i])].rr_s
        try:
            m = measure_clip(measurable(np.asarray(clip)), frames / rr, frames_per_cycle=frames)
            if not math.isfinite(m.ef):
                raise MeasureError("no end-diastolic volume")
        except MeasureError as error:
            errors.append(str(error))
            continue
        errors.append(None)
        ef[i], ed[i], es[i], hr[i] = m.ef, m.ed_frame, m.es_frame, m.hr_bpm
    return RunResult(name, guidance, np.asarray(condition), list(clips), ef, ed, es, hr, errors)


def repeat_runs(
    samples: Samples, source: ClipSource, seed: int, guidance: float | None, repeats: int
) -> list[RunResult]:
    """The default run drawn `repeats - 1` more times with other clip seeds (draw k: seed + k·n + i), the
    same ECGs, for the figures of the mean of several clips per beat."""
    n, every_beat = len(samples), np.arange(len(samples))
    return [
        measure_run(f"draw{k}", samples, source(samples, guidance, seed + k * n), every_beat, guidance)
        for k in range(1, repeats)
    ]


def mean_clip_agreement(samples: Samples, runs: Sequence[RunResult]) -> dict[str, float | int | None]:
    """Each beat's EF as the mean over the clips the measurement accepted, against the label: r, R², MAE.
    Averaging draws removes the sampling's spread, so this shows how well the clips follow the ECG on
    average, which one clip per beat cannot."""
    efs = np.stack([run.ef for run in runs])
    counts = np.isfinite(efs).sum(axis=0)
    sums = np.where(np.isfinite(efs), efs, 0.0).sum(axis=0)
    mean = np.where(counts > 0, sums / np.maximum(counts, 1), math.nan)
    true_ef = np.array([s.ef for s in samples])
    ok = np.isfinite(mean)
    if ok.sum() < 2:
        return {"ef_r": None, "ef_r2": None, "ef_mae": None, "measured": int(ok.sum())}
    return {
        "ef_r": pearson_r(true_ef[ok], mean[ok]),
        "ef_r2": _num(r2(true_ef[ok], mean[ok])),
        "ef_mae": _num(mae(true_ef[ok], mean[ok])),
        "measured": int(ok.sum()),
    }


def pearson_r(a: np.ndarray, b: np.ndarray) -> float | None:
    """Correlation of two series; None when either is constant (r is undefined, not 0)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def primed_shift(unprimed: RunResult, primed: RunResult) -> dict[str, float | int | None]:
    """Mean EF of the chained (primed) clips minus that of the unprimed ones, same beats and seeds, over the
    beats both measured: a prime frame that drags the cavity toward its own size shows here."""
    both = unprimed.ok & primed.ok
    if not both.any():
        return {"ef_mean_primed": None, "ef_mean_unprimed": None, "ef_primed_minus_unprimed": None,
                "n_primed_measured": 0}
    with_prime, without = float(primed.ef[both].mean()), float(unprimed.ef[both].mean())
    return {"ef_mean_primed": with_prime, "ef_mean_unprimed": without,
            "ef_primed_minus_unprimed": with_prime - without, "n_primed_measured": int(both.sum())}


def measurable(clip: np.ndarray, size: int = MEASURE_SIZE) -> np.ndarray:
    """uint8 (frames, H, W) upscaled bicubically to `size` px on its shorter side (see MEASURE_SIZE)."""
    from PIL import Image

    clip = np.asarray(clip)
    if clip.ndim != 3 or min(clip.shape[1:]) >= size or clip.dtype != np.uint8:
        return clip
    scale = size / min(clip.shape[1:])
    shape = (round(clip.shape[2] * scale), round(clip.shape[1] * scale))
    return np.stack([np.asarray(Image.fromarray(f).resize(shape, Image.Resampling.BICUBIC)) for f in clip])


def run_metrics(samples: Sequence[HeldoutSample], run: RunResult) -> dict[str, float | int | None]:
    """EF MAE/RMSE/R², ED/ES within one frame, HR MAE, over the beats the measurement accepted."""
    ok = run.ok
    true_ef = np.array([s.ef for s in samples])[ok]
    frames = np.array([len(c) for c in run.clips])[ok]
    ed_true = np.array([s.ed_frame for s in samples])[ok]
    es_true = np.array([s.es_frame for s in samples])[ok]
    hr_true = np.array([s.hr_bpm for s in samples])[ok]
    measured = int(ok.sum())
    if measured == 0:
        return {
            "ef_mae": None,
            "ef_rmse": None,
            "ef_r2": None,
            "ef_r": None,
            "ed_frame_within_1": None,
            "es_frame_within_1": None,
            "hr_mae": None,
            "measured": 0,
            "measure_failures": run.failures,
        }
    ed_ok = cyclic_distance(run.ed_frame[ok], ed_true, frames) <= 1
    es_ok = cyclic_distance(run.es_frame[ok], es_true, frames) <= 1
    return {
        "ef_mae": _num(mae(true_ef, run.ef[ok])),
        "ef_rmse": _num(rmse(true_ef, run.ef[ok])),
        "ef_r2": _num(r2(true_ef, run.ef[ok])),
        "ef_r": pearson_r(true_ef, run.ef[ok]),
        "ed_frame_within_1": float(np.mean(ed_ok)),
        "es_frame_within_1": float(np.mean(es_ok)),
        "hr_mae": _num(mae(hr_true, run.hr_bpm[ok])),
        "measured": measured,
        "measure_failures": run.failures,
    }


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)


@dataclass
class GenerationEval:
    """Every run of one evaluation, its metrics, the shuffled control's pairing and notes for the reader."""

    runs: dict[str, RunResult]
    metrics: dict[str, dict[str, float | int | None]]
    permutation: np.ndarray  # the shuffled run's clip i was made from sample permutation[i]'s ECG
    notes: list[str]


def evaluate_generation(
    samples: Sequence[HeldoutSample],
    source: ClipSource,
    seed: int,
    default_guidance: float | None = None,
    runs: Sequence[str] = RUNS,
) -> GenerationEval:
    """The default run, then the shuffled and guidance-1 controls, measured against the labels.

    `default_guidance` None lets the source use the model's own default. When it is 1 already, the
    guidance-1 run is the default run (not generated twice; a note says so).
    """
    n = len(samples)
    perm = derangement(n, seed)
    identity = np.arange(n)
    notes: list[str] = []
    result: dict[str, RunResult] = {}
    for name in runs:
        if name == "guidance1" and default_guidance is not None and float(default_guidance) == 1.0:
            base = result.get("default")
            if base is not None:
                result[name] = RunResult(
                    name,
                    1.0,
                    base.condition,
                    base.clips,
                    base.ef,
                    base.ed_frame,
                    base.es_frame,
                    base.hr_bpm,
                    base.errors,
                )
                notes.append("the model's default guidance is 1: the guidance-1 control is the default run")
                continue
        condition = perm if name == "shuffled" else identity
        guidance = 1.0 if name == "guidance1" else default_guidance
        clips = source([samples[int(j)] for j in condition], guidance, seed)
        result[name] = measure_run(name, samples, clips, condition, guidance)
    metrics = {name: run_metrics(samples, run) for name, run in result.items()}
    return GenerationEval(result, metrics, perm, notes)

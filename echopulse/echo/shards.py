"""Sharded NPZ files of phantom samples plus a manifest, byte-identical for the same arguments.

Layout of `out/`:

- `shard-00000.npz`, ...: per shard (rows = samples) `seed` (k,) int64, `ecg` (k, 12, 2750) float32 at 250 Hz
  (lead order I..V6, closing R-peak at 10.0 s), `clip` (k, frames, size, size) uint8, `lv_mask` (same, bool),
  `lv_area_px` (k, frames) float64, `ef`, `edv_ml`, `esv_ml`, `hr_bpm`, `rr_s`, `fps`, `px_per_cm` (k,)
  float64, `ed_frame`, `es_frame` (k,) int64, and the fiducials `r_peak`, `p_onset`, `qrs_end`, `t_end`
  (k, beats) float64 in seconds from the ECG start, NaN-padded;
- `manifest.jsonl`: one line per sample (index, shard, row, seed and the scalar labels);
- `phantom.json`: the arguments and the shard names.

Determinism: sample i uses seed SeedSequence([seed, i]); arrays are written in a fixed order into zip
entries with a fixed date, uncompressed; nothing depends on the time, the machine's worker count or the
order in which workers finish.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from echopulse.echo.phantom import PhantomError, check_arguments, make_phantom

FIDUCIALS = ("r_peak", "p_onset", "qrs_end", "t_end")
SCALARS = ("ef", "edv_ml", "esv_ml", "ed_frame", "es_frame", "hr_bpm", "rr_s", "fps", "px_per_cm")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
MAX_SAMPLES = 10_000_000


@dataclass(frozen=True)
class PhantomRun:
    """What one `echopulse phantom` run makes: `n` samples from `seed`, and how each is rendered and shared
    out. The same run gives the same bytes, whatever `workers`."""

    n: int
    seed: int
    size: int = 128
    frames: int = 11
    layout: str = "cycle"
    fps: float = 30.0
    hr_bpm: float | None = None
    shard_size: int = 256
    workers: int = 1

    def check(self) -> None:
        """Raise PhantomError, one line saying what is wrong, for a run that cannot be honoured."""
        check_arguments(self.size, self.frames, self.layout, self.fps, self.hr_bpm)
        if not isinstance(self.n, int) or self.n < 1 or self.n > MAX_SAMPLES:
            raise PhantomError(f"phantom: --n must be from 1 to {MAX_SAMPLES}, got {self.n!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise PhantomError(f"phantom: seed must be a non-negative integer, got {self.seed!r}")
        if self.shard_size < 1:
            raise PhantomError(f"phantom: shard size must be at least 1, got {self.shard_size!r}")
        if self.workers < 1:
            raise PhantomError(f"phantom: workers must be at least 1, got {self.workers!r}")


@dataclass(frozen=True)
class ShardJob:
    """Samples `start` to `stop` of a run, written to `path`."""

    run: PhantomRun
    index: int
    start: int
    stop: int
    path: Path


def sample_seed(seed: int, index: int) -> int:
    """The make_phantom seed of sample `index` of a run with `seed`."""
    return int(
        np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint64)[0] >> np.uint64(1)
    )


def save_npz_deterministic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An `.npz` (readable by np.load) with no timestamps: fixed entry date, given key order, stored."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for key, value in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            zf.writestr(info, buffer.getvalue())


def _build_shard(job: ShardJob) -> list[dict]:
    run = job.run
    samples = [
        make_phantom(sample_seed(run.seed, i), run.size, run.frames, run.layout, float(run.fps), run.hr_bpm)
        for i in range(job.start, job.stop)
    ]
    beats = max(len(s.labels.fiducials_s["r_peak"]) for s in samples)
    arrays: dict[str, np.ndarray] = {
        "seed": np.asarray([s.seed for s in samples], np.int64),
        "ecg": np.stack([s.ecg for s in samples]).astype(np.float32),
        "clip": np.stack([s.clip for s in samples]),
        "lv_mask": np.stack([s.labels.lv_mask for s in samples]),
        "lv_area_px": np.stack([s.labels.lv_area_px for s in samples]).astype(np.float64),
    }
    for name in SCALARS:
        dtype = np.int64 if name.endswith("_frame") else np.float64
        arrays[name] = np.asarray([getattr(s.labels, name) for s in samples], dtype)
    for name in FIDUCIALS:
        table = np.full((len(samples), beats), np.nan)
        for row, s in enumerate(samples):
            values = s.labels.fiducials_s[name]
            table[row, : len(values)] = values
        arrays[name] = table
    save_npz_deterministic(job.path, arrays)
    lines = []
    for row, s in enumerate(samples):
        entry = {"index": job.start + row, "shard": job.path.name, "row": row, "seed": s.seed}
        for name in SCALARS:
            value = getattr(s.labels, name)
            entry[name] = int(value) if name.endswith("_frame") else round(float(value), 6)
        lines.append(entry)
    return lines


def write_shards(out: Path, run: PhantomRun, progress: Callable[[int], None] | None = None) -> list[Path]:
    """Write the run's samples into shards under `out`; returns the shard paths. `progress(k)` is called
    with the number of samples each finished shard held."""
    run.check()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PhantomError(f"{out}: not a folder")
    out.mkdir(parents=True, exist_ok=True)
    jobs = [
        ShardJob(run, k, start, min(start + run.shard_size, run.n), out / f"shard-{k:05d}.npz")
        for k, start in enumerate(range(0, run.n, run.shard_size))
    ]
    results: list[list[dict]] = [[] for _ in jobs]
    if run.workers == 1 or len(jobs) == 1:
        for job in jobs:
            results[job.index] = _build_shard(job)
            if progress:
                progress(job.stop - job.start)
    else:
        with ProcessPoolExecutor(max_workers=min(run.workers, len(jobs))) as pool:
            for job, lines in zip(jobs, pool.map(_build_shard, jobs), strict=True):
                results[job.index] = lines
                if progress:
                    progress(job.stop - job.start)
    with open(out / "manifest.jsonl", "w", encoding="utf-8", newline="\n") as f:
        for lines in results:
            for entry in lines:
                f.write(json.dumps(entry, sort_keys=True) + "\n")
    meta = {
        "format": "echopulse-phantom/1",
        "n": run.n,
        "seed": run.seed,
        "size": run.size,
        "frames": run.frames,
        "layout": run.layout,
        "fps": float(run.fps) if run.layout == "fps" else None,
        "hr_bpm": run.hr_bpm,
        "shard_size": run.shard_size,
        "shards": [job.path.name for job in jobs],
        "ecg_fs": 250.0,
        "ecg_leads": ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"],
        "closing_r_peak_s": 10.0,
    }
    (out / "phantom.json").write_text(json.dumps(meta, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    return [job.path for job in jobs]

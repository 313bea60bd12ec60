"""`contact_sheet.png`: the ECG with every beat marked (refused beats shaded, the beats shown below tinted)
above a strip of frames per shown beat, labelled with its R-peak time and heart rate."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from echopulse.generator.clip import EchoClip
from echopulse.preprocess.beats import Beat
from echopulse.video.clip_files import upscale
from echopulse.video.mark import mark_frames

MAX_SHEET_BEATS = 8
SHEET_FRAME_PX = 128
SHEET_MARK_RELATIVE = 1 / 11
"""Thumbnails are enlarged to at least this and marked with larger text, so the mark reads at their size."""


def pick_sheet_beats(beat_indices: Sequence[int], n: int = MAX_SHEET_BEATS) -> list[int]:
    """Up to `n` of the generated beats, spread evenly over the record (first and last included)."""
    indices = list(beat_indices)
    if len(indices) <= n:
        return indices
    picks = np.unique(np.round(np.linspace(0, len(indices) - 1, n)).astype(int))
    return [indices[i] for i in picks]


def contact_sheet(
    path: Path,
    signal: np.ndarray,
    fs: float,
    beats: Sequence[Beat],
    clips: Sequence[EchoClip],
    *,
    title: str,
    mark: bool,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows = len(clips)
    n_frames = max((len(c.frames) for c in clips), default=11)
    fig = plt.figure(figsize=(max(8.0, n_frames * 0.95), 2.2 + 1.05 * n_rows), dpi=100, facecolor="white")
    grid = fig.add_gridspec(
        1 + n_rows, n_frames, height_ratios=[1.6] + [1.0] * n_rows, hspace=0.35, wspace=0.04
    )
    ax = fig.add_subplot(grid[0, :])
    t = np.arange(signal.size) / fs
    step = max(1, signal.size // 20000)  # a long record: every k-th sample is plenty at this width
    ax.plot(t[::step], signal[::step], color="#1f3b73", linewidth=0.5)
    peaks = [b for b in beats if 0 <= b.r_peak < signal.size]
    ax.plot([b.r_peak_s for b in peaks], [signal[b.r_peak] for b in peaks], "v", color="#e4572e", ms=3)
    for beat in beats:
        if not beat.accepted:
            ax.axvspan(beat.r_peak_s - 0.3, beat.r_peak_s + 0.3, color="#d62728", alpha=0.25, linewidth=0)
    for clip in clips:
        if clip.end_s is not None:
            ax.axvspan(clip.start_s, clip.end_s, color="tab:blue", alpha=0.12, linewidth=0)
    if signal.size:
        ax.set_xlim(0, signal.size / fs)
    ax.set_yticks([])
    ax.tick_params(labelsize=7, length=2)
    ax.set_title(title + "; time in s", fontsize=8, loc="left")
    for row, clip in enumerate(clips):
        frames = upscale(clip.frames, max(1, math.ceil(SHEET_FRAME_PX / clip.frames.shape[-1])))
        frames = mark_frames(frames, SHEET_MARK_RELATIVE) if mark else frames
        for k in range(n_frames):
            fa = fig.add_subplot(grid[1 + row, k])
            fa.set_xticks([])
            fa.set_yticks([])
            for spine in fa.spines.values():
                spine.set_visible(False)
            if k < len(frames):
                fa.imshow(frames[k], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            if k == 0:
                when = "" if clip.end_s is None else f"{clip.end_s:.2f} s\n"
                fa.set_ylabel(f"beat {clip.beat_index}\n{when}{60.0 / clip.rr_s:.0f} bpm", fontsize=7,
                              rotation=0, ha="right", va="center", labelpad=4)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, facecolor="white", bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path

"""`contact_sheet.png`: the ECG with every beat marked (refused beats shaded with their reason, beats left
without a clip marked grey, the beats shown below tinted, a mV scale bar) above a strip of frames per shown
beat, labelled with its R-peak time and heart rate."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from echopulse.drawing.ecg_strip import (
    amplitude_range,
    beat_refusals,
    mark_beats,
    needs_legend,
    refusal_legend,
    reserve_label_band,
    shade_refusals,
)
from echopulse.drawing.frame_sheet import finish_strip, frame_cell, save_sheet, sheet_figure
from echopulse.generator.clip import EchoClip
from echopulse.pipeline import NO_RR_REASON
from echopulse.preprocess.beats import Beat
from echopulse.video.clip_files import upscale
from echopulse.video.mark import mark_frames

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

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
    skipped: Mapping[int, str] | None = None,
) -> Path:
    """Write the sheet. `skipped` (beat index -> reason) names accepted beats that got no clip; without
    it, accepted beats with no RR interval are the ones marked (the only such reason `beats` can tell)."""
    fig = contact_sheet_figure(signal, fs, beats, clips, title=title, mark=mark, skipped=skipped)
    return save_sheet(fig, path)


def contact_sheet_figure(
    signal: np.ndarray,
    fs: float,
    beats: Sequence[Beat],
    clips: Sequence[EchoClip],
    *,
    title: str,
    mark: bool,
    skipped: Mapping[int, str] | None = None,
) -> Figure:
    """The figure `contact_sheet` saves; apart so that what it shows can be checked unsaved."""
    n_rows = len(clips)
    n_frames = max((len(c.frames) for c in clips), default=11)
    fig = sheet_figure(max(8.0, n_frames * 0.95), 2.2 + 1.05 * n_rows)
    grid = fig.add_gridspec(
        1 + n_rows, n_frames, height_ratios=[1.6] + [1.0] * n_rows, hspace=0.35, wspace=0.04
    )
    _draw_ecg(fig.add_subplot(grid[0, :]), signal, fs, beats, clips, title, skipped)
    for row, clip in enumerate(clips):
        frames = upscale(clip.frames, max(1, math.ceil(SHEET_FRAME_PX / clip.frames.shape[-1])))
        frames = mark_frames(frames, SHEET_MARK_RELATIVE) if mark else frames
        for k in range(n_frames):
            cell = frame_cell(fig, grid[1 + row, k], frames[k] if k < len(frames) else None)
            if k == 0:
                when = "" if clip.end_s is None else f"{clip.end_s:.2f} s\n"
                cell.set_ylabel(f"beat {clip.beat_index}\n{when}{60.0 / clip.rr_s:.0f} bpm", fontsize=7,
                                rotation=0, ha="right", va="center", labelpad=4)
    return fig


def _draw_ecg(
    ax: Axes,
    signal: np.ndarray,
    fs: float,
    beats: Sequence[Beat],
    clips: Sequence[EchoClip],
    title: str,
    skipped: Mapping[int, str] | None,
) -> None:
    t = np.arange(signal.size) / fs
    step = max(1, signal.size // 20000)  # a long record: every k-th sample is plenty at this width
    ax.plot(t[::step], signal[::step], color="#1f3b73", linewidth=0.5)
    peaks = [b for b in beats if 0 <= b.r_peak < signal.size]
    mark_beats(ax, np.array([b.r_peak_s for b in peaks]), signal[[b.r_peak for b in peaks]], ms=3)
    for clip in clips:
        if clip.end_s is not None:
            ax.axvspan(clip.start_s, clip.end_s, color="tab:blue", alpha=0.12, linewidth=0)
    low, high = amplitude_range(signal, np.array([b.r_peak for b in beats], dtype=np.int64))
    ax.set_ylim(low, high)
    if skipped is None:
        skipped = {b.index: NO_RR_REASON for b in beats if b.accepted and b.rr_s is None}
    refusals = beat_refusals(beats, skipped)
    if refusals:
        reserve_label_band(ax)
    end_s = signal.size / fs if signal.size else 1.0
    labelled = shade_refusals(ax, refusals, 0.0, end_s)
    finish_strip(ax, 0.0, end_s, labelsize=7, span_mv=high - low)
    heading = title + "; time in s"
    if refusals and needs_legend(refusals, labelled):
        heading += "\n" + refusal_legend(refusals)
    ax.set_title(heading, fontsize=8, loc="left")

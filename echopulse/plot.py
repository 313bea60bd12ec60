"""The picture people look at: the ECG with every detected beat marked and refused beats shaded, each with
its reason, and a 1 mV scale bar so amplitudes can be read off as on ECG paper.

Drawn on a bare `matplotlib.figure.Figure` (no pyplot), so importing echopulse never changes a program's
matplotlib backend.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from echopulse.drawing.ecg_strip import (
    Refusal,
    add_scale_bar,
    amplitude_range,
    beat_refusals,
    mark_beats,
    needs_legend,
    refusal_legend,
    reserve_label_band,
    shade_refusals,
)
from echopulse.ecg import ECGRecord
from echopulse.preprocess.offline import Preprocessed

SHORT_RECORD_S = 120.0
MAX_ROWS = 32


def plot_beats(record: ECGRecord, result: Preprocessed, path: Path, title: str | None = None) -> Path:
    """Write a PNG of the detection lead in strips, R-peaks marked, refused beats shaded red with why.

    Short records get 10-s strips (ECG paper scale, beats easy to check by eye); long ones 60-s strips, at
    most `MAX_ROWS` of them, so a 30-min Holter still shows its first half hour.
    """
    fig = beats_figure(record, result, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def beats_figure(record: ECGRecord, result: Preprocessed, title: str | None = None) -> Figure:
    """The figure `plot_beats` saves, laid out; apart so that what it shows can be checked unsaved."""
    row = record.leads.index(result.detection_lead)
    signal = record.signal[row]
    strip_s = 10.0 if record.duration_s <= SHORT_RECORD_S else 60.0
    n_rows = min(MAX_ROWS, _rows_needed(record, strip_s))
    height = 1.6 if strip_s == 10.0 else 1.1
    fig = Figure(figsize=(16, 0.9 + height * n_rows))
    axes = fig.subplots(n_rows, 1, squeeze=False)
    peaks = np.array([b.r_peak for b in result.beats], dtype=np.int64)
    refused_windows = {w.beat_index: w.reason or "window refused" for w in result.windows if not w.accepted}
    refusals = beat_refusals(result.beats, refused_windows=refused_windows)
    low, high = amplitude_range(signal, peaks)
    labelled = 0
    for k, ax in enumerate(axes[:, 0]):
        t0, t1 = k * strip_s, (k + 1) * strip_s
        a, b = int(t0 * record.fs), min(record.n_samples, int(t1 * record.fs))
        ax.plot(np.arange(a, b) / record.fs, signal[a:b], color="#1f3b73", linewidth=0.6)
        shown = peaks[(peaks >= a) & (peaks < b)]
        mark_beats(ax, shown / record.fs, signal[shown])
        ax.set_xlim(t0, t1)
        ax.set_ylim(low, high)
        if refusals:
            reserve_label_band(ax)
        labelled += shade_refusals(ax, refusals, t0, t1)
        add_scale_bar(ax, span_mv=high - low)
        ax.set_ylabel("mV", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(True, color="#f3c1c1", linewidth=0.4)
    axes[-1, 0].set_xlabel("time (s)")
    _head(fig, _heading(record, result, refusals, labelled, title))
    return fig


def _head(fig: Figure, heading: str) -> None:
    """The heading a fixed distance from the top, the strips laid out below it.

    At its default place (2 % of the height from the top) the heading of a tall, 32-strip figure sits
    0.7 in down, where tight_layout cannot fit all strips below it and leaves it on the first strip.
    """
    fig.suptitle(heading, fontsize=10, y=1 - 0.08 / fig.get_figheight(), va="top")
    fig.tight_layout()


def _rows_needed(record: ECGRecord, strip_s: float) -> int:
    """Strips up to the last sample: a 30.000-s record whose duration reads 30.0008 s needs no 4th strip."""
    last_s = max(0, record.n_samples - 1) / record.fs
    return max(1, math.ceil(last_s / strip_s - 1e-9))


def _heading(
    record: ECGRecord, result: Preprocessed, refusals: list[Refusal], labelled: int, title: str | None
) -> str:
    hr = result.hr_bpm
    refused_beats = sum(not b.accepted for b in result.beats)
    refused_windows = len(refusals) - refused_beats
    refused = f"{refused_beats} refused"
    if refused_windows:
        refused += f", {refused_windows} more windows refused"
    summary = (
        f"lead {result.detection_lead} · {record.fs:g} Hz · {record.duration_s:.1f} s · "
        f"{len(result.beats)} beats ({refused}, shaded) · "
        f"HR {'n/a' if hr is None else f'{hr:.0f} bpm'}"
    )
    if refusals and needs_legend(refusals, labelled):
        summary += "\n" + refusal_legend(refusals)
    return f"{title}\n{summary}" if title else summary

"""The picture people look at: the ECG with every detected beat marked and refused beats shaded."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from echopulse.ecg import ECGRecord
from echopulse.preprocess.offline import Preprocessed

SHORT_RECORD_S = 120.0
MAX_ROWS = 32


def plot_beats(record: ECGRecord, result: Preprocessed, path: Path, title: str | None = None) -> Path:
    """Write a PNG of the detection lead in strips, R-peaks marked, refused beats shaded red.

    Short records get 10-s strips (ECG paper scale, beats easy to check by eye); long ones 60-s strips, at
    most `MAX_ROWS` of them, so a 30-min Holter still shows its first half hour.
    """
    row = record.leads.index(result.detection_lead)
    signal = record.signal[row]
    strip_s = 10.0 if record.duration_s <= SHORT_RECORD_S else 60.0
    n_rows = min(MAX_ROWS, math.ceil(record.duration_s / strip_s))
    height = 1.6 if strip_s == 10.0 else 1.1
    fig, axes = plt.subplots(n_rows, 1, figsize=(16, 0.9 + height * n_rows), squeeze=False)
    peaks = np.array([b.r_peak for b in result.beats], dtype=np.int64)
    refused = [b for b in result.beats if not b.accepted]
    low, high = np.percentile(signal, [0.5, 99.5])
    if peaks.size:  # keep the R-peaks in view, but not a single artefact's spike
        heights = signal[peaks]
        low = min(low, float(np.percentile(heights, 5)))
        high = max(high, float(np.percentile(heights, 95)))
    pad = 0.15 * (high - low + 1e-6)
    for k, ax in enumerate(axes[:, 0]):
        t0, t1 = k * strip_s, (k + 1) * strip_s
        a, b = int(t0 * record.fs), min(record.n_samples, int(t1 * record.fs))
        t = np.arange(a, b) / record.fs
        ax.plot(t, signal[a:b], color="#1f3b73", linewidth=0.6)
        shown = peaks[(peaks >= a) & (peaks < b)]
        ax.plot(shown / record.fs, signal[shown], "v", color="#e4572e", markersize=4)
        for beat in refused:
            if t0 <= beat.r_peak_s < t1:
                ax.axvspan(beat.r_peak_s - 0.3, beat.r_peak_s + 0.3, color="#d62728", alpha=0.25, linewidth=0)
        ax.set_xlim(t0, t1)
        ax.set_ylim(low - pad, high + pad)
        ax.set_ylabel("mV", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(True, color="#f3c1c1", linewidth=0.4)
    axes[-1, 0].set_xlabel("time (s)")
    hr = result.hr_bpm
    summary = (
        f"lead {result.detection_lead} · {record.fs:g} Hz · {record.duration_s:.1f} s · "
        f"{len(result.beats)} beats ({len(refused)} refused, shaded) · "
        f"HR {'n/a' if hr is None else f'{hr:.0f} bpm'}"
    )
    fig.suptitle(f"{title}\n{summary}" if title else summary, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path

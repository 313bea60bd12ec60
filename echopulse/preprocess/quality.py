"""Per-beat signal quality: does this QRS look like its neighbours?

This is template matching in the manner of neurokit2's `ecg_quality(method="templatematch")`
(Orphanidou et al. 2015): correlate each beat with the average beat around it. neurokit2's version
normalises over a whole record and costs ~9 ms a call; ours scores one beat against the beats already in
the detector's trailing buffer, so the score is causal (a live stream can give it the moment the beat
closes) and the same offline and live. Correlation is absolute, so one threshold serves every record.
"""

from __future__ import annotations

import numpy as np

QUALITY_THRESHOLD = 0.6
"""Below this correlation with its neighbours a beat is refused (Orphanidou et al. use 0.66 on 10-s
segments; single beats are noisier, and ectopic beats of good signal should mostly pass)."""

MIN_QRS_AMPLITUDE_MV = 0.05
"""A 'beat' smaller than this peak to peak is baseline noise, not a QRS complex."""

QRS_HALF_WIDTH_S = 0.12
MIN_NEIGHBOURS = 2


def beat_quality(
    cleaned: np.ndarray, peaks: np.ndarray, fs: float, targets: np.ndarray | None = None
) -> tuple[np.ndarray, list[str | None]]:
    """Quality in [0, 1] of the beats at `targets` (default all `peaks`), and a reason for each refusal.

    `cleaned` is a baseline-free ECG (mV), `peaks` every R-peak found in it (samples). A beat's quality is
    the correlation of its QRS (±120 ms) with the median of the other beats' QRS; NaN when fewer than two
    neighbours exist (nothing to compare with: the beat is not refused for that).

    >>> q, reasons = beat_quality(ecg, np.array([200, 600, 1000, 1400]), 500.0)  # doctest: +SKIP
    """
    peaks = np.asarray(peaks, dtype=np.int64)
    targets = peaks if targets is None else np.asarray(targets, dtype=np.int64)
    half = round(QRS_HALF_WIDTH_S * fs)
    usable = peaks[(peaks - half >= 0) & (peaks + half < len(cleaned))]
    offsets = np.arange(-half, half + 1)
    segments = cleaned[usable[:, None] + offsets] if len(usable) else np.empty((0, offsets.size))
    quality = np.full(len(targets), np.nan)
    reasons: list[str | None] = [None] * len(targets)
    for i, target in enumerate(targets):
        lo, hi = max(0, target - half), min(len(cleaned), target + half + 1)
        beat = cleaned[lo:hi]
        if beat.size < 3 or np.ptp(beat) < MIN_QRS_AMPLITUDE_MV:
            quality[i] = 0.0
            reasons[i] = f"flat signal: QRS under {MIN_QRS_AMPLITUDE_MV} mV peak to peak"
            continue
        others = segments[usable != target]
        if len(others) < MIN_NEIGHBOURS or beat.size != offsets.size:
            continue
        template = np.median(others, axis=0)
        r = _correlation(beat, template)
        quality[i] = max(0.0, r)
        if r < QUALITY_THRESHOLD:
            reasons[i] = f"QRS unlike its neighbours (r={r:.2f} < {QUALITY_THRESHOLD})"
    return quality, reasons


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denominator = float(np.sqrt((a @ a) * (b @ b)))
    return float(a @ b / denominator) if denominator > 0 else 0.0

"""Per-beat signal quality: is this QRS good signal, whatever its shape?

Two pieces of evidence, and a beat needs one of them:
- it looks like its neighbours: template matching in the manner of neurokit2's
  `ecg_quality(method="templatematch")` (Orphanidou et al. 2015), against the median beat or its most
  similar single neighbour (so a recurring ectopic form matches its own kind);
- it is a clean, full-size complex: little high-frequency noise around it and an amplitude like its
  neighbours' (a lone PVC of good signal is unlike everything near it, yet it is a real beat).

neurokit2's versions normalise over a whole record and cost ~9 ms a call; this one scores a beat against
the beats in the detector's trailing buffer, so the score is causal (a live stream gives it the moment the
beat closes) and the same offline and live. Both scores are absolute, so one threshold serves every record.
"""

from __future__ import annotations

import numpy as np

QUALITY_THRESHOLD = 0.6
"""Below this a beat is refused (Orphanidou et al. accept template correlations from 0.66 on 10-s
segments; single beats are noisier)."""

MIN_QRS_AMPLITUDE_MV = 0.05
"""A 'beat' smaller than this peak to peak is baseline noise, not a QRS complex."""

QRS_HALF_WIDTH_S = 0.12
NOISE_HALF_WIDTH_S = 0.4
SMOOTH_S = 0.02
NOISE_RATIO_CEILING = 0.1
"""High-frequency noise RMS at this fraction of the QRS amplitude scores a clean beat 0."""
AMPLITUDE_RATIO_FLOOR = 0.5
"""A beat under half its neighbours' amplitude can only pass by shape (a bump in a flat line is no QRS)."""
MIN_NEIGHBOURS = 2


def beat_quality(
    cleaned: np.ndarray, peaks: np.ndarray, fs: float, targets: np.ndarray | None = None
) -> tuple[np.ndarray, list[str | None]]:
    """Quality in [0, 1] of the beats at `targets` (default all `peaks`), and a reason for each refusal.

    `cleaned` is a baseline-free ECG (mV), `peaks` every R-peak found in it (samples). Quality is the
    larger of the shape match (correlation of the QRS, ±120 ms, with the median neighbour or the most
    similar one) and the clean-beat score (1 at no high-frequency noise and full amplitude). NaN when
    fewer than two neighbours exist: nothing to compare with, and the beat is not refused for that.

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
        beat = cleaned[max(0, target - half) : target + half + 1]
        if beat.size < 3 or np.ptp(beat) < MIN_QRS_AMPLITUDE_MV:
            quality[i] = 0.0
            reasons[i] = f"flat signal: QRS under {MIN_QRS_AMPLITUDE_MV} mV peak to peak"
            continue
        others = segments[usable != target]
        if len(others) < MIN_NEIGHBOURS or beat.size != offsets.size:
            continue
        shape = max(_correlation(beat, np.median(others, axis=0)), _best_match(beat, others))
        noise = _noise_ratio(cleaned, target, fs)
        amplitude = np.ptp(beat) / np.median(np.ptp(others, axis=1))
        clean = max(0.0, 1.0 - noise / NOISE_RATIO_CEILING) * min(1.0, amplitude / AMPLITUDE_RATIO_FLOOR)
        quality[i] = max(0.0, shape, clean)
        if quality[i] < QUALITY_THRESHOLD:
            reasons[i] = (
                f"QRS unlike its neighbours (r={shape:.2f}) and not a clean beat "
                f"(noise {noise:.0%} of QRS, amplitude {amplitude:.2f}× neighbours); "
                f"quality {quality[i]:.2f} < {QUALITY_THRESHOLD}"
            )
    return quality, reasons


def _best_match(beat: np.ndarray, others: np.ndarray) -> float:
    """Correlation with the most similar neighbour: a recurring ectopic form (bigeminy, the multiform
    PVCs of MIT-BIH 106) is unlike the median beat but like its own kind."""
    centred = others - others.mean(axis=1, keepdims=True)
    b = beat - beat.mean()
    norms = np.sqrt((centred**2).sum(axis=1) * (b @ b))
    r = np.divide(centred @ b, norms, out=np.zeros(len(others)), where=norms > 0)
    return float(r.max())


def _noise_ratio(cleaned: np.ndarray, peak: int, fs: float) -> float:
    """RMS of what a 20-ms moving average leaves around the beat (outside its QRS), over the QRS size.

    Muscle and motion noise are fast wiggles; ECG waves outside the QRS (P, T) are smooth, so the
    residual of a short smoother measures noise and not the ECG itself.
    """
    half_qrs, half_noise = round(0.06 * fs), round(NOISE_HALF_WIDTH_S * fs)
    lo, hi = max(0, peak - half_noise), min(len(cleaned), peak + half_noise + 1)
    around = cleaned[lo:hi]
    width = max(1, round(SMOOTH_S * fs))
    residual = around - np.convolve(around, np.ones(width) / width, mode="same")
    keep = np.ones(around.size, dtype=bool)
    keep[: width // 2 + 1] = keep[-(width // 2 + 1) :] = False  # the smoother's own edges
    keep[max(0, peak - half_qrs - lo) : peak + half_qrs + 1 - lo] = False
    qrs = np.ptp(cleaned[max(0, peak - half_qrs) : peak + half_qrs + 1])
    if not keep.any() or qrs <= 0:
        return 1.0
    return float(np.sqrt(np.mean(residual[keep] ** 2)) / qrs)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denominator = float(np.sqrt((a @ a) * (b @ b)))
    return float(a @ b / denominator) if denominator > 0 else 0.0

"""Comparing a record read back from a drawing (PDF, image) with the samples it was drawn from."""

from __future__ import annotations

import numpy as np

from echopulse.ingest import ECGRecord

MAX_SHIFT_S = 0.1
SHIFT_STEP_S = 0.0005


def aligned_correlation(
    record: ECGRecord, reference: ECGRecord, span: tuple[float, float] | None = None
) -> float:
    """Pearson r between the record and the reference on the record's time grid (optionally within
    `span` seconds), at the best single shift of at most ±0.1 s: a drawing's first column need not sit
    exactly on the first sample."""
    t = np.arange(record.n_samples) / record.fs
    t_ref = np.arange(reference.n_samples) / reference.fs
    chosen = np.ones(t.size, dtype=bool) if span is None else (t >= span[0]) & (t < span[1])
    best = -1.0
    for shift in np.arange(-MAX_SHIFT_S, MAX_SHIFT_S + SHIFT_STEP_S / 2, SHIFT_STEP_S):
        inside = chosen & (t + shift >= 0) & (t + shift <= t_ref[-1])
        expected = np.interp(t[inside] + shift, t_ref, reference.signal[0])
        best = max(best, float(np.corrcoef(expected, record.signal[0][inside])[0, 1]))
    return best

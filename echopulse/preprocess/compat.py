"""The published ECHOPulse model's ECG input, for running its official weights.

ECHOPulse was trained on one cardiac cycle of an ECG trace (digitised from the echo screen), z-scored,
tiled 16 times and linearly squeezed into 2250 samples in the lead II slot, with the other 11 leads
zero and no band-pass (ECHOPULSE_FACTS.md §3.2). A model fed anything else sees out-of-distribution
input, so the `compat` layout reproduces this exactly (checked against the official function's output).
"""

from __future__ import annotations

import numpy as np

from echopulse.ecg import STMEM_LEADS, WINDOW_SAMPLES

ECHOPULSE_TILES = 16
ECHOPULSE_LEAD_SLOT = STMEM_LEADS.index("II")


def echopulse_ecg_input(cycle: np.ndarray) -> np.ndarray:
    """(12, 2250) float64 ECHOPulse input from one cardiac cycle (R-peak to next R-peak, any units).

    >>> echopulse_ecg_input(np.sin(np.linspace(0, 6, 140)))[1].shape
    (2250,)
    """
    trace = np.asarray(cycle, dtype=np.float64).ravel()
    std = trace.std()
    z = (trace - trace.mean()) / std if std > 0 else np.zeros_like(trace)
    tiled = np.tile(z, ECHOPULSE_TILES)
    out = np.zeros((len(STMEM_LEADS), WINDOW_SAMPLES))
    out[ECHOPULSE_LEAD_SLOT] = np.interp(
        np.linspace(0.0, 1.0, WINDOW_SAMPLES), np.linspace(0.0, 1.0, tiled.size), tiled
    )
    return out

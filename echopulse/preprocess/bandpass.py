"""ST-MEM's band-pass: Butterworth order 5, 0.67–40 Hz, applied forward-backward."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal as sps

STMEM_BAND_HZ = (0.67, 40.0)
STMEM_FILTER_ORDER = 5


@lru_cache(maxsize=16)
def bandpass_sos(fs: float, low: float = STMEM_BAND_HZ[0], high: float = STMEM_BAND_HZ[1]) -> np.ndarray:
    """Second-order sections of the ST-MEM band-pass at `fs` (cached: every window uses the same one)."""
    sos = sps.butter(STMEM_FILTER_ORDER, [low, high], btype="bandpass", fs=fs, output="sos")
    return sos


def bandpass(signal: np.ndarray, fs: float) -> np.ndarray:
    """Zero-phase band-pass along the last axis, exactly as ST-MEM's data transforms do.

    >>> bandpass(np.random.default_rng(0).normal(size=(1, 2250)), 250.0).shape
    (1, 2250)
    """
    return sps.sosfiltfilt(bandpass_sos(float(fs)), np.asarray(signal, dtype=np.float64), axis=-1)

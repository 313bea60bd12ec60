"""Polyphase resampling to ST-MEM's 250 Hz, exact for non-integer source rates."""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import signal as sps

STMEM_FS = 250.0


def rational_ratio(fs_in: float, fs_out: float = STMEM_FS) -> tuple[int, int]:
    """`(up, down)` with fs_out/fs_in = up/down exactly, from the rates as written (513.625 → 2000/4109).

    Going through `str` keeps a declared rate such as 512.508 exact instead of its binary approximation.
    """
    ratio = Fraction(str(float(fs_out))) / Fraction(str(float(fs_in)))
    return ratio.numerator, ratio.denominator


@lru_cache(maxsize=32)
def _antialias_taps(up: int, down: int) -> np.ndarray:
    """The FIR that `resample_poly` would design itself (Kaiser β=5, 10 zero crossings), designed once.

    For 513.625 Hz the filter has 82,181 taps; designing it per window would cost more than filtering.
    """
    max_rate = max(up, down)
    half_len = 10 * max_rate
    taps = sps.firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0))
    taps.setflags(write=False)
    return taps


def resample(signal: np.ndarray, fs_in: float, fs_out: float = STMEM_FS) -> np.ndarray:
    """Resample the last axis from `fs_in` to `fs_out` with polyphase filtering (float64 out).

    Same result as `scipy.signal.resample_poly(signal, up, down, axis=-1)` with the exact rational ratio;
    only the filter design is cached.

    >>> resample(np.zeros((1, 5136)), 513.625).shape
    (1, 2500)
    """
    up, down = rational_ratio(fs_in, fs_out)
    x = np.asarray(signal, dtype=np.float64)
    if up == down:
        return x.copy()
    return sps.resample_poly(x, up, down, axis=-1, window=_antialias_taps(up, down))

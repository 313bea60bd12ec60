"""Polyphase resampling to ST-MEM's 250 Hz, exact for non-integer source rates.

`resample` gives what `scipy.signal.resample_poly` gives with the exact rational ratio. A declared rate
such as 512.508 Hz makes that ratio 62500/128127 and scipy's anti-alias filter 2.5 million taps, which
`resample_poly` re-lays into its polyphase bank on every call: 45 ms for one 11-s window, most of what a
live stream cost the server. Every window of a stream has the same length, and resampling is linear, so
for such segments the whole operation is one sparse matrix (about 40 non-zeros per output sample), built
once per rate and length and then applied in well under a millisecond.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import signal as sps
from scipy import sparse

STMEM_FS = 250.0
MATRIX_MAX_NONZEROS = 4_000_000
"""Above this many filter taps in play, the sparse map would cost more memory than it saves time."""


def rational_ratio(fs_in: float, fs_out: float = STMEM_FS) -> tuple[int, int]:
    """`(up, down)` with fs_out/fs_in = up/down exactly, from the rates as written (513.625 → 2000/4109).

    Going through `str` keeps a declared rate such as 512.508 exact instead of its binary approximation.
    """
    ratio = Fraction(str(float(fs_out))) / Fraction(str(float(fs_in)))
    return ratio.numerator, ratio.denominator


@lru_cache(maxsize=4)  # only the matrices below need them, and those are cached themselves
def _antialias_taps(up: int, down: int) -> np.ndarray:
    """The FIR that `resample_poly` would design itself (Kaiser β=5, 10 zero crossings), designed once.

    For 513.625 Hz the filter has 82,181 taps; designing it per window would cost more than filtering.
    """
    max_rate = max(up, down)
    half_len = 10 * max_rate
    taps = sps.firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0))
    taps.setflags(write=False)
    return taps


def _output_length(n_in: int, up: int, down: int) -> int:
    return -(-n_in * up // down)


@lru_cache(maxsize=16)
def _resampling_matrix(up: int, down: int, n_in: int) -> sparse.csr_matrix:
    """The (n_out, n_in) matrix of `resample_poly(·, up, down)` on signals of `n_in` samples.

    Output sample i sits at position (i + pre_remove)·down of the zero-stuffed input, behind the filter's
    zero pre-padding, exactly as scipy lays it out; input sample j meets tap (i + pre_remove)·down −
    j·up − pre_pad, where that tap exists.
    """
    taps = _antialias_taps(up, down) * up
    half_len = (taps.size - 1) // 2
    pre_pad = down - half_len % down
    pre_remove = (half_len + pre_pad) // down
    n_out = _output_length(n_in, up, down)
    position = (np.arange(n_out, dtype=np.int64) + pre_remove) * down - pre_pad
    first = -(-(position - (taps.size - 1)) // up)  # the lowest j whose tap index is below taps.size
    width = -(-taps.size // up) + 1
    j = first[:, None] + np.arange(width)
    k = position[:, None] - j * up
    keep = (j >= 0) & (j < n_in) & (k >= 0) & (k < taps.size)
    rows = np.broadcast_to(np.arange(n_out)[:, None], j.shape)[keep]
    matrix = sparse.csr_matrix((taps[k[keep]], (rows, j[keep])), shape=(n_out, n_in))
    matrix.sort_indices()
    return matrix


def resample(signal: np.ndarray, fs_in: float, fs_out: float = STMEM_FS) -> np.ndarray:
    """Resample the last axis from `fs_in` to `fs_out` with polyphase filtering (float64 out).

    Same result as `scipy.signal.resample_poly(signal, up, down, axis=-1)` with the exact rational ratio
    (to rounding: the sums run in another order); only the filter work is cached.

    >>> resample(np.zeros((1, 5136)), 513.625).shape
    (1, 2500)
    """
    up, down = rational_ratio(fs_in, fs_out)
    x = np.asarray(signal, dtype=np.float64)
    if up == down:
        return x.copy()
    n_in = x.shape[-1]
    taps_per_output = -(-_antialias_taps(up, down).size // up)
    if n_in == 0 or _output_length(n_in, up, down) * taps_per_output > MATRIX_MAX_NONZEROS:
        return sps.resample_poly(x, up, down, axis=-1, window=_antialias_taps(up, down))
    flat = x.reshape(-1, n_in)
    out = (_resampling_matrix(up, down, n_in) @ flat.T).T
    return np.ascontiguousarray(out).reshape(*x.shape[:-1], out.shape[-1])

"""Eval-only measures (numpy only): cyclic frame distance, and the fixed derangement of the shuffled control.

The agreement scores (MAE, RMSE, R²) are shared with training: `echopulse.generator.training.scores`.
"""

from __future__ import annotations

import numpy as np


def cyclic_distance(a, b, period: int) -> np.ndarray:
    """Frame distance on a one-cycle clip: the last frame neighbours frame 0 (the next beat's R-peak)."""
    d = np.abs(np.asarray(a, dtype=np.int64) - np.asarray(b, dtype=np.int64)) % period
    return np.minimum(d, period - d)


def derangement(n: int, seed: int) -> np.ndarray:
    """A fixed permutation of range(n) with no fixed point (n ≥ 2): sample i gets the ECG of perm[i].

    A random order, then each sample takes the one `k` places further round the cycle (1 ≤ k < n), so no
    index maps to itself, and the same (n, seed) always gives the same pairing.
    """
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 items, got {n}")
    rng = np.random.default_rng([int(seed), 0x5AFF1E])
    order = rng.permutation(n)
    k = int(rng.integers(1, n))
    perm = np.empty(n, dtype=np.int64)
    perm[order] = order[(np.arange(n) + k) % n]
    return perm

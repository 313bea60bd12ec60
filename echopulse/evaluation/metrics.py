"""Agreement metrics on the held-out set (numpy only), and the fixed derangement of the shuffled control."""

from __future__ import annotations

import math

import numpy as np


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    return t, p


def mae(y_true, y_pred) -> float:
    """Mean absolute error; NaN for no pairs."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(p - t))) if t.size else math.nan


def rmse(y_true, y_pred) -> float:
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((p - t) ** 2))) if t.size else math.nan


def r2(y_true, y_pred) -> float:
    """Coefficient of determination 1 − SS_res/SS_tot against the labels' own mean (can be negative).

    Not the squared correlation: a prediction with the right ranking but the wrong scale or offset is
    penalised. NaN when fewer than two pairs or the labels are all equal (SS_tot = 0).
    """
    t, p = _pair(y_true, y_pred)
    if t.size < 2:
        return math.nan
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    if ss_tot == 0.0:
        return math.nan
    return 1.0 - float(np.sum((t - p) ** 2)) / ss_tot


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

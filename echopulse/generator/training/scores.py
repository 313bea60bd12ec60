"""Agreement scores of predictions against labels (numpy only): MAE, RMSE, R².

Shared by the ECG encoder's validation (`ecg_trainer`, R² of its heads) and `echopulse eval` (EF against the
phantom's labels), so a figure in a training log and one in eval.json mean the same thing.
"""

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

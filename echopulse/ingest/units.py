"""Amplitude units, so that every record leaves ingest in millivolts."""

from __future__ import annotations

import unicodedata

import numpy as np

_MILLIVOLTS_PER_UNIT = {
    "nv": 1e-6,
    "uv": 1e-3,
    "µv": 1e-3,
    "μv": 1e-3,
    "microvolt": 1e-3,
    "microvolts": 1e-3,
    "mv": 1.0,
    "millivolt": 1.0,
    "millivolts": 1.0,
    "v": 1e3,
    "volt": 1e3,
    "volts": 1e3,
}


def millivolts_per_unit(unit: str) -> float | None:
    """Scale factor from `unit` to mV, or None when the unit is not an electrical potential we know."""
    key = unicodedata.normalize("NFKC", unit).strip().lower().replace(" ", "")
    key = key.replace("μ", "µ")
    return _MILLIVOLTS_PER_UNIT.get(key)


def to_millivolts(values: np.ndarray, unit: str) -> np.ndarray:
    """Convert `values` in `unit` to float32 millivolts; raises ValueError for an unknown unit."""
    scale = millivolts_per_unit(unit)
    if scale is None:
        raise ValueError(f"unknown amplitude unit {unit!r}")
    return (np.asarray(values, dtype=np.float64) * scale).astype(np.float32)

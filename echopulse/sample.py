"""The bundled sample ECG, so the demo and the viewer work on a fresh clone with no data of one's own."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SAMPLE_ECG_FS = 512.0
"""The sample's rate: 15,360 samples over the 30 s an Apple Watch recording lasts (see data/README.md)."""


def sample_ecg_path() -> Path:
    """Path of the bundled real Apple Watch trace (lead I, µV, values only, 512 Hz; MIT licence)."""
    return Path(str(resources.files("echopulse") / "data" / "sample_ecg.csv"))

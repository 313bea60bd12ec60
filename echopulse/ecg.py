"""What an ECG is, below every stage: `ECGRecord` (what every reader returns and everything downstream
consumes), its beat annotations, and the names of its leads (ST-MEM's 12 slots and how files spell them).

Readers (`ingest`) and preprocessing (`preprocess`) both build on this module and on nothing of each other.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np


@dataclass(frozen=True)
class BeatAnnotations:
    """Reference beat labels that came with a record (WFDB `.atr`), in samples of the record's fs."""

    sample: np.ndarray
    symbol: tuple[str, ...]


@dataclass
class ECGRecord:
    """One ECG recording in physical units, stripped of anything that identifies the person.

    `signal` is float32 (leads × samples) in millivolts. `fs` may be non-integer: Apple Watch exports
    declare rates such as 513.625 Hz and every later stage uses the declared rate. `meta` holds what the
    file says about the recording (classification, software version, reported heart rate, ...), never a
    name or a birth date: readers drop those while parsing.
    """

    signal: np.ndarray
    fs: float
    leads: tuple[str, ...]
    start: datetime | None = None
    device: str | None = None
    source_format: str = "unknown"
    meta: dict[str, Any] = field(default_factory=dict)
    annotations: BeatAnnotations | None = None

    def __post_init__(self) -> None:
        signal = np.asarray(self.signal, dtype=np.float32)
        if signal.ndim == 1:
            signal = signal[np.newaxis, :]
        if signal.ndim != 2:
            raise ValueError(f"signal must be (leads, samples), got shape {signal.shape}")
        if signal.shape[0] != len(self.leads):
            raise ValueError(f"{signal.shape[0]} signal rows but {len(self.leads)} lead names")
        self.signal = signal
        self.fs = float(self.fs)
        self.leads = tuple(self.leads)

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs

    def content_hash(self) -> str:
        """SHA-256 of what was recorded (rate, leads, samples), never of who: the key outputs are named by."""
        digest = hashlib.sha256()
        digest.update(f"{self.fs!r}|{','.join(self.leads)}|".encode())
        digest.update(np.ascontiguousarray(self.signal, dtype="<f4").tobytes())
        return digest.hexdigest()


STMEM_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
WINDOW_SAMPLES = 2250
"""Samples in one ST-MEM input window: 9 s at 250 Hz, so every window is (12, WINDOW_SAMPLES)."""

_ALIASES = {
    "i": "I", "ii": "II", "iii": "III", "avr": "aVR", "avl": "aVL", "avf": "aVF",
    "mli": "I", "mlii": "II", "mliii": "III", "d1": "I", "d2": "II", "d3": "III",
    "di": "I", "dii": "II", "diii": "III",
}  # fmt: skip


def canonical_lead(name: str) -> str | None:
    """ST-MEM name of a lead label as files write it ("Lead I", "MLII", "avf", "V5"), else None.

    Modified limb leads (MLII of MIT-BIH) go to their limb slot: they are the closest lead ST-MEM knows.
    """
    key = re.sub(r"[\s_\-]+", "", name.strip().lower())
    key = re.sub(r"^(lead|ableitung|dérivation|derivation|derivación|derivazione|誘導)", "", key)
    key = re.sub(r"(誘導)$", "", key)
    if key in _ALIASES:
        return _ALIASES[key]
    match = re.fullmatch(r"(?:ml)?v([1-6])", key)
    if match:
        return f"V{match.group(1)}"
    return None


def lead_slot(name: str) -> int | None:
    """Index of a lead in ST-MEM order, or None when the name is not one of the 12 standard leads."""
    canonical = canonical_lead(name)
    return None if canonical is None else STMEM_LEADS.index(canonical)

def lead_names(labels: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Canonical names where the label is a standard lead (MLII -> II), else the label itself, unique.

    A second signal that maps onto an already used name keeps its own label, so that a record holding
    both MLII and II does not end with two rows both called II.
    """
    names: list[str] = []
    for index, label in enumerate(labels):
        label = label.strip() or f"lead{index}"
        name = canonical_lead(label) or label
        if name in names:
            name = label
        suffix = 2
        base = name
        while name in names:
            name = f"{base}#{suffix}"
            suffix += 1
        names.append(name)
    return tuple(names)

"""`ECGRecord`: what every reader returns and everything downstream consumes."""

from __future__ import annotations

import hashlib
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

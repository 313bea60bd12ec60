"""`preprocess_record`: a whole record to beats and windows, by the very procedure the live path runs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from echopulse.ingest.record import ECGRecord
from echopulse.preprocess.beats import Beat
from echopulse.preprocess.streaming import StreamingPreprocessor
from echopulse.preprocess.windows import STMEMWindow


@dataclass
class Preprocessed:
    """Beats and windows of one record, and which lead the beats were found on."""

    beats: list[Beat]
    windows: list[STMEMWindow]
    detection_lead: str
    method: str
    layout: str

    @property
    def hr_bpm(self) -> float | None:
        """Median heart rate over accepted beats (robust to a missed or extra beat)."""
        rates = [b.hr_bpm for b in self.beats if b.hr_bpm is not None and b.accepted]
        return float(np.median(rates)) if rates else None


def preprocess_record(record: ECGRecord, method: str = "neurokit", layout: str = "stmem") -> Preprocessed:
    """Beats (R-peaks, RR, quality) and one ST-MEM window per beat for a whole record.

    The record is pushed through `StreamingPreprocessor` as one chunk, so offline and live results are
    the same procedure, not two implementations kept in step.

    >>> result = preprocess_record(read_record("ecg_2021-12-17.csv"))  # doctest: +SKIP
    >>> len(result.windows) == len(result.beats)
    True
    """
    live = StreamingPreprocessor(record.fs, record.leads, method=method, layout=layout)
    first = live.push(record.signal)
    last = live.finish()
    return Preprocessed(
        beats=first.beats + last.beats,
        windows=first.windows + last.windows,
        detection_lead=record.leads[live.detect_row],
        method=method,
        layout=layout,
    )

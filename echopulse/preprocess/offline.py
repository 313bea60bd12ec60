"""`preprocess_record`: a whole record to beats and windows, by the very procedure the live path runs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from echopulse.ecg import ECGRecord
from echopulse.preprocess.beats import DEFAULT_METHOD, Beat
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


PROGRESS_CHUNK_S = 60.0


def preprocess_record(
    record: ECGRecord, method: str = DEFAULT_METHOD, layout: str = "stmem", progress: bool = False
) -> Preprocessed:
    """Beats (R-peaks, RR, quality) and one ST-MEM window per beat for a whole record.

    The record is pushed through `StreamingPreprocessor`, so offline and live results are the same
    procedure, not two implementations kept in step. With `progress` it is pushed a minute at a time
    behind a progress bar; the result is the same, since chunking cannot change it.

    >>> result = preprocess_record(read_record("ecg_2021-12-17.csv"))  # doctest: +SKIP
    >>> len(result.windows) == len(result.beats)
    True
    """
    live = StreamingPreprocessor(record.fs, record.leads, method=method, layout=layout)
    step = round(PROGRESS_CHUNK_S * record.fs) if progress else record.n_samples
    beats, windows = [], []
    bar = tqdm(total=round(record.duration_s), unit="s", desc="beats", disable=not progress, leave=False)
    with bar:
        for start in range(0, record.n_samples, step):
            out = live.push(record.signal[:, start : start + step])
            beats += out.beats
            windows += out.windows
            bar.update(round(min(step, record.n_samples - start) / record.fs))
    last = live.finish()
    return Preprocessed(
        beats=beats + last.beats,
        windows=windows + last.windows,
        detection_lead=record.leads[live.detect_row],
        method=method,
        layout=layout,
    )

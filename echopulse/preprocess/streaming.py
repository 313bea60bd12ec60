"""`StreamingPreprocessor`: live ECG chunks in, beats and ST-MEM windows out, the moment each beat closes.

It is also how a whole record is preprocessed offline (`preprocess_record` pushes the record as one
chunk), so the two paths cannot drift apart: chunk sizes change only when work happens, never its result.
Memory is bounded: a ring of the last `RAW_HISTORY_S` seconds of raw samples and the beats inside it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from echopulse.ecg import canonical_lead
from echopulse.preprocess.beats import DEFAULT_METHOD, Beat, BeatTracker, DetectorSettings
from echopulse.preprocess.windows import MARGIN_S, WINDOW_S, STMEMWindow, stmem_windows


@dataclass
class StreamOutput:
    """What one push produced: the beats it closed and a window for each."""

    beats: list[Beat] = field(default_factory=list)
    windows: list[STMEMWindow] = field(default_factory=list)


def detection_row(leads: Sequence[str]) -> int:
    """The lead R-peaks are found on: lead II where present (tallest R in most people), else the first."""
    for row, name in enumerate(leads):
        if canonical_lead(name) == "II":
            return row
    return 0


class StreamingPreprocessor:
    """Push (leads × n) chunks of raw mV samples at `fs`; each push returns the beats and windows it closed.

    >>> live = StreamingPreprocessor(fs=512.0, leads=("I",))  # doctest: +SKIP
    >>> out = live.push(chunk)  # any chunk size; out.beats, out.windows
    >>> tail = live.finish()    # end of stream: the last beats
    """

    def __init__(
        self,
        fs: float,
        leads: Sequence[str] = ("I",),
        method: str = DEFAULT_METHOD,
        layout: str = "stmem",
        detector: DetectorSettings | None = None,
    ) -> None:
        self.fs = float(fs)
        self.leads = tuple(leads)
        self.layout = layout
        self.detect_row = detection_row(self.leads)
        settings = detector or DetectorSettings(method=method)
        if settings.guard_s < MARGIN_S:
            raise ValueError("window margin must not exceed the detector guard")
        self.tracker = BeatTracker(self.fs, settings)
        # A beat commits at most buffer - front_guard seconds after its R-peak, and its window reaches
        # WINDOW_S + MARGIN_S back from the peak.
        history_s = settings.buffer_s - settings.front_guard_s + settings.hop_s + WINDOW_S + MARGIN_S
        self.history_n = math.ceil(history_s * self.fs)
        self._raw = np.empty((len(self.leads), 0), dtype=np.float32)
        self._raw_offset = 0
        self._recent_beats: deque[Beat] = deque()
        self.n_samples = 0

    def push(self, chunk: np.ndarray) -> StreamOutput:
        """Feed the next samples, float (leads × n) in mV (a 1-D array for a single lead)."""
        chunk = np.asarray(chunk, dtype=np.float32)
        if chunk.ndim == 1:
            chunk = chunk[np.newaxis, :]
        if chunk.shape[0] != len(self.leads):
            raise ValueError(f"chunk has {chunk.shape[0]} leads, stream declared {len(self.leads)}")
        self._raw = np.concatenate([self._raw, chunk], axis=1)
        self.n_samples += chunk.shape[1]
        beats = self.tracker.push(chunk[self.detect_row])
        return self._close(beats)

    def finish(self) -> StreamOutput:
        """End of stream: commit the last beats the data holds."""
        return self._close(self.tracker.finish())

    def _close(self, beats: list[Beat]) -> StreamOutput:
        windows = stmem_windows(
            self._raw,
            self.fs,
            self.leads,
            beats,
            layout=self.layout,
            signal_offset=self._raw_offset,
            history=tuple(self._recent_beats),
        )
        self._recent_beats.extend(beats)
        self._trim()
        return StreamOutput(beats=beats, windows=windows)

    def _trim(self) -> None:
        excess = self._raw.shape[1] - self.history_n
        if excess > 0:
            self._raw = self._raw[:, excess:]
            self._raw_offset += excess
        oldest_s = (self.n_samples - self.history_n) / self.fs
        while self._recent_beats and self._recent_beats[0].r_peak_s < oldest_s - WINDOW_S:
            self._recent_beats.popleft()

"""Live sample blocks from a websocket: the declared stream format, and one chunk decoded at a time.

A stream declares its rate, leads, units and sample format once (the `start` message); every binary chunk
after that is raw interleaved samples. Each chunk is checked on its own, because the service must answer a
bad chunk with an error message instead of feeding garbage (or a 2 GB allocation) into the beat detector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from echopulse.errors import IngestError
from echopulse.ingest import limits
from echopulse.ingest.units import millivolts_per_unit
from echopulse.ingest.validate import check_sample_rate

STREAM = "stream"
"""The `source` of every stream IngestError: there is no file name to report."""

MAX_CHUNK_BYTES = 1024 * 1024
"""Largest chunk accepted: 1 MiB is about 20 s of 12-lead float32 at 1 kHz, more than a message needs."""

SAMPLE_FORMATS = {"f32le": np.dtype("<f4")}
"""Wire formats by name; interleaved frames, one sample per lead per frame."""


@dataclass(frozen=True)
class StreamSpec:
    """What a stream's `start` message declares; construction refuses anything the decoder cannot honour."""

    fs: float
    leads: tuple[str, ...] = ("I",)
    units: str = "mV"
    sample_format: str = "f32le"

    def __post_init__(self) -> None:
        if isinstance(self.fs, bool) or not isinstance(self.fs, int | float | np.floating | np.integer):
            raise IngestError(STREAM, f"fs must be a number, got {self.fs!r}", "start, fs")
        object.__setattr__(self, "fs", check_sample_rate(STREAM, float(self.fs), "start, fs"))
        leads = (self.leads,) if isinstance(self.leads, str) else tuple(self.leads)
        object.__setattr__(self, "leads", leads)
        self._check_leads()
        if not isinstance(self.units, str) or millivolts_per_unit(self.units) is None:
            raise IngestError(
                STREAM, f"unknown amplitude unit {self.units!r} (use mV, uV or V)", "start, units"
            )
        if self.sample_format not in SAMPLE_FORMATS:
            supported = ", ".join(sorted(SAMPLE_FORMATS))
            raise IngestError(
                STREAM,
                f"unsupported sample format {self.sample_format!r} (supported: {supported})",
                "start, sample_format",
            )

    def _check_leads(self) -> None:
        if not self.leads:
            raise IngestError(STREAM, "a stream needs at least one lead", "start, leads")
        if len(self.leads) > limits.MAX_LEADS:
            raise IngestError(STREAM, f"{len(self.leads)} leads, at most {limits.MAX_LEADS}", "start, leads")
        if any(not isinstance(lead, str) or not lead.strip() for lead in self.leads):
            raise IngestError(
                STREAM, f"lead names must be non-empty text, got {self.leads!r}", "start, leads"
            )
        if len(set(self.leads)) != len(self.leads):
            raise IngestError(STREAM, f"lead names repeat: {self.leads!r}", "start, leads")

    @property
    def frame_bytes(self) -> int:
        """Bytes per frame: one sample of every lead."""
        return SAMPLE_FORMATS[self.sample_format].itemsize * len(self.leads)

    @property
    def millivolts_per_unit(self) -> float:
        scale = millivolts_per_unit(self.units)
        assert scale is not None  # checked in __post_init__
        return scale


def decode_chunk(data: bytes | bytearray | memoryview, spec: StreamSpec) -> np.ndarray:
    """One binary chunk as float32 (leads, frames) in mV; refuses partial frames and implausible values."""
    size = memoryview(data).nbytes
    if size > MAX_CHUNK_BYTES:
        raise IngestError(STREAM, f"chunk of {size} bytes is over the {MAX_CHUNK_BYTES} byte limit")
    if size % spec.frame_bytes:
        raise IngestError(
            STREAM,
            f"chunk of {size} bytes is not a whole number of frames "
            f"({spec.frame_bytes} bytes: {len(spec.leads)} lead(s) × 4-byte {spec.sample_format})",
        )
    samples = np.frombuffer(data, dtype=SAMPLE_FORMATS[spec.sample_format])
    chunk = samples.reshape(-1, len(spec.leads)).T.astype(np.float32)
    if spec.millivolts_per_unit != 1.0:
        with np.errstate(over="ignore"):  # an overflow becomes inf, which the value check names
            chunk *= np.float32(spec.millivolts_per_unit)
    _check_values(chunk, spec)
    return chunk


def _check_values(chunk: np.ndarray, spec: StreamSpec) -> None:
    finite = np.isfinite(chunk)
    if not finite.all():
        lead, frame = np.argwhere(~finite)[0]
        raise IngestError(
            STREAM, "chunk holds NaN or infinite samples", f"lead {spec.leads[lead]}, frame {frame}"
        )
    if chunk.size and float(np.abs(chunk).max()) > limits.MAX_ABS_MV:
        lead, frame = np.unravel_index(int(np.abs(chunk).argmax()), chunk.shape)
        raise IngestError(
            STREAM,
            f"sample of {float(chunk[lead, frame]):.4g} mV is implausible for an ECG (wrong units?)",
            f"lead {spec.leads[lead]}, frame {frame}",
        )

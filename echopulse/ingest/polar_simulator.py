"""A Polar H10 without the strap: any ECG record as the PMD frames an H10 would notify, with their timing.

The record's lead is resampled to the H10's 130 Hz (polyphase, `scipy.signal.resample_poly`, at the exact
rational ratio), rounded to whole µV, and cut into frames of 73 samples with the strap's header:
measurement type ECG, the timestamp of each frame's last sample in ns since 2000-01-01, frame type 0,
signed 24-bit samples. Each frame comes with `due_s`, the stream time at which the strap would send it
(when its last sample was taken), so a replay paced by it arrives as a strap's notifications do. Tests,
`echopulse stream/record --simulated-h10` and the viewer's Polar demo use it, so the whole device path
runs here without hardware.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

from echopulse.ecg import ECGRecord
from echopulse.ingest.polar import ECG, H10_ECG_FS, H10_SAMPLES_PER_FRAME, HEADER_BYTES

INT24_MIN, INT24_MAX = -(1 << 23), (1 << 23) - 1
DEFAULT_START_NS = 852_076_800 * 10**9
"""The simulated strap's clock at the first sample: 2027-01-01T00:00:00 UTC in PMD time (fixed, so the
same record always gives the same bytes)."""


@dataclass(frozen=True)
class SimulatedFrame:
    data: bytes
    due_s: float
    """Stream seconds after the first sample at which the strap sends this frame."""


def h10_samples_uv(record: ECGRecord, lead: str | None = None) -> np.ndarray:
    """One lead of `record` as the H10 would measure it: 130 Hz, whole µV (int32), within 24 bits."""
    row = record.leads.index(lead) if lead is not None else 0
    ratio = Fraction(H10_ECG_FS) / Fraction(record.fs).limit_denominator(100_000)
    signal = record.signal[row].astype(np.float64)
    at_130 = resample_poly(signal, ratio.numerator, ratio.denominator) if ratio != 1 else signal
    return np.clip(np.rint(at_130 * 1000.0), INT24_MIN, INT24_MAX).astype(np.int32)


def encode_frame(samples_uv: np.ndarray, timestamp_ns: int, frame_type: int = 0) -> bytes:
    """One PMD ECG data frame (type 0) holding `samples_uv`, stamped with its last sample's time."""
    values = np.asarray(samples_uv, dtype=np.int64)
    if values.size and (values.min() < INT24_MIN or values.max() > INT24_MAX):
        raise ValueError("PMD type-0 samples are 24-bit")
    unsigned = (values & 0xFFFFFF).astype(np.uint32)
    triples = np.stack([unsigned & 0xFF, (unsigned >> 8) & 0xFF, (unsigned >> 16) & 0xFF], axis=1)
    header = bytes([ECG]) + int(timestamp_ns).to_bytes(8, "little") + bytes([frame_type])
    assert len(header) == HEADER_BYTES
    return header + triples.astype(np.uint8).tobytes()


def h10_frames(
    samples_uv: np.ndarray,
    fs: float = H10_ECG_FS,
    samples_per_frame: int = H10_SAMPLES_PER_FRAME,
    start_ns: int = DEFAULT_START_NS,
) -> Iterator[SimulatedFrame]:
    """The frames a strap sends for these samples (the last frame may be shorter), in order."""
    period_ns = 1e9 / fs
    for begin in range(0, len(samples_uv), samples_per_frame):
        end = min(begin + samples_per_frame, len(samples_uv))
        stamp = start_ns + round((end - 1) * period_ns)
        yield SimulatedFrame(encode_frame(samples_uv[begin:end], stamp), (end - 1) / fs)


def record_frames(record: ECGRecord, lead: str | None = None, start_ns: int = DEFAULT_START_NS
                  ) -> list[SimulatedFrame]:
    """`record` as an H10 would stream it."""
    return list(h10_frames(h10_samples_uv(record, lead), start_ns=start_ns))


def frames_file(frames: list[SimulatedFrame]) -> bytes:
    """Frames as one binary body for the viewer's demo: per frame a uint16 little-endian length, then the
    frame. The page paces them itself at 130 Hz from their timestamps, as the strap would send them."""
    return b"".join(len(f.data).to_bytes(2, "little") + f.data for f in frames)

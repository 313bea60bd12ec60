"""Polar Measurement Data (PMD): the ECG a Polar H10 chest strap streams over Bluetooth LE, as µV blocks.

The strap's PMD service has a control point (write a command, get an indication back) and a data
characteristic that notifies one frame at a time. An ECG data frame, per Polar's published specification
and BLE SDK, is

    byte 0       measurement type (low 6 bits; 0 = ECG)
    bytes 1-8    timestamp of the frame's LAST sample, uint64 little-endian, ns since 2000-01-01
    byte 9       frame type (low 7 bits; the top bit marks a compressed, delta-coded frame)
    bytes 10-    samples: frame type 0 is signed 24-bit little-endian µV, 3 bytes each

and the H10 sends type 0 at 130 Hz, 73 samples a frame (229 bytes, what an MTU of 232 carries).

`decode_frame` reads one frame and refuses anything else with a `PmdFrameError` that says why (`code`:
short, not_ecg, compressed, frame_type, empty, length). `EcgFrameStream` reads a stream of them and checks
the timestamps too: one that does not move forward (`backwards`) or that claims fewer samples than the frame
holds (`overlap`) is refused, and frames lost in the radio link show as a `gap` (samples missing before a
block), never as samples silently joined. The viewer's `polar.js` decodes the same way; a test holds the two
to the same outcomes, frame by frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from echopulse.errors import IngestError

PMD_SERVICE = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
PMD_CONTROL = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
PMD_DATA = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"

H10_ECG_FS = 130
"""The one ECG rate the H10 offers."""
H10_ECG_RESOLUTION_BITS = 14
H10_SAMPLES_PER_FRAME = 73
ECG = 0x00
HEADER_BYTES = 10
SAMPLE_BYTES = 3
MEASUREMENT_TYPE_MASK = 0x3F
COMPRESSED_BIT = 0x80

GAP_TOLERANCE_SAMPLES = 2
"""How far (in samples) two frames' timestamps may disagree with the samples between them before it is a
gap or an overlap: the strap's clock is not exactly 130 Hz, and timestamps carry rounding."""

OP_START, OP_STOP = 0x02, 0x03
SETTING_SAMPLE_RATE, SETTING_RESOLUTION = 0x00, 0x01
CONTROL_RESPONSE = 0xF0
CONTROL_STATUS = (
    "success", "invalid op code", "invalid measurement type", "not supported", "invalid length",
    "invalid parameter", "already in state", "invalid resolution", "invalid sample rate", "invalid range",
    "invalid MTU", "invalid number of channels", "invalid state", "device in charger", "disk full",
)


class PmdFrameError(IngestError):
    """A PMD frame that gives no samples, and why. `code` is the same word the viewer's decoder uses."""

    def __init__(self, code: str, problem: str) -> None:
        super().__init__("PMD frame", problem)
        self.code = code


class PmdControlError(IngestError):
    """The strap refused a control-point command (or answered something that is not an answer)."""

    def __init__(self, problem: str) -> None:
        super().__init__("Polar H10", problem)


@dataclass(frozen=True)
class EcgFrame:
    """One decoded frame: `samples_uv` (int32) and the timestamp of its last sample."""

    timestamp_ns: int
    samples_uv: np.ndarray
    frame_type: int = 0


@dataclass(frozen=True)
class EcgBlock:
    """A frame placed in the stream: `gap` samples were lost before it (0 in a healthy stream)."""

    frame: EcgFrame
    gap: int = 0

    @property
    def samples_uv(self) -> np.ndarray:
        return self.frame.samples_uv


def decode_frame(data: bytes | bytearray | memoryview) -> EcgFrame:
    """One PMD data notification → its ECG samples in µV, or `PmdFrameError`."""
    raw = bytes(data)
    if len(raw) < HEADER_BYTES:
        raise PmdFrameError("short", f"{len(raw)} bytes, shorter than its {HEADER_BYTES}-byte header")
    kind = raw[0] & MEASUREMENT_TYPE_MASK
    if kind != ECG:
        raise PmdFrameError("not_ecg", f"measurement type {kind}, not ECG (0)")
    frame_type = raw[9]
    if frame_type & COMPRESSED_BIT:
        raise PmdFrameError("compressed", f"compressed (type byte 0x{frame_type:02x}); the H10 sends raw "
                                          "ECG frames only")
    if frame_type != 0:
        raise PmdFrameError("frame_type", f"ECG frame type {frame_type}; only type 0 (24-bit µV, the H10's) "
                                          "is read")
    payload = raw[HEADER_BYTES:]
    if not payload:
        raise PmdFrameError("empty", "ECG frame without samples")
    if len(payload) % SAMPLE_BYTES:
        raise PmdFrameError("length", f"{len(payload)} sample bytes, not a multiple of {SAMPLE_BYTES}")
    timestamp = int.from_bytes(raw[1:9], "little")
    return EcgFrame(timestamp, int24_le(payload), frame_type)


def int24_le(payload: bytes) -> np.ndarray:
    """Signed 24-bit little-endian integers → int32."""
    triples = np.frombuffer(payload, dtype=np.uint8).reshape(-1, SAMPLE_BYTES).astype(np.int32)
    values = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
    return np.where(values >= 1 << 23, values - (1 << 24), values).astype(np.int32)


class EcgFrameStream:
    """Frames in the order they arrive → blocks, with the timestamps checked against the sample count.

    A refused frame (`PmdFrameError`) leaves the stream as it was, so the next good frame is read against
    the last good one; the samples of a refused frame then show up in that frame's `gap`."""

    def __init__(self, fs: float = H10_ECG_FS) -> None:
        self.fs = fs
        self.last_timestamp_ns: int | None = None
        self.samples = 0
        self.gaps = 0
        self.missing = 0
        self.refused: dict[str, int] = {}

    def push(self, data: bytes | bytearray | memoryview) -> EcgBlock:
        try:
            frame = decode_frame(data)
            gap = self._gap(frame)
        except PmdFrameError as error:
            self.refused[error.code] = self.refused.get(error.code, 0) + 1
            raise
        self.last_timestamp_ns = frame.timestamp_ns
        self.samples += frame.samples_uv.size
        if gap:
            self.gaps += 1
            self.missing += gap
        return EcgBlock(frame, gap)

    def _gap(self, frame: EcgFrame) -> int:
        """Samples missing between the last good frame and this one (0 without a previous frame)."""
        if self.last_timestamp_ns is None:
            return 0
        elapsed = frame.timestamp_ns - self.last_timestamp_ns
        if elapsed <= 0:
            why = f"timestamp {frame.timestamp_ns} ns does not follow the previous frame's " \
                  f"{self.last_timestamp_ns} ns"
            raise PmdFrameError("backwards", why)
        implied = elapsed * self.fs / 1e9
        extra = implied - frame.samples_uv.size
        if extra < -GAP_TOLERANCE_SAMPLES:
            raise PmdFrameError("overlap", f"{frame.samples_uv.size} samples stamped only {implied:.1f} "
                                           "samples after the previous frame")
        return round(extra) if extra > GAP_TOLERANCE_SAMPLES else 0


def ecg_start_command(fs: int = H10_ECG_FS, resolution_bits: int = H10_ECG_RESOLUTION_BITS) -> bytes:
    """The control-point write that starts the ECG stream: op 2, type ECG, sample rate and resolution."""
    return bytes([OP_START, ECG, SETTING_SAMPLE_RATE, 1, *fs.to_bytes(2, "little"),
                  SETTING_RESOLUTION, 1, *resolution_bits.to_bytes(2, "little")])


ECG_STOP_COMMAND = bytes([OP_STOP, ECG])


def check_control_response(data: bytes | bytearray | memoryview, op: int) -> bytes:
    """The indication answering a control-point command: its parameters, or `PmdControlError`."""
    raw = bytes(data)
    if len(raw) < 4 or raw[0] != CONTROL_RESPONSE or raw[1] != op:
        raise PmdControlError(f"answered command {op} with {raw.hex()!r}, not a PMD response")
    status = raw[3]
    if status != 0:
        why = CONTROL_STATUS[status] if status < len(CONTROL_STATUS) else f"status {status}"
        raise PmdControlError(f"refused PMD command {op}: {why}")
    return raw[5:]

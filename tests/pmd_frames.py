"""PMD frame streams for tests: a strap's stream with every kind of bad frame in it (the Python decoder's
tests and the viewer's decoder in Chromium read the same list)."""

from __future__ import annotations


def malformed_frames(good: list[bytes]) -> list[tuple[bytes, str | None]]:
    """A strap's stream with every kind of bad frame in it, and the outcome each must have (None: read)."""
    first, second, third, fourth = good[:4]
    stamp = int.from_bytes(second[1:9], "little")

    def restamped(frame: bytes, timestamp: int) -> bytes:
        return frame[:1] + timestamp.to_bytes(8, "little") + frame[9:]

    return [
        (first, None),
        (first[:6], "short"),
        (bytes([0x02]) + first[1:], "not_ecg"),  # an accelerometer frame
        (first[:9] + bytes([0x80]) + first[10:], "compressed"),
        (first[:9] + bytes([0x01]) + first[10:], "frame_type"),
        (first[:10], "empty"),
        (first[:14], "length"),
        (restamped(second, stamp - 10**9), "backwards"),  # before the first frame
        (restamped(second, int.from_bytes(first[1:9], "little") + 10**6), "overlap"),  # 73 samples in 1 ms
        (second, None),
        (fourth, None),  # the third frame was lost: a gap of 73 samples
        (third, "backwards"),  # ... and arrives late
    ]

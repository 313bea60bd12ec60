"""Live stream chunks: the declared stream format, and decoding interleaved float32 blocks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from echopulse.errors import IngestError
from echopulse.ingest.live import MAX_CHUNK_BYTES, StreamSpec, decode_chunk
from echopulse.ingest.wfdb_record import read_wfdb


@pytest.fixture(scope="module")
def mitbih_100(shared_data: Path) -> np.ndarray:
    """Ten seconds of MIT-BIH record 100 (both leads, mV): a real signal to stream."""
    return read_wfdb(shared_data / "wfdb" / "100.hea").signal[:, :3600]


def _frames(rows: np.ndarray) -> bytes:
    """Interleave (leads, n) into the wire format: frame after frame, one little-endian float32 per lead."""
    return np.ascontiguousarray(rows.T, dtype="<f4").tobytes()


def test_single_lead_chunk_round_trips(mitbih_100: np.ndarray) -> None:
    spec = StreamSpec(fs=360)
    chunk = decode_chunk(_frames(mitbih_100[:1, :512]), spec)
    assert chunk.dtype == np.float32
    assert chunk.shape == (1, 512)
    np.testing.assert_array_equal(chunk, mitbih_100[:1, :512])


def test_interleaved_leads_are_split_in_order(mitbih_100: np.ndarray) -> None:
    spec = StreamSpec(fs=360, leads=("II", "V5"))
    chunk = decode_chunk(_frames(mitbih_100[:, :360]), spec)
    assert chunk.shape == (2, 360)
    np.testing.assert_array_equal(chunk, mitbih_100[:, :360])
    # First frame on the wire is (II[0], V5[0]): record 100 starts at -0.145 and -0.065 mV.
    np.testing.assert_allclose(chunk[:, 0], [-0.145, -0.065], atol=1e-6)


def test_whole_record_in_chunks_equals_the_record(mitbih_100: np.ndarray) -> None:
    spec = StreamSpec(fs=360, leads=("II", "V5"))
    wire = _frames(mitbih_100)
    size = spec.frame_bytes * 100
    chunks = [decode_chunk(wire[i : i + size], spec) for i in range(0, len(wire), size)]
    np.testing.assert_array_equal(np.concatenate(chunks, axis=1), mitbih_100)


def test_microvolts_are_converted(mitbih_100: np.ndarray) -> None:
    spec = StreamSpec(fs=360, units="µV")
    chunk = decode_chunk(_frames(mitbih_100[:1, :100] * 1000), spec)
    np.testing.assert_allclose(chunk, mitbih_100[:1, :100], atol=1e-6)


def test_memoryview_and_empty_chunks() -> None:
    spec = StreamSpec(fs=250, leads=("I", "II"))
    data = np.array([0.1, 0.2, 0.3, 0.4], dtype="<f4").tobytes()
    np.testing.assert_allclose(decode_chunk(memoryview(data), spec), [[0.1, 0.3], [0.2, 0.4]])
    assert decode_chunk(b"", spec).shape == (2, 0)


def test_partial_frame_is_refused() -> None:
    spec = StreamSpec(fs=250, leads=("I", "II", "III"))
    data = np.zeros(7, dtype="<f4").tobytes()
    with pytest.raises(IngestError, match="not a whole number of frames") as raised:
        decode_chunk(data, spec)
    assert raised.value.source == "stream"
    with pytest.raises(IngestError, match="not a whole number of frames"):
        decode_chunk(b"\x00\x00\x80", StreamSpec(fs=250))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_refused(bad: float) -> None:
    spec = StreamSpec(fs=250, leads=("I", "II"))
    rows = np.zeros((2, 10), dtype=np.float32)
    rows[1, 7] = bad
    with pytest.raises(IngestError, match="NaN or infinite") as raised:
        decode_chunk(_frames(rows), spec)
    assert raised.value.where == "lead II, frame 7"


def test_implausible_amplitude_is_refused(mitbih_100: np.ndarray) -> None:
    # Microvolt samples declared as millivolts: hundreds of "mV".
    with pytest.raises(IngestError, match="implausible") as raised:
        decode_chunk(_frames(mitbih_100[:1, :360] * 1000), StreamSpec(fs=360))
    assert raised.value.where is not None and raised.value.where.startswith("lead I, frame")


def test_volts_overflowing_float32_are_refused() -> None:
    data = np.array([3e38], dtype="<f4").tobytes()
    with pytest.raises(IngestError, match="NaN or infinite"):
        decode_chunk(data, StreamSpec(fs=250, units="V"))


def test_oversized_chunk_is_refused() -> None:
    spec = StreamSpec(fs=250)
    with pytest.raises(IngestError, match="over the"):
        decode_chunk(bytes(MAX_CHUNK_BYTES + 4), spec)
    assert decode_chunk(bytes(MAX_CHUNK_BYTES), spec).shape == (1, MAX_CHUNK_BYTES // 4)


@pytest.mark.parametrize("fs", [0, -250, float("nan"), float("inf"), 50, 1e6, "250", None, True])
def test_bad_rate_is_refused(fs) -> None:
    with pytest.raises(IngestError) as raised:
        StreamSpec(fs=fs)
    assert raised.value.source == "stream"
    assert raised.value.where == "start, fs"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"units": "mmHg"}, "unknown amplitude unit"),
        ({"units": ""}, "unknown amplitude unit"),
        ({"sample_format": "s16le"}, "unsupported sample format"),
        ({"sample_format": "f32be"}, "unsupported sample format"),
        ({"leads": ()}, "at least one lead"),
        ({"leads": ("I", "I")}, "repeat"),
        ({"leads": ("I", " ")}, "non-empty"),
        ({"leads": tuple(f"L{i}" for i in range(33))}, "at most 32"),
    ],
)
def test_bad_spec_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(IngestError, match=message) as raised:
        StreamSpec(fs=250, **kwargs)
    assert raised.value.source == "stream"


def test_spec_normalises_loose_fields() -> None:
    spec = StreamSpec(fs=512, leads="I", units="uV")  # type: ignore[arg-type]
    assert spec == StreamSpec(fs=512.0, leads=("I",), units="uV")
    assert isinstance(spec.fs, float)
    listed = StreamSpec(fs=np.float64(250), leads=["II", "V5"])  # type: ignore[arg-type]
    assert listed.leads == ("II", "V5")
    assert listed.frame_bytes == 8
    assert StreamSpec(fs=513.625).fs == 513.625
    with pytest.raises(dataclasses.FrozenInstanceError):
        listed.fs = 100.0  # type: ignore[misc]

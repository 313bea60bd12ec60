"""Inputs that are not paths: bytes and binary file objects (an upload, a Beam `ReadableFile.open()`).

They must give the very record the path gives, meet the same size limit while being read (never more than
limit + 1 bytes of a stream), be refused the same way with the input's name in the message (never a
temporary path), and an archive among them must yield its recordings one by one, a broken member reported
and passed over.
"""

from __future__ import annotations

import io
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from bad_archives import ECG_DIR, REAL_ECGS, health_csv, write_health_export

from echopulse.ecg import ECGRecord
from echopulse.errors import IngestError
from echopulse.ingest import Recording, iter_recordings, limits, read_record, read_records, sniff_format
from echopulse.ingest.health_export import HealthExport

BROKEN_MEMBER = "ecg_2022-06-30.csv"
WFDB_REFUSAL = "a WFDB record needs its .dat beside the .hea: pass the path of the .hea"


class Trickle(io.RawIOBase):
    """A stream that cannot seek and hands out at most `step` bytes a read, counting what was taken:
    a socket or an upload arriving in pieces."""

    def __init__(self, data: bytes, step: int = 1000, name: str | None = None) -> None:
        self._data, self._step, self.taken = data, step, 0
        if name is not None:
            self.name = name

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = self._step if size < 0 else min(size, self._step)
        block = self._data[self.taken : self.taken + size]
        self.taken += len(block)
        return block


class Endless(io.RawIOBase):
    """A stream that never ends (a hostile upload), counting the bytes taken from it; past `give_up` bytes
    it fails the test rather than let a reader without a limit run forever."""

    def __init__(self, give_up: int = 2**24) -> None:
        self.taken, self._give_up = 0, give_up

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = 1 << 16 if size < 0 else size
        if self.taken > self._give_up:
            raise AssertionError(f"read {self.taken} bytes of an endless stream: no limit applied")
        self.taken += size
        return b"1.0\n" * (size // 4) + b"1" * (size % 4)


# ------------------------------------------------------------------------------------------- the inputs


def _apple_csv(shared: Path, tmp: Path) -> tuple[Path, float | None]:
    return shared / "apple_watch" / "ecg_2021-12-17.csv", None


def _edf_lenient(shared: Path, tmp: Path) -> tuple[Path, float | None]:
    """test_generator_2.edf: pyedflib refuses its header, so the lenient reader decodes it."""
    return shared / "edf" / "test_generator_2.edf", None


def _edf_pyedflib(shared: Path, tmp: Path) -> tuple[Path, float | None]:
    """test_generator.edf with its "noise" channel relabelled as an ECG lead: read by pyedflib, which opens
    files by path (so bytes must reach it as a file)."""
    path = tmp / "relabelled.edf"
    shutil.copy(shared / "edf" / "test_generator.edf", path)
    data = bytearray(path.read_bytes())
    data[256 + 16 * 3 : 256 + 16 * 4] = b"ECG II".ljust(16)
    path.write_bytes(bytes(data))
    return path, None


def _npy(shared: Path, tmp: Path) -> tuple[Path, float | None]:
    rng = np.random.default_rng(7)
    path = tmp / "ecg.npy"
    np.save(path, (rng.normal(0, 0.3, (3, 5000))).astype(np.float32))
    return path, 500.0


def _npz(shared: Path, tmp: Path) -> tuple[Path, float | None]:
    rng = np.random.default_rng(8)
    path = tmp / "ecg.npz"
    np.savez(path, signal=rng.normal(0, 0.3, (2, 4000)), fs=np.array(250.0), leads=np.array(["II", "V5"]))
    return path, None


def _strip_image(shared: Path, tmp: Path) -> tuple[Path, float | None]:
    return shared / "echopulse" / "ecg_page_2.png", None


def _apple_pdf(shared: Path, tmp: Path) -> tuple[Path, float | None]:
    from apple_pdf import build_apple_watch_pdf

    return build_apple_watch_pdf(
        shared / "apple_watch" / "ecg_2021-12-17.csv", tmp / "ecg.pdf", grid=False
    ), None


INPUTS: dict[str, Callable[[Path, Path], tuple[Path, float | None]]] = {
    "apple_watch_csv": _apple_csv,
    "apple_watch_pdf": _apple_pdf,
    "edf_lenient": _edf_lenient,
    "edf_pyedflib": _edf_pyedflib,
    "npy": _npy,
    "npz": _npz,
    "strip_image": _strip_image,
}


@pytest.fixture(scope="module", params=sorted(INPUTS))
def sample(request: pytest.FixtureRequest, shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    path, fs = INPUTS[request.param](shared_data, tmp_path_factory.mktemp(request.param))
    return path, fs, read_record(path, fs=fs)


def assert_same_record(read: ECGRecord, expected: ECGRecord) -> None:
    assert read.fs == expected.fs
    assert read.leads == expected.leads
    assert read.signal.dtype == expected.signal.dtype
    np.testing.assert_array_equal(read.signal, expected.signal)
    assert read.meta == expected.meta
    assert (read.start, read.device, read.source_format) == (
        expected.start,
        expected.device,
        expected.source_format,
    )


def test_bytes_give_the_record_the_path_gives(sample: tuple[Path, float | None, ECGRecord]) -> None:
    path, fs, expected = sample
    assert_same_record(read_record(path.read_bytes(), fs=fs, name=path.name), expected)


def test_an_open_file_gives_the_record_the_path_gives(sample: tuple[Path, float | None, ECGRecord]) -> None:
    path, fs, expected = sample
    with path.open("rb") as handle:
        assert_same_record(read_record(handle, fs=fs), expected)


def test_a_stream_arriving_in_pieces_gives_the_same_record(
    sample: tuple[Path, float | None, ECGRecord],
) -> None:
    """No name and no seeking: sniffing goes by content alone, and short reads are continued."""
    path, fs, expected = sample
    assert_same_record(read_record(Trickle(path.read_bytes(), step=777), fs=fs), expected)


def test_sniffing_bytes_agrees_with_sniffing_the_path(sample: tuple[Path, float | None, ECGRecord]) -> None:
    path, _, _ = sample
    head = path.read_bytes()[:8192]
    assert sniff_format(head, path.name) == sniff_format(head) == sniff_format(path)


# ------------------------------------------------------------------------------------------- refusals


def test_the_size_limit_refuses_bytes_streams_and_paths_alike(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = shared_data / "apple_watch" / "ecg_2021-12-17.csv"
    limit = 20 * 1024
    monkeypatch.setattr(limits, "MAX_FILE_BYTES", limit)
    stream = Trickle(path.read_bytes(), name="upload/ecg.csv")
    cases = (
        (path.read_bytes(), "big.csv", "big.csv"),
        (stream, None, "upload/ecg.csv"),
        (path, None, str(path)),
    )
    for source, name, label in cases:
        with pytest.raises(IngestError, match=f"over the {limit // 1024} KiB limit") as refused:
            read_record(source, name=name)
        assert str(refused.value).startswith(f"{label}: file is")
    assert stream.taken == limit + 1


def test_an_endless_stream_is_read_only_to_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_FILE_BYTES", 100_000)
    endless = Endless()
    with pytest.raises(IngestError, match=r"^endless\.csv: file is over the 98 KiB limit$"):
        read_record(endless, fs=500, name="endless.csv")
    assert endless.taken == 100_001


def test_empty_bytes_are_refused_like_an_empty_file() -> None:
    with pytest.raises(IngestError, match=r"^ecg\.csv: file is empty$"):
        read_record(b"", name="ecg.csv")


def test_a_wfdb_header_as_bytes_asks_for_its_path(shared_data: Path) -> None:
    header = shared_data / "wfdb" / "100.hea"
    with pytest.raises(IngestError) as named:
        read_record(header.read_bytes(), name="100.hea")
    assert str(named.value) == f"100.hea: {WFDB_REFUSAL}"
    with pytest.raises(IngestError) as nameless:
        read_record(header.read_bytes())
    assert str(nameless.value) == f"<bytes>: {WFDB_REFUSAL}"
    with header.open("rb") as handle, pytest.raises(IngestError) as opened:
        read_record(handle)
    assert str(opened.value) == f"{header}: {WFDB_REFUSAL}"


def test_a_refusal_names_the_input_never_a_temporary_file(shared_data: Path) -> None:
    """pyedflib reads a staged copy; its refusal must read exactly as the path's, with the name instead."""
    path = shared_data / "edf" / "test_generator.edf"
    with pytest.raises(IngestError) as from_path:
        read_record(path)
    with pytest.raises(IngestError) as from_bytes:
        read_record(path.read_bytes(), name="upload.edf")
    assert from_bytes.value.source == "upload.edf"
    assert str(from_bytes.value) == str(from_path.value).replace(str(path), "upload.edf")
    assert "echopulse-" not in str(from_bytes.value)


def test_text_mode_file_objects_are_refused_with_a_hint(shared_data: Path) -> None:
    path = shared_data / "apple_watch" / "ecg_2021-12-17.csv"
    with path.open(encoding="utf-8") as handle, pytest.raises(IngestError, match="open it in binary mode"):
        read_record(handle)


# ------------------------------------------------------------------------------------ iter_recordings


@pytest.fixture(scope="module")
def export_with_a_broken_member(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """Three ECGs, the middle one broken on line 20."""
    ecgs = {
        REAL_ECGS[0]: health_csv(shared_data, REAL_ECGS[0]),
        BROKEN_MEMBER: health_csv(shared_data, REAL_ECGS[0], sample_line=(20, "hello")),
        REAL_ECGS[1]: health_csv(shared_data, REAL_ECGS[1]),
    }
    return write_health_export(tmp_path_factory.mktemp("export") / "export.zip", shared_data, ecgs)


def _check_broken_member_reported(recordings: list[Recording], shared_data: Path) -> None:
    assert [r.label for r in recordings] == [
        f"export.zip:{name}" for name in (REAL_ECGS[0], BROKEN_MEMBER, REAL_ECGS[1])
    ]
    assert all(r.in_archive for r in recordings)
    first, broken, last = recordings
    assert broken.record is None and broken.error is not None
    assert (
        str(broken.error)
        == f"export.zip:{BROKEN_MEMBER}: text in a sample line: 'hello' is not a number (line 20)"
    )
    for recording, name in ((first, REAL_ECGS[0]), (last, REAL_ECGS[1])):
        assert recording.error is None and recording.record is not None
        direct = read_record(shared_data / "apple_watch" / name)
        np.testing.assert_array_equal(recording.record.signal, direct.signal)
        assert recording.record.meta["archive_member"] == name


def test_a_broken_member_is_reported_and_the_others_are_read(
    export_with_a_broken_member: Path, shared_data: Path
) -> None:
    _check_broken_member_reported(list(iter_recordings(export_with_a_broken_member)), shared_data)


@pytest.mark.parametrize("form", ["bytes", "open file", "stream that cannot seek"])
def test_an_export_in_memory_is_read_like_its_path(
    form: str, export_with_a_broken_member: Path, shared_data: Path
) -> None:
    data = export_with_a_broken_member.read_bytes()
    if form == "bytes":
        recordings = list(iter_recordings(data, name="export.zip"))
    elif form == "open file":
        with export_with_a_broken_member.open("rb") as handle:
            recordings = list(iter_recordings(handle))
    else:
        recordings = list(iter_recordings(Trickle(data, step=4096), name="export.zip"))
    _check_broken_member_reported(recordings, shared_data)


def test_read_records_on_bytes_is_strict(export_with_a_broken_member: Path) -> None:
    seen = []
    with pytest.raises(IngestError, match=BROKEN_MEMBER):
        for record in read_records(export_with_a_broken_member.read_bytes(), name="export.zip"):
            seen.append(record.meta["archive_member"])
    assert seen == [REAL_ECGS[0]]


def test_members_are_read_one_at_a_time(
    export_with_a_broken_member: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_members: list[str] = []
    original = HealthExport.read

    def counted(self: HealthExport, member: str) -> ECGRecord:
        read_members.append(member)
        return original(self, member)

    monkeypatch.setattr(HealthExport, "read", counted)
    recordings = iter_recordings(export_with_a_broken_member)
    next(recordings)
    assert len(read_members) == 1
    next(recordings)
    assert len(read_members) == 2
    recordings.close()


@pytest.mark.parametrize("form", ["path", "bytes"])
@pytest.mark.parametrize("damage", ["truncated", "climbs out"])
def test_a_broken_archive_raises_before_anything_is_yielded(
    form: str, damage: str, tmp_path: Path, shared_data: Path
) -> None:
    path = tmp_path / "export.zip"
    if damage == "truncated":
        raw = write_health_export(path, shared_data).read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
        expect = r"^export\.zip: not a complete zip archive"
    else:
        write_health_export(path, shared_data, extra={f"{ECG_DIR}/../../../evil.csv": b"1\n"})
        expect = r"^export\.zip: member '.*evil\.csv' climbs out of the archive"
    source = path.read_bytes() if form == "bytes" else path
    recordings = iter_recordings(source, name="export.zip")
    with pytest.raises(IngestError, match=expect):
        next(recordings)


def test_a_plain_file_is_one_recording(shared_data: Path) -> None:
    path = shared_data / "apple_watch" / "ecg_2021-12-17.csv"
    (recording,) = iter_recordings(path)
    assert (recording.label, recording.in_archive, recording.error) == (path.name, False, None)
    assert_same_record(recording.record, read_record(path))
    (from_bytes,) = iter_recordings(path.read_bytes(), name=f"uploads/{path.name}")
    assert from_bytes.label == path.name
    assert_same_record(from_bytes.record, recording.record)


def test_an_unreadable_plain_file_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "broken.csv"
    path.write_text("time,ecg\n0.000,0.1\n0.002,abc\n", encoding="utf-8")
    (recording,) = iter_recordings(path)
    assert recording.label == "broken.csv" and recording.record is None
    assert recording.error is not None and "'abc' is not a number" in str(recording.error)
    (from_bytes,) = iter_recordings(path.read_bytes(), name="broken.csv")
    assert str(from_bytes.error) == str(recording.error).replace(str(path), "broken.csv")


def test_a_missing_or_oversize_input_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(IngestError, match="no such file"):
        next(iter_recordings(tmp_path / "missing.csv"))
    monkeypatch.setattr(limits, "MAX_FILE_BYTES", 10_000)
    big = b"0.1\n" * 5000
    (tmp_path / "big.csv").write_bytes(big)
    for source in (tmp_path / "big.csv", big):
        with pytest.raises(IngestError, match=r"^big\.csv: file is 20 KiB, over the 10 KiB limit$"):
            next(iter_recordings(source, fs=500, name="big.csv"))


def test_a_npz_without_a_name_is_not_taken_for_an_archive(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, signal=np.zeros((1, 2000)), fs=np.array(500.0))
    assert zipfile.is_zipfile(io.BytesIO(buffer.getvalue()))
    assert sniff_format(buffer.getvalue()) == "npz"
    assert read_record(buffer.getvalue()).fs == 500.0

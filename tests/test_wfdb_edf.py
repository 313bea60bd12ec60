"""WFDB and EDF readers on the real PhysioNet / EDF files in ../shared/data, plus broken variants of them."""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pyedflib
import pytest
import wfdb
from pyedflib import highlevel

from echopulse.errors import IngestError
from echopulse.ingest import read_record, sniff_format
from echopulse.ingest.edf import read_edf
from echopulse.ingest.wfdb_record import beat_symbols, read_wfdb

# ------------------------------------------------------------------------------------------------- WFDB


@pytest.fixture(scope="module")
def wfdb_dir(shared_data: Path) -> Path:
    return shared_data / "wfdb"


@pytest.fixture(scope="module")
def record_100(wfdb_dir: Path):
    return read_wfdb(wfdb_dir / "100.hea")


def _copy_record(wfdb_dir: Path, tmp_path: Path, name: str, suffixes=(".hea", ".dat")) -> Path:
    for suffix in suffixes:
        shutil.copy(wfdb_dir / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    return tmp_path


def test_mitbih_100_leads_rate_and_length(record_100) -> None:
    assert record_100.leads == ("II", "V5")
    assert record_100.fs == 360.0
    assert record_100.signal.shape == (2, 650000)
    assert record_100.signal.dtype == np.float32
    assert record_100.source_format == "wfdb"
    assert record_100.meta["original_leads"] == ["MLII", "V5"]
    assert record_100.meta["n_sig"] == 2
    assert record_100.meta["units"] == ["mV", "mV"]
    assert record_100.meta["record_name"] == "100"
    assert record_100.start is None


def test_mitbih_100_samples_equal_wfdb_physical_signal(record_100, wfdb_dir: Path) -> None:
    reference = wfdb.rdrecord(str(wfdb_dir / "100")).p_signal.T
    np.testing.assert_allclose(record_100.signal, reference, atol=1e-6)
    # (995 - 1024) / 200 and (1011 - 1024) / 200: the header's initial values.
    np.testing.assert_allclose(record_100.signal[:, 0], [-0.145, -0.065], atol=1e-6)


def test_mitbih_100_beat_annotations_exclude_rhythm_labels(record_100, wfdb_dir: Path) -> None:
    annotations = record_100.annotations
    assert annotations is not None
    assert len(annotations.sample) == len(annotations.symbol) == 2273
    assert Counter(annotations.symbol) == {"N": 2239, "A": 33, "V": 1}
    assert "+" not in annotations.symbol
    reference = wfdb.rdann(str(wfdb_dir / "100"), "atr")
    beats = [i for i, symbol in enumerate(reference.symbol) if symbol != "+"]
    np.testing.assert_array_equal(annotations.sample, reference.sample[beats])
    assert annotations.sample[0] == 77
    assert np.all(np.diff(annotations.sample) > 0)


def test_beat_symbols_are_wfdb_qrs_labels() -> None:
    symbols = beat_symbols()
    assert {"N", "L", "R", "A", "V", "F", "E", "/", "Q"} <= symbols
    assert not {"+", "~", '"', "|", "x", "p", "t"} & symbols


@pytest.mark.parametrize("name", ["100.dat", "100", "100.atr"])
def test_wfdb_path_may_be_data_file_or_base(wfdb_dir: Path, record_100, name: str) -> None:
    record = read_wfdb(wfdb_dir / name)
    assert record.leads == record_100.leads
    np.testing.assert_array_equal(record.signal, record_100.signal)


def test_header_comments_are_not_kept(record_100, shared_data: Path) -> None:
    ptb = read_wfdb(shared_data / "wfdb" / "s0010_re.hea")
    for record in (record_100, ptb):
        text = repr(record.meta)
        for private in ("Aldomet", "69 M", "age", "sex", "female", "infarction", "comment"):
            assert private not in text


@pytest.mark.parametrize("name, second_lead", [("106", "V1"), ("232", "V1")])
def test_mitbih_signal_only_records(wfdb_dir: Path, name: str, second_lead: str) -> None:
    record = read_wfdb(wfdb_dir / f"{name}.hea")
    assert record.leads == ("II", second_lead)
    assert record.fs == 360.0
    assert record.n_samples == 650000
    assert record.annotations is None
    reference = wfdb.rdrecord(str(wfdb_dir / name), sampto=1000).p_signal.T
    np.testing.assert_allclose(record.signal[:, :1000], reference, atol=1e-6)


def test_ptb_twelve_leads_plus_frank_leads(wfdb_dir: Path) -> None:
    record = read_wfdb(wfdb_dir / "s0010_re.hea")
    assert record.leads == (
        "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6", "vx", "vy", "vz",
    )  # fmt: skip
    assert record.fs == 1000.0
    assert record.signal.shape == (15, 38400)
    assert record.meta["original_leads"][:3] == ["i", "ii", "iii"]
    reference = wfdb.rdrecord(str(wfdb_dir / "s0010_re")).p_signal.T
    np.testing.assert_allclose(record.signal, reference, atol=1e-6)
    # -489 adu at 2000 adu/mV: the header's initial value of lead i.
    assert record.signal[0, 0] == pytest.approx(-489 / 2000)


def test_macecgdb_keeps_file_lead_names(wfdb_dir: Path) -> None:
    record = read_wfdb(wfdb_dir / "test01_00s.hea")
    assert record.leads == ("ECG 1", "ECG 2", "ECG 3", "ECG 4")
    assert record.fs == 500.0
    assert record.signal.shape == (4, 4000)
    reference = wfdb.rdrecord(str(wfdb_dir / "test01_00s")).p_signal.T
    np.testing.assert_allclose(record.signal, reference, atol=1e-6)


def test_read_record_sniffs_wfdb_copy(wfdb_dir: Path, tmp_path: Path) -> None:
    _copy_record(wfdb_dir, tmp_path, "100", (".hea", ".dat", ".atr"))
    assert sniff_format(tmp_path / "100.hea") == "wfdb"
    record = read_record(tmp_path / "100.hea")
    assert record.leads == ("II", "V5")
    assert record.annotations is not None and len(record.annotations.sample) == 2273
    assert read_record(tmp_path / "100.dat").n_samples == 650000


def test_header_under_another_name_is_read_by_content(wfdb_dir: Path, tmp_path: Path) -> None:
    shutil.copy(wfdb_dir / "100.dat", tmp_path / "100.dat")
    shutil.copy(wfdb_dir / "100.hea", tmp_path / "100.txt")
    assert sniff_format(tmp_path / "100.txt") == "wfdb"
    record = read_record(tmp_path / "100.txt")
    assert record.leads == ("II", "V5")
    np.testing.assert_allclose(record.signal[:, 0], [-0.145, -0.065], atol=1e-6)


def _header(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.hea"
    path.write_text(text)
    return path


def _forbid_sample_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("samples were read although the header alone should have been refused")

    monkeypatch.setattr(wfdb, "rdrecord", fail)


def test_header_claiming_ten_hours_fails_before_reading(
    wfdb_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(wfdb_dir / "100.dat", tmp_path / "long.dat")
    header = _header(
        tmp_path,
        "long",
        "long 2 360 12960000\nlong.dat 212 200 11 1024 995 -22131 0 MLII\n"
        "long.dat 212 200 11 1024 1011 20052 0 V5\n",
    )
    _forbid_sample_reads(monkeypatch)
    with pytest.raises(IngestError, match=r"10\.0 h, over the 6 h limit"):
        read_wfdb(header)


def test_header_with_absurd_rate_fails_before_reading(
    wfdb_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(wfdb_dir / "100.dat", tmp_path / "fast.dat")
    header = _header(tmp_path, "fast", "fast 1 1000000 1000\nfast.dat 16 200 11 0 0 0 0 MLII\n")
    _forbid_sample_reads(monkeypatch)
    with pytest.raises(IngestError, match="sample rate"):
        read_wfdb(header)


def test_missing_signal_file(wfdb_dir: Path, tmp_path: Path) -> None:
    shutil.copy(wfdb_dir / "100.hea", tmp_path / "100.hea")
    with pytest.raises(IngestError, match=r"signal file 100\.dat missing"):
        read_wfdb(tmp_path / "100.hea")


def test_truncated_signal_file(wfdb_dir: Path, tmp_path: Path) -> None:
    shutil.copy(wfdb_dir / "100.hea", tmp_path / "100.hea")
    (tmp_path / "100.dat").write_bytes((wfdb_dir / "100.dat").read_bytes()[:5000])
    with pytest.raises(IngestError, match="truncated"):
        read_wfdb(tmp_path / "100.hea")


@pytest.mark.parametrize(
    "text",
    [
        "brk 2 x y\n",
        "brk 2 360 1000\n",  # two signals declared, none described
        "brk 1 360 1000\nbrk.dat sixteen 200 11 0 0 0 0 MLII\n",
        "\n",
    ],
)
def test_broken_header(tmp_path: Path, text: str) -> None:
    (tmp_path / "brk.dat").write_bytes(b"\x00" * 4000)
    with pytest.raises(IngestError):
        read_wfdb(_header(tmp_path, "brk", text))


@pytest.mark.parametrize("file_name", ["../secret.dat", "/etc/hostname", "sub/trav.dat"])
def test_header_cannot_point_outside_its_directory(tmp_path: Path, file_name: str) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    (tmp_path / "secret.dat").write_bytes(b"\x01\x00" * 2000)
    header = _header(inner, "trav", f"trav 1 360 2000\n{file_name} 16 200 16 0 0 0 0 MLII\n")
    with pytest.raises(IngestError):
        read_wfdb(header)


def test_microvolt_units_are_converted_and_pressure_dropped(wfdb_dir: Path, tmp_path: Path) -> None:
    shutil.copy(wfdb_dir / "100.dat", tmp_path / "uv.dat")
    header = _header(
        tmp_path,
        "uv",
        "uv 2 360 650000\nuv.dat 212 0.2/uV 11 1024 995 -22131 0 MLII\n"
        "uv.dat 212 200/mmHg 11 1024 1011 20052 0 ABP\n",
    )
    record = read_wfdb(header)
    assert record.leads == ("II",)
    assert record.meta["units"] == ["uV"]
    assert record.meta["dropped_signals"] == ["ABP [mmHg]"]
    # 0.2 adu/uV = 200 adu/mV: the same millivolts as record 100's MLII.
    reference = wfdb.rdrecord(str(wfdb_dir / "100"), channels=[0], sampto=2000).p_signal[:, 0]
    np.testing.assert_allclose(record.signal[0, :2000], reference, atol=1e-6)


def test_standard_lead_in_unknown_units_is_refused_by_name(wfdb_dir: Path, tmp_path: Path) -> None:
    shutil.copy(wfdb_dir / "100.dat", tmp_path / "odd.dat")
    header = _header(
        tmp_path,
        "odd",
        "odd 2 360 650000\nodd.dat 212 200 11 1024 995 -22131 0 MLII\n"
        "odd.dat 212 200/furlong 11 1024 1011 20052 0 V5\n",
    )
    with pytest.raises(IngestError, match="V5") as raised:
        read_wfdb(header)
    assert "furlong" in raised.value.problem
    assert raised.value.where == "signal 1 (V5)"


# -------------------------------------------------------------------------------------------------- EDF


@pytest.fixture(scope="module")
def edf_dir(shared_data: Path) -> Path:
    return shared_data / "edf"


def test_edf_without_ecg_channel_is_refused(edf_dir: Path) -> None:
    with pytest.raises(IngestError, match="no ECG channel among: 'squarewave', 'ramp'") as raised:
        read_edf(edf_dir / "test_generator.edf")
    assert "'sine 50 Hz'" in raised.value.problem


def test_edf_refused_by_pyedflib_reads_its_ecg_leniently(edf_dir: Path) -> None:
    path = edf_dir / "test_generator_2.edf"
    with pytest.raises(OSError, match="Physical Dimension"):
        pyedflib.EdfReader(str(path))
    record = read_edf(path)
    assert record.leads == ("ECG",)
    assert record.fs == 200.0
    assert record.signal.shape == (1, 120000)
    assert record.source_format == "edf"
    assert record.meta["units"] == ["uV"]
    assert "Physical Dimension" in record.meta["lenient_header"]
    assert record.meta["file_type"] == "EDF+C"
    assert record.start == datetime(2009, 12, 10, 12, 44, 2)
    assert float(record.signal.min()) == pytest.approx(-0.0173, abs=5e-5)
    assert float(record.signal.max()) == pytest.approx(0.0615, abs=5e-5)


def _ascii_copy(edf_dir: Path, tmp_path: Path) -> Path:
    """test_generator_2.edf with its two "°" units replaced by "d": a file pyedflib accepts."""
    data = bytearray((edf_dir / "test_generator_2.edf").read_bytes())
    header_bytes = int(data[184:192])
    assert data[:header_bytes].count(b"\xb0") == 2
    data[:header_bytes] = data[:header_bytes].replace(b"\xb0", b"d")
    path = tmp_path / "ascii.edf"
    path.write_bytes(bytes(data))
    return path


def test_lenient_reader_decodes_like_pyedflib(edf_dir: Path, tmp_path: Path) -> None:
    lenient = read_edf(edf_dir / "test_generator_2.edf")
    with pyedflib.EdfReader(str(_ascii_copy(edf_dir, tmp_path))) as reader:
        index = reader.getSignalLabels().index("ECG")
        reference = reader.readSignal(index) / 1000.0
    np.testing.assert_allclose(lenient.signal[0], reference, atol=1e-7)
    strict = read_edf(tmp_path / "ascii.edf")
    assert "lenient_header" not in strict.meta
    np.testing.assert_allclose(strict.signal, lenient.signal, atol=1e-7)


def test_read_record_reads_edf_ecg(edf_dir: Path) -> None:
    assert sniff_format(edf_dir / "test_generator_2.edf") == "edf"
    record = read_record(edf_dir / "test_generator_2.edf")
    assert record.leads == ("ECG",)
    assert record.duration_s == 600.0


def _relabel(path: Path, index: int, label: bytes) -> None:
    data = bytearray(path.read_bytes())
    start = 256 + 16 * index
    data[start : start + 16] = label.ljust(16)
    path.write_bytes(bytes(data))


def test_pyedflib_path_selects_relabelled_channel(edf_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "relabelled.edf"
    shutil.copy(edf_dir / "test_generator.edf", path)
    _relabel(path, 3, b"ECG II")  # "noise"
    record = read_edf(path)
    assert record.leads == ("II",)
    assert record.meta["original_leads"] == ["ECG II"]
    assert record.device == "test generator"
    assert record.start == datetime(2011, 4, 4, 12, 57, 2)
    with pyedflib.EdfReader(str(path)) as reader:
        reference = reader.readSignal(3) / 1000.0
    np.testing.assert_allclose(record.signal[0], reference, atol=1e-7)


def _write(path: Path, channels: list[tuple[str, str, float, np.ndarray]], file_type: int, **header) -> Path:
    signals = [samples for *_, samples in channels]
    headers = [
        highlevel.make_signal_header(
            label,
            dimension=unit,
            sample_frequency=fs,
            physical_min=-5000.0 if unit == "uV" else -5.0,
            physical_max=5000.0 if unit == "uV" else 5.0,
            digital_min=-8388608 if file_type == pyedflib.FILETYPE_BDFPLUS else -32768,
            digital_max=8388607 if file_type == pyedflib.FILETYPE_BDFPLUS else 32767,
        )
        for label, unit, fs, _ in channels
    ]
    highlevel.write_edf(str(path), signals, headers, highlevel.make_header(**header), file_type=file_type)
    return path


def _ecg_like(fs: float, seconds: float, scale: float) -> np.ndarray:
    t = np.arange(int(fs * seconds)) / fs
    return scale * (np.sin(2 * np.pi * 1.2 * t) ** 15 - 0.1 * np.sin(2 * np.pi * 0.3 * t))


def test_bdf_with_patient_fields_reads_ecg_and_drops_them(tmp_path: Path, monkeypatch) -> None:
    path = _write(
        tmp_path / "rec.bdf",
        [
            ("ECG I", "uV", 500, _ecg_like(500, 20, 1200.0)),
            ("EKG V2", "mV", 500, _ecg_like(500, 20, 0.8)),
            ("Resp", "Ohm", 25, np.zeros(500)),
        ],
        pyedflib.FILETYPE_BDFPLUS,
        patientname="Jane Roe",
        birthdate=datetime(1950, 2, 3),
        patientcode="MRN-1234",
        equipment="ChestBelt",
    )
    for getter in ("getPatientName", "getBirthdate", "getPatientCode", "getHeader", "getPatientAdditional"):
        monkeypatch.setattr(pyedflib.EdfReader, getter, _never_called(getter))
    record = read_edf(path)
    assert record.source_format == "bdf"
    assert record.leads == ("I", "V2")
    assert record.fs == 500.0
    assert record.device == "ChestBelt"
    np.testing.assert_allclose(record.signal[0], _ecg_like(500, 20, 1.2), atol=1e-5)
    np.testing.assert_allclose(record.signal[1], _ecg_like(500, 20, 0.8), atol=1e-5)
    text = repr((record.meta, record.device, record.start))
    for private in ("Jane", "Roe", "1950", "MRN"):
        assert private not in text


def _never_called(name: str):
    def fail(*args, **kwargs):
        raise AssertionError(f"{name} must never be called")

    return fail


def test_lenient_bdf_matches_pyedflib(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "odd.bdf",
        [("ECG II", "uV", 256, _ecg_like(256, 12, 900.0)), ("Temp", "degC", 1, np.full(12, 1.5))],
        pyedflib.FILETYPE_BDFPLUS,
    )
    strict = read_edf(path)
    data = bytearray(path.read_bytes())
    header_bytes = int(data[184:192])
    data[:header_bytes] = data[:header_bytes].replace(b"degC", b"\xb0C  ")
    odd = tmp_path / "odd_unit.bdf"
    odd.write_bytes(bytes(data))
    lenient = read_edf(odd)
    assert "lenient_header" in lenient.meta
    assert lenient.source_format == "bdf"
    np.testing.assert_allclose(lenient.signal, strict.signal, atol=1e-7)
    np.testing.assert_allclose(lenient.signal[0], _ecg_like(256, 12, 0.9), atol=1e-5)


def test_ecg_channels_at_different_rates_keep_the_most_common(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "mixed.edf",
        [
            ("ECG I", "uV", 500, _ecg_like(500, 10, 1000.0)),
            ("ECG II", "uV", 500, _ecg_like(500, 10, 1500.0)),
            ("ECG V1", "uV", 250, _ecg_like(250, 10, 700.0)),
        ],
        pyedflib.FILETYPE_EDFPLUS,
    )
    record = read_edf(path)
    assert record.leads == ("I", "II")
    assert record.fs == 500.0
    assert record.meta["dropped_channels"] == ["ECG V1 (250 Hz)"]
    assert "500 Hz" in record.meta["rate_note"]


def test_edf_rate_limit_checked_from_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(
        tmp_path / "slow.edf", [("ECG", "uV", 50, _ecg_like(50, 30, 1000.0))], pyedflib.FILETYPE_EDF
    )
    monkeypatch.setattr(pyedflib.EdfReader, "readSignal", _never_called("readSignal"))
    with pytest.raises(IngestError, match="sample rate 50 Hz"):
        read_edf(path)


def test_edf_duration_limit_checked_from_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seconds = 6 * 3600 + 60
    path = _write(tmp_path / "long.edf", [("ECG", "uV", 100, np.zeros(100 * seconds))], pyedflib.FILETYPE_EDF)
    monkeypatch.setattr(pyedflib.EdfReader, "readSignal", _never_called("readSignal"))
    with pytest.raises(IngestError, match="over the 6 h limit"):
        read_edf(path)


def test_ecg_lead_in_non_voltage_unit_is_refused(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "bpm.edf", [("ECG II", "bpm", 200, _ecg_like(200, 10, 1.0))], pyedflib.FILETYPE_EDF
    )
    with pytest.raises(IngestError, match="'bpm', not a voltage"):
        read_edf(path)


def test_truncated_edf(edf_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.edf"
    path.write_bytes((edf_dir / "test_generator.edf").read_bytes()[:100000])
    with pytest.raises(IngestError, match="not a readable EDF"):
        read_edf(path)


def test_truncated_edf_in_lenient_path(edf_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut2.edf"
    path.write_bytes((edf_dir / "test_generator_2.edf").read_bytes()[:200000])
    with pytest.raises(IngestError, match="truncated"):
        read_edf(path)


@pytest.mark.parametrize("head", [b"", b"0       garbage", b"not an edf at all" * 20])
def test_broken_edf_header(tmp_path: Path, head: bytes) -> None:
    path = tmp_path / "broken.edf"
    path.write_bytes(head or b"0")
    with pytest.raises(IngestError):
        read_edf(path)


def test_discontinuous_edf_is_refused(edf_dir: Path, tmp_path: Path) -> None:
    path = _ascii_copy(edf_dir, tmp_path)
    data = bytearray(path.read_bytes())
    data[192:197] = b"EDF+D"
    path.write_bytes(bytes(data))
    with pytest.raises(IngestError, match="discontinuous"):
        read_edf(path)

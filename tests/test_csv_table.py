"""Generic CSV/TSV tables: the real values-only Apple Watch trace, and tables built from real records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from echopulse.errors import IngestError
from echopulse.ingest import read_record, sniff_format
from echopulse.ingest.csv_table import read_csv


@pytest.fixture(scope="module")
def values_only(shared_data: Path) -> Path:
    return shared_data / "apple_watch" / "heartphase_ecg-sample.csv"


@pytest.fixture(scope="module")
def microvolts(values_only: Path) -> np.ndarray:
    return np.array([float(line) for line in values_only.read_text().splitlines() if line])


@pytest.fixture(scope="module")
def mitdb_100(shared_data: Path) -> np.ndarray:
    """Ten seconds of MIT-BIH record 100 (MLII, V5) in mV at 360 Hz."""
    record = wfdb.rdrecord(str(shared_data / "wfdb" / "100"), sampto=3600)
    assert record.fs == 360 and record.sig_name == ["MLII", "V5"]
    return record.p_signal


def _write(tmp_path: Path, lines: list[str], name: str = "table.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- the real values-only trace ------------------------------------------------------------------------


def test_values_only_trace_reads_with_fs_as_microvolts(values_only: Path, microvolts: np.ndarray) -> None:
    assert sniff_format(values_only) == "csv"
    record = read_record(values_only, fs=512)
    assert record.source_format == "csv"
    assert record.fs == 512.0
    assert record.signal.shape == (1, 15360)
    assert record.leads == ("I",)
    assert record.meta["lead_assumed"] is True
    assert record.meta["units_assumed"] == "µV (from amplitude)"
    np.testing.assert_allclose(record.signal[0, :10], microvolts[:10] / 1000, rtol=1e-6)
    np.testing.assert_allclose(record.signal[0], microvolts / 1000, rtol=1e-6, atol=1e-9)


def test_values_only_trace_without_fs_is_refused(values_only: Path) -> None:
    with pytest.raises(IngestError, match="fs") as caught:
        read_record(values_only)
    assert "sample rate unknown" in str(caught.value)
    assert str(values_only) in str(caught.value)


def test_values_in_millivolts_are_kept(tmp_path: Path, microvolts: np.ndarray) -> None:
    millivolts = microvolts / 1000
    record = read_csv(_write(tmp_path, [f"{v:.6f}" for v in millivolts]), fs=512)
    assert record.meta["units_assumed"] == "mV"
    np.testing.assert_allclose(record.signal[0], millivolts, rtol=1e-5, atol=1e-7)


def test_quoted_decimal_commas_in_one_column(tmp_path: Path, microvolts: np.ndarray) -> None:
    lines = [f'"{v:g}"'.replace(".", ",") for v in microvolts]
    record = read_csv(_write(tmp_path, lines), fs=512)
    np.testing.assert_allclose(record.signal[0], microvolts / 1000, rtol=1e-5)


# --- time and sample-index columns ---------------------------------------------------------------------


def test_time_column_in_seconds_gives_fs(tmp_path: Path, microvolts: np.ndarray) -> None:
    lines = ["time,ECG"] + [f"{i / 512:.6f},{v}" for i, v in enumerate(microvolts)]
    record = read_record(_write(tmp_path, lines), fmt=None)
    assert record.fs == 512.0
    assert record.meta["fs_source"] == "time column"
    assert record.meta["time_column"] == "time"
    assert record.leads == ("I",)
    assert record.n_samples == microvolts.size
    np.testing.assert_allclose(record.signal[0], microvolts / 1000, rtol=1e-6)


def test_non_integer_rate_from_time_column(tmp_path: Path, microvolts: np.ndarray) -> None:
    lines = ["t,Lead I (uV)"] + [f"{i / 513.625:.7f},{v}" for i, v in enumerate(microvolts)]
    record = read_csv(_write(tmp_path, lines))
    assert record.fs == pytest.approx(513.625, abs=1e-3)
    assert record.leads == ("I",)
    assert "units_assumed" not in record.meta
    assert record.meta["units"] == ("uV",)


def test_time_in_milliseconds_by_unit(tmp_path: Path, mitdb_100: np.ndarray) -> None:
    lines = ["time (ms),MLII,V5"] + [f"{i * 1000 / 360:.4f},{a},{b}" for i, (a, b) in enumerate(mitdb_100)]
    record = read_csv(_write(tmp_path, lines))
    assert record.fs == 360.0
    assert record.leads == ("II", "V5")


def test_time_in_milliseconds_without_unit_is_refused_with_a_hint(
    tmp_path: Path, mitdb_100: np.ndarray
) -> None:
    lines = ["time,MLII"] + [f"{i * 1000 / 360:.4f},{a}" for i, (a, _) in enumerate(mitdb_100)]
    with pytest.raises(IngestError, match=r"time \(ms\)"):
        read_csv(_write(tmp_path, lines))


def test_physionet_samples_csv_with_units_row_and_clock_times(tmp_path: Path, mitdb_100: np.ndarray) -> None:
    """PhysioNet's export: quoted names, a units row, elapsed time rounded to the millisecond."""

    def clock(i: int) -> str:
        seconds = round(i / 360, 3)
        return f"'{int(seconds // 60)}:{seconds % 60:06.3f}'"

    lines = ["'Elapsed time','MLII','V5'", "'hh:mm:ss.mmm','mV','mV'"]
    lines += [f"{clock(i)},{a:.3f},{b:.3f}" for i, (a, b) in enumerate(mitdb_100)]
    path = _write(tmp_path, lines, "samples.csv")
    record = read_record(path)
    assert record.fs == 360.0  # the median step of ms-rounded times would say 333 Hz
    assert record.leads == ("II", "V5")
    assert record.meta["units"] == ("mV", "mV")
    assert "units_assumed" not in record.meta
    np.testing.assert_allclose(record.signal, mitdb_100.T, atol=1e-6)


def test_clock_times_across_the_hour(tmp_path: Path, mitdb_100: np.ndarray) -> None:
    """`59:59.995` is followed by `1:00:00.000`: the clock's fields are counted from the seconds end."""

    def clock(seconds: float) -> str:
        hours, rest = divmod(round(seconds, 3), 3600)
        minutes, secs = divmod(rest, 60)
        return f"{int(hours)}:{int(minutes):02d}:{secs:06.3f}" if hours else f"{int(minutes)}:{secs:06.3f}"

    times = 3590 + np.arange(len(mitdb_100)) / 200
    lines = ["Elapsed time,MLII"] + [f"{clock(t)},{a}" for t, (a, _) in zip(times, mitdb_100, strict=True)]
    assert "59:59.995," in "\n".join(lines) and "1:00:00.000," in "\n".join(lines)
    record = read_csv(_write(tmp_path, lines))
    assert record.fs == 200.0
    lines[300] = "1:0x:00.000,0.1"
    with pytest.raises(IngestError, match="time column 1 holds text") as caught:
        read_csv(_write(tmp_path, lines))
    assert caught.value.where == "line 301"


def test_semicolons_and_decimal_commas(tmp_path: Path, mitdb_100: np.ndarray) -> None:
    lines = ["Zeit;Ableitung II;V5"]
    lines += [f"{i / 360:.6f};{a:.3f};{b:.3f}".replace(".", ",") for i, (a, b) in enumerate(mitdb_100)]
    record = read_csv(_write(tmp_path, lines))
    assert record.fs == 360.0
    assert record.meta["time_column"] == "Zeit"
    assert record.leads == ("II", "V5")
    np.testing.assert_allclose(record.signal, mitdb_100.T, atol=1e-6)


def test_european_table_with_time_column(tmp_path: Path, mitdb_100: np.ndarray) -> None:
    lines = ["Time (s);Ableitung II;V5"]
    lines += [f"{i / 360:.6f};{a:.3f};{b:.3f}".replace(".", ",") for i, (a, b) in enumerate(mitdb_100)]
    record = read_csv(_write(tmp_path, lines))
    assert record.fs == 360.0
    assert record.leads == ("II", "V5")
    assert record.meta["units_assumed"] == "mV"
    np.testing.assert_allclose(record.signal, mitdb_100.T, atol=1e-6)


def test_sample_index_column_is_dropped_and_fs_required(tmp_path: Path, mitdb_100: np.ndarray) -> None:
    path = _write(tmp_path, ["sample,MLII"] + [f"{i},{a}" for i, (a, _) in enumerate(mitdb_100)])
    with pytest.raises(IngestError, match=r"pass fs \(--fs\)"):
        read_csv(path)
    record = read_csv(path, fs=360)
    assert record.leads == ("II",)
    assert record.meta["index_column"] == "sample"
    np.testing.assert_allclose(record.signal[0], mitdb_100[:, 0], atol=1e-6)


def test_point_value_table_with_crlf_is_a_single_wearable_lead(
    tmp_path: Path, microvolts: np.ndarray
) -> None:
    """A blogger's rewrite of an Apple Watch trace: `point,value` rows, Windows line ends."""
    path = tmp_path / "points.csv"
    rows = ["point,value"] + [f"{i},{v}" for i, v in enumerate(microvolts)]
    path.write_bytes("\r\n".join(rows).encode())
    record = read_csv(path, fs=512)
    assert record.leads == ("I",)
    assert record.meta["lead_assumed"] is True
    assert record.meta["index_column"] == "point"
    assert record.meta["units_assumed"] == "µV (from amplitude)"
    np.testing.assert_allclose(record.signal[0], microvolts / 1000, rtol=1e-6)


def test_headerless_increasing_first_column_is_time(tmp_path: Path, mitdb_100: np.ndarray) -> None:
    lines = [f"{i / 360:.6f},{a},{b}" for i, (a, b) in enumerate(mitdb_100)]
    record = read_csv(_write(tmp_path, lines))
    assert record.fs == 360.0
    assert record.leads == ("column 2", "column 3")
    assert record.meta["time_column"] == "column 1"


def test_tsv_keeps_unknown_lead_names(tmp_path: Path, mitdb_100: np.ndarray) -> None:
    lines = ["ECG 1\tECG 2"] + [f"{a}\t{b}" for a, b in mitdb_100]
    record = read_csv(_write(tmp_path, lines, "table.tsv"), fs=360)
    assert record.leads == ("ECG 1", "ECG 2")
    assert record.meta["lead_assumed"] is False
    assert record.signal.shape == (2, 3600)


def test_fs_argument_wins_over_time_column(tmp_path: Path, mitdb_100: np.ndarray) -> None:
    lines = ["time,MLII"] + [f"{i / 360:.6f},{a}" for i, (a, _) in enumerate(mitdb_100)]
    record = read_csv(_write(tmp_path, lines), fs=250)
    assert record.fs == 250.0
    assert record.meta["fs_from_time_column"] == 360.0


# --- refusals -----------------------------------------------------------------------------------------


def _table(mitdb_100: np.ndarray) -> list[str]:
    return ["MLII,V5"] + [f"{a},{b}" for a, b in mitdb_100]


def test_text_in_a_sample_line_names_the_line(tmp_path: Path, mitdb_100: np.ndarray) -> None:
    lines = _table(mitdb_100)
    lines[41] = "-0.145,lead off"
    with pytest.raises(IngestError, match="text in a sample line") as caught:
        read_csv(_write(tmp_path, lines), fs=360)
    assert caught.value.where == "line 42"


def test_ragged_row_names_the_line(tmp_path: Path, mitdb_100: np.ndarray) -> None:
    lines = _table(mitdb_100)
    lines[7] = "-0.145,-0.065,0.1"
    with pytest.raises(IngestError, match="ragged") as caught:
        read_csv(_write(tmp_path, lines), fs=360)
    assert caught.value.where == "line 8"
    lines[7] = "-0.145"
    with pytest.raises(IngestError, match="ragged") as caught:
        read_csv(_write(tmp_path, lines), fs=360)
    assert caught.value.where == "line 8"


def test_nan_names_the_line(tmp_path: Path, values_only: Path) -> None:
    lines = values_only.read_text().splitlines()
    lines[1000] = "NaN"
    with pytest.raises(IngestError, match="NaN") as caught:
        read_csv(_write(tmp_path, lines), fs=512)
    assert caught.value.where == "line 1001"


def test_single_column_text_names_the_line(tmp_path: Path, values_only: Path) -> None:
    lines = values_only.read_text().splitlines()
    lines[500] = "12.0.1"
    with pytest.raises(IngestError, match="text in a sample line") as caught:
        read_csv(_write(tmp_path, lines), fs=512)
    assert caught.value.where == "line 501"


def test_header_only_is_refused(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="no samples"):
        read_csv(_write(tmp_path, ["MLII,V5"]), fs=360)


def test_unknown_amplitude_unit_is_refused(tmp_path: Path, mitdb_100: np.ndarray) -> None:
    lines = ["MLII,V5", "adu,adu"] + [f"{a},{b}" for a, b in mitdb_100]
    with pytest.raises(IngestError, match="unknown amplitude unit 'adu'"):
        read_csv(_write(tmp_path, lines), fs=360)


def test_json_is_named_as_json(tmp_path: Path) -> None:
    path = tmp_path / "ecg.json"
    path.write_text('{"fs": 500, "samples": [0.1, 0.2]}', encoding="utf-8")
    with pytest.raises(IngestError, match="JSON"):
        read_csv(path, fs=500)


def test_nul_character_is_refused(tmp_path: Path, mitdb_100: np.ndarray) -> None:
    """pandas' parser would stop the value at the NUL and carry on: refuse it instead."""
    path = tmp_path / "nul.csv"
    path.write_bytes("\n".join(_table(mitdb_100)).encode().replace(b"\n-0.145,", b"\n-0.1\x0045,", 1))
    with pytest.raises(IngestError, match="NUL") as caught:
        read_csv(path, fs=360)
    assert caught.value.where == "line 2"


def test_non_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("I (µV)\n1.0\n2.0\n".encode("latin-1"))
    with pytest.raises(IngestError, match="not UTF-8 text") as caught:
        read_csv(path, fs=512)
    assert caught.value.where == "line 1"

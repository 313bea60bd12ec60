"""NumPy arrays and pickles: the ST-MEM / ECHOPulse files in ../shared/data, and hostile files of our own."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from echopulse.ecg import STMEM_LEADS
from echopulse.errors import IngestError
from echopulse.ingest import read_record, sniff_format
from echopulse.ingest.numpy_arrays import read_numpy
from echopulse.ingest.safe_pickle import load_pickled_array, read_pickle

ECHOPULSE_TRACES = {
    "A2C.USm.1.2.840.114089.1.0.1.2887499449.1641693197.4144.604080_1_27.pkl": 167,
    "A2C.USm.1.2.840.114089.1.0.1.2887499449.1641693197.4144.604080_27_43.pkl": 103,
    "A2C.USm.1.2.840.114089.1.0.1.2887499449.1641693197.4144.100977_1_23.pkl": 113,
}


@pytest.fixture(scope="module")
def echopulse_dir(shared_data: Path) -> Path:
    return shared_data / "echopulse"


def _trusted_load(path: Path) -> np.ndarray:
    """Plain pickle.load, for the published test files only, to have an independent reference."""
    with path.open("rb") as handle:
        return pickle.load(handle)


def _ecg_rows(n_leads: int, n_samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / 500.0
    beat = np.sin(2 * np.pi * 1.1 * t) ** 21
    return np.stack([(0.5 + 0.1 * i) * beat + rng.normal(0, 0.02, n_samples) for i in range(n_leads)])


# ------------------------------------------------------------------------------------------- ST-MEM .pkl


@pytest.mark.parametrize("name", ["000.pkl", "001.pkl", "002.pkl"])
def test_stmem_pickle_array_is_rebuilt_exactly(echopulse_dir: Path, name: str) -> None:
    array = load_pickled_array(echopulse_dir / name)
    assert array.dtype == np.float64
    assert array.shape == (12, 5000)
    np.testing.assert_array_equal(array, _trusted_load(echopulse_dir / name))


def test_stmem_pickle_needs_fs(echopulse_dir: Path) -> None:
    with pytest.raises(IngestError, match="fs"):
        read_pickle(echopulse_dir / "000.pkl")


def test_stmem_pickle_reads_twelve_leads(echopulse_dir: Path) -> None:
    record = read_pickle(echopulse_dir / "000.pkl", fs=500)
    assert record.leads == STMEM_LEADS
    assert record.meta["lead_assumed"] is True
    assert record.fs == 500.0
    assert record.duration_s == 10.0
    assert record.source_format == "pickle"
    reference = _trusted_load(echopulse_dir / "000.pkl").astype(np.float32)
    np.testing.assert_array_equal(record.signal, reference)


def test_stmem_pickle_through_read_record(echopulse_dir: Path) -> None:
    assert sniff_format(echopulse_dir / "001.pkl") == "pickle"
    record = read_record(echopulse_dir / "001.pkl", fs=500)
    assert record.signal.shape == (12, 5000)
    with pytest.raises(IngestError, match="fs"):
        read_record(echopulse_dir / "001.pkl")


# ----------------------------------------------------------------------------------- ECHOPulse pixel traces


@pytest.mark.parametrize("name, length", sorted(ECHOPULSE_TRACES.items()))
def test_echopulse_pixel_trace(echopulse_dir: Path, name: str, length: int) -> None:
    trace = _trusted_load(echopulse_dir / name)
    record = read_pickle(echopulse_dir / name)
    assert record.leads == ("II",)
    assert record.meta["units"] == "pixel"
    assert record.meta["echopulse_pixel_trace"] is True
    assert record.meta["fs_assumed"] is True
    assert record.meta["echopulse_cycle_samples"] == length
    assert record.fs == pytest.approx(length / (9 / 16))
    # Tiled 16 times, as ECHOPulse does: 9 s, amplitude untouched (pixels, not mV).
    assert record.signal.shape == (1, 16 * length)
    assert record.duration_s == pytest.approx(9.0)
    np.testing.assert_array_equal(record.signal[0, :length], trace.astype(np.float32))
    np.testing.assert_array_equal(record.signal[0], np.tile(trace, 16).astype(np.float32))
    assert record.signal.min() >= 0 and record.signal.max() <= 48


def test_echopulse_trace_with_given_fs(echopulse_dir: Path) -> None:
    name = next(iter(ECHOPULSE_TRACES))
    record = read_pickle(echopulse_dir / name, fs=250)
    assert record.fs == 250.0
    assert record.meta["fs_assumed"] is False


def test_echopulse_trace_through_read_record(echopulse_dir: Path) -> None:
    for name, length in ECHOPULSE_TRACES.items():
        record = read_record(echopulse_dir / name)
        assert record.n_samples == 16 * length
        assert record.meta["echopulse_pixel_trace"] is True


# ------------------------------------------------------------------------------------- hostile pickles


class _System:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Eval:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (eval, (self.code,))


class _Popen:
    def __init__(self, args: list[str]) -> None:
        self.args = args

    def __reduce__(self):
        return (subprocess.Popen, (self.args,))


def _dump(path: Path, value: object, protocol: int = pickle.HIGHEST_PROTOCOL) -> Path:
    path.write_bytes(pickle.dumps(value, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_pickle_calling_os_system_is_refused_without_side_effect(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    path = _dump(tmp_path / "evil.pkl", _System(f"touch {marker}"), protocol)
    with pytest.raises(IngestError, match=r"pickle refers to (posix|os|nt)\.system, refusing to load"):
        load_pickled_array(path)
    assert not marker.exists()
    with pytest.raises(IngestError, match="refusing to load"):
        read_record(path)
    assert not marker.exists()


def test_pickle_with_eval_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = _dump(tmp_path / "eval.pkl", _Eval(f"open({str(marker)!r}, 'w')"))
    with pytest.raises(IngestError, match=r"pickle refers to builtins\.eval"):
        read_pickle(path, fs=500)
    assert not marker.exists()


def test_pickle_with_popen_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = _dump(tmp_path / "popen.pkl", _Popen(["touch", str(marker)]))
    with pytest.raises(IngestError, match=r"subprocess\.Popen"):
        load_pickled_array(path)
    assert not marker.exists()


def test_evil_object_hidden_in_an_object_array_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    hidden = np.array([1.0, _System(f"touch {marker}")], dtype=object)
    path = _dump(tmp_path / "hidden.pkl", hidden)
    with pytest.raises(IngestError, match="system, refusing to load"):
        load_pickled_array(path)
    assert not marker.exists()


def test_object_array_of_plain_numbers_is_refused(tmp_path: Path) -> None:
    path = _dump(tmp_path / "objects.pkl", np.array([1.0, 2.0, 3.0], dtype=object))
    with pytest.raises(IngestError, match="dtype object"):
        load_pickled_array(path)


def test_codec_other_than_latin1_is_refused(tmp_path: Path) -> None:
    import _codecs

    class _Rot13:
        def __reduce__(self):
            return (_codecs.encode, ("abc", "rot13"))

    path = _dump(tmp_path / "rot13.pkl", _Rot13(), protocol=2)
    with pytest.raises(IngestError, match="not a readable pickle"):
        load_pickled_array(path)


def test_pickle_of_a_dict_is_not_an_array(tmp_path: Path) -> None:
    path = _dump(tmp_path / "dict.pkl", {"ecg": [1, 2, 3]})
    with pytest.raises(IngestError, match="holds a dict, not a NumPy array"):
        load_pickled_array(path)


def test_truncated_pickle(echopulse_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.pkl"
    path.write_bytes((echopulse_dir / "000.pkl").read_bytes()[:5000])
    with pytest.raises(IngestError, match="not a readable pickle"):
        load_pickled_array(path)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickles_of_every_protocol_rebuild_arrays(tmp_path: Path, protocol: int) -> None:
    rows = _ecg_rows(12, 2500)
    path = _dump(tmp_path / f"p{protocol}.pkl", rows, protocol)
    np.testing.assert_array_equal(load_pickled_array(path), rows)
    record = read_pickle(path, fs=250)
    assert record.leads == STMEM_LEADS and record.duration_s == 10.0


# ---------------------------------------------------------------------------------------------- .npy/.npz


def test_npy_twelve_leads(tmp_path: Path) -> None:
    rows = _ecg_rows(12, 5000)
    np.save(tmp_path / "rec.npy", rows)
    record = read_numpy(tmp_path / "rec.npy", fs=500)
    assert record.leads == STMEM_LEADS
    assert record.meta["lead_assumed"] is True
    assert record.source_format == "npy"
    np.testing.assert_array_equal(record.signal, rows.astype(np.float32))


def test_npy_without_fs_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "rec.npy", _ecg_rows(12, 5000))
    with pytest.raises(IngestError, match="fs"):
        read_numpy(tmp_path / "rec.npy")


def test_npy_samples_by_leads_is_transposed(tmp_path: Path) -> None:
    rows = _ecg_rows(3, 4000)
    np.save(tmp_path / "cols.npy", rows.T.astype(np.float32))
    record = read_numpy(tmp_path / "cols.npy", fs=400)
    assert record.signal.shape == (3, 4000)
    assert record.leads == ("lead0", "lead1", "lead2")
    assert "transposed" in record.meta
    np.testing.assert_array_equal(record.signal, rows.astype(np.float32))


def test_npy_single_lead_is_assumed_lead_i(tmp_path: Path) -> None:
    np.save(tmp_path / "one.npy", _ecg_rows(1, 3000)[0])
    record = read_numpy(tmp_path / "one.npy", fs=300)
    assert record.leads == ("I",)
    assert record.meta["lead_assumed"] is True
    assert record.duration_s == 10.0


def test_object_npy_is_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    np.save(tmp_path / "evil.npy", np.array([_System(f"touch {marker}")], dtype=object), allow_pickle=True)
    with pytest.raises(IngestError, match="Python objects"):
        read_numpy(tmp_path / "evil.npy", fs=500)
    assert not marker.exists()


def test_npy_renamed_to_bin_reads_through_read_record(tmp_path: Path) -> None:
    rows = _ecg_rows(2, 5000)
    np.save(tmp_path / "rec.npy", rows)
    shutil.move(tmp_path / "rec.npy", tmp_path / "rec.bin")
    assert sniff_format(tmp_path / "rec.bin") == "npy"
    record = read_record(tmp_path / "rec.bin", fs=500)
    assert record.signal.shape == (2, 5000)
    np.testing.assert_array_equal(record.signal, rows.astype(np.float32))


def test_npz_with_fs_leads_and_microvolts(tmp_path: Path) -> None:
    rows = _ecg_rows(2, 5000)
    np.savez_compressed(
        tmp_path / "rec.npz", ecg=rows * 1000, fs=np.array(500.0), leads=np.array(["MLII", "v1"]), units="uV"
    )
    record = read_record(tmp_path / "rec.npz")
    assert record.fs == 500.0
    assert record.leads == ("II", "V1")
    assert record.meta["units"] == "uV"
    assert record.source_format == "npz"
    np.testing.assert_allclose(record.signal, rows, atol=1e-6)


def test_npz_single_unnamed_array(tmp_path: Path) -> None:
    rows = _ecg_rows(12, 2500)
    np.savez(tmp_path / "plain.npz", rows)
    record = read_numpy(tmp_path / "plain.npz", fs=250)
    assert record.meta["npz_key"] == "arr_0"
    assert record.leads == STMEM_LEADS
    with pytest.raises(IngestError, match="fs"):
        read_numpy(tmp_path / "plain.npz")


def test_npz_with_ambiguous_arrays(tmp_path: Path) -> None:
    np.savez(tmp_path / "two.npz", first=_ecg_rows(1, 2000), second=_ecg_rows(1, 2000))
    with pytest.raises(IngestError, match="cannot tell which array is the signal"):
        read_numpy(tmp_path / "two.npz", fs=250)


def test_npz_wrong_number_of_lead_names(tmp_path: Path) -> None:
    np.savez(tmp_path / "names.npz", signal=_ecg_rows(3, 2000), leads=np.array(["I", "II"]), fs=250)
    with pytest.raises(IngestError, match="2 lead names for 3 signal rows"):
        read_numpy(tmp_path / "names.npz")


def test_npz_unknown_units(tmp_path: Path) -> None:
    np.savez(tmp_path / "units.npz", signal=_ecg_rows(1, 2000), fs=250, units="mmHg")
    with pytest.raises(IngestError, match="unknown amplitude unit 'mmHg'"):
        read_numpy(tmp_path / "units.npz")


def test_npz_object_member_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = np.array([_System(f"touch {marker}")], dtype=object)
    np.savez(tmp_path / "evil.npz", signal=_ecg_rows(1, 2000), fs=250, leads=evil)
    with pytest.raises(IngestError):
        read_numpy(tmp_path / "evil.npz")
    assert not marker.exists()


def _header_only_npz(path: Path, shape: tuple[int, ...]) -> Path:
    """A zip member that declares a huge array but holds no data: only the header may be read."""
    member = io.BytesIO()
    np.lib.format.write_array_header_2_0(member, {"descr": "<f8", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("signal.npy", member.getvalue())
        buffer = io.BytesIO()
        np.save(buffer, np.array(500.0))
        archive.writestr("fs.npy", buffer.getvalue())
    return path


def test_npz_declaring_a_huge_array_is_refused_from_its_header(tmp_path: Path) -> None:
    path = _header_only_npz(tmp_path / "bomb.npz", (12, 500 * 3600 * 7))
    with pytest.raises(IngestError, match="over the"):
        read_numpy(path)


def test_npy_declaring_too_many_samples_is_refused_from_its_header(tmp_path: Path) -> None:
    path = tmp_path / "long.npy"
    with path.open("wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "<f4", "fortran_order": False, "shape": (1, 500 * 3600 * 7)}
        )
    with pytest.raises(IngestError, match="over the 6 h limit"):
        read_numpy(path, fs=500)


def test_array_with_too_many_dimensions(tmp_path: Path) -> None:
    np.save(tmp_path / "cube.npy", np.zeros((3, 4, 2000)))
    with pytest.raises(IngestError, match="is not \\(leads, samples\\)"):
        read_numpy(tmp_path / "cube.npy", fs=250)


def test_non_numeric_npy_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "text.npy", np.array(["a", "b"]))
    with pytest.raises(IngestError, match="not a plain integer or float"):
        read_numpy(tmp_path / "text.npy", fs=250)

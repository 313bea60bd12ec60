"""A corpus of broken, hostile and unsupported input files, each with the refusal it must get.

Most cases are real files from ../shared/data broken in one specific way, so that each one tests a single
check of a reader against the shape of data users really have. Everything is generated into a scratch
directory: nothing large is committed, and the cases that claim ten hours or more than the file-size limit
are headers in front of small or sparse files, so they also show that the limits are checked before the
data is read.

`expect` is a regular expression searched in the `IngestError` message. It names the problem and, where
the reader can know it, the place (``line 20``, ``field Sample Rate``, ``signal 0``).
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

SpotT = TypeVar("SpotT")

FAKE_NAME = "Erika Mustermann"
FAKE_BIRTH_DATE = "1970-01-01"
"""Planted on lines 1–2 of the broken Apple Watch exports: no error message may ever repeat them."""

APPLE_EXPORT = Path("apple_watch/ecg_2021-12-17.csv")
RATE_LINE, LEAD_LINE, UNIT_LINE, FIRST_SAMPLE_LINE = 8, 11, 12, 14
"""1-based line numbers in that export, checked when the corpus is built so the expectations stay true."""

WFDB_RECORD = Path("wfdb/100")
WFDB_SAMPLES_10_H = 10 * 3600 * 360


@dataclass(frozen=True)
class BadCase:
    """One file that `read_record(path, fs=fs)` must refuse with an `IngestError` matching `expect`."""

    name: str
    path: Path
    expect: str
    fs: float | None = None
    identity: bool = False
    """The file carries FAKE_NAME and FAKE_BIRTH_DATE, which the message must not contain."""
    marker: Path | None = None
    """A file that only exists if loading the input ran code the input smuggled in."""


@dataclass(frozen=True)
class Spot:
    """Where one case is built: the corpus root, the real data and the case's own name."""

    out: Path
    shared: Path
    name: str

    def file(self, suffix: str) -> Path:
        return self.out / f"{self.name}{suffix}"

    @property
    def stem(self) -> Path:
        return self.out / self.name

    @property
    def marker(self) -> Path:
        return self.out / f"{self.name}.marker"


@dataclass(frozen=True)
class _Recipe(Generic[SpotT]):
    build: Callable[[SpotT], Path]
    expect: str
    fs: float | None
    identity: bool
    marker: bool


class CaseBook(Generic[SpotT]):
    """Builders of bad files, registered under their function names (so test ids and file names say the
    case), each with the refusal it must get. One book per corpus; `make_spot` says where a case is built."""

    def __init__(self, make_spot: Callable[[Path, Path, str], SpotT]) -> None:
        self.make_spot = make_spot
        self._recipes: dict[str, _Recipe[SpotT]] = {}

    def case(
        self, expect: str, *, fs: float | None = None, identity: bool = False, marker: bool = False
    ) -> Callable[[Callable[[SpotT], Path]], Callable[[SpotT], Path]]:
        def register(build: Callable[[SpotT], Path]) -> Callable[[SpotT], Path]:
            self._recipes[build.__name__] = _Recipe(build, expect, fs, identity, marker)
            return build

        return register

    def build(self, directory: Path, shared_data: Path) -> list[BadCase]:
        """Write every bad file into `directory` (created if needed); the cases in a stable order."""
        directory.mkdir(parents=True, exist_ok=True)
        cases = []
        for name, recipe in self._recipes.items():
            path = recipe.build(self.make_spot(directory, shared_data, name))
            marker = directory / f"{name}.marker" if recipe.marker else None
            cases.append(BadCase(name, path, recipe.expect, recipe.fs, recipe.identity, marker))
        return cases

    def names(self, *, with_marker: bool = False) -> list[str]:
        """The case names, known without building anything (for pytest ids at collection time); with
        `with_marker`, only the cases that try to run code."""
        return [name for name, recipe in self._recipes.items() if recipe.marker or not with_marker]


_BOOK: CaseBook[Spot] = CaseBook(Spot)
_case = _BOOK.case


def build_bad_corpus(directory: Path, shared_data: Path) -> list[BadCase]:
    """Write every bad file into `directory` (created if needed) and return the cases in a stable order."""
    return _BOOK.build(directory, shared_data)


case_names = _BOOK.names


# ------------------------------------------------------------------------------------ Apple Watch exports


def _apple_lines(shared: Path) -> list[str]:
    """The real export as lines, with a fake name and birth date where the Health app writes the real ones."""
    lines = (shared / APPLE_EXPORT).read_text(encoding="utf-8").splitlines()
    expected = {RATE_LINE: "Sample Rate,", LEAD_LINE: "Lead,", UNIT_LINE: "Unit,"}
    for number, start in expected.items():
        if not lines[number - 1].startswith(start):
            raise RuntimeError(f"{APPLE_EXPORT} line {number} no longer starts with {start!r}")
    if lines[FIRST_SAMPLE_LINE - 2] or not lines[FIRST_SAMPLE_LINE - 1][0].isdigit():
        raise RuntimeError(f"{APPLE_EXPORT}: samples no longer start on line {FIRST_SAMPLE_LINE}")
    lines[0] = f"Name,{FAKE_NAME}"
    lines[1] = f"Date of Birth,{FAKE_BIRTH_DATE}"
    return lines


def _replace(lines: list[str], number: int, text: str) -> list[str]:
    """A copy of `lines` with 1-based line `number` replaced."""
    changed = list(lines)
    changed[number - 1] = text
    return changed


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _apple_with(spot: Spot, number: int, text: str) -> Path:
    """The export with one line replaced: the common shape of a one-fault case."""
    return _write_lines(spot.file(".csv"), _replace(_apple_lines(spot.shared), number, text))


@_case(r"header cut short.*\(line 8\)", identity=True)
def aw_cut_mid_header(spot: Spot) -> Path:
    """A download that stopped inside the header: the file ends half-way through the Sample Rate line."""
    text = "\n".join(_apple_lines(spot.shared)[:RATE_LINE])
    path = spot.file(".csv")
    path.write_text(text[: text.index("Sample Rate") + len("Sample Ra")], encoding="utf-8")
    return path


@_case(r"no sample rate.*Sample Rate", identity=True)
def aw_no_sample_rate(spot: Spot) -> Path:
    lines = _apple_lines(spot.shared)
    del lines[RATE_LINE - 1]
    return _write_lines(spot.file(".csv"), lines)


@_case(r"sample rate 0(\.0)? Hz is not a positive number \(line 8", identity=True)
def aw_rate_zero(spot: Spot) -> Path:
    return _apple_with(spot, RATE_LINE, "Sample Rate,0 hertz")


@_case(r"sample rate -512(\.0)? Hz is not a positive number \(line 8", identity=True)
def aw_rate_negative(spot: Spot) -> Path:
    return _apple_with(spot, RATE_LINE, "Sample Rate,-512 hertz")


@_case(r"sample rate 'abc hertz' is not a rate.*\(line 8", identity=True)
def aw_rate_text(spot: Spot) -> Path:
    return _apple_with(spot, RATE_LINE, "Sample Rate,abc hertz")


@_case(r"sample rate 'hertz' is not a rate.*\(line 8", identity=True)
def aw_rate_without_number(spot: Spot) -> Path:
    return _apple_with(spot, RATE_LINE, "Sample Rate,hertz")


@_case(r"sample rate 1e\+09 Hz is outside 100–10000 Hz \(line 8", identity=True)
def aw_rate_absurd(spot: Spot) -> Path:
    return _apple_with(spot, RATE_LINE, "Sample Rate,1000000000 hertz")


@_case(r"sample rate 51 Hz is outside 100–10000 Hz \(line 8", identity=True)
def aw_rate_too_low(spot: Spot) -> Path:
    """A rate typo (51 for 512): below the rate at which R-peaks can be placed."""
    return _apple_with(spot, RATE_LINE, "Sample Rate,51 hertz")


@_case(r"unknown amplitude unit 'furlongs'.*\(line 12", identity=True)
def aw_unit_furlongs(spot: Spot) -> Path:
    return _apple_with(spot, UNIT_LINE, "Unit,furlongs")


@_case(r"'hello' is not a number \(line 20\)", identity=True)
def aw_text_in_sample(spot: Spot) -> Path:
    return _apple_with(spot, 20, "hello")


@_case(r"'12\.5 mV' is not a number \(line 1000\)", identity=True)
def aw_sample_with_unit(spot: Spot) -> Path:
    return _apple_with(spot, 1000, "12.5 mV")


@_case(r"NaN.*\(line 30\)", identity=True)
def aw_nan_sample(spot: Spot) -> Path:
    return _apple_with(spot, 30, "nan")


@_case(r"infinite.*\(line 40\)", identity=True)
def aw_inf_sample(spot: Spot) -> Path:
    return _apple_with(spot, 40, "inf")


@_case(r"not UTF-8 text \(line 25\)", identity=True)
def aw_invalid_utf8(spot: Spot) -> Path:
    """Bytes that are not UTF-8 in a sample line: a corrupted copy, not a localised export."""
    lines = [line.encode("utf-8") for line in _apple_lines(spot.shared)]
    lines[24] = b"\xff\xfe12.5\x81"
    path = spot.file(".csv")
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@_case(r"not UTF-8 text \(line 12\)", identity=True)
def aw_latin1_micro_sign(spot: Spot) -> Path:
    """A UTF-8 export whose Unit line was re-saved in Latin-1: the µ is the lone byte B5."""
    lines = [line.encode("utf-8") for line in _apple_lines(spot.shared)]
    lines[UNIT_LINE - 1] = "Unit,µV".encode("latin-1")
    path = spot.file(".csv")
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@_case(r"(NUL|not a number).*\(line 16\)", identity=True)
def aw_nul_byte(spot: Spot) -> Path:
    lines = [line.encode("utf-8") for line in _apple_lines(spot.shared)]
    lines[15] = b"12.5\x00"
    path = spot.file(".csv")
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@_case(r"no samples after the header", identity=True)
def aw_header_only(spot: Spot) -> Path:
    return _write_lines(spot.file(".csv"), _apple_lines(spot.shared)[: FIRST_SAMPLE_LINE - 1])


@_case(r"amplitudes reach \d.* mV.*wrong units", identity=True)
def aw_microvolts_declared_volts(spot: Spot) -> Path:
    """The µV samples under a `Unit,V` line: a 985 µV R wave would read as 985 V."""
    return _apple_with(spot, UNIT_LINE, "Unit,V")


@_case(r"recording lasts 0\.19 s, shorter than 1 s", identity=True)
def aw_too_short(spot: Spot) -> Path:
    """100 samples at 513.625 Hz: no complete heartbeat fits."""
    return _write_lines(spot.file(".csv"), _apple_lines(spot.shared)[: FIRST_SAMPLE_LINE - 1 + 100])


# ------------------------------------------------------------------------------------------------- WFDB


def _wfdb_case(spot: Spot, header: str | None = None, dat_bytes: int | None = None) -> Path:
    """Record 100 in its own folder (WFDB finds files by name): its header, edited, and its signal file,
    copied whole, cut to `dat_bytes`, or left out when `dat_bytes` is 0."""
    folder = spot.out / spot.name
    folder.mkdir()
    source = spot.shared / WFDB_RECORD
    hea = folder / "100.hea"
    hea.write_text(header if header is not None else source.with_suffix(".hea").read_text(encoding="ascii"))
    if dat_bytes is None:
        shutil.copyfile(source.with_suffix(".dat"), folder / "100.dat")
    elif dat_bytes:
        with source.with_suffix(".dat").open("rb") as handle:
            (folder / "100.dat").write_bytes(handle.read(dat_bytes))
    return hea


def _wfdb_header(shared: Path, record_line: str) -> str:
    """The real header of record 100 with its record line (`100 2 360 650000`) replaced."""
    lines = (shared / WFDB_RECORD).with_suffix(".hea").read_text(encoding="ascii").splitlines()
    index = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    lines[index] = record_line
    return "\n".join(lines) + "\n"


@_case(r"signal file 100\.dat missing")
def wfdb_missing_dat(spot: Spot) -> Path:
    return _wfdb_case(spot, dat_bytes=0)


@_case(r"signal file 100\.dat is truncated: 12 bytes")
def wfdb_truncated_dat(spot: Spot) -> Path:
    return _wfdb_case(spot, dat_bytes=12)


@_case(r"recording lasts 10\.0 h, over the 6 h limit")
def wfdb_ten_hours(spot: Spot) -> Path:
    """A header claiming 10 h at 360 Hz in front of a 12-byte signal file: the duration limit has to be
    applied to the header, before the (here missing) samples are read, or the message would say truncated."""
    return _wfdb_case(spot, _wfdb_header(spot.shared, f"100 2 360 {WFDB_SAMPLES_10_H}"), dat_bytes=12)


@_case(r"broken WFDB header.*\(header\)")
def wfdb_garbage_header(spot: Spot) -> Path:
    return _wfdb_case(spot, _wfdb_header(spot.shared, "100 two 3x60 lots"))


@_case(r"sample rate 50 Hz is outside 100–10000 Hz \(header, sampling frequency\)")
def wfdb_rate_too_low(spot: Spot) -> Path:
    return _wfdb_case(spot, _wfdb_header(spot.shared, "100 2 50 650000"))


@_case(r"('\.\./\.\./100\.dat' is not a plain file name|broken WFDB header: invalid syntax in signal line)")
def wfdb_path_escape(spot: Spot) -> Path:
    """A header whose signal file lies outside its folder. wfdb's own header grammar refuses the path;
    the reader's plain-name check is the second line of defence if wfdb ever lets it through."""
    header = _wfdb_header(spot.shared, "100 2 360 650000").replace("100.dat ", "../../100.dat ")
    return _wfdb_case(spot, header)


# -------------------------------------------------------------------------------------------------- EDF

_EDF_SIGNAL_FIELDS = (16, 80, 8, 8, 8, 8, 8, 80, 8, 32)


def _edf_header(label: str, dimension: str, per_record: int, n_records: int) -> bytes:
    """A plain EDF header with one signal (fields fixed-width ASCII, as the EDF spec lays them out)."""
    main = "".join(
        value.ljust(width)
        for value, width in (
            ("0", 8), ("X", 80), ("Startdate 01-JAN-2001 X X X", 80), ("01.01.01", 8), ("00.00.00", 8),
            (str(256 * 2), 8), ("", 44), (str(n_records), 8), ("1", 8), ("1", 4),
        )
    )  # fmt: skip
    values = (label, "AgAgCl electrode", dimension, "-5", "5", "-32768", "32767", "", str(per_record), "")
    signal = "".join(value.ljust(width) for value, width in zip(values, _EDF_SIGNAL_FIELDS, strict=True))
    return (main + signal).encode("ascii")


def _sparse_edf(path: Path, per_record: int, n_records: int) -> Path:
    """An EDF of the full declared size whose data part is a hole: nothing large reaches the disk."""
    with path.open("wb") as handle:
        handle.write(_edf_header("ECG I", "mV", per_record, n_records))
        handle.truncate(512 + per_record * n_records * 2)
    return path


@_case(r"no ECG channel among: 'squarewave'")
def edf_no_ecg_channel(spot: Spot) -> Path:
    """The real, valid EDF+ test-generator file: eleven signals, none of them an ECG."""
    return Path(shutil.copyfile(spot.shared / "edf/test_generator.edf", spot.file(".edf")))


@_case(r"EDF header truncated: 200 of 256 bytes")
def edf_truncated_header(spot: Spot) -> Path:
    with (spot.shared / "edf/test_generator.edf").open("rb") as handle:
        spot.file(".edf").write_bytes(handle.read(200))
    return spot.file(".edf")


@_case(r"file truncated: 100000 bytes, the header needs \d+")
def edf_truncated_data(spot: Spot) -> Path:
    """The EDF that has an ECG channel, cut after 100 kB: its header promises 600 s."""
    with (spot.shared / "edf/test_generator_2.edf").open("rb") as handle:
        spot.file(".edf").write_bytes(handle.read(100_000))
    return spot.file(".edf")


@_case(r"(not EDF\(\+\) or BDF\(\+\) compliant \(Bytes Header\)|header size \d+ does not fit)")
def edf_wrong_header_length(spot: Spot) -> Path:
    """The header-length field (bytes 184–192) one signal header short of what the signal count needs."""
    data = bytearray((spot.shared / "edf/test_generator.edf").read_bytes())
    declared = int(data[184:192].decode("ascii"))
    data[184:192] = str(declared - 256).ljust(8).encode("ascii")
    spot.file(".edf").write_bytes(bytes(data))
    return spot.file(".edf")


@_case(r"recording lasts 10\.0 h, over the 6 h limit")
def edf_ten_hours(spot: Spot) -> Path:
    return _sparse_edf(spot.file(".edf"), per_record=360, n_records=36_000)


@_case(r"sample rate 50 Hz is outside 100–10000 Hz \(signal 0")
def edf_rate_too_low(spot: Spot) -> Path:
    return _sparse_edf(spot.file(".edf"), per_record=50, n_records=60)


# -------------------------------------------------------------------------------------- NumPy and pickles


def _real_samples_mv(shared: Path, count: int) -> np.ndarray:
    """The first `count` samples of the real Apple Watch export, in mV, as float32."""
    lines = _apple_lines(shared)[FIRST_SAMPLE_LINE - 1 : FIRST_SAMPLE_LINE - 1 + count]
    return (np.array(lines, dtype=np.float64) / 1000).astype(np.float32)


@_case(r"holds Python objects")
def npy_object_dtype(spot: Spot) -> Path:
    array = np.empty(3, dtype=object)
    array[:] = [np.zeros(600), "lead II", {"fs": 500}]
    np.save(spot.file(".npy"), array, allow_pickle=True)
    return spot.file(".npy")


@_case(r"dtype <U\d+ is not a plain integer or float type", fs=500)
def npy_strings(spot: Spot) -> Path:
    np.save(spot.file(".npy"), np.array(["0.1", "0.2", "nan"] * 400))
    return spot.file(".npy")


@_case(r"array of shape \(3, 4, 5000\) is not \(leads, samples\)", fs=500)
def npy_three_dimensional(spot: Spot) -> Path:
    np.save(spot.file(".npy"), np.zeros((3, 4, 5000), dtype=np.float32))
    return spot.file(".npy")


@_case(r"NaN or infinite.*sample 700", fs=500)
def npy_nan_sample(spot: Spot) -> Path:
    signal = _real_samples_mv(spot.shared, 2000)
    signal[700] = np.nan
    np.save(spot.file(".npy"), signal)
    return spot.file(".npy")


@_case(r"recording lasts 10\.0 h, over the 6 h limit", fs=500)
def npy_ten_hours(spot: Spot) -> Path:
    """Only a header claiming 18 million float32 samples: refused from the header, or reading would fail."""
    path = spot.file(".npy")
    with path.open("wb") as handle:
        header = {"descr": "<f4", "fortran_order": False, "shape": (1, 10 * 3600 * 500)}
        np.lib.format.write_array_header_1_0(handle, header)
        handle.write(b"\x00" * 64)
    return path


@_case(r"does not state its sample rate")
def npz_without_fs(spot: Spot) -> Path:
    np.savez(spot.file(".npz"), signal=_real_samples_mv(spot.shared, 5000))
    return spot.file(".npz")


@_case(r"sample rate 0(\.0)? Hz is not a positive number \(fs\)")
def npz_fs_zero(spot: Spot) -> Path:
    np.savez(spot.file(".npz"), signal=_real_samples_mv(spot.shared, 5000), fs=np.array(0.0))
    return spot.file(".npz")


class _RunsShellCommand:
    """Pickles as a call to `os.system`: what a hostile `.pkl` upload looks like."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return os.system, (self.command,)


class _RunsPython:
    """Pickles as a call to `builtins.exec`."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[Callable[[str], None], tuple[str]]:
        return exec, (self.code,)


def _touch_command(marker: Path) -> str:
    return f"touch {shlex.quote(str(marker))}"


def _dump(path: Path, value: object) -> Path:
    path.write_bytes(pickle.dumps(value, protocol=4))
    return path


@_case(r"pickle refers to (posix|os|nt)\.system, refusing to load", fs=500, marker=True)
def pickle_os_system(spot: Spot) -> Path:
    return _dump(spot.file(".pkl"), _RunsShellCommand(_touch_command(spot.marker)))


@_case(r"pickle refers to builtins\.exec, refusing to load", fs=500, marker=True)
def pickle_builtins_exec(spot: Spot) -> Path:
    return _dump(spot.file(".pkl"), _RunsPython(f"open({str(spot.marker)!r}, 'w').close()"))


@_case(r"pickle refers to (posix|os|nt)\.system, refusing to load", fs=500, marker=True)
def pickle_payload_after_array(spot: Spot) -> Path:
    """A real ECG array first and the payload behind it: the refusal must not depend on where it sits."""
    payload = _RunsShellCommand(_touch_command(spot.marker))
    return _dump(spot.file(".pkl"), [_real_samples_mv(spot.shared, 5000), payload])


@_case(r"pickle refers to (posix|os|nt)\.system, refusing to load", fs=500, marker=True)
def pickle_disguised_as_npy(spot: Spot) -> Path:
    """The os.system payload named `.npy`: the name must not route it around the safe unpickler."""
    return _dump(spot.file(".npy"), _RunsShellCommand(_touch_command(spot.marker)))


@_case(r"pickle holds a dict, not a NumPy array", fs=500)
def pickle_dict(spot: Spot) -> Path:
    return _dump(spot.file(".pkl"), {"ecg": [0.1, 0.2, 0.3] * 1000, "fs": 500})


@_case(r"pickle holds a list, not a NumPy array", fs=500)
def pickle_list(spot: Spot) -> Path:
    return _dump(spot.file(".pkl"), [0.1, 0.2, 0.3] * 1000)


@_case(r"does not state its sample rate")
def stmem_pickle_without_fs(spot: Spot) -> Path:
    """The real ST-MEM data-set pickle (12 × 5000, no rate inside) read without `fs`."""
    return Path(shutil.copyfile(spot.shared / "echopulse/000.pkl", spot.file(".pkl")))


# ------------------------------------------------------------------------------------------ generic CSV


def _csv_rows(shared: Path, count: int) -> list[str]:
    """Two columns of real samples in mV (lead I and a scaled copy), `count` rows under a header."""
    signal = _real_samples_mv(shared, count)
    return ["I,II"] + [f"{value:.5f},{value * 1.5:.5f}" for value in signal]


@_case(r"ragged row: 3 fields, expected 2 \(line 101\)", fs=500)
def csv_ragged_rows(spot: Spot) -> Path:
    """Line 101 has three values where the header names two columns."""
    return _write_lines(spot.file(".csv"), _replace(_csv_rows(spot.shared, 2000), 101, "0.1,0.2,0.3"))


@_case(r"ragged row: 1 fields?, expected 2 \(line 51\)", fs=500)
def csv_missing_value(spot: Spot) -> Path:
    """Line 51 holds one value where the header names two columns."""
    return _write_lines(spot.file(".csv"), _replace(_csv_rows(spot.shared, 2000), 51, "0.1"))


@_case(r"'oops' is not a number \(line 77\)", fs=500)
def csv_text_in_row(spot: Spot) -> Path:
    return _write_lines(spot.file(".csv"), _replace(_csv_rows(spot.shared, 2000), 77, "0.1,oops"))


@_case(r"recording lasts 0\.00 s, shorter than 1 s", fs=500)
def csv_one_sample(spot: Spot) -> Path:
    return _write_lines(spot.file(".csv"), ["I", "0.25"])


@_case(r"sample rate unknown: pass fs")
def csv_without_fs(spot: Spot) -> Path:
    """Two columns of samples and no time column: the rate is nowhere, and none was passed."""
    return _write_lines(spot.file(".csv"), _csv_rows(spot.shared, 2000))


@_case(r"sample rate unknown: pass fs")
def headerless_apple_trace_without_fs(spot: Spot) -> Path:
    """The real values-only Apple Watch trace (header deleted by its author) without `fs`."""
    return Path(shutil.copyfile(spot.shared / "apple_watch/heartphase_ecg-sample.csv", spot.file(".csv")))


@_case(r"(NUL|not a number).*\(line 3\)", fs=500)
def csv_nul_byte(spot: Spot) -> Path:
    rows = [row.encode("ascii") for row in _csv_rows(spot.shared, 2000)]
    rows[2] = b"0.1\x00,0.2"
    spot.file(".csv").write_bytes(b"\n".join(rows) + b"\n")
    return spot.file(".csv")


# ----------------------------------------------------------------------------- not ECG files, or nothing


@_case(r"file is empty")
def empty_file(spot: Spot) -> Path:
    spot.file(".csv").touch()
    return spot.file(".csv")


@_case(r"is a directory")
def a_directory(spot: Spot) -> Path:
    (spot.out / spot.name).mkdir()
    return spot.out / spot.name


@_case(r"no such file")
def missing_path(spot: Spot) -> Path:
    return spot.file(".csv")


@_case(r"over the 512 MiB limit")
def over_size_limit(spot: Spot) -> Path:
    """600 MiB on paper, a hole on disk: the size limit must apply before anything is read."""
    with spot.file(".csv").open("wb") as handle:
        handle.write(b"0.1\n")
        handle.truncate(600 * 2**20)
    return spot.file(".csv")


@_case(r"not a supported ECG format")
def random_bytes(spot: Spot) -> Path:
    blob = np.random.default_rng(20240601).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    spot.file(".bin").write_bytes(b"\x00\x01" + blob)
    return spot.file(".bin")


@_case(r"not a supported ECG format")
def gzip_csv(spot: Spot) -> Path:
    data = gzip.compress((spot.shared / APPLE_EXPORT).read_bytes(), mtime=0)
    spot.file(".csv.gz").write_bytes(data)
    return spot.file(".csv.gz")


@_case(r"JSON|not a supported ECG format", fs=500)
def json_document(spot: Spot) -> Path:
    document = {"fs": 500, "lead": "I", "samples": [float(v) for v in _real_samples_mv(spot.shared, 1000)]}
    spot.file(".json").write_text(json.dumps(document), encoding="utf-8")
    return spot.file(".json")


# --------------------------------------------------------------------------- the CLI, as a user runs it

EXIT_REFUSED = 2


def run_ingest(
    files: list[Path], out: Path, cwd: Path, fs: float | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m echopulse ingest FILES --out OUT [--fs FS]` in its own process, output captured."""
    command = [sys.executable, "-m", "echopulse", "ingest", *map(str, files), "--out", str(out)]
    if fs is not None:
        command += ["--fs", str(fs)]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=300, check=False)


def error_lines(stderr: str) -> list[str]:
    """The CLI's own error lines. With several inputs a progress bar shares stderr; the bar's frames end
    in carriage returns, and an error must stand on a line of its own once the bar is cleared from it."""
    shown = (line.rsplit("\r", 1)[-1] for line in stderr.split("\n"))
    return [line for line in shown if line.startswith("echopulse: error:")]


def assert_cli_refuses(case: BadCase, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`echopulse ingest` on one bad file: exit 2, exactly one stderr line naming the file and its
    problem, no traceback, no name or birth date, and nothing written."""
    out = tmp_path / "out"
    result = run_ingest([case.path], out, cwd=tmp_path, fs=case.fs)
    assert result.returncode == EXIT_REFUSED, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("echopulse: error:") and case.path.name in lines[0], lines[0]
    assert re.search(case.expect, lines[0]), lines[0]
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream
        assert FAKE_NAME not in stream and FAKE_BIRTH_DATE not in stream
    assert not out.exists() or not any(out.iterdir()), sorted(out.rglob("*"))
    return result

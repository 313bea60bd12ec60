"""Bare NumPy arrays (`.npy`, `.npz`): the format of research code, with no rate, leads or units inside.

Arrays are never unpickled (`allow_pickle=False` always; an object array is refused before its data is
touched), and the declared shape and dtype are checked against the limits before the data is read, so a
small compressed `.npz` cannot expand into gigabytes.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from echopulse.ecg import STMEM_LEADS, ECGRecord, lead_names
from echopulse.errors import IngestError
from echopulse.ingest import limits
from echopulse.ingest.units import millivolts_per_unit
from echopulse.ingest.validate import check_duration, check_file_size, check_sample_rate

SIGNAL_KEYS = ("signal", "signals", "ecg", "x", "data")
FS_KEYS = ("fs", "sampling_rate", "sample_rate", "sfreq")
LEAD_KEYS = ("leads", "lead_names")
UNIT_KEYS = ("units", "unit")
_SMALL_ARRAY = 1024
"""Largest element count of a side array (fs, leads, units): anything bigger is not metadata."""


def read_numpy(path: str | Path, fs: float | None = None) -> ECGRecord:
    """Read an `.npy` array or an `.npz` archive (signal plus optional `fs`, `leads`, `units`) in mV."""
    source = check_file_size(Path(path))
    with source.open("rb") as handle:
        magic = handle.read(6)
    if magic == b"\x93NUMPY":
        return _read_npy(source, fs)
    if zipfile.is_zipfile(source):
        return _read_npz(source, fs)
    raise IngestError(source, "not a NumPy .npy or .npz file")


def array_record(
    source: Path,
    array: np.ndarray,
    fs: float | None,
    *,
    source_format: str,
    lead_labels: list[str] | None = None,
    units: str = "mV",
    meta: dict[str, Any] | None = None,
) -> ECGRecord:
    """An `ECGRecord` from an array already in memory (used for pickled arrays too)."""
    meta = dict(meta or {})
    _check_dtype(source, array.dtype)
    n_leads, n_samples, transpose = _orientation(source, array.shape)
    rate = _require_fs(source, fs)
    check_duration(source, n_samples, rate)
    signal = np.asarray(array).reshape(_squeezed(array.shape))
    if signal.ndim == 1:
        signal = signal[np.newaxis, :]
    if transpose:
        signal = signal.T
        meta["transposed"] = f"array was (samples, leads) {tuple(array.shape)}; read as (leads, samples)"
    return ECGRecord(
        signal=_to_millivolts(source, signal, units),
        fs=rate,
        leads=_leads(source, lead_labels, n_leads, meta),
        source_format=source_format,
        meta={**meta, "units": units},
    )


# --------------------------------------------------------------------------------------------------- npy


def _read_npy(source: Path, fs: float | None) -> ECGRecord:
    with source.open("rb") as handle:
        shape, dtype = _array_header(source, handle, "array")
        _check_plan(source, shape, dtype, fs)
        handle.seek(0)
        array = _read_array(source, handle, "array")
    return array_record(source, array, fs, source_format="npy")


def _array_header(source: Path, handle: IO[bytes], name: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the `.npy` header, without reading (or unpickling) any data."""
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    except (ValueError, OSError, SyntaxError) as error:
        raise IngestError(source, f"broken .npy header: {error}", name) from error
    return tuple(int(n) for n in shape), np.dtype(dtype)


def _read_array(source: Path, handle: IO[bytes], name: str) -> np.ndarray:
    """Header and data from a handle at the start of the array, never unpickling."""
    try:
        return np.lib.format.read_array(handle, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise IngestError(source, f"unreadable array data: {error}", name) from error


def _check_plan(source: Path, shape: tuple[int, ...], dtype: np.dtype, fs: float | None) -> None:
    """Refuse by header alone: object or odd dtypes, too many leads, too long, too big in memory."""
    _check_dtype(source, dtype)
    _, n_samples, _ = _orientation(source, shape)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size > limits.MAX_FILE_BYTES:
        raise IngestError(source, f"array would take {size / 2**20:.0f} MiB in memory, over the limit")
    check_duration(source, n_samples, _require_fs(source, fs))


def _check_dtype(source: Path, dtype: np.dtype) -> None:
    if dtype.hasobject:
        raise IngestError(source, "array holds Python objects (it would need unpickling); refusing to load")
    if dtype.kind not in "iuf":
        raise IngestError(source, f"array dtype {dtype} is not a plain integer or float type")


# --------------------------------------------------------------------------------------------------- npz


def _read_npz(source: Path, fs: float | None) -> ECGRecord:
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as error:
        raise IngestError(source, f"unreadable .npz archive: {error}") from error
    with archive:
        headers = {name: _member_header(source, archive, name) for name in _members(archive)}
        key = _signal_key(source, headers)
        side = {name: _small(source, archive, name, headers[name]) for name in headers if name != key}
        file_fs = _side_fs(source, side)
        rate = file_fs if file_fs is not None else fs
        shape, dtype = headers[key]
        _check_plan(source, shape, dtype, rate)
        with _open_member(source, archive, key) as handle:
            array = _read_array(source, handle, key)
    meta: dict[str, Any] = {"npz_key": key}
    if file_fs is not None and fs is not None and float(fs) != file_fs:
        meta["fs_argument_ignored"] = float(fs)
    return array_record(
        source,
        array,
        rate,
        source_format="npz",
        lead_labels=_side_strings(source, side, LEAD_KEYS),
        units=_side_units(source, side),
        meta=meta,
    )


def _members(archive: zipfile.ZipFile) -> list[str]:
    return [info.filename[:-4] for info in archive.infolist() if info.filename.endswith(".npy")]


@contextmanager
def _open_member(source: Path, archive: zipfile.ZipFile, name: str) -> Iterator[IO[bytes]]:
    """A fresh handle on one member, positioned at its start (compressed members cannot seek back)."""
    try:
        with archive.open(name + ".npy") as handle:
            yield handle
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise IngestError(source, f"unreadable .npz member: {error}", name) from error


def _member_header(source: Path, archive: zipfile.ZipFile, name: str) -> tuple[tuple[int, ...], np.dtype]:
    with _open_member(source, archive, name) as handle:
        return _array_header(source, handle, name)


def _signal_key(source: Path, headers: dict[str, tuple[tuple[int, ...], np.dtype]]) -> str:
    """The signal array: a conventional key, else the only array that is not metadata."""
    for key in SIGNAL_KEYS:
        if key in headers:
            return key
    metadata = {*FS_KEYS, *LEAD_KEYS, *UNIT_KEYS}
    candidates = [name for name in headers if name not in metadata]
    if len(candidates) == 1:
        return candidates[0]
    listed = ", ".join(sorted(headers)) or "(none)"
    raise IngestError(
        source, f"cannot tell which array is the signal among: {listed} (name it one of {SIGNAL_KEYS})"
    )


def _small(
    source: Path, archive: zipfile.ZipFile, name: str, header: tuple[tuple[int, ...], np.dtype]
) -> np.ndarray | None:
    """A metadata array (fs, leads, units), read only when it is small; other arrays are ignored."""
    shape, dtype = header
    if int(np.prod(shape, dtype=np.int64)) > _SMALL_ARRAY or dtype.hasobject:
        if name in {*FS_KEYS, *LEAD_KEYS, *UNIT_KEYS}:
            raise IngestError(source, f"metadata array {name!r} is not a small plain array", name)
        return None
    with _open_member(source, archive, name) as handle:
        return _read_array(source, handle, name)


def _side_fs(source: Path, side: dict[str, np.ndarray | None]) -> float | None:
    for key in FS_KEYS:
        value = side.get(key)
        if value is None:
            continue
        if value.size != 1 or value.dtype.kind not in "iuf":
            raise IngestError(source, f"{key!r} must be one number (the sample rate in Hz)", key)
        return check_sample_rate(source, float(value.reshape(-1)[0]), key)
    return None


def _side_strings(
    source: Path, side: dict[str, np.ndarray | None], keys: tuple[str, ...]
) -> list[str] | None:
    for key in keys:
        value = side.get(key)
        if value is None:
            continue
        if value.dtype.kind not in "US":
            raise IngestError(source, f"{key!r} must hold strings", key)
        items = value.reshape(-1).tolist()
        return [item.decode("ascii", "replace") if isinstance(item, bytes) else str(item) for item in items]
    return None


def _side_units(source: Path, side: dict[str, np.ndarray | None]) -> str:
    units = _side_strings(source, side, UNIT_KEYS)
    if not units:
        return "mV"
    if len(set(units)) != 1:
        raise IngestError(source, f"leads in different units {sorted(set(units))} are not supported", "units")
    return units[0]


# ------------------------------------------------------------------------------------------------ shared


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Drop size-1 axes beyond the two that matter, e.g. a batch axis of one: (1, 12, 5000) -> (12, 5000)."""
    kept = tuple(n for n in shape if n != 1)
    if len(kept) <= 1:
        return (int(np.prod(shape, dtype=np.int64)),) if shape else (1,)
    return kept


def _orientation(source: Path, shape: tuple[int, ...]) -> tuple[int, int, bool]:
    """(leads, samples, transpose) for an array shape; (samples, leads) is recognised by its few columns."""
    squeezed = _squeezed(shape)
    if len(squeezed) == 1:
        return 1, squeezed[0], False
    if len(squeezed) != 2:
        raise IngestError(source, f"array of shape {tuple(shape)} is not (leads, samples)")
    rows, cols = squeezed
    transpose = rows > cols and cols <= limits.MAX_LEADS
    n_leads, n_samples = (cols, rows) if transpose else (rows, cols)
    if n_leads > limits.MAX_LEADS:
        raise IngestError(
            source, f"array of shape {tuple(shape)} has {n_leads} rows, over {limits.MAX_LEADS} leads"
        )
    return n_leads, n_samples, transpose


def _require_fs(source: Path, fs: float | None) -> float:
    if fs is None:
        raise IngestError(source, "the file does not state its sample rate: pass fs (Hz)")
    return check_sample_rate(source, float(fs))


def _to_millivolts(source: Path, signal: np.ndarray, units: str) -> np.ndarray:
    scale = millivolts_per_unit(units)
    if scale is None:
        raise IngestError(source, f"unknown amplitude unit {units!r}", "units")
    return (np.asarray(signal, dtype=np.float64) * scale).astype(np.float32)


def _leads(source: Path, labels: list[str] | None, n_leads: int, meta: dict[str, Any]) -> tuple[str, ...]:
    """Names from the file, else assumed: ST-MEM order for 12 rows, lead I for one, lead0.. otherwise."""
    if labels is not None:
        if len(labels) != n_leads:
            raise IngestError(source, f"{len(labels)} lead names for {n_leads} signal rows", "leads")
        return lead_names(labels)
    meta["lead_assumed"] = True
    if n_leads == len(STMEM_LEADS):
        return STMEM_LEADS
    if n_leads == 1:
        return ("I",)
    return tuple(f"lead{i}" for i in range(n_leads))

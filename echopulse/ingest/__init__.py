"""Readers that turn ECG files into `ECGRecord`s.

`read_record(path)` picks the reader by content (`sniff_format`) and returns a validated record in mV,
or raises `IngestError` naming the file and the problem. `read_records(path)` also opens archives that
hold many recordings (the Health app's `export.zip`) and yields each.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path

from echopulse.ecg import BeatAnnotations, ECGRecord
from echopulse.errors import IngestError
from echopulse.ingest import limits
from echopulse.ingest.sniff import sniff_format
from echopulse.ingest.validate import check_file_size, check_record

__all__ = ["BeatAnnotations", "ECGRecord", "IngestError", "read_record", "read_records", "sniff_format"]

ARCHIVE_FORMATS = ("zip",)


_READERS: dict[str, tuple[str, str, bool]] = {
    # format: (module, function, whether it takes fs)
    "apple_watch_csv": ("apple_watch", "read_apple_watch_csv", False),
    "csv": ("csv_table", "read_csv", True),
    "wfdb": ("wfdb_record", "read_wfdb", False),
    "edf": ("edf", "read_edf", False),
    "bdf": ("edf", "read_edf", False),
    "npy": ("numpy_arrays", "read_numpy", True),
    "npz": ("numpy_arrays", "read_numpy", True),
    "pickle": ("safe_pickle", "read_pickle", True),
    "pdf": ("apple_watch_pdf", "read_apple_watch_pdf", False),
    "png": ("strip_image", "read_strip_image", True),
    "jpeg": ("strip_image", "read_strip_image", True),
}


def _reader(fmt: str) -> Callable[[Path, float | None], ECGRecord] | None:
    """The reader for `fmt`, imported on first use so `import echopulse.ingest` stays cheap for the
    streaming service and a format's optional libraries load only when such a file arrives."""
    if fmt not in _READERS:
        return None
    module_name, function_name, takes_fs = _READERS[fmt]
    function = getattr(importlib.import_module(f"echopulse.ingest.{module_name}"), function_name)
    return function if takes_fs else (lambda path, fs: function(path))


_EXPECTED = (OSError, ValueError, TypeError, KeyError, IndexError, UnicodeError, EOFError)


def read_record(path: str | Path, fs: float | None = None, fmt: str | None = None) -> ECGRecord:
    """Read any supported single-recording ECG file into a validated `ECGRecord`.

    `fs` is needed only by formats that do not state their rate (generic CSV without a time column,
    bare NumPy arrays, ST-MEM pickles); for strip images it is the rate to resample the trace to.
    `fmt` overrides sniffing.

    >>> record = read_record("ecg_2021-12-17.csv")  # doctest: +SKIP
    >>> record.fs, record.leads
    (513.625, ('I',))
    """
    source = check_file_size(Path(path))
    fmt = fmt or sniff_format(source)
    if fmt in ARCHIVE_FORMATS:
        raise IngestError(source, "is an archive of recordings: read it with read_records (or `ingest`)")
    reader = _reader(fmt)
    if reader is None:
        raise IngestError(source, f"not a supported ECG format (looks like {fmt})")
    try:
        record = reader(source, fs)
    except IngestError:
        raise
    except _EXPECTED as error:
        raise IngestError(source, f"unreadable as {fmt}: {error}") from error
    return check_record(source, record)


def read_records(path: str | Path, fs: float | None = None, fmt: str | None = None) -> Iterator[ECGRecord]:
    """Every recording in `path`: each ECG of a Health `export.zip`, or the one record of any other file.

    The archive is streamed member by member, never unpacked to disk; a broken archive raises
    `IngestError` before anything is yielded, a broken member when it is reached.
    """
    source = check_file_size(Path(path), limit=limits.MAX_ARCHIVE_BYTES)
    fmt = fmt or sniff_format(source)
    if fmt not in ARCHIVE_FORMATS:
        yield read_record(source, fs=fs, fmt=fmt)
        return
    from echopulse.ingest.health_export import iter_export_zip

    yield from iter_export_zip(source)

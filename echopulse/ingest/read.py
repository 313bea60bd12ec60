"""`read_record`: one ECG input (a path, bytes, or a binary file object) → a validated `ECGRecord` in mV.

The reader is picked by content (`sniff_format`) and imported on first use. Bytes and streams meet the same
size limit and the same refusals as files: they are sniffed on their head, read through the limit, and
handed to the path readers as a temporary file whose errors are relabelled with the input's name.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path

from echopulse.ecg import ECGRecord
from echopulse.errors import IngestError
from echopulse.ingest import limits
from echopulse.ingest.sniff import sniff_format
from echopulse.ingest.sources import Incoming, Source, relabelled, staged
from echopulse.ingest.validate import check_file_size, check_record

ARCHIVE_FORMATS = ("zip",)
"""Formats that hold many recordings: `read_records` / `iter_recordings` open them, `read_record` refuses."""

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

_EXPECTED = (OSError, ValueError, TypeError, KeyError, IndexError, UnicodeError, EOFError)

WFDB_NEEDS_PATH = "a WFDB record needs its .dat beside the .hea: pass the path of the .hea"


def read_record(
    source: Source, fs: float | None = None, fmt: str | None = None, *, name: str | None = None
) -> ECGRecord:
    """Read any supported single-recording ECG input into a validated `ECGRecord`.

    `source` is a path, `bytes`, or a binary file object (anything with `.read()`: an upload, a Beam
    `ReadableFile.open()`). `name` is the file name bytes or a stream came with: its extension helps
    sniffing, and errors name it (default: the file object's `.name`, else ``"<bytes>"``); for a path it
    only replaces the path in errors. `fs` is needed only by formats that do not state their rate (generic
    CSV without a time column, bare NumPy arrays, ST-MEM pickles); for strip images it is the rate to
    resample the trace to. `fmt` overrides sniffing.

    >>> record = read_record("ecg_2021-12-17.csv")  # doctest: +SKIP
    >>> record.fs, record.leads
    (513.625, ('I',))
    >>> read_record(upload.read(), name="ecg_2021-12-17.csv").fs  # doctest: +SKIP
    513.625
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if name is None:
            return read_path(path, fs, fmt)
        with relabelled(path, name):
            return read_path(path, fs, fmt)
    return read_incoming(Incoming(source, name), fs, fmt)


def read_path(path: Path, fs: float | None, fmt: str | None) -> ECGRecord:
    """One ECG file on disk; the path is what errors name."""
    source = check_file_size(path)
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


def read_incoming(incoming: Incoming, fs: float | None, fmt: str | None) -> ECGRecord:
    """Bytes or a stream: sniffed on its head and refused there when memory cannot hold it as a record,
    else read through the file-size limit and read like a file."""
    fmt = fmt or sniff_format(incoming.head(), incoming.name)
    refuse_in_memory(incoming.label, fmt)
    return read_bytes(incoming.read_all(limits.MAX_FILE_BYTES), incoming.label, fs, fmt)


def read_bytes(data: bytes, label: str, fs: float | None, fmt: str) -> ECGRecord:
    """Bytes already read (and size-checked) as a file named after `label`; errors name `label`."""
    refuse_in_memory(label, fmt)
    with staged(data, label) as path:
        return read_path(path, fs, fmt)


def refuse_in_memory(label: str, fmt: str) -> None:
    """Formats that bytes alone cannot hold: an archive (many records) or a WFDB record (several files)."""
    if fmt in ARCHIVE_FORMATS:
        raise IngestError(label, "is an archive of recordings: read it with read_records or iter_recordings")
    if fmt == "wfdb":
        raise IngestError(label, WFDB_NEEDS_PATH)


def _reader(fmt: str) -> Callable[[Path, float | None], ECGRecord] | None:
    """The reader for `fmt`, imported on first use so `import echopulse.ingest` stays cheap for the
    streaming service and a format's optional libraries load only when such a file arrives."""
    if fmt not in _READERS:
        return None
    module_name, function_name, takes_fs = _READERS[fmt]
    function = getattr(importlib.import_module(f"echopulse.ingest.{module_name}"), function_name)
    return function if takes_fs else (lambda path, fs: function(path))

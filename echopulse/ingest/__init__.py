"""Readers that turn ECG files into `ECGRecord`s.

`read_record(path)` picks the reader by content (`sniff_format`) and returns a validated record in mV,
or raises `IngestError` naming the file and the problem.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from echopulse.errors import IngestError
from echopulse.ingest.record import BeatAnnotations, ECGRecord
from echopulse.ingest.sniff import sniff_format
from echopulse.ingest.validate import check_file_size, check_record

__all__ = ["BeatAnnotations", "ECGRecord", "IngestError", "read_record", "sniff_format"]


def _readers() -> dict[str, Callable[..., ECGRecord]]:
    # Imported here so that `import echopulse.ingest` stays cheap for the streaming service.
    from echopulse.ingest.apple_watch import read_apple_watch_csv
    from echopulse.ingest.csv_table import read_csv
    from echopulse.ingest.edf import read_edf
    from echopulse.ingest.numpy_arrays import read_numpy
    from echopulse.ingest.safe_pickle import read_pickle
    from echopulse.ingest.wfdb_record import read_wfdb

    return {
        "apple_watch_csv": lambda path, fs: read_apple_watch_csv(path),
        "csv": read_csv,
        "wfdb": lambda path, fs: read_wfdb(path),
        "edf": lambda path, fs: read_edf(path),
        "bdf": lambda path, fs: read_edf(path),
        "npy": read_numpy,
        "npz": read_numpy,
        "pickle": read_pickle,
    }


def read_record(path: str | Path, fs: float | None = None, fmt: str | None = None) -> ECGRecord:
    """Read any supported ECG file into a validated `ECGRecord`.

    `fs` is needed only by formats that do not state their rate (generic CSV without a time column,
    bare NumPy arrays, ST-MEM pickles). `fmt` overrides sniffing.

    >>> record = read_record("ecg_2021-12-17.csv")  # doctest: +SKIP
    >>> record.fs, record.leads
    (513.625, ('I',))
    """
    source = check_file_size(Path(path))
    fmt = fmt or sniff_format(source)
    reader = _readers().get(fmt)
    if reader is None:
        raise IngestError(source, f"not a supported ECG format (looks like {fmt})")
    try:
        record = reader(source, fs)
    except IngestError:
        raise
    except (OSError, ValueError, TypeError, KeyError, IndexError, UnicodeError, EOFError) as error:
        raise IngestError(source, f"unreadable as {fmt}: {error}") from error
    return check_record(source, record)

"""From the command's INPUT arguments to one element per input to read, and each input to its records.

Matching goes through Beam's `FileSystems`, so `gs://` or `s3://` globs work wherever their extra is
installed. A WFDB record is several files (`.hea`, `.dat`, annotations): a glob that matches them all reads
the record once, through its `.hea`. A reader that needs a local path gets one: files on the local disk are
read in place, others are streamed (a Health export.zip is spooled, a WFDB record copied with its
companions into a temporary folder).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import PurePosixPath
from typing import Any

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from echopulse.batch.elements import InputFailure, ReadRecord
from echopulse.errors import EchopulseError, one_line

SINGLE_FILE_SUFFIXES = frozenset(
    {".csv", ".txt", ".zip", ".edf", ".bdf", ".pdf", ".png", ".jpg", ".jpeg", ".npy", ".npz", ".pkl",
     ".pickle", ".json"}
)
"""Files that are whole inputs on their own; anything else beside a `.hea` of the same stem is one of its
record's companions (signal files such as `.dat` or `.xyz`, annotations such as `.atr`)."""

DEFAULT_READ_TIMEOUT_S = 600.0


def input_patterns(inputs: Sequence[str]) -> list[str]:
    """Each INPUT as a pattern: a folder becomes every file below it (`folder/**`), a file or glob stays."""
    patterns = []
    for text in inputs:
        local = FileSystems.get_scheme(text) is None
        if (local and os.path.isdir(text)) or (not local and text.endswith("/")):
            patterns.append(FileSystems.join(text.rstrip("/") or "/", "**"))
        else:
            patterns.append(text)
    return patterns


def match_pattern(pattern: str, skip_below: str | None = None) -> Iterator[str | InputFailure]:
    """The files `pattern` matches, in name order, or one failure saying why there are none. Files below
    `skip_below` (the run's own output folder, when it lies inside an input folder) are not inputs."""
    try:
        found = FileSystems.match([pattern])[0].metadata_list
    except Exception as error:  # a filesystem's own errors: no such bucket, no credentials, bad scheme
        yield InputFailure(pattern, f"{pattern}: cannot list ({one_line(error)})", stage="match")
        return
    inside = None
    if skip_below:
        local = FileSystems.get_scheme(skip_below) is None
        inside = os.path.join(os.path.abspath(skip_below), "") if local else skip_below.rstrip("/") + "/"
    paths = sorted(m.path for m in found if not _is_folder(m.path) and not _below(m.path, inside))
    if not paths:
        yield InputFailure(pattern, f"{pattern}: no file matches", stage="match")
    yield from paths


def is_read_elsewhere(path: str) -> bool:
    """True for files that are not inputs of their own: hidden files (`.DS_Store`, editors' swap files) and
    the companions of a WFDB record, read through its `.hea`."""
    name = PurePosixPath(path.replace("\\", "/")).name
    if name.startswith("."):
        return True
    suffix = PurePosixPath(name).suffix.lower()
    if suffix == ".hea" or suffix in SINGLE_FILE_SUFFIXES:
        return False
    stem = path[: len(path) - len(suffix)] if suffix else path
    return FileSystems.exists(stem + ".hea")


def read_input(path: str, fs: float | None, timeout_s: float = DEFAULT_READ_TIMEOUT_S) -> list[Any]:
    """Every record of one input as `ReadRecord`s, and every refusal as an `InputFailure`; never raises.

    The reader runs on a thread of its own so that an input that hangs (a stalled mount, a FIFO, a reader
    caught in a pathological file) is given up after `timeout_s` and reported, not waited on for ever. A
    reader that raises something unexpected is reported with the exception's type: a bug of ours must not
    stop the archive's other inputs.
    """
    outcome: list[Any] = []

    def work() -> None:
        try:
            outcome.append(_read(path, fs))
        except BaseException as error:  # handed to the caller's thread, which decides what it means
            outcome.append(error)

    worker = threading.Thread(target=work, name=f"read {PurePosixPath(path).name}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        return [InputFailure(path, f"{path}: reading took longer than {timeout_s:g} s, given up")]
    result = outcome[0]
    if isinstance(result, EchopulseError):
        return [InputFailure(path, one_line(result))]
    if isinstance(result, Exception):
        return [InputFailure(path, f"{path}: reader failed ({type(result).__name__}: {one_line(result)})")]
    if isinstance(result, BaseException):
        raise result
    return result


def _read(path: str, fs: float | None) -> list[ReadRecord | InputFailure]:
    from echopulse.ingest import iter_recordings

    name = PurePosixPath(path).name
    items: list[ReadRecord | InputFailure] = []
    with _readable(path) as source:
        for recording in iter_recordings(source, fs=fs, name=name if not isinstance(source, str) else None):
            label = recording.label if recording.in_archive else None
            if recording.error is not None or recording.record is None:
                items.append(InputFailure(path, one_line(recording.error), recording=label))
                continue
            record = recording.record
            items.append(ReadRecord(record.content_hash(), record, (path, label or "")))
    return items


@contextmanager
def _readable(path: str) -> Iterator[Any]:
    """A local path as it is; a WFDB header elsewhere as a local copy of its record's files; any other
    remote file as a stream (readers spool what they must)."""
    if FileSystems.get_scheme(path) is None:
        yield path
        return
    if path.lower().endswith(".hea"):
        folder = tempfile.mkdtemp(prefix="echopulse-wfdb-")
        try:
            stem = path[: -len(".hea")]
            for metadata in FileSystems.match([stem + ".*"])[0].metadata_list:
                local = os.path.join(folder, FileSystems.split(metadata.path)[1])
                raw = CompressionTypes.UNCOMPRESSED
                with FileSystems.open(metadata.path, compression_type=raw) as src, open(local, "wb") as out:
                    shutil.copyfileobj(src, out)
            yield os.path.join(folder, FileSystems.split(path)[1])
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as stream:
        yield stream


def _below(path: str, folder: str | None) -> bool:
    if folder is None:
        return False
    if FileSystems.get_scheme(path) is None:
        return os.path.abspath(path).startswith(folder)
    return path.startswith(folder)


def _is_folder(path: str) -> bool:
    return FileSystems.get_scheme(path) is None and os.path.isdir(path)

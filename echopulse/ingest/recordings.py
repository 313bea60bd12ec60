"""Every recording of an input, each read or refused on its own.

An input is one ECG file (one recording) or a Health `export.zip` (one per ECG member). A caller that turns
recordings into outputs must not lose the archive's sound ECGs to one broken member, so `iter_recordings`
reports a refused member as a `Recording` with its error and goes on; `read_records` is the strict form that
stops at the first refusal. Only what concerns the input as a whole raises: a missing or oversize file, or
an archive whose directory fails the checks in `health_export`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path, PurePath

from echopulse.ecg import ECGRecord
from echopulse.errors import IngestError
from echopulse.ingest import limits
from echopulse.ingest.health_export import HealthExport, open_export_zip
from echopulse.ingest.read import ARCHIVE_FORMATS, read_bytes, read_record
from echopulse.ingest.sniff import sniff_format
from echopulse.ingest.sources import Incoming, Source, relabelled
from echopulse.ingest.validate import check_file_size


@dataclass(frozen=True)
class Recording:
    """One recording of an input, read or refused: exactly one of `record` and `error` is set.

    `label` is what outputs and messages call it: the file name, or `<zip name>:<member>` for an ECG inside
    an archive (a date, never the person's name).
    """

    label: str
    in_archive: bool
    record: ECGRecord | None = None
    error: IngestError | None = None


def iter_recordings(
    source: Source, fs: float | None = None, fmt: str | None = None, *, name: str | None = None
) -> Iterator[Recording]:
    """The recordings of `source` (a path, bytes or a binary file object; `name` as for `read_record`).

    The input as a whole is checked on the first `next()`, before anything is yielded: a missing, empty or
    oversize input, or an archive whose directory fails the checks, raises `IngestError` there. After that
    nothing raises: a recording that cannot be read comes as a `Recording` with `error` set, and an archive's
    next member is read only when asked for, one at a time.

    >>> for recording in iter_recordings("export.zip"):  # doctest: +SKIP
    ...     print(recording.label, recording.error or recording.record.fs)
    export.zip:ecg_2021-12-17.csv 513.625
    export.zip:ecg_2022-06-30.csv export.zip:ecg_2022-06-30.csv: text in a sample line: … (line 20)
    """
    if isinstance(source, str | os.PathLike):
        yield from _path_recordings(Path(source), fs, fmt, name)
    else:
        yield from _incoming_recordings(Incoming(source, name), fs, fmt)


def read_records(
    source: Source, fs: float | None = None, fmt: str | None = None, *, name: str | None = None
) -> Iterator[ECGRecord]:
    """Every record of `source`, strictly: the first refused recording raises its `IngestError`.

    A broken archive raises before anything is yielded, a broken member when it is reached (after the
    members before it were yielded). To go on past a broken member, use `iter_recordings`.
    """
    for recording in iter_recordings(source, fs, fmt, name=name):
        if recording.error is not None:
            raise recording.error
        assert recording.record is not None
        yield recording.record


def _path_recordings(path: Path, fs: float | None, fmt: str | None, name: str | None) -> Iterator[Recording]:
    """A file on disk: checked and sniffed first, so that a missing, empty or oversize file raises."""
    with relabelled(path, name) if name is not None else nullcontext():
        check_file_size(path, limit=limits.MAX_ARCHIVE_BYTES)
        fmt = fmt or sniff_format(path)
        if fmt not in ARCHIVE_FORMATS:
            check_file_size(path)
    if fmt in ARCHIVE_FORMATS:
        with open_export_zip(path, name) as export:
            yield from _members(export)
        return
    label = PurePath(name).name if name is not None else path.name
    yield _one(label, lambda: read_record(path, fs, fmt, name=name))


def _incoming_recordings(incoming: Incoming, fs: float | None, fmt: str | None) -> Iterator[Recording]:
    """Bytes or a stream: an archive is opened in place (or spooled), anything else read under the limit."""
    fmt = fmt or sniff_format(incoming.head(), incoming.name)
    if fmt in ARCHIVE_FORMATS:
        with (
            incoming.seekable(limits.MAX_ARCHIVE_BYTES) as archive,
            open_export_zip(archive, incoming.label) as export,
        ):
            yield from _members(export)
        return
    data = incoming.read_all(limits.MAX_FILE_BYTES)
    yield _one(PurePath(incoming.label).name, lambda: read_bytes(data, incoming.label, fs, fmt))


def _members(export: HealthExport) -> Iterator[Recording]:
    """Each ECG member, read when the caller asks for it; a refusal is reported, not raised."""
    for member in export.members:
        label = export.label(member)
        try:
            recording = Recording(label, in_archive=True, record=export.read(member))
        except IngestError as error:
            recording = Recording(label, in_archive=True, error=error)
        yield recording


def _one(label: str, read: Callable[[], ECGRecord]) -> Recording:
    """The single recording of a plain file: its record, or the refusal."""
    try:
        return Recording(label, in_archive=False, record=read())
    except IngestError as error:
        return Recording(label, in_archive=False, error=error)

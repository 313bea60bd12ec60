"""The Health app's `export.zip` → one `ECGRecord` per ECG, streamed from the archive.

An export holds `apple_health_export/export.xml` (everything Health knows: hundreds of MB for a long-time
user, birth date included), `export_cda.xml`, `workout-routes/*.gpx` and one
`electrocardiograms/ecg_<date>.csv` per ECG taken on the Watch. Only those ECG members are ever read; every
other member is listed but never opened, so the XML with the person's details never reaches memory.

Nothing is unpacked to disk. Before anything is read the whole archive is checked, and any of these refuses
it as a whole (`IngestError` naming the zip, nothing yielded):

- more than `MAX_MEMBERS` members, or a central directory over `MAX_DIRECTORY_BYTES`, both taken from the
  end record *before* `zipfile` parses the directory (it builds an object per entry, so a directory of
  millions of tiny entries would exhaust memory before a count taken afterwards could refuse it);
- a name that is absolute (`/etc/…`, `C:/…`, either slash) or climbs out with `..`, in any member: an
  archive built to escape a folder is hostile even though nothing here extracts it;
- the same name twice, or members whose data overlap (the "overlapping files" bomb, which makes many
  members out of one compressed stream);
- for ECG members: encryption, a compression other than stored or deflate (bzip2 and LZMA cannot be
  decompressed in bounded steps by `zipfile`), a declared ratio over `MAX_COMPRESSION_RATIO` (a zip bomb;
  real ECG exports compress about 3:1), a declared size over `MAX_ECG_MEMBER_BYTES` (a 30-s ECG is
  ~120 KB), or ECG members declaring more than `MAX_ECG_TOTAL_BYTES` together.

Non-ECG members' sizes are not limited: they are never read, and a real export.xml can be gigabytes.
(The archive itself, a path, bytes or an upload, still meets `limits.MAX_ARCHIVE_BYTES` before it gets here.)

Headers can lie, so each ECG member is then read in blocks through a cap: `zipfile` stops at the declared
size (and reports the CRC mismatch that follows), and reading stops anyway past `MAX_ECG_MEMBER_BYTES`.
Memory stays bounded by one member whatever the archive claims. A member that fails to read or parse raises
`IngestError` naming `<zip name>:<member>` when it is reached; `HealthExport.read` lets a caller go on with
the next member, which is what `recordings.iter_recordings` does.
"""

from __future__ import annotations

import os
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path, PurePath, PurePosixPath
from types import TracebackType
from typing import IO, BinaryIO

from echopulse.ecg import ECGRecord
from echopulse.errors import IngestError
from echopulse.ingest.apple_watch import parse_apple_watch_csv
from echopulse.ingest.sources import UNNAMED
from echopulse.ingest.text_decoding import decode_text
from echopulse.ingest.validate import check_record

MAX_MEMBERS = 10_000
"""Members in one archive. A real export holds two XML files, one CSV per ECG and one GPX per outdoor
workout: hundreds to a few thousand."""

MAX_DIRECTORY_BYTES = 4 * 2**20
"""Size of the central directory. Real entries take 100–200 bytes (10,000 of them ~1.5 MB); `zipfile` spends
about 500 bytes of memory per entry, so this bounds its directory to ~50 MB even for minimal entries."""

MAX_ECG_MEMBER_BYTES = 8 * 2**20
"""Uncompressed size of one ECG member: a 30-s export is ~120 KB, so this allows for 30 minutes at 512 Hz."""

MAX_ECG_TOTAL_BYTES = 2**30
"""Uncompressed size of all ECG members together (some 8,000 ECGs): bounds the time a crafted archive of
many maximal members can take."""

MAX_COMPRESSION_RATIO = 200
"""Declared uncompressed ÷ compressed size above which an ECG member is a zip bomb; real ones are ~3."""

RATIO_CHECKED_FROM_BYTES = 64 * 2**10
"""Members declaring less than this are not ratio-checked: any tiny file compresses well, and harms nobody."""

ECG_MEMBER = re.compile(r"(?:^|/)electrocardiograms/ecg_[^/]*\.csv$", re.IGNORECASE)
"""An ECG export's name inside the archive (`apple_health_export/electrocardiograms/ecg_2021-12-17.csv`)."""

_ACCEPTED_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_READ_BLOCK = 64 * 2**10
_LOCAL_HEADER_BYTES = 30
_RESOURCE_FORKS = "__MACOSX/"
"""Finder adds `__MACOSX/…/._name` AppleDouble files when a user re-zips an unpacked export."""

_END_RECORD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_END_RECORD = struct.Struct("<4sQ2H2L4Q")
_MAX_COMMENT = 0xFFFF
_DRIVE = re.compile(r"^[A-Za-z]:")
_SHOWN_NAME_CHARS = 60

_READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    RuntimeError,
    NotImplementedError,
)
"""What `zipfile` raises for a corrupt member: bad CRC or header magic, broken deflate data, cut data."""
_OPEN_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, struct.error)


def iter_export_zip(source: str | Path | IO[bytes], name: str | None = None) -> Iterator[ECGRecord]:
    """Every ECG of a Health `export.zip`, in archive order, each validated like any other record.

    The archive is checked as a whole before the first record (see the module docstring); a broken member
    raises when it is reached, after the members before it were yielded.

    >>> [r.meta["archive_member"] for r in iter_export_zip("export.zip")]  # doctest: +SKIP
    ['ecg_2021-12-17.csv', 'ecg_2023-09-26.csv']
    """
    with open_export_zip(source, name) as export:
        for member in export.members:
            yield export.read(member)


def open_export_zip(source: str | Path | IO[bytes], name: str | None = None) -> HealthExport:
    """Open and check an export, without reading any member: the way to go on past a broken member."""
    return HealthExport(Path(source) if isinstance(source, str | os.PathLike) else source, name)


class HealthExport:
    """An open `export.zip` whose directory passed every check; `members` are its ECG members' names.

    `source` is the archive's path, or a seekable binary file holding it (an upload; it is left open, its
    owner closes it). `name` is what errors call the archive: by default the path as given. Use as a context
    manager (or call `close`). `read(member)` reads one ECG; its errors concern that member only, so a caller
    can report it and read the next.
    """

    def __init__(self, source: Path | IO[bytes], name: str | None = None) -> None:
        self.name = name or (str(source) if isinstance(source, Path) else UNNAMED)
        self.file_name = PurePath(self.name).name
        try:
            if isinstance(source, Path):
                with source.open("rb") as handle:
                    _check_end_record(self.name, handle)
            else:
                start = source.tell()
                _check_end_record(self.name, source)
                source.seek(start)
            self._zip = zipfile.ZipFile(source)
        except _OPEN_ERRORS as error:
            problem = f"not a readable zip archive (truncated or corrupt): {error}"
            raise IngestError(self.name, problem) from None
        try:
            self._infos = _checked_ecg_members(self.name, self._zip.infolist())
        except BaseException:
            self._zip.close()
            raise
        self.members: tuple[str, ...] = tuple(self._infos)

    def label(self, member: str) -> str:
        """`<zip name>:<member basename>`: what errors and outputs call a member (a date, never a name)."""
        return f"{self.file_name}:{_basename(member)}"

    def read(self, member: str) -> ECGRecord:
        """One ECG member as a validated record, `meta["archive_member"]` set to its basename."""
        label = self.label(member)
        text = decode_text(_read_capped(self._zip, self._infos[member], label), label)
        try:
            record = parse_apple_watch_csv(text, label)
        except (ValueError, TypeError, KeyError, IndexError) as error:
            raise IngestError(label, f"unreadable as apple_watch_csv: {error}") from None
        record.meta["archive_member"] = _basename(member)
        return check_record(label, record)

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> HealthExport:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


# ---------------------------------------------------------------------------------- before zipfile parses


def _check_end_record(path: str | Path, handle: BinaryIO) -> None:
    """Refuse by the end record's own numbers: too many entries, or a directory too large to parse."""
    entries, directory_bytes = _declared_directory(path, handle)
    if entries > MAX_MEMBERS:
        raise IngestError(path, f"{entries} members, over the {MAX_MEMBERS} limit for a Health export")
    if directory_bytes > MAX_DIRECTORY_BYTES:
        raise IngestError(
            path,
            f"central directory of {directory_bytes / 2**20:.1f} MiB, over the "
            f"{MAX_DIRECTORY_BYTES // 2**20} MiB limit",
        )


def _declared_directory(path: str | Path, handle: BinaryIO) -> tuple[int, int]:
    """(entries, directory bytes) from the end-of-central-directory record, or its ZIP64 version."""
    size = handle.seek(0, 2)
    tail_start = max(0, size - _END_RECORD.size - _MAX_COMMENT)
    handle.seek(tail_start)
    tail = handle.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _END_RECORD.size:
        raise IngestError(path, "not a complete zip archive: its directory is missing (truncated?)")
    fields = _END_RECORD.unpack_from(tail, at)
    entries, directory_bytes, directory_offset = fields[4], fields[5], fields[6]
    if entries != 0xFFFF and 0xFFFFFFFF not in (directory_bytes, directory_offset):
        return entries, directory_bytes
    return _declared_zip64_directory(handle, tail_start + at) or (entries, directory_bytes)


def _declared_zip64_directory(handle: BinaryIO, end_record_at: int) -> tuple[int, int] | None:
    """The ZIP64 end record's counts, found through the locator just before the classic end record."""
    if end_record_at < _ZIP64_LOCATOR.size:
        return None
    handle.seek(end_record_at - _ZIP64_LOCATOR.size)
    signature, _, record_at, _ = _ZIP64_LOCATOR.unpack(handle.read(_ZIP64_LOCATOR.size))
    if signature != b"PK\x06\x07":
        return None
    handle.seek(record_at)
    raw = handle.read(_ZIP64_END_RECORD.size)
    if len(raw) < _ZIP64_END_RECORD.size or not raw.startswith(b"PK\x06\x06"):
        return None
    fields = _ZIP64_END_RECORD.unpack(raw)
    return fields[7], fields[8]


# ----------------------------------------------------------------------------------- the parsed directory


def _checked_ecg_members(path: str | Path, infos: list[zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
    """Check every member's name and layout and every ECG member's declared sizes; return the ECG members."""
    if len(infos) > MAX_MEMBERS:
        raise IngestError(path, f"{len(infos)} members, over the {MAX_MEMBERS} limit for a Health export")
    if not infos:
        raise IngestError(path, "empty archive: no members at all")
    for info in infos:
        _check_name(path, info.filename)
    _check_unique_names(path, infos)
    _check_no_overlap(path, infos)
    ecg = {info.filename: info for info in infos if _is_ecg_member(info)}
    if not ecg:
        raise IngestError(path, "no ECG recordings (electrocardiograms/ecg_*.csv) in the archive")
    for info in ecg.values():
        _check_ecg_member(path, info)
    total = sum(info.file_size for info in ecg.values())
    if total > MAX_ECG_TOTAL_BYTES:
        raise IngestError(
            path,
            f"ECG members unpack to {total / 2**20:.0f} MiB together, over the "
            f"{MAX_ECG_TOTAL_BYTES // 2**20} MiB limit",
        )
    return ecg


def _check_name(path: str | Path, name: str) -> None:
    """Refuse absolute names and `..` segments (either slash counts: Windows tools write backslashes)."""
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or _DRIVE.match(normalised):
        raise IngestError(path, f"member {_shown(name)} has an absolute path")
    if ".." in normalised.split("/"):
        raise IngestError(path, f"member {_shown(name)} climbs out of the archive with '..'")


def _check_unique_names(path: str | Path, infos: list[zipfile.ZipInfo]) -> None:
    seen: set[str] = set()
    for info in infos:
        if info.filename in seen:
            raise IngestError(path, f"member {_shown(info.filename)} appears twice")
        seen.add(info.filename)


def _check_no_overlap(path: str | Path, infos: list[zipfile.ZipInfo]) -> None:
    """Each member's data must end before the next member's header starts, as in any archive a tool wrote.

    The local header is at least 30 bytes plus the name, so this bound is safe for every honest archive.
    """
    ordered = sorted(infos, key=lambda info: info.header_offset)
    for current, following in pairwise(ordered):
        end = current.header_offset + _LOCAL_HEADER_BYTES + len(current.orig_filename) + current.compress_size
        if following.header_offset < end:
            raise IngestError(
                path,
                f"members {_shown(current.filename)} and {_shown(following.filename)} overlap "
                "(a crafted archive)",
            )


def _is_ecg_member(info: zipfile.ZipInfo) -> bool:
    name = info.filename.replace("\\", "/")
    return not info.is_dir() and not name.startswith(_RESOURCE_FORKS) and bool(ECG_MEMBER.search(name))


def _check_ecg_member(path: str | Path, info: zipfile.ZipInfo) -> None:
    """What the directory says about an ECG member: readable, not a bomb, not too large."""
    shown = _shown(info.filename)
    if info.flag_bits & 0x1:
        raise IngestError(path, f"member {shown} is encrypted")
    if info.compress_type not in _ACCEPTED_METHODS:
        raise IngestError(
            path, f"member {shown} uses compression method {info.compress_type} (only stored or deflate)"
        )
    if info.file_size > RATIO_CHECKED_FROM_BYTES and info.file_size > MAX_COMPRESSION_RATIO * max(
        info.compress_size, 1
    ):
        ratio = info.file_size / max(info.compress_size, 1)
        raise IngestError(
            path,
            f"member {shown} unpacks {ratio:.0f}:1 to {info.file_size / 2**20:.0f} MiB: a zip bomb "
            f"(the limit is {MAX_COMPRESSION_RATIO}:1)",
        )
    if info.file_size > MAX_ECG_MEMBER_BYTES:
        raise IngestError(
            path,
            f"member {shown} unpacks to {info.file_size / 2**20:.0f} MiB, over the "
            f"{MAX_ECG_MEMBER_BYTES // 2**20} MiB limit for an ECG export",
        )


# ------------------------------------------------------------------------------------------- one member


def _read_capped(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str) -> bytes:
    """The member's bytes, read in blocks and refused past `MAX_ECG_MEMBER_BYTES` whatever its header says."""
    blocks: list[bytes] = []
    total = 0
    try:
        with archive.open(info) as stream:
            while block := stream.read(_READ_BLOCK):
                total += len(block)
                if total > MAX_ECG_MEMBER_BYTES:
                    raise IngestError(
                        label, f"unpacks past the {MAX_ECG_MEMBER_BYTES // 2**20} MiB limit for an ECG export"
                    )
                blocks.append(block)
    except _READ_ERRORS as error:
        raise IngestError(label, f"corrupt archive member: {error}") from None
    return b"".join(blocks)


def _basename(member: str) -> str:
    return PurePosixPath(member.replace("\\", "/")).name


def _shown(name: str) -> str:
    """A member name as an error quotes it: one line, at most `_SHOWN_NAME_CHARS` characters."""
    text = name if len(name) <= _SHOWN_NAME_CHARS else name[: _SHOWN_NAME_CHARS - 1] + "…"
    return repr(text)

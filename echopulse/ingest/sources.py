"""What an ECG input can be: a path, bytes in memory, or a binary file object (an upload, the file an Apache
Beam `ReadableFile.open()` returns), and how the last two are read without trusting their size.

A stream is read from the front: first its head, for sniffing, then the rest through the size limit, never
more than limit + 1 bytes, so an endless or huge upload costs at most one limit's worth of memory. Readers
that need a path get the bytes as a file in a fresh temporary directory, and every error they raise is
relabelled with the input's name: a temporary path means nothing to the person who sent the bytes.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import IO, Protocol, cast

from echopulse.errors import IngestError
from echopulse.ingest.sniff import HEAD_BYTES
from echopulse.ingest.validate import check_size

UNNAMED = "<bytes>"
"""What errors call bytes or a stream that came without a name."""

_BLOCK = 1 << 20
_SPOOL_IN_MEMORY = 64 * 2**20
"""An archive on a stream that cannot seek is copied to a spool file; this much of it stays in memory."""
_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


class BinaryReadable(Protocol):
    """Anything with `read(size)` returning bytes: an open file, an upload, `io.BytesIO`."""

    def read(self, size: int = -1, /) -> bytes: ...


BytesLike = bytes | bytearray | memoryview
Source = str | os.PathLike[str] | BytesLike | BinaryReadable
"""A path, bytes, or a binary file object."""


def stream_name(source: object) -> str | None:
    """A file object's own `.name` when it has a textual one (an open file's path), else None."""
    name = getattr(source, "name", None)
    return name if isinstance(name, str) and name else None


class Incoming:
    """Bytes or a binary stream that is not a path: its head for sniffing, then all of it under a limit.

    `name` is the file name the input came with (None when unknown): sniffing uses its extension.
    `label` is what errors call the input: the name, or `UNNAMED`.
    """

    def __init__(self, source: BytesLike | BinaryReadable, name: str | None = None) -> None:
        self.name = name or stream_name(source)
        self.label = self.name or UNNAMED
        if isinstance(source, BytesLike):
            self._data: bytes | None = bytes(source)
            self._stream: BinaryReadable | None = None
            self._start: int | None = None
        elif callable(getattr(source, "read", None)):
            self._data, self._stream, self._start = None, source, _position(source)
        else:
            kind = type(source).__name__
            raise IngestError(self.label, f"not a path, bytes or a binary file object: {kind}")
        self._head: bytes | None = None

    def head(self) -> bytes:
        """The first `HEAD_BYTES` (fewer when the input is shorter)."""
        if self._data is not None:
            return self._data[:HEAD_BYTES]
        if self._head is None:
            self._head = self._read(HEAD_BYTES)
        return self._head

    def read_all(self, limit: int) -> bytes:
        """Every byte, refused when empty or over `limit`: at most `limit` + 1 bytes are ever read."""
        if self._data is not None:
            check_size(self.label, len(self._data), limit)
            return self._data
        head = self.head()
        data = head + self._read(max(0, limit + 1 - len(head)))
        check_size(self.label, len(data), limit, more=len(data) > limit)
        return data

    @contextmanager
    def seekable(self, limit: int) -> Iterator[IO[bytes]]:
        """The whole input as a seekable binary file (what `zipfile` needs), refused when over `limit`.

        Bytes are wrapped, a seekable stream is used in place, and any other stream is copied into a spool
        file (in memory up to `_SPOOL_IN_MEMORY`, then on disk), never past `limit` + 1 bytes.
        """
        if self._data is not None:
            check_size(self.label, len(self._data), limit)
            yield io.BytesIO(self._data)
            return
        if self._start is not None:
            yield self._rewound(limit)
            return
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
            spool.write(self.head())
            copied = len(self.head())
            while copied <= limit and (block := self._read(min(_BLOCK, limit + 1 - copied))):
                spool.write(block)
                copied += len(block)
            check_size(self.label, copied, limit, more=copied > limit)
            spool.seek(0)
            yield spool

    def _rewound(self, limit: int) -> IO[bytes]:
        """The seekable stream back at where it started, after checking the size left from there."""
        stream = cast(IO[bytes], self._stream)
        start = self._start or 0
        try:
            size = stream.seek(0, io.SEEK_END) - start
            stream.seek(start)
        except (OSError, ValueError) as error:
            raise IngestError(self.label, f"cannot seek in the stream: {error}") from None
        check_size(self.label, size, limit)
        return stream

    def _read(self, count: int) -> bytes:
        """Up to `count` bytes from the stream; short reads (sockets, uploads) are continued until EOF."""
        assert self._stream is not None
        blocks: list[bytes] = []
        total = 0
        while total < count:
            try:
                block = self._stream.read(min(_BLOCK, count - total))
            except (OSError, ValueError) as error:
                raise IngestError(self.label, f"the stream could not be read: {error}") from None
            if not isinstance(block, bytes | bytearray):
                raise IngestError(self.label, "the file object gives text: open it in binary mode ('rb')")
            if not block:
                break
            blocks.append(bytes(block))
            total += len(block)
        return b"".join(blocks)


def _position(stream: object) -> int | None:
    """Where a seekable stream stands now (its input starts there), or None when it cannot seek."""
    if not _can_seek(stream):
        return None
    try:
        return int(cast(IO[bytes], stream).tell())
    except (OSError, ValueError, AttributeError):
        return None


def _can_seek(stream: object) -> bool:
    seekable = getattr(stream, "seekable", None)
    try:
        return bool(callable(seekable) and seekable())
    except (OSError, ValueError):
        return False


@contextmanager
def staged(data: bytes, label: str) -> Iterator[Path]:
    """`data` as a file for readers that need a path, removed afterwards; errors name `label`.

    The file is `input<ext>` in a fresh private directory, `<ext>` being `label`'s extension when it looks
    like one (readers tell `.npz` from `.zip` and `.edf` from `.bdf` by it).
    """
    suffix = PurePath(label).suffix
    suffix = suffix if _SUFFIX.match(suffix) else ""
    with tempfile.TemporaryDirectory(prefix="echopulse-") as directory:
        path = Path(directory) / f"input{suffix}"
        path.write_bytes(data)
        with relabelled(path, label):
            yield path


@contextmanager
def relabelled(path: Path, label: str) -> Iterator[None]:
    """Re-raise an `IngestError` from reading `path` as one about `label`, the path gone from its text."""
    try:
        yield
    except IngestError as error:
        problem, where = (_without(text, path, label) for text in (error.problem, error.where))
        raise IngestError(label, problem or "", where) from None


def _without(text: str | None, path: Path, label: str) -> str | None:
    return None if text is None else text.replace(str(path), label)

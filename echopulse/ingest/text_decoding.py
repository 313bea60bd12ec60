"""Bytes → text by the one set of rules every text reader follows (tables, Health exports, archive members).

It sits in a module of its own because both the generic table reader and the Apple Watch reader need it, and
the table reader hands Apple exports over to the Apple reader: were decoding in either of them, the two would
import each other.
"""

from __future__ import annotations

from pathlib import Path

from echopulse.errors import IngestError


def read_text(path: Path) -> str:
    """The whole file as text, decoded by `decode_text`."""
    return decode_text(path.read_bytes(), path)


def decode_text(raw: bytes, source: str | Path) -> str:
    """`raw` as text: UTF-8 (with or without BOM), or UTF-16 when it starts with a BOM (Excel).

    Anything else is refused rather than guessed as Latin-1, which would turn `µV` into `Âµ` or worse, and so
    is a NUL character, which parsers would silently cut a value at. The errors name the line but never
    quote the bytes: they may belong to a name on an export's first line. Files and archive members (bytes
    that never touch the disk) are decoded by this one function, so both follow the same rules.
    """
    encoding = "utf-16" if raw.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    bad_at = None
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as error:
        bad_at = error.start
    if bad_at is not None:
        # Raised here, not in the except block, so the decode error (holding the raw bytes) is not attached.
        line = raw.count(b"\n", 0, bad_at) + 1
        raise IngestError(source, "not UTF-8 text", f"line {line}")
    nul = text.find("\x00")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        raise IngestError(source, "NUL character in the text (a corrupted file?)", f"line {line}")
    return text

"""Which reader an input needs: content first, extension second.

Extensions lie (a Health export renamed `.txt`, a WFDB header without `.hea`), so each format is
recognised by what its first bytes look like; the extension only breaks ties between text formats. The
same rules serve files on disk and bytes that never were a file (an upload): `sniff_head` looks at the
first bytes and, when there is one, the name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePath

HEAD_BYTES = 8192
"""How much of an input sniffing looks at."""

_LOCAL_HEADER_BYTES = 30
_SIGNAL_FILE = re.compile(r"^\S+\.[A-Za-z][A-Za-z0-9]*$")


def sniff_format(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview, name: str | None = None
) -> str:
    """One of ``apple_watch_csv, csv, wfdb, edf, bdf, npy, npz, zip, pickle, pdf, png, jpeg`` or
    ``unknown``.

    `source` is a path, or the first bytes of an input (at least `HEAD_BYTES` of it when it is longer) with
    `name`, the file name it came with, if any: its extension breaks ties between text formats.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        return sniff_head(bytes(source[:HEAD_BYTES]), name)
    path = Path(source)
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
    if not path.suffix and _by_magic(head, "") is None and path.with_suffix(".hea").exists():
        return "wfdb"
    return sniff_head(head, path.name)


def sniff_head(head: bytes, name: str | None) -> str:
    """The format `head` (an input's first bytes) shows; `name` (None when unknown) adds its extension and,
    for a WFDB header, the record name its first line must repeat."""
    suffix = PurePath(name).suffix.lower() if name else ""
    magic = _by_magic(head, suffix)
    if magic is not None:
        return magic
    if suffix in {".hea", ".dat", ".atr"}:
        return "wfdb"
    if suffix in {".pkl", ".pickle"}:
        return "pickle"
    if suffix in {".edf", ".bdf"}:
        return suffix[1:]
    from echopulse.ingest.apple_watch import looks_like_apple_watch_csv

    text = _decode_head(head)
    if text is not None and looks_like_apple_watch_csv(text):
        return "apple_watch_csv"
    if text is not None and _looks_like_wfdb_header(text, PurePath(name).stem if name else None):
        return "wfdb"
    if suffix in {".csv", ".txt", ".tsv"} or text is not None:
        return "csv"
    return "unknown"


def _by_magic(head: bytes, suffix: str) -> str | None:
    """The binary formats, known by their first bytes whatever the name says."""
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "npz" if suffix == ".npz" or _first_member(head).endswith(".npy") else "zip"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if head.startswith(b"\xffBIOSEMI"):
        return "bdf"
    if head[:8] == b"0       ":
        return "edf"
    return None


def _first_member(head: bytes) -> str:
    """The name in a zip's first local header: NumPy's `.npz` holds `<key>.npy` members."""
    if len(head) < _LOCAL_HEADER_BYTES or not head.startswith(b"PK\x03\x04"):
        return ""
    length = int.from_bytes(head[26:28], "little")
    return head[_LOCAL_HEADER_BYTES : _LOCAL_HEADER_BYTES + length].decode("utf-8", "replace")


def _decode_head(head: bytes) -> str | None:
    """The head as text, or None when it is binary (a NUL byte, or not UTF-8/Latin-1 text at all)."""
    if b"\x00" in head:
        return None
    for encoding in ("utf-8-sig", "utf-16"):
        try:
            return head.decode(encoding)
        except UnicodeDecodeError as error:
            # A multi-byte character cut at the end of the head is still text.
            if encoding == "utf-8-sig" and error.start >= len(head) - 3:
                return head[: error.start].decode(encoding)
    return None


def _looks_like_wfdb_header(text: str, stem: str | None) -> bool:
    """A WFDB header's record line, `name nsig fs nsamp`, with the name matching the file's stem.

    Without a file name (bytes that came with none) the record line alone could be a row of a whitespace
    table, so the next line must also be a signal line naming its file (`100.dat 212 200 …`).
    """
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not lines:
        return False
    fields = lines[0].split()
    if len(fields) < 2 or not fields[1].isdigit():
        return False
    if stem is not None:
        return fields[0].split("/")[0] == stem
    signal = lines[1].split() if len(lines) > 1 else []
    return int(fields[1]) > 0 and len(signal) >= 2 and bool(_SIGNAL_FILE.match(signal[0]))

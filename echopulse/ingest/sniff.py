"""Which reader a file needs: content first, extension second.

Extensions lie (a Health export renamed `.txt`, a WFDB header without `.hea`), so each format is
recognised by what its first bytes look like; the extension only breaks ties between text formats.
"""

from __future__ import annotations

from pathlib import Path

_HEAD_BYTES = 8192


def sniff_format(path: Path) -> str:
    """One of ``apple_watch_csv, csv, wfdb, edf, bdf, npy, npz, zip, pickle, pdf, png, jpeg`` or
    ``unknown``."""
    with path.open("rb") as handle:
        head = handle.read(_HEAD_BYTES)
    suffix = path.suffix.lower()
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "npz" if suffix == ".npz" else "zip"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if head.startswith(b"\xffBIOSEMI"):
        return "bdf"
    if head[:8] == b"0       ":
        return "edf"
    if suffix in {".hea", ".dat", ".atr"} or (not suffix and path.with_suffix(".hea").exists()):
        return "wfdb"
    if suffix in {".pkl", ".pickle"}:
        return "pickle"
    if suffix in {".edf", ".bdf"}:
        return suffix[1:]
    from echopulse.ingest.apple_watch import looks_like_apple_watch_csv

    text = _decode_head(head)
    if text is not None and looks_like_apple_watch_csv(text):
        return "apple_watch_csv"
    if text is not None and _looks_like_wfdb_header(text, path):
        return "wfdb"
    if suffix in {".csv", ".txt", ".tsv"} or text is not None:
        return "csv"
    return "unknown"


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


def _looks_like_wfdb_header(text: str, path: Path) -> bool:
    """A WFDB header's record line: `name nsig fs nsamp`, with the name matching the file."""
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        return len(fields) >= 2 and fields[0].split("/")[0] == path.stem and fields[1].isdigit()
    return False

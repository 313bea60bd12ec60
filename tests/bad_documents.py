"""Broken and unsupported PDFs, each with the refusal the Apple Watch PDF reader must give.

Most are Apple-style pages drawn from a real Health CSV (tests/apple_pdf.py) and then broken in one way;
those carry the planted name and birth date, which no error message may repeat. `expect` is a regular
expression searched in the `IngestError` message.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from apple_pdf import build_apple_watch_pdf
from bad_inputs import APPLE_EXPORT, FAKE_BIRTH_DATE, FAKE_NAME, BadCase
from reportlab.pdfgen.canvas import Canvas


def _apple(directory: Path, shared: Path, name: str, **options: object) -> Path:
    """An Apple-style page of the real export, carrying the planted name and birth date."""
    path = directory / f"{name}.pdf"
    return build_apple_watch_pdf(
        shared / APPLE_EXPORT, path, name=FAKE_NAME, birth_date=FAKE_BIRTH_DATE, **options
    )


def truncated(directory: Path, shared: Path) -> Path:
    """A download that stopped half-way: no cross-reference table, no %%EOF."""
    path = _apple(directory, shared, "truncated")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def no_trace(directory: Path, shared: Path) -> Path:
    """Header, footer and the pink grid, but the waveform was never drawn."""
    return _apple(directory, shared, "no_trace", trace="none")


def encrypted(directory: Path, shared: Path) -> Path:
    """A user password on the whole page: nothing can be read without it."""
    return _apple(directory, shared, "encrypted", encrypt="secret")


def mis_scaled(directory: Path, shared: Path) -> Path:
    """The trace drawn at 5 mm/s on a 1-mm grid whose footer says 25 mm/s: 10 s of strip over 50 mm."""
    return _apple(directory, shared, "mis_scaled", trace_mm_per_s=5.0)


def too_many_pages(directory: Path, shared: Path) -> Path:
    """25 copies of the page: no Apple export is that long."""
    return _apple(directory, shared, "too_many_pages", pages=25)


def text_only(directory: Path, shared: Path) -> Path:
    """A valid PDF that is just a word: not an ECG at all."""
    path = directory / "text_only.pdf"
    canvas = Canvas(str(path), invariant=1)
    canvas.drawString(72, 720, "Hello")
    canvas.showPage()
    canvas.save()
    return path


def no_pages(directory: Path, shared: Path) -> Path:
    """A structurally valid PDF whose page tree is empty."""
    path = directory / "no_pages.pdf"
    path.write_bytes(
        b"%PDF-1.4\n1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj\n"
        b"2 0 obj <</Type /Pages /Kids [] /Count 0>> endobj\n"
        b"trailer <</Root 1 0 R>>\n%%EOF\n"
    )
    return path


def garbage_body(directory: Path, shared: Path) -> Path:
    """A PDF header and end marker around bytes that are no PDF objects at all."""
    path = directory / "garbage_body.pdf"
    path.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 16 + b"\n%%EOF\n")
    return path


_CASES: dict[str, tuple[Callable[[Path, Path], Path], str, bool]] = {
    "truncated": (truncated, r"truncated PDF", True),
    "no_trace": (no_trace, r"no ECG trace found", True),
    "encrypted": (encrypted, r"encrypted PDF", True),
    "mis_scaled": (mis_scaled, r"grid and trace disagree on the scale.*lasts 2\.0 s.*\(page 1\)", True),
    "too_many_pages": (too_many_pages, r"PDF has 25 pages, over the 20-page limit", True),
    "text_only": (text_only, r"no ECG trace found", False),
    "no_pages": (no_pages, r"PDF has no pages", False),
    "garbage_body": (garbage_body, r"damaged PDF", False),
}
PDF_CASE_NAMES = tuple(_CASES)


def build_bad_pdf_cases(directory: Path, shared_data: Path) -> list[BadCase]:
    """Write every bad PDF into `directory` (created if needed) and return the cases in a stable order."""
    directory.mkdir(parents=True, exist_ok=True)
    return [
        BadCase(name=name, path=build(directory, shared_data), expect=expect, identity=identity)
        for name, (build, expect, identity) in _CASES.items()
    ]

"""Broken and hostile strip images, each with the refusal the image reader must give it.

The cases a user can really produce: a blank scan, a photo of nothing, a download cut short, a crop with
no trace, a file that only claims to be a JPEG; and the hostile ones, headers that claim an image far
larger than any ECG page. Those are written by hand (IHDR chunk, no pixel data), so building the corpus
never allocates the pixels they claim, and a reader that decodes before checking the size would show it.

`expect` is a regular expression searched in the `IngestError` message.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from bad_inputs import BadCase, CaseBook, Spot
from PIL import Image

PAGE_PNG = Path("echopulse/ecg_page_2.png")
PX_PER_MM = 300 / 25.4
GRID_GREY_MINOR, GRID_GREY_MAJOR = 229, 204
"""The grey levels of the grid of ecg_page_2.png (measured), so the grid-only case looks like it."""

_BOOK: CaseBook[Spot] = CaseBook(Spot)
_case = _BOOK.case


def build_bad_image_cases(directory: Path, shared_data: Path) -> list[BadCase]:
    """Write every bad image into `directory` (created if needed) and return the cases in a stable order."""
    return _BOOK.build(directory, shared_data)


image_case_names = _BOOK.names


# ---------------------------------------------------------------------------------------------- helpers


def _save(pixels: np.ndarray, path: Path, fmt: str = "PNG") -> Path:
    Image.fromarray(pixels).save(path, fmt)
    return path


def grid_paper(width: int, height: int) -> np.ndarray:
    """White paper with a 1-mm grey grid, heavier every 5 mm, at 300 dpi (as in ecg_page_2.png)."""
    paper = np.full((height, width, 3), 255, dtype=np.uint8)
    for k in range(int(max(width, height) / PX_PER_MM) + 1):
        position = round(k * PX_PER_MM)
        grey = GRID_GREY_MAJOR if k % 5 == 0 else GRID_GREY_MINOR
        paper[:, position : position + 2][paper[:, position : position + 2] > grey] = grey
        paper[position : position + 2, :][paper[position : position + 2, :] > grey] = grey
    return paper


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming `width`×`height` RGB, then a token IDAT and IEND: what a
    reader sees of a huge image before decoding it, built without allocating a single claimed pixel."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


# ------------------------------------------------------------------------------------------------ cases


@_case(r"blank \(a single colour\)")
def blank_white(spot: Spot) -> Path:
    """A scan of an empty page."""
    return _save(np.full((400, 1200, 3), 255, dtype=np.uint8), spot.stem.with_suffix(".png"))


@_case(r"blank \(a single colour\)")
def all_black(spot: Spot) -> Path:
    """A photo taken with the lens covered."""
    return _save(np.zeros((400, 1200, 3), dtype=np.uint8), spot.stem.with_suffix(".png"))


@_case(r"no coherent ECG trace: the image looks like noise")
def pure_noise(spot: Spot) -> Path:
    """Uniform RGB noise (seeded): red and dark pixels everywhere, no curve among them."""
    pixels = np.random.default_rng(20240611).integers(0, 256, (400, 1200, 3), dtype=np.uint8)
    return _save(pixels, spot.stem.with_suffix(".png"))


@_case(r"truncated or corrupt image")
def truncated_png(spot: Spot) -> Path:
    """The real strip image cut after 40 % of its bytes: a download that stopped."""
    data = (spot.shared / PAGE_PNG).read_bytes()
    path = spot.stem.with_suffix(".png")
    path.write_bytes(data[: len(data) * 2 // 5])
    return path


@_case(r"truncated or corrupt image")
def truncated_jpeg(spot: Spot) -> Path:
    """The real strip image as a JPEG, cut in the middle of its entropy-coded data."""
    buffer = io.BytesIO()
    Image.open(spot.shared / PAGE_PNG).convert("RGB").save(buffer, "JPEG", quality=90)
    path = spot.stem.with_suffix(".jpg")
    path.write_bytes(buffer.getvalue()[: buffer.tell() // 2])
    return path


@_case(r"not a decodable image")
def jpeg_garbage_after_soi(spot: Spot) -> Path:
    """A JPEG start-of-image marker and then random bytes: sniffed as JPEG, undecodable."""
    garbage = np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    path = spot.stem.with_suffix(".jpg")
    path.write_bytes(b"\xff\xd8\xff" + garbage)
    return path


@_case(r"50000×300 px, over the 20,000 px side limit")
def png_50000_px_wide(spot: Spot) -> Path:
    """A header claiming 50,000 px width: refused from the header, before decoding."""
    path = spot.stem.with_suffix(".png")
    path.write_bytes(_png_header_only(50_000, 300))
    return path


@_case(r"too large to decode safely|over the 60 Mpx limit")
def png_bomb_header(spot: Spot) -> Path:
    """A header claiming 19,000×19,000 px (361 Mpx, ~1 GB decoded) with a few bytes behind it."""
    path = spot.stem.with_suffix(".png")
    path.write_bytes(_png_header_only(19_000, 19_000))
    return path


@_case(r"1×1 px, too small to hold an ECG strip")
def one_pixel(spot: Spot) -> Path:
    return _save(np.full((1, 1, 3), 200, dtype=np.uint8), spot.stem.with_suffix(".png"))


@_case(r"no ECG trace found: a grid but no red or dark curve")
def grid_only(spot: Spot) -> Path:
    """ECG paper with nothing drawn on it: the grid must not be taken for a trace."""
    return _save(grid_paper(2972, 366), spot.stem.with_suffix(".png"))


@_case(r"covers only 3\d% of the image width \(at least 50% needed\)")
def trace_too_short(spot: Spot) -> Path:
    """The real strip with all but the first 35 % of its trace painted over with paper."""
    pixels = np.asarray(Image.open(spot.shared / PAGE_PNG).convert("RGB")).copy()
    cut = int(0.35 * pixels.shape[1])
    pixels[:, cut:] = grid_paper(pixels.shape[1], pixels.shape[0])[:, cut:]
    return _save(pixels, spot.stem.with_suffix(".png"))


@_case(r"not a decodable image")
def png_renamed_text(spot: Spot) -> Path:
    """A PNG signature in front of a CSV: what a mislabelled upload looks like."""
    path = spot.stem.with_suffix(".png")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"time,value\n0,0.1\n" * 50)
    return path

"""Apple-Watch-style ECG PDFs built from real Health CSVs, for the PDF and strip-image readers' tests.

No real "Export a PDF for your doctor" file could be found (see ../shared/data/apple_watch/MANIFEST.md), so
the tests draw pages in the same layout: a landscape page, a header (name, birth date, classification,
average heart rate, recorded date), three 10-s strips on a pink millimetre grid at 25 mm/s and 10 mm/mV,
and a footer with the scale, lead, sample rate, software versions and device. Everything the reader may
rely on (the grid pitch, the colours, the text) is drawn the way Apple draws it; the positions are
parameters, so a test can move them and show the reader does not depend on them.

`trace="vector"` draws each strip as one polyline with a vertex per sample (as Apple does), `"image"`
embeds grid and trace as a 300-dpi raster instead, and `"none"` leaves the trace out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pypdfium2
from PIL import Image, ImageDraw
from reportlab.lib.pagesizes import A4, landscape, letter
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen.canvas import Canvas

from echopulse.ingest import ECGRecord, read_record
from echopulse.preprocess.offline import preprocess_record

A4_LANDSCAPE = landscape(A4)
LETTER_LANDSCAPE = landscape(letter)

MM_PER_S = 25.0
MM_PER_MV = 10.0
STRIP_S = 10.0
N_STRIPS = 3

APPLE_TRACE = (0.816, 0.149, 0.224)
"""The pink-red of Apple's waveform (R 208, G 38, B 57)."""
GRID_THIN = (0.98, 0.82, 0.84)
GRID_THICK = (0.95, 0.62, 0.67)

IMAGE_DPI = 300


@dataclass(frozen=True)
class Layout:
    """Where the strips sit on the page, in mm from the top-left corner (PDF points are converted later)."""

    page_size: tuple[float, float] = A4_LANDSCAPE
    left_mm: float | None = None
    """None centres the 250-mm strips horizontally."""
    top_mm: float = 45.0
    strip_height_mm: float = 40.0
    strip_gap_mm: float = 8.0
    trace_colour: tuple[float, float, float] = APPLE_TRACE
    trace_mm_per_s: float = MM_PER_S
    trace_width_pt: float = 0.8

    @property
    def width_mm(self) -> float:
        return self.page_size[0] / mm

    @property
    def height_mm(self) -> float:
        return self.page_size[1] / mm

    @property
    def left(self) -> float:
        strip_width = STRIP_S * MM_PER_S
        return self.left_mm if self.left_mm is not None else (self.width_mm - strip_width) / 2

    def strip_top(self, index: int) -> float:
        return self.top_mm + index * (self.strip_height_mm + self.strip_gap_mm)

    @property
    def strips_height_mm(self) -> float:
        return N_STRIPS * self.strip_height_mm + (N_STRIPS - 1) * self.strip_gap_mm


def printed_birth_date(birth_date: str) -> str:
    """How the page shows an ISO birth date (`1970-01-01` → `Jan 1, 1970`): tests look for both forms."""
    day = date.fromisoformat(birth_date)
    return f"{day:%b} {day.day}, {day.year}"


def build_apple_watch_pdf(
    csv_path: Path,
    out_pdf: Path,
    *,
    name: str = "Erika Mustermann",
    birth_date: str = "1970-01-01",
    trace: str = "vector",
    page_size: tuple[float, float] = A4_LANDSCAPE,
    left_mm: float | None = None,
    top_mm: float = 45.0,
    strip_height_mm: float = 40.0,
    strip_gap_mm: float = 8.0,
    trace_colour: tuple[float, float, float] = APPLE_TRACE,
    grid: bool = True,
    pages: int = 1,
    encrypt: str | None = None,
    software: str = "iOS 17.1, watchOS 10.1",
    zoom: float = 1.0,
    print_rate: bool = True,
    trace_mm_per_s: float = MM_PER_S,
    result_line: str | None = None,
) -> Path:
    """Draw the Health CSV at `csv_path` as an Apple Watch ECG PDF at `out_pdf` and return `out_pdf`.

    `pages` repeats the page (for the page-count limit); `encrypt` sets a user password; `zoom` scales
    everything drawn about the bottom-left corner, as "print to fit" onto other paper does. `print_rate`
    False leaves the sample rate out of the footer; `trace_mm_per_s` draws the trace at another paper speed
    than the grid and footer claim (a mis-scaled document). `result_line` is the text printed where the
    ECG app's result goes (default: the CSV's classification), to put a result mid-line or reword it.
    """
    if trace not in {"vector", "image", "none"}:
        raise ValueError(f"trace must be vector, image or none, not {trace!r}")
    record = read_record(csv_path)
    layout = Layout(page_size, left_mm, top_mm, strip_height_mm, strip_gap_mm, trace_colour, trace_mm_per_s)
    canvas = Canvas(str(out_pdf), pagesize=page_size, encrypt=encrypt, invariant=1)
    for _ in range(pages):
        canvas.scale(zoom, zoom)
        result = result_line if result_line is not None else record.meta.get("classification")
        _draw_header(canvas, layout, record, name, birth_date, software, print_rate, result)
        if trace == "image":
            _draw_strips_image(canvas, layout, record)
        else:
            if grid:
                for index in range(N_STRIPS):
                    _draw_grid(canvas, layout, index)
            if trace == "vector":
                for index, (seconds, mv) in enumerate(strip_samples(record)):
                    _draw_trace(canvas, layout, index, seconds, mv)
        canvas.showPage()
    canvas.save()
    return out_pdf


def strip_samples(record: ECGRecord) -> list[tuple[np.ndarray, np.ndarray]]:
    """(seconds into the strip, mV) for each of the three strips; the last holds whatever is past 20 s."""
    seconds = np.arange(record.n_samples) / record.fs
    index = np.minimum((seconds // STRIP_S).astype(int), N_STRIPS - 1)
    mv = record.signal[0].astype(np.float64)
    return [
        (seconds[index == k] - k * STRIP_S, mv[index == k]) for k in range(N_STRIPS) if (index == k).any()
    ]


# ----------------------------------------------------------------------------------------------- text


def _draw_header(
    canvas: Canvas,
    layout: Layout,
    record: ECGRecord,
    name: str,
    birth_date: str,
    software: str,
    print_rate: bool,
    result: str | None,
) -> None:
    """Name, birth date, classification, heart rate and date at the top; scale, rate and device below."""
    page_height = layout.height_mm

    def text(x_mm: float, y_mm: float, words: str, size: float = 10, bold: bool = False) -> None:
        canvas.setFont("Helvetica-Bold" if bold else "Helvetica", size)
        canvas.setFillColorRGB(0, 0, 0)
        canvas.drawString(x_mm * mm, (page_height - y_mm) * mm, words)

    left = layout.left
    right = left + STRIP_S * MM_PER_S
    text(left, 12, name, 14, bold=True)
    text(left, 18, f"Date of Birth: {printed_birth_date(birth_date)}")
    recorded = f"Recorded on {_printed_date(record.start)}" if record.start else ""
    canvas.setFont("Helvetica", 10)
    canvas.drawRightString(right * mm, (page_height - 12) * mm, recorded)
    text(left, 28, str(result or "Inconclusive"), 12, bold=True)
    text(left, 34, f"Average Heart Rate {average_heart_rate(record)} BPM")
    footer_y = layout.strip_top(N_STRIPS - 1) + layout.strip_height_mm + 8
    device = record.device or "Watch"
    rate = f"{record.fs:g}Hz, " if print_rate else ""
    text(left, footer_y, f"25 mm/s, 10 mm/mV, Lead I, {rate}{software}, {device}", 8)
    text(left, footer_y + 4, "The waveform is similar to a Lead I ECG. See the Instructions for Use.", 7)


def _printed_date(start: datetime) -> str:
    """`Dec 17, 2021 at 12:58 PM`, the way the English Health app prints a recording's date."""
    hour = start.hour % 12 or 12
    return f"{start:%b} {start.day}, {start.year} at {hour}:{start:%M} {'AM' if start.hour < 12 else 'PM'}"


def average_heart_rate(record: ECGRecord) -> int:
    """The rate the header prints: the median over detected beats, in whole beats per minute."""
    rate = preprocess_record(record).hr_bpm
    return round(rate) if rate is not None else 0


# ----------------------------------------------------------------------------------------------- vector


def _point(layout: Layout, x_mm: float, y_mm: float) -> tuple[float, float]:
    """Page mm from the top-left corner → PDF points from the bottom-left corner."""
    return x_mm * mm, (layout.height_mm - y_mm) * mm


def _draw_grid(canvas: Canvas, layout: Layout, index: int) -> None:
    """Thin lines every 1 mm, thicker every 5 mm, each its own path as PDF writers usually emit them."""
    for thick, x0, y0, x1, y1 in _grid_lines(layout, index):
        canvas.setStrokeColorRGB(*(GRID_THICK if thick else GRID_THIN))
        canvas.setLineWidth(0.6 if thick else 0.25)
        canvas.line(*_point(layout, layout.left + x0, y0), *_point(layout, layout.left + x1, y1))


def _grid_lines(layout: Layout, index: int) -> list[tuple[bool, float, float, float, float]]:
    """(thick, x0, y0, x1, y1) in mm, x from the strip's left edge and y from the page top."""
    top = layout.strip_top(index)
    width = round(STRIP_S * MM_PER_S)
    height = round(layout.strip_height_mm)
    vertical = [(step % 5 == 0, step, top, step, top + height) for step in range(width + 1)]
    horizontal = [(step % 5 == 0, 0, top + step, width, top + step) for step in range(height + 1)]
    return sorted(vertical + horizontal, key=lambda line: line[0])


def _draw_trace(canvas: Canvas, layout: Layout, index: int, seconds: np.ndarray, mv: np.ndarray) -> None:
    """One polyline per strip, a vertex per sample, 0 mV on the strip's centre line."""
    centre = layout.strip_top(index) + layout.strip_height_mm / 2
    x_mm = layout.left + seconds * layout.trace_mm_per_s
    y_mm = centre - mv * MM_PER_MV
    path = canvas.beginPath()
    path.moveTo(*_point(layout, x_mm[0], y_mm[0]))
    for x, y in zip(x_mm[1:], y_mm[1:], strict=True):
        path.lineTo(*_point(layout, x, y))
    canvas.setStrokeColorRGB(*layout.trace_colour)
    canvas.setLineWidth(layout.trace_width_pt)
    canvas.setLineJoin(1)
    canvas.drawPath(path, stroke=1, fill=0)


# ----------------------------------------------------------------------------------------------- raster


def _draw_strips_image(canvas: Canvas, layout: Layout, record: ECGRecord) -> None:
    """Grid and trace of all three strips as one 300-dpi RGB image, placed where the vectors would be."""
    px_per_mm = IMAGE_DPI / 25.4
    width_mm = STRIP_S * MM_PER_S
    size = (round(width_mm * px_per_mm) + 1, round(layout.strips_height_mm * px_per_mm) + 1)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    origin = layout.strip_top(0)

    def px(x_mm: np.ndarray | float, y_mm: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(x_mm) * px_per_mm, (np.asarray(y_mm) - origin) * px_per_mm

    colour = tuple(round(255 * c) for c in layout.trace_colour)
    for index in range(N_STRIPS):
        _raster_grid(draw, layout, index, px)
    for index, (seconds, mv) in enumerate(strip_samples(record)):
        centre = layout.strip_top(index) + layout.strip_height_mm / 2
        xs, ys = px(seconds * layout.trace_mm_per_s, centre - mv * MM_PER_MV)
        draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=colour, width=3, joint="curve")
    # Placed at exactly 300 dpi: a pixel wider and taller than the strips, not squeezed into them.
    width, height = size[0] / px_per_mm, size[1] / px_per_mm
    x, y = _point(layout, layout.left, origin + height)
    canvas.drawImage(ImageReader(image), x, y, width=width * mm, height=height * mm)


def _raster_grid(draw: ImageDraw.ImageDraw, layout: Layout, index: int, px: Callable[..., Any]) -> None:
    thin = tuple(round(255 * c) for c in GRID_THIN)
    thick = tuple(round(255 * c) for c in GRID_THICK)
    for is_thick, x0, y0, x1, y1 in _grid_lines(layout, index):
        (px0, px1), (py0, py1) = px([x0, x1], [y0, y1])
        draw.line([(px0, py0), (px1, py1)], fill=thick if is_thick else thin, width=2 if is_thick else 1)


def render_pdf_page(pdf: Path, dpi: int = 300, page: int = 0) -> np.ndarray:
    """Page `page` of `pdf` as an RGB uint8 array (height × width × 3) at `dpi`, rendered by pdfium."""
    document = pypdfium2.PdfDocument(str(pdf))
    try:
        bitmap = document[page].render(scale=dpi / 72)
        return np.asarray(bitmap.to_pil().convert("RGB"))
    finally:
        document.close()

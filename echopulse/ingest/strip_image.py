"""ECG strip images (PNG, JPEG: a page or a crop) digitised back to samples in mV.

A printed ECG is a curve on millimetre paper at 25 mm/s and 10 mm/mV, so the grid is the ruler: its pitch,
measured from the image, turns pixels into seconds and millivolts whatever resolution the image was saved
at. The steps are: find the trace by colour (a red trace as Apple draws it; else the darkest thin curve),
keep one height per pixel column, split a page into its stacked strips, measure the grid, place each
strip in time between its grid's border lines, and resample the joined strips to a uniform rate. Where
no grid can be measured the record says so and the scale comes from the DPI the file states, else
300 dpi (the resolution the ECHOPulse authors rendered their PDF at).

Limits apply before anything is decoded: a PNG header claiming 50,000 px is refused from its header, and
every failure (blank page, noise, a grid without a trace, a truncated file) is an `IngestError`.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
from PIL import Image
from scipy import ndimage

from echopulse.ecg import ECGRecord
from echopulse.errors import IngestError, one_line
from echopulse.ingest.paper_grid import (
    DARK_MAX_LUMA,
    MM_PER_INCH,
    Grid,
    grid_darkness,
    luma,
    measure_grid,
)
from echopulse.ingest.validate import check_sample_rate

MAX_SIDE_PX = 20_000
"""A 10-s strip at 600 dpi is about 5,900 px wide; anything past 20,000 px is not a scan of one."""

MAX_PIXELS = 60_000_000
"""A full letter page at 600 dpi is 34 Mpx; the limit keeps decoding (3 bytes a pixel) under 200 MB."""

MIN_WIDTH_PX, MIN_HEIGHT_PX = 100, 20

DEFAULT_FS = 500.0
PLAUSIBLE_DPI = (50.0, 2400.0)
"""File DPI outside this range (JPEG's 1:1 'aspect only', a 10,000-dpi typo) is ignored."""

PAPER_SPEED_MM_S = 25.0
GAIN_MM_PER_MV = 10.0

MIN_COVERAGE = 0.5
"""The trace of the widest strip must span at least half of the image's width."""

STRAY_COVERAGE = 0.1
"""A band of trace pixels narrower than this share of the width is a mark or icon, not a strip."""

MIN_CURVE_WIDTH = 0.02
"""Connected pieces narrower than 2 % of the width are letters, dots or noise, never a trace."""

STRIP_GAP_PX = 8
"""Empty rows that separate two stacked strips; within one strip the trace fills its rows."""

RED_MIN_VALUE = 100.0
RED_MIN_SATURATION = 0.5
"""The most saturated red pixels must reach this for a red trace to exist (Apple's trace: about 0.8)."""
RED_THRESHOLD_SHARE, RED_THRESHOLD_FLOOR = 0.6, 0.45


NOISE_RUNS_PER_COLUMN = 3.0
"""A curve crosses each column once or twice; more runs per column on average means speckle."""

SPECK_SHARE = 0.2
"""Beside a column's heaviest run, a run with less than a fifth of its ink is a speck, not the trace."""

BLUNT_MARGIN_PX = 2
"""A column's run must exceed the pen's width by this much before its edge, not its centre, is used."""

BORDER_LINE_SHARE = 0.5
"""Vertical lines at least half as dark as the darkest (the 5-mm lines, of which the borders are two)."""


@dataclass(frozen=True)
class Trace:
    """Where the trace is: its pixel mask, each pixel's strength and the colour it was found by."""

    mask: np.ndarray
    weight: np.ndarray
    colour: str


@dataclass(frozen=True)
class StripTrace:
    """One strip's trace height per column (pixels from the top), gaps bridged, and where it starts."""

    y: np.ndarray
    first_column: int
    bridged: int


# ------------------------------------------------------------------------------------------- entry points


def read_strip_image(path: str | Path, fs: float | None = None) -> ECGRecord:
    """Read a PNG or JPEG of an ECG strip (or a page of stacked strips) into a one-lead record.

    `fs` is the rate the trace is resampled to (500 Hz when not given). The file's DPI is used only when
    no grid can be measured.

    >>> record = read_strip_image("ecg_page_2.png")  # doctest: +SKIP
    >>> record.meta["scale_source"], round(record.meta["grid_px_per_mm"], 2)
    ('grid', 11.81)
    """
    rgb, dpi = _load_rgb(Path(path))
    return digitise_strip_image(rgb, path, dpi=dpi, fs=fs)


def digitise_strip_image(
    rgb: np.ndarray, source: str | Path, dpi: float | None = None, fs: float | None = None
) -> ECGRecord:
    """Turn an RGB(A) or grey image array of an ECG strip into an `ECGRecord` in mV, Lead I assumed.

    `dpi` is the scale to fall back on when the image has no measurable grid (the file's metadata, or the
    resolution a PDF page was rendered at); without it 300 dpi is assumed. `fs` is the output rate.
    """
    rate = DEFAULT_FS if fs is None else check_sample_rate(source, float(fs))
    image = _as_rgb(rgb, source)
    _check_size(source, image.shape[1], image.shape[0])
    _refuse_blank(source, image)
    trace = _find_trace(source, image)
    bands = _strip_bands(source, trace.mask)
    strips = [_strip_trace(trace, band) for band in bands]
    paper = grid_darkness(image, trace.mask)
    grid = measure_grid(paper, trace.mask, dpi, bands)
    spans = [_strip_span(paper, band, strip, grid) for band, strip in zip(bands, strips, strict=True)]
    signal = _strips_to_mv(strips, spans, grid, rate)
    covered = max(np.count_nonzero(trace.mask[top:bottom].any(axis=0)) for top, bottom in bands)
    meta = {
        "grid_found": grid.found,
        "grid_px_per_mm": grid.px_per_mm_x,
        "grid_px_per_mm_y": grid.px_per_mm_y,
        "scale_source": grid.source,
        "paper_speed_mm_s": PAPER_SPEED_MM_S,
        "gain_mm_per_mv": GAIN_MM_PER_MV,
        "trace_colour": trace.colour,
        "trace_coverage": round(float(covered / image.shape[1]), 4),
        "columns_bridged": int(sum(strip.bridged for strip in strips)),
        "strips": len(strips),
        "image_size_px": [int(image.shape[1]), int(image.shape[0])],
        "dpi": dpi,
        "scale_note": _scale_note(grid),
        "fs_assumed": fs is None,
        "lead_assumed": True,
    }
    return ECGRecord(signal=signal, fs=rate, leads=("I",), source_format="ecg_image", meta=meta)


def _scale_note(grid: Grid) -> str:
    """What the time and amplitude axes rest on, in words for the user."""
    paper = f"{PAPER_SPEED_MM_S:g} mm/s and {GAIN_MM_PER_MV:g} mm/mV assumed"
    if grid.found:
        return f"grid measured: {grid.px_per_mm_x:.3f} px/mm; {paper}"
    return f"no grid found: scale from {grid.source} ({grid.px_per_mm_x * MM_PER_INCH:.0f} dpi); {paper}"


# ---------------------------------------------------------------------------------------------- decoding


def _load_rgb(path: Path) -> tuple[np.ndarray, float | None]:
    """Decode the file with Pillow after checking its header's size; the DPI it states, if plausible."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                _check_size(path, *image.size)
                dpi = _plausible_dpi(image.info.get("dpi"))
                image.load()
                return _pillow_to_rgb(image), dpi
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise IngestError(path, f"image too large to decode safely: {one_line(error)}") from error
        except Image.UnidentifiedImageError as error:
            raise IngestError(path, "not a decodable image (corrupt, or not a PNG or JPEG)") from error
        except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as error:
            raise IngestError(path, f"truncated or corrupt image: {one_line(error)}") from error


def _check_size(source: str | Path, width: int, height: int) -> None:
    """Refuse absurd sizes from the header alone, before a single pixel is decoded."""
    if width > MAX_SIDE_PX or height > MAX_SIDE_PX:
        raise IngestError(source, f"image is {width}×{height} px, over the {MAX_SIDE_PX:,} px side limit")
    if width * height > MAX_PIXELS:
        raise IngestError(
            source, f"image is {width * height / 1e6:.0f} Mpx, over the {MAX_PIXELS / 1e6:.0f} Mpx limit"
        )
    if width < MIN_WIDTH_PX or height < MIN_HEIGHT_PX:
        raise IngestError(
            source,
            f"image is {width}×{height} px, too small to hold an ECG strip "
            f"(at least {MIN_WIDTH_PX}×{MIN_HEIGHT_PX})",
        )


def _plausible_dpi(dpi: object) -> float | None:
    """The horizontal DPI a file states, or None when absent or implausible."""
    try:
        value = float(dpi[0])  # type: ignore[index]
    except (TypeError, ValueError, IndexError):
        return None
    return value if PLAUSIBLE_DPI[0] <= value <= PLAUSIBLE_DPI[1] else None


def _pillow_to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode as 8-bit RGB, transparency composited onto white paper."""
    if image.mode in {"I;16", "I;16B", "I;16L", "I", "F"}:
        image = image.point(lambda value: value / 256).convert("L")
    rgba = image.convert("RGBA")
    paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(paper, rgba).convert("RGB"))


def _as_rgb(array: np.ndarray, source: str | Path) -> np.ndarray:
    """An (H, W, 3) uint8 view of a grey, RGB or RGBA array (alpha composited onto white)."""
    pixels = np.asarray(array)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, np.newaxis], 3, axis=2)
    if pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise IngestError(source, f"image array of shape {pixels.shape} is not grey, RGB or RGBA")
    if pixels.dtype != np.uint8:
        pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    if pixels.shape[2] == 4:
        alpha = pixels[:, :, 3:4].astype(np.float32) / 255.0
        pixels = (pixels[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    return pixels


def _refuse_blank(source: str | Path, image: np.ndarray) -> None:
    """A single-colour image (white, black, anything) holds no trace and no grid."""
    spread = image.reshape(-1, 3).astype(np.int16)
    if int((spread.max(axis=0) - spread.min(axis=0)).max()) <= 8:
        raise IngestError(source, "image is blank (a single colour): no ECG trace")


# ------------------------------------------------------------------------------------------------- trace


def _find_trace(source: str | Path, image: np.ndarray) -> Trace:
    """The red trace when there is one that spans the image, else the darkest thin curve."""
    candidates = [trace for trace in (_red_trace(image), _dark_trace(image)) if trace is not None]
    best = None
    for raw in candidates:
        curve = _keep_curves(raw)
        if curve.mask.any() and _coverage(curve.mask) >= MIN_COVERAGE:
            return curve
        if best is None or _coverage(curve.mask) > _coverage(best[1].mask):
            best = (raw, curve)
    _refuse_missing_trace(source, image, best)


def _red_trace(image: np.ndarray) -> Trace | None:
    """Pixels whose red saturation is at least 60 % of the most saturated red present (and ≥ 0.45).

    Saturation, (max - min) / max, not brightness, separates a drawn trace from a pink grid: Apple's trace
    is about 0.8, its heavy 5-mm lines about 0.35 and the 1-mm lines 0.15, and lines or trace edges blended
    with white paper only get paler."""
    pixels = image.astype(np.float32)
    red, green, blue = pixels[:, :, 0], pixels[:, :, 1], pixels[:, :, 2]
    reddish = (red > green) & (red > blue) & (red >= RED_MIN_VALUE)
    saturation = np.where(reddish, (red - np.minimum(green, blue)) / np.maximum(red, 1.0), 0.0)
    candidates = saturation[saturation > 0.1]
    if candidates.size == 0:
        return None
    peak = float(np.percentile(candidates, 99.5))
    if peak < RED_MIN_SATURATION:
        return None
    mask = saturation >= max(RED_THRESHOLD_FLOOR, RED_THRESHOLD_SHARE * peak)
    return Trace(mask=mask, weight=np.where(mask, saturation, 0).astype(np.float32), colour="red")


def _dark_trace(image: np.ndarray) -> Trace | None:
    """Pixels darker than any grid line: the fallback for black (or dark grey) traces."""
    darkness = 255.0 - luma(image)
    mask = darkness > 255.0 - DARK_MAX_LUMA
    if not mask.any():
        return None
    return Trace(mask=mask, weight=np.where(mask, darkness, 0).astype(np.float32), colour="black")


def _keep_curves(trace: Trace) -> Trace:
    """Only the connected pieces wide enough to be part of a trace (not letters, dots or speckle)."""
    labels, count = ndimage.label(trace.mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return trace
    min_width = max(20, int(MIN_CURVE_WIDTH * trace.mask.shape[1]))
    keep = np.zeros(count + 1, dtype=bool)
    for index, piece in enumerate(ndimage.find_objects(labels), start=1):
        if piece is not None and piece[1].stop - piece[1].start >= min_width:
            keep[index] = True
    mask = keep[labels]
    return Trace(mask=mask, weight=np.where(mask, trace.weight, 0), colour=trace.colour)


def _coverage(mask: np.ndarray) -> float:
    """Share of the image's columns that hold any trace pixel."""
    return float(mask.any(axis=0).mean())


def _refuse_missing_trace(
    source: str | Path, image: np.ndarray, best: tuple[Trace, Trace] | None
) -> NoReturn:
    """Say why no trace was accepted: nothing trace-like, speckle only, or a trace too short."""
    if best is None or not best[1].mask.any():
        if best is not None and best[0].mask.mean() > 0.02:
            raise IngestError(source, "no coherent ECG trace: the image looks like noise")
        no_trace = np.zeros(image.shape[:2], dtype=bool)
        grid = measure_grid(grid_darkness(image, no_trace), no_trace, None)
        found = "a grid but " if grid.found else ""
        raise IngestError(source, f"no ECG trace found: {found}no red or dark curve across the image")
    share = _coverage(best[1].mask)
    raise IngestError(
        source,
        f"the {best[1].colour} trace covers only {share:.0%} of the image width "
        f"(at least {MIN_COVERAGE:.0%} needed)",
    )


def _strip_bands(source: str | Path, mask: np.ndarray) -> list[tuple[int, int]]:
    """Row ranges of the stacked strips, top to bottom (time order on a printed page)."""
    rows = np.flatnonzero(mask.any(axis=1))
    breaks = np.flatnonzero(np.diff(rows) > STRIP_GAP_PX)
    starts = np.concatenate([[rows[0]], rows[breaks + 1]])
    stops = np.concatenate([rows[breaks] + 1, [rows[-1] + 1]])
    width = mask.shape[1]
    bands = []
    for top, bottom in zip(starts, stops, strict=True):
        band = mask[top:bottom]
        if np.count_nonzero(band.any(axis=0)) < STRAY_COVERAGE * width:
            continue
        _refuse_speckle(source, band)
        bands.append((int(top), int(bottom)))
    widest = max((np.count_nonzero(mask[top:bottom].any(axis=0)) for top, bottom in bands), default=0)
    if widest < MIN_COVERAGE * width:
        raise IngestError(
            source,
            f"the longest strip of trace covers only {widest / width:.0%} of the image width "
            f"(at least {MIN_COVERAGE:.0%} needed)",
        )
    return bands


def _refuse_speckle(source: str | Path, band: np.ndarray) -> None:
    """A curve crosses a column in one short run; a speckled or filled area does not."""
    columns = band[:, band.any(axis=0)]
    runs = columns[0].astype(np.int32) + np.count_nonzero(columns[1:] & ~columns[:-1], axis=0)
    thickness = np.count_nonzero(columns, axis=0)
    if runs.mean() > NOISE_RUNS_PER_COLUMN or np.median(thickness) > max(20, 0.3 * band.shape[0]):
        raise IngestError(source, "no coherent ECG trace: the image looks like noise")


def _strip_trace(trace: Trace, band: tuple[int, int]) -> StripTrace:
    """One height per column of a strip, gaps interpolated, peaks and troughs put back where the pen's
    width had blunted them."""
    top, bottom = band
    mask = trace.mask[top:bottom]
    weight = trace.weight[top:bottom]
    covered = np.flatnonzero(mask.any(axis=0))
    first, last = int(covered[0]), int(covered[-1])
    runs = _column_runs(mask[:, first : last + 1], weight[:, first : last + 1])
    missing = np.isnan(runs.centre)
    for values in (runs.centre, runs.top, runs.bottom):
        _bridge(values, missing)
    y = _sharpen_extremes(runs)
    return StripTrace(y=y + top, first_column=first, bridged=int(missing.sum()))


@dataclass(frozen=True)
class _Runs:
    """Per column: the trace's weighted centre row and its top and bottom rows (NaN where empty), and
    the pen's half-width in pixels measured where the curve runs flat."""

    centre: np.ndarray
    top: np.ndarray
    bottom: np.ndarray
    half_width: float


def _column_runs(mask: np.ndarray, weight: np.ndarray) -> _Runs:
    """The trace's run in each column. A column holding several runs is a curve broken by anti-aliasing
    (runs a line-width apart, merged) or a stray mark beside it (the run nearest the previous column's
    height wins, so the mark cannot pull the curve away)."""
    rows = np.arange(mask.shape[0], dtype=np.float64)[:, np.newaxis]
    total = weight.sum(axis=0, dtype=np.float64)
    present = total > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = np.where(present, (weight * rows).sum(axis=0) / total, np.nan)
    top = np.where(present, np.argmax(mask, axis=0), np.nan).astype(np.float64)
    bottom = np.where(present, mask.shape[0] - 1 - np.argmax(mask[::-1], axis=0), np.nan).astype(np.float64)
    counts = mask[0].astype(np.int32) + np.count_nonzero(mask[1:] & ~mask[:-1], axis=0)
    single = counts == 1
    thickness = float(np.median(np.count_nonzero(mask[:, single], axis=0))) if single.any() else 3.0
    merge_gap = max(4, round(3 * thickness))
    for column in np.flatnonzero(counts > 1):
        run = _nearest_run(mask[:, column], weight[:, column], _last_before(centre, column), merge_gap)
        centre[column] = float(np.average(run, weights=weight[run, column] + 1e-6))
        top[column], bottom[column] = run[0], run[-1]
    return _Runs(centre=centre, top=top, bottom=bottom, half_width=max(0.5, (thickness - 1) / 2))


def _last_before(values: np.ndarray, index: int) -> float:
    """The last non-NaN value before `index` (NaN when there is none)."""
    earlier = values[:index]
    known = np.flatnonzero(~np.isnan(earlier))
    return float(earlier[known[-1]]) if known.size else np.nan


def _nearest_run(column: np.ndarray, weight: np.ndarray, previous: float, merge_gap: int) -> np.ndarray:
    """Rows of the run closest to `previous` (or of the heaviest run at the start of a strip), after
    joining runs less than `merge_gap` rows apart and dropping specks: a steep stroke thinned by
    anti-aliasing or JPEG blur leaves single pixels beside it that must not pull the curve."""
    rows = np.flatnonzero(column)
    runs = np.split(rows, np.flatnonzero(np.diff(rows) > merge_gap) + 1)
    if len(runs) > 1:
        masses = np.array([float(weight[run].sum()) for run in runs])
        runs = [run for run, mass in zip(runs, masses, strict=True) if mass >= SPECK_SHARE * masses.max()]
    if len(runs) == 1:
        return runs[0]
    if np.isnan(previous):
        return max(runs, key=lambda run: float(weight[run].sum()))
    return min(runs, key=lambda run: abs(float(np.average(run, weights=weight[run] + 1e-6)) - previous))


def _bridge(values: np.ndarray, missing: np.ndarray) -> None:
    """Fill the empty columns in place by linear interpolation between their neighbours."""
    if missing.any():
        x = np.arange(values.size)
        values[missing] = np.interp(x[missing], x[~missing], values[~missing])


def _sharpen_extremes(runs: _Runs) -> np.ndarray:
    """Undo the pen's blunting of sharp peaks and troughs.

    On a slope the centre of a column's run is the curve's height there. At a narrow R-peak it is not:
    the pen fills the column from the apex down to where the two strokes part, so the centre sits well
    below the apex. There the curve is the run's top edge plus half the pen's width (and at a trough its
    bottom edge minus it): the columns where the top edge is lowest in its neighbourhood while the run is
    clearly taller than the pen."""
    top, bottom, h = runs.top, runs.bottom, runs.half_width
    reach = max(2, round(2 * h))
    size = 2 * reach + 1
    blunted = (bottom - top) > 2 * h + 1 + BLUNT_MARGIN_PX
    apex = blunted & (top <= ndimage.minimum_filter1d(top, size, mode="nearest"))
    trough = blunted & (bottom >= ndimage.maximum_filter1d(bottom, size, mode="nearest"))
    y = runs.centre.copy()
    y[apex & ~trough] = top[apex & ~trough] + h
    y[trough & ~apex] = bottom[trough & ~apex] - h
    return y


# ------------------------------------------------------------------------------------------ to millivolts


@dataclass(frozen=True)
class _Span:
    """Where a strip's time runs on the page: from column `origin` (its first sample) to column `end`
    (where the next strip's first sample would be), fractional pixels."""

    origin: float
    end: float


def _strip_span(paper: np.ndarray, band: tuple[int, int], strip: StripTrace, grid: Grid) -> _Span:
    """The strip's time span: its grid's left and right border lines where the trace starts and ends
    within 1 mm of them, else the trace's first and last inked columns.

    A printed strip's samples begin at its grid's left edge and a full strip ends at the right edge,
    which the lines give to a fraction of a pixel. The ink does not: the pen reaches past the first and
    last sample by up to its half-width, or is clipped at the edge, a pixel or two either way, and every
    such error would shift all later strips of the page by as much again."""
    first = float(strip.first_column)
    last = float(strip.first_column + strip.y.size - 1)
    if not grid.found:
        return _Span(first, last)
    borders = _border_lines(paper, band)
    if borders is None:
        return _Span(first, last)
    left, right = borders
    tolerance = grid.px_per_mm_x
    origin = left if abs(left - first) <= tolerance else first
    end = right if abs(right - last) <= tolerance else last
    return _Span(origin, end)


def _border_lines(paper: np.ndarray, band: tuple[int, int]) -> tuple[float, float] | None:
    """Centres of the leftmost and rightmost vertical grid lines behind a strip."""
    top, bottom = band
    margin = max((bottom - top) // 2, 32)
    rows = paper[max(0, top - margin) : bottom + margin]
    known = ~np.isnan(rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        profile = np.where(known, rows, 0.0).sum(axis=0) / known.sum(axis=0)
    profile = np.nan_to_num(profile)
    if profile.max() <= 0:
        return None
    columns = np.flatnonzero(profile >= BORDER_LINE_SHARE * profile.max())
    lines = np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1)
    if len(lines) < 2:
        return None
    return _centroid(profile, lines[0]), _centroid(profile, lines[-1])


def _centroid(profile: np.ndarray, columns: np.ndarray) -> float:
    return float(np.average(columns, weights=profile[columns]))


def _strips_to_mv(strips: list[StripTrace], spans: list[_Span], grid: Grid, fs: float) -> np.ndarray:
    """The strips in time order joined on one time axis, each strip's samples placed from its span's
    origin and the next strip starting at its span's end, resampled uniformly to `fs`."""
    px_per_s = grid.px_per_mm_x * PAPER_SPEED_MM_S
    times, values = [], []
    offset = 0.0
    for strip, span in zip(strips, spans, strict=True):
        columns = strip.first_column + np.arange(strip.y.size)
        times.append(offset + (columns - span.origin) / px_per_s)
        values.append(_to_mv(strip, grid))
        offset += (span.end - span.origin) / px_per_s
    t, mv = np.concatenate(times), np.concatenate(values)
    keep = np.concatenate([[True], np.diff(t) > 0])  # a pixel past the border overlaps the next strip
    t, mv = t[keep], mv[keep]
    n_out = int(np.floor(max(float(t[-1]), 0.0) * fs)) + 1
    return np.interp(np.arange(n_out) / fs, t, mv).astype(np.float32)


def _to_mv(strip: StripTrace, grid: Grid) -> np.ndarray:
    """Pixel heights to mV around the strip's median, its baseline."""
    return (float(np.median(strip.y)) - strip.y) / (grid.px_per_mm_y * GAIN_MM_PER_MV)

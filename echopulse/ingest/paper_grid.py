"""The millimetre grid of ECG paper, measured in an image: how many pixels make a millimetre.

Ruled lines repeat every millimetre, heavier every five; the autocorrelation of the paper's darkness
along each axis peaks at that pitch whatever the image's resolution, refined to a fraction of a pixel at
5, 25 and 125 periods. Text and speckle have no such rhythm, and the trace is masked out first. When no
grid can be measured the scale falls back to the DPI the file states, else 300 dpi.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

DEFAULT_DPI = 300.0
MM_PER_INCH = 25.4

DARK_MAX_LUMA = 110.0
"""Trace pixels of a black trace are darker than this; grid lines (grey, pink) are lighter."""

MIN_GRID_PITCH_PX, MAX_GRID_PITCH_PX = 3.0, 60.0
"""1-mm pitches measurable: 3 px (76 dpi) to 60 px (1,520 dpi)."""

MIN_GRID_PERIODS = 8
MIN_GRID_CORRELATION = 0.3
"""Ruled lines correlate with themselves one and five periods on; text and speckle do not."""


@dataclass(frozen=True)
class Grid:
    """The paper's scale in pixels per millimetre along x (time) and y (amplitude)."""

    px_per_mm_x: float
    px_per_mm_y: float
    found: bool
    source: str


def luma(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def measure_grid(
    paper: np.ndarray, trace_mask: np.ndarray, dpi: float | None, bands: list[tuple[int, int]] | None = None
) -> Grid:
    """Pixels per mm from the grid's line pitch along each axis, else from the DPI (file or default).

    `paper` is `grid_darkness`. Only the paper around the strips is measured (`bands`, widened by half
    their height): a page's header and footer text has rhythms of its own that must not pass for a grid."""
    darkness = paper.copy()
    if bands:
        darkness[~_around_bands(trace_mask, bands)] = np.nan
    valid = ~np.isnan(darkness)
    filled = np.where(valid, darkness, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        columns = filled.sum(axis=0) / valid.sum(axis=0)
        rows = filled.sum(axis=1) / valid.sum(axis=1)
    along_x = _line_pitch(_known(columns))
    along_y = _line_pitch(_known(rows))
    hint = DEFAULT_DPI / MM_PER_INCH if dpi is None else dpi / MM_PER_INCH
    if along_x is None and along_y is None:
        source = "default 300 dpi" if dpi is None else "dpi from file"
        return Grid(px_per_mm_x=hint, px_per_mm_y=hint, found=False, source=source)
    along_x = along_x or along_y
    along_y = along_y or along_x
    assert along_x is not None and along_y is not None
    mm_x, mm_y = _one_mm(along_x, along_y, hint)
    return Grid(px_per_mm_x=mm_x, px_per_mm_y=mm_y, found=True, source="grid")


def _around_bands(trace_mask: np.ndarray, bands: list[tuple[int, int]]) -> np.ndarray:
    """The strips' paper: each band's rows widened by half its height, between the trace's first and last
    columns."""
    region = np.zeros(trace_mask.shape, dtype=bool)
    columns = np.flatnonzero(trace_mask.any(axis=0))
    for top, bottom in bands:
        margin = max((bottom - top) // 2, 32)
        region[max(0, top - margin) : bottom + margin, columns[0] : columns[-1] + 1] = True
    return region


def _known(profile: np.ndarray) -> np.ndarray:
    """The profile without the rows or columns that had no paper to measure (outside the strips)."""
    return profile[~np.isnan(profile)]


def grid_darkness(image: np.ndarray, trace_mask: np.ndarray) -> np.ndarray:
    """How dark each paper pixel is (0 on white); NaN on and next to the trace and on text-dark pixels,
    which would otherwise add their own structure to the grid's periodicity."""
    brightness = luma(image)
    darkness = (255.0 - brightness).astype(np.float32)
    near_trace = ndimage.binary_dilation(trace_mask, iterations=3) if trace_mask.any() else trace_mask
    darkness[near_trace | (brightness < DARK_MAX_LUMA)] = np.nan
    return darkness


@dataclass(frozen=True)
class _Pitch:
    """A grid's line period along one axis, and whether every fifth line is heavier (5-mm lines)."""

    period: float
    major_every_fifth: bool


def _line_pitch(profile: np.ndarray) -> _Pitch | None:
    """The line period of a grid profile by autocorrelation: the first strong peak, then refined at
    multiples of itself for sub-pixel precision (a 1-px error on an 11.8-px pitch would be 8 %)."""
    n = profile.size
    if n < MIN_GRID_PERIODS * MIN_GRID_PITCH_PX:
        return None
    width = 2 * int(MAX_GRID_PITCH_PX * 5) + 1
    detrended = profile - ndimage.median_filter(profile, size=min(width, n | 1), mode="nearest")
    corr = _autocorrelation(detrended)
    if corr is None:
        return None
    top = min(int(MAX_GRID_PITCH_PX) + 1, n // MIN_GRID_PERIODS)
    first = _first_peak(corr, int(MIN_GRID_PITCH_PX), top)
    if first is None:
        return None
    period = first
    for multiple in (5, 25, 125):
        lag = _peak_near(corr, multiple * period, period / 3)
        if lag is None or multiple * period > 0.6 * n:
            break
        period = lag / multiple
    minors = [_value_near(corr, k * period, period / 3) for k in (1, 2, 3, 4)]
    fifth = _value_near(corr, 5 * period, period / 3)
    if fifth is None or fifth < MIN_GRID_CORRELATION:
        return None  # not regular over five periods: text or texture, not ruled lines
    major = None not in minors and fifth > np.mean([value for value in minors if value is not None]) + 0.1
    return _Pitch(period=period, major_every_fifth=bool(major))


def _autocorrelation(signal: np.ndarray) -> np.ndarray | None:
    """Unbiased autocorrelation normalised to 1 at lag 0; None for a flat profile (no grid at all)."""
    n = signal.size
    energy = float(np.dot(signal, signal))
    if energy <= 1e-6 * n:
        return None
    spectrum = np.fft.rfft(signal, 2 * n)
    corr = np.fft.irfft(spectrum * np.conj(spectrum))[:n]
    corr = corr / (n - np.arange(n))
    return corr / corr[0]


def _first_peak(corr: np.ndarray, low: int, high: int) -> float | None:
    """The shortest lag whose local maximum is strong (≥ 0.3 and ≥ 40 % of the best in range)."""
    if high <= low + 2:
        return None
    segment = corr[low : high + 1]
    best = float(segment.max())
    if best < MIN_GRID_CORRELATION:
        return None
    for lag in range(max(low, 1), high):
        if corr[lag] >= corr[lag - 1] and corr[lag] >= corr[lag + 1] and corr[lag] >= 0.4 * best:
            return _parabolic(corr, lag)
    return None


def _peak_near(corr: np.ndarray, lag: float, radius: float) -> float | None:
    """Sub-pixel position of the highest autocorrelation within `radius` of `lag`."""
    low, high = max(1, int(np.floor(lag - radius))), int(np.ceil(lag + radius))
    if high >= corr.size - 1 or high <= low:
        return None
    best = low + int(np.argmax(corr[low : high + 1]))
    return _parabolic(corr, best)


def _value_near(corr: np.ndarray, lag: float, radius: float) -> float | None:
    position = _peak_near(corr, lag, radius)
    return None if position is None else float(corr[round(position)])


def _parabolic(corr: np.ndarray, lag: int) -> float:
    """The vertex of the parabola through the three samples around an integer peak."""
    if lag <= 0 or lag >= corr.size - 1:
        return float(lag)
    left, centre, right = corr[lag - 1], corr[lag], corr[lag + 1]
    curvature = left - 2 * centre + right
    return float(lag) if curvature >= 0 else float(lag + 0.5 * (left - right) / curvature)


def _one_mm(along_x: _Pitch, along_y: _Pitch, hint_px_per_mm: float) -> tuple[float, float]:
    """Which of the measured periods is 1 mm. Heavier 5th lines settle it; without them the period is
    1 mm or 5 mm, whichever lies nearer the DPI hint."""
    if along_x.major_every_fifth or along_y.major_every_fifth:
        anchor = along_x.period if along_x.major_every_fifth else along_y.period
    else:
        anchor = min((along_x.period, along_x.period / 5), key=lambda mm: abs(np.log(mm / hint_px_per_mm)))
    return _nearest_multiple(along_x, anchor), _nearest_multiple(along_y, anchor)


def _nearest_multiple(pitch: _Pitch, anchor: float) -> float:
    """The pitch read as 1 mm or as 5 mm (divided by 5), whichever agrees with `anchor`."""
    if pitch.major_every_fifth:
        return pitch.period
    return min((pitch.period, pitch.period / 5), key=lambda mm: abs(np.log(mm / anchor)))

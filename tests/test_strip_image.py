"""Strip images read back to the ECG they show.

Two kinds of evidence. The real image (ecg_page_2.png, the Apple Watch strip the ECHOPulse authors fed to
their model) has no samples to compare with, so its beats are checked against what its own pixels say:
R-peak spacing measured on the red trace in pixels and the grid pitch measured on the grid lines, neither
through the reader's time axis. And real Apple Watch CSVs, drawn by tests/apple_pdf.py as Apple-style
300-dpi pages (three stacked strips on a pink grid) and read back, must give the CSV's waveform and its
R-peaks.

Comparisons with a CSV are made on the record's own time grid, the CSV linearly interpolated onto it, after
one alignment by cross-correlation of at most ±0.1 s (0.5-ms steps): the page is a drawing and its first
inked column can sit a pixel (3.4 ms) either side of the first sample. R-peaks are compared without any
alignment.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from apple_pdf import STRIP_S, build_apple_watch_pdf, render_pdf_page
from ecg_compare import aligned_correlation
from PIL import Image
from scipy.signal import find_peaks

from echopulse.ingest import ECGRecord, read_record
from echopulse.ingest.strip_image import digitise_strip_image
from echopulse.plot import plot_beats
from echopulse.preprocess.offline import Preprocessed, preprocess_record

PAGE_PNG = Path("echopulse/ecg_page_2.png")
EXPECTED_BEATS = 12
HR_TOLERANCE_BPM = 2.0
MIN_R = 0.98
PEAK_TOLERANCE_S = 0.020
PAPER_SPEED_MM_S = 25.0
MAJOR_GRID_GREY = 204
"""The grey of the 5-mm lines of ecg_page_2.png (its 1-mm lines are 229, its trace (205, 10, 32))."""
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------- the real strip image


def _pixel_r_peaks(rgb: np.ndarray) -> np.ndarray:
    """Columns of the R apexes, straight from the pixels: the trace's top edge (its topmost red pixel per
    column) peaks at each R; T and P waves rise less than half as far above their surroundings."""
    red = (rgb[..., 0] > 150) & (rgb[..., 1] < 100) & (rgb[..., 2] < 100)
    columns = np.flatnonzero(red.any(axis=0))
    top = red.argmax(axis=0).astype(np.float64)
    top = np.interp(np.arange(red.shape[1]), columns, top[columns])
    height = top.max() - top
    peaks, _ = find_peaks(height, prominence=0.5 * np.ptp(height))
    return peaks


def _pixel_grid_px_per_mm(rgb: np.ndarray) -> float:
    """Pixels per mm from the 5-mm lines: their centres fitted against their index, slope / 5."""
    major = (rgb == MAJOR_GRID_GREY).all(axis=2)
    columns = np.flatnonzero(major.mean(axis=0) > 0.3)
    lines = np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1)
    centres = np.array([line.mean() for line in lines])
    index = np.round((centres - centres[0]) / np.median(np.diff(centres)))
    slope = np.polyfit(index, centres, 1)[0]
    return float(slope / 5)


@pytest.fixture(scope="module")
def page_png(shared_data: Path) -> Path:
    return shared_data / PAGE_PNG


@pytest.fixture(scope="module")
def grid_implied(page_png: Path) -> dict[str, float]:
    """What the image itself says, measured without the reader: beats, px/mm and heart rate."""
    rgb = np.asarray(Image.open(page_png).convert("RGB")).astype(np.int16)
    peaks = _pixel_r_peaks(rgb)
    px_per_mm = _pixel_grid_px_per_mm(rgb)
    rr_s = float(np.median(np.diff(peaks))) / (px_per_mm * PAPER_SPEED_MM_S)
    return {"beats": float(peaks.size), "px_per_mm": px_per_mm, "hr_bpm": 60.0 / rr_s}


@pytest.fixture(scope="module")
def page_record(page_png: Path) -> tuple[ECGRecord, Preprocessed]:
    record = read_record(page_png)
    return record, preprocess_record(record)


def test_the_pixels_show_twelve_beats_on_a_300_dpi_grid(grid_implied: dict[str, float]) -> None:
    """The test's own measurement first, so a wrong reference cannot make the next tests pass."""
    assert grid_implied["beats"] == EXPECTED_BEATS
    assert grid_implied["px_per_mm"] == pytest.approx(300 / 25.4, rel=0.002)


def test_page_image_is_read_as_a_one_lead_record_on_its_grid(
    page_record: tuple[ECGRecord, Preprocessed], grid_implied: dict[str, float]
) -> None:
    record, _ = page_record
    assert record.source_format == "ecg_image"
    assert record.leads == ("I",) and record.meta["lead_assumed"] is True
    assert record.fs == 500.0 and record.meta["fs_assumed"] is True
    assert record.meta["grid_found"] is True and record.meta["scale_source"] == "grid"
    assert record.meta["trace_colour"] == "red" and record.meta["strips"] == 1
    assert record.meta["grid_px_per_mm"] == pytest.approx(grid_implied["px_per_mm"], rel=0.002)
    assert record.duration_s == pytest.approx(10.0, abs=0.1)  # a 250-mm strip at 25 mm/s


def test_page_image_yields_all_twelve_r_peaks(page_record: tuple[ECGRecord, Preprocessed]) -> None:
    _, result = page_record
    found = [round(beat.r_peak_s, 3) for beat in result.beats]
    assert len(result.beats) == EXPECTED_BEATS, found
    refused = [(beat.r_peak_s, beat.reason) for beat in result.beats if not beat.accepted]
    assert not refused, refused


def test_page_image_heart_rate_matches_its_grid(
    page_record: tuple[ECGRecord, Preprocessed], grid_implied: dict[str, float]
) -> None:
    _, result = page_record
    assert result.hr_bpm is not None
    assert abs(result.hr_bpm - grid_implied["hr_bpm"]) <= HR_TOLERANCE_BPM, (result.hr_bpm, grid_implied)


@pytest.mark.parametrize("variant", ["greyscale", "jpeg", "half_resolution"])
def test_page_image_variants_keep_the_heart_rate(
    variant: str, page_png: Path, grid_implied: dict[str, float], tmp_path: Path
) -> None:
    """A grey (dark-trace) copy, a JPEG and a 150-dpi copy: same rate, the grid still the ruler."""
    image = Image.open(page_png).convert("RGB")
    if variant == "greyscale":
        path = tmp_path / "grey.png"
        image.convert("L").save(path)
    elif variant == "jpeg":
        path = tmp_path / "strip.jpg"
        image.save(path, "JPEG", quality=80)
    else:
        path = tmp_path / "half.png"
        image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS).save(path)
    record = read_record(path)
    result = preprocess_record(record)
    assert record.meta["trace_colour"] == ("black" if variant == "greyscale" else "red")
    scale = 0.5 if variant == "half_resolution" else 1.0
    assert record.meta["grid_px_per_mm"] == pytest.approx(scale * grid_implied["px_per_mm"], rel=0.005)
    assert result.hr_bpm is not None
    assert abs(result.hr_bpm - grid_implied["hr_bpm"]) <= HR_TOLERANCE_BPM
    assert len(result.beats) >= EXPECTED_BEATS - 1


def test_requested_rate_is_used(page_png: Path) -> None:
    record = read_record(page_png, fs=250)
    assert record.fs == 250.0 and record.meta["fs_assumed"] is False
    assert record.n_samples == pytest.approx(2500, abs=30)


def test_beats_plot_is_written(page_record: tuple[ECGRecord, Preprocessed], tmp_path: Path) -> None:
    """The same picture as docs/ecg_page_2_beats.png (that one is committed and checked by eye)."""
    record, result = page_record
    path = plot_beats(record, result, tmp_path / "ecg_page_2_beats.png", title="ecg_page_2.png")
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert Image.open(path).size[0] > 800


# ------------------------------------------------------------------------- CSV → Apple page → back again


def _r_peaks(record: ECGRecord) -> np.ndarray:
    return np.array([beat.r_peak_s for beat in preprocess_record(record).beats])


def _assert_same_r_peaks(
    record: ECGRecord, reference: ECGRecord, label: str, edge_slack: bool = False
) -> None:
    """Every R-peak of the CSV found in the image within 20 ms, and nothing else.

    With `edge_slack` the first or last beat of the CSV may be missing: ecg_2023-09-26 ends with a
    2.5-mV, 10-ms artefact 0.11 s after its last R, and the detector keeps only the steeper of two peaks
    within its refractory period, then drops it for lying in the record's last 0.1 s; whether the R or
    the artefact wins there turns on how the few pixel columns of the artefact came out."""
    expected, found = _r_peaks(reference), _r_peaks(record)
    distance = np.abs(found[:, np.newaxis] - expected[np.newaxis, :])
    unmatched_found = found[distance.min(axis=1) > PEAK_TOLERANCE_S]
    missed = np.flatnonzero(distance.min(axis=0) > PEAK_TOLERANCE_S)
    allowed = {0, expected.size - 1} if edge_slack else set()
    assert not unmatched_found.size, f"{label}: R-peaks the CSV does not have: {unmatched_found}"
    assert set(missed.tolist()) <= allowed and missed.size <= 1, f"{label}: missed {expected[missed]}"
    assert found.size == expected.size - missed.size, f"{label}: {found.size} R-peaks vs {expected.size}"


def _render(csv: Path, directory: Path, **drawing: object) -> np.ndarray:
    """The CSV drawn as an Apple Watch ECG page, rendered at 300 dpi."""
    pdf = build_apple_watch_pdf(csv, directory / f"{csv.stem}.pdf", **drawing)  # type: ignore[arg-type]
    return render_pdf_page(pdf, dpi=300)


@pytest.fixture(scope="module")
def rendered_pages(apple_watch_csvs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each real CSV as a full Apple-style page, saved as a PNG without DPI metadata."""
    assert len(apple_watch_csvs) >= 2, apple_watch_csvs
    directory = tmp_path_factory.mktemp("apple-pages")
    pages = {}
    for csv in apple_watch_csvs:
        pages[csv.name] = directory / f"{csv.stem}.png"
        Image.fromarray(_render(csv, directory)).save(pages[csv.name])
    return pages


def test_apple_pages_read_back_as_their_csv(
    apple_watch_csvs: list[Path], rendered_pages: dict[str, Path]
) -> None:
    for csv in apple_watch_csvs:
        reference = read_record(csv)
        record = read_record(rendered_pages[csv.name])
        assert record.meta["strips"] == 3 and record.meta["scale_source"] == "grid", record.meta
        assert record.meta["grid_px_per_mm"] == pytest.approx(300 / 25.4, rel=0.002)
        assert record.duration_s == pytest.approx(reference.duration_s, abs=0.05)
        r = aligned_correlation(record, reference)
        assert r >= MIN_R, f"{csv.name}: r = {r:.4f}"
        _assert_same_r_peaks(record, reference, csv.name)


def test_page_array_reads_like_the_file(apple_watch_csvs: list[Path], tmp_path: Path) -> None:
    """`digitise_strip_image` on the rendered array, as the PDF reader calls it for image-only PDFs."""
    csv = apple_watch_csvs[0]
    record = digitise_strip_image(_render(csv, tmp_path), f"{csv.stem}.pdf", dpi=300)
    reference = read_record(csv)
    assert aligned_correlation(record, reference) >= MIN_R
    _assert_same_r_peaks(record, reference, csv.name)


def _strip_spans(record: ECGRecord) -> list[tuple[float, float]]:
    """The 10-s strips of the page on the record's time axis."""
    return [(k * STRIP_S, (k + 1) * STRIP_S) for k in range(record.meta["strips"])]


@pytest.mark.parametrize("variant", ["black_trace", "jpeg", "no_grid_dpi_in_file", "no_grid_no_dpi"])
def test_apple_page_variants_read_back(variant: str, apple_watch_csvs: list[Path], tmp_path: Path) -> None:
    """A black trace (the dark fallback), a JPEG, and pages without a grid (scale from the file's DPI,
    else the 300-dpi default). JPEG blur and a missing grid can move a strip's first inked column by a
    pixel or two, so here each 10-s strip is aligned on its own (still at most ±0.1 s); the R-peaks are
    compared on the joined time axis, unaligned, allowing the first or last beat to be missed
    (`_assert_same_r_peaks`)."""
    drawing = {"black_trace": {"trace_colour": (0.0, 0.0, 0.0)}}.get(variant, {})
    if variant.startswith("no_grid"):
        drawing = {"grid": False}
    for csv in apple_watch_csvs:
        page = Image.fromarray(_render(csv, tmp_path, **drawing))
        path = tmp_path / f"{csv.stem}.{'jpg' if variant == 'jpeg' else 'png'}"
        if variant == "jpeg":
            page.save(path, "JPEG", quality=85)
        elif variant == "no_grid_dpi_in_file":
            page.save(path, dpi=(300, 300))
        else:
            page.save(path)
        reference = read_record(csv)
        record = read_record(path)
        assert record.meta["trace_colour"] == ("black" if variant == "black_trace" else "red")
        expected_scale = {"no_grid_dpi_in_file": "dpi from file", "no_grid_no_dpi": "default 300 dpi"}
        assert record.meta["scale_source"] == expected_scale.get(variant, "grid")
        assert record.meta["grid_found"] is not variant.startswith("no_grid")
        for span in _strip_spans(record):
            r = aligned_correlation(record, reference, span)
            assert r >= MIN_R, f"{variant} {csv.name} {span}: r = {r:.4f}"
        _assert_same_r_peaks(record, reference, f"{variant} {csv.name}", edge_slack=True)

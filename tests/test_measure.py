"""Echo measurements: accuracy against phantom labels, exact areas on drawn ellipses, refusals, real GIFs."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from echopulse.echo.measure import (
    MeasureError,
    area_length_volume,
    measure_clip,
    periodicity_frames,
)
from echopulse.echo.measure_plot import plot_measurement
from echopulse.errors import EchopulseError

REPO = Path(__file__).resolve().parents[1]
TEST_SEEDS = range(700_000, 700_024)
"""A seed range used by this test only (development used other seeds; the benchmark uses 900 000+)."""


def _benchmark_module():
    """benchmarks/measure.py holds the GIF panel reader; load it by path (benchmarks is not a package)."""
    spec = importlib.util.spec_from_file_location("measure_benchmark", REPO / "benchmarks" / "measure.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ellipse_clip(
    n: int = 11, size: int = 64, seed: int = 0, cycles: float = 1.0, scale: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A dark LV ellipse (right of the apex) and a smaller RV in a bright speckled fan; true LV areas.

    The LV shrinks by ~35 % in area and back over each cycle, largest at frame 0, like a beat from R-peak;
    `scale` (one value per frame, ≤ 1) draws any other area curve instead.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    angle = np.arctan2(xx - size / 2, yy - 1)
    fan = (np.abs(angle) < np.deg2rad(38)) & (np.hypot(xx - size / 2, yy - 1) < size * 0.95)
    if scale is None:
        scale = 1 - 0.35 * (0.5 - 0.5 * np.cos(2 * np.pi * cycles * np.arange(n) / n))
    rv = ((xx - size * 0.36) / (size * 0.07)) ** 2 + ((yy - size * 0.4) / (size * 0.2)) ** 2 <= 1
    frames, areas = [], []
    for s in scale:
        img = 0.6 + 0.2 * rng.standard_normal((size, size))
        half_w, half_h = size * 0.12 * s, size * 0.25 * math.sqrt(s)
        lv = ((xx - size * 0.6) / half_w) ** 2 + ((yy - size * 0.38) / half_h) ** 2 <= 1
        img[lv | rv] = 0.08 + 0.05 * rng.standard_normal(int((lv | rv).sum()))
        img[~fan] = 0
        frames.append(np.clip(img * 255, 0, 255).astype(np.uint8))
        areas.append(lv.sum())
    return np.stack(frames), np.array(areas, dtype=float)


def test_ellipse_area_curve_follows_the_drawn_areas() -> None:
    clip, areas = ellipse_clip(size=96)
    m = measure_clip(clip, fps=30.0, frames_per_cycle=len(clip))
    assert np.max(np.abs(m.lv_area_px - areas) / areas) < 0.08
    assert np.corrcoef(m.lv_area_px, areas)[0, 1] > 0.99
    assert m.ed_frame == 0
    assert m.es_frame in (5, 6)
    assert m.lv_masks.shape == clip.shape and m.lv_masks.dtype == bool
    assert m.hr_bpm == pytest.approx(60 * 30.0 / 11)


def test_multi_cycle_clip_gets_period_from_the_area_curve() -> None:
    n, fps, cycles = 40, 30.0, 3.2
    clip, _ = ellipse_clip(n=n, size=64, cycles=cycles)
    m = measure_clip(clip, fps=fps)
    true_period_s = n / cycles / fps
    assert m.period_s == pytest.approx(true_period_s, rel=0.03)
    assert periodicity_frames(np.ones(20)) is None


SLOW_BEAT_WITH_RIPPLE = np.abs(np.arange(20.0) - 9.5) + 2.0 * np.sin(np.pi * np.arange(20.0) / 2)
"""One slow fall and rise over 20 frames with a 4-frame ripple on it: every autocorrelation peak up to the
longest period looked for is negative, so no peak is 'strong' (this once raised a bare StopIteration)."""


def test_a_curve_without_a_positive_autocorrelation_peak_has_no_period() -> None:
    assert periodicity_frames(SLOW_BEAT_WITH_RIPPLE) is None
    assert periodicity_frames(np.full(20, 1e-200) * np.arange(20)) is None  # squares underflow to 0


def test_a_clip_whose_area_curve_has_no_period_is_one_beat() -> None:
    curve = SLOW_BEAT_WITH_RIPPLE
    scale = 1.0 - 0.35 * (curve.max() - curve) / np.ptp(curve)
    clip, _ = ellipse_clip(n=len(scale), size=64, scale=scale)
    m = measure_clip(clip, fps=30.0)
    assert m.period_s == pytest.approx(len(clip) / 30.0)


@pytest.mark.parametrize(
    ("fps", "px_per_cm", "frames_per_cycle", "match"),
    [
        ("fast", None, None, "fps"),
        (30.0, "big", None, "px_per_cm"),
        (30.0, None, 0, "frames_per_cycle"),
        (30.0, None, 5.5, "frames_per_cycle"),
        (30.0, None, "11", "frames_per_cycle"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(fps, px_per_cm, frames_per_cycle, match: str) -> None:
    with pytest.raises(MeasureError, match=match):
        measure_clip(ellipse_clip()[0], fps=fps, px_per_cm=px_per_cm, frames_per_cycle=frames_per_cycle)


def test_any_clip_gives_a_measurement_or_a_measure_error() -> None:
    """Noise, stripes, negative and tiny values, odd shapes: never an exception other than MeasureError."""
    rng = np.random.default_rng(3)
    clips = [
        rng.integers(0, 256, (7, 32, 32), dtype=np.uint8),
        rng.standard_normal((5, 24, 40)).astype(np.float32),
        np.full((4, 16, 16), 1e-30, dtype=np.float64),
        np.tile((np.arange(48) % 2 * 255).astype(np.uint8), (6, 48, 1)),
        np.where(ellipse_clip(n=9)[0] > 40, 255, 0).astype(np.uint8),
        ellipse_clip(n=30)[0][:, ::-1, :],
        ellipse_clip(n=30)[0][::-1].transpose(0, 2, 1),
        np.zeros((3, 16, 2000), dtype=np.uint8),
    ]
    clips += [(c * rng.uniform(0, 1, c.shape)).astype(np.uint8) for c in (ellipse_clip(n=12, seed=s)[0]
                                                                          for s in range(3))]
    for clip in clips:
        for fpc in (None, len(clip), 1):
            try:
                m = measure_clip(clip, fps=25.0, frames_per_cycle=fpc)
            except MeasureError:
                continue
            assert 0 <= m.ed_frame < len(clip) and 0 <= m.es_frame < len(clip)


def test_area_length_volume_is_in_ml_with_a_scale() -> None:
    # a sphere of radius 2 cm seen through its centre: A = 4π cm², L = 4 cm → 8·16π²/(12π) = 32π/3 ml
    px_per_cm = 10.0
    volume = area_length_volume(np.array([4 * math.pi * 100]), np.array([40.0]), px_per_cm)
    assert volume[0] == pytest.approx(4 / 3 * math.pi * 8, rel=1e-9)


@pytest.mark.parametrize(
    ("clip", "fps", "match"),
    [
        (np.zeros((11, 64), dtype=np.uint8), 30.0, "3-D"),
        (np.zeros((2, 64, 64), dtype=np.uint8), 30.0, "at least 3 frames"),
        (np.zeros((11, 64, 64), dtype=np.int32), 30.0, "uint8 or float"),
        (np.zeros((11, 64, 64), dtype=np.uint8), 30.0, "no imaged sector"),
        (np.full((11, 64, 64), 200, dtype=np.uint8), 30.0, "no LV found"),
        (np.full((11, 64, 64), np.nan, dtype=np.float32), 30.0, "NaN"),
        (ellipse_clip()[0], 0.0, "fps"),
    ],
)
def test_bad_input_is_refused_with_a_reason(clip: np.ndarray, fps: float, match: str) -> None:
    with pytest.raises(MeasureError, match=match) as info:
        measure_clip(clip, fps=fps)
    assert isinstance(info.value, EchopulseError)


def test_plot_writes_a_png(tmp_path: Path) -> None:
    clip, _ = ellipse_clip()
    m = measure_clip(clip, fps=30.0, frames_per_cycle=len(clip))
    path = plot_measurement(clip, m, tmp_path / "strip.png", title="ellipse")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _phantom_errors() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """|EF error| (points), ED and ES both within ±1 frame, |HR error| (bpm) on the test-only seeds."""
    phantom = pytest.importorskip("echopulse.echo.phantom")
    frames = 11
    ef_err, ed_es_ok, hr_err = [], [], []
    for seed in TEST_SEEDS:
        sample = phantom.make_phantom(seed, size=128, frames=frames, layout="cycle", fps=30.0)
        labels = sample.labels
        m = measure_clip(sample.clip, labels.fps, labels.px_per_cm, frames_per_cycle=frames)
        ef_err.append(abs(m.ef - labels.ef))
        ed_es_ok.append(
            all(
                _cyclic_distance(a, b, frames) <= 1
                for a, b in ((m.ed_frame, labels.ed_frame), (m.es_frame, labels.es_frame))
            )
        )
        hr_err.append(abs(m.hr_bpm - labels.hr_bpm))
    return np.array(ef_err), np.array(ed_es_ok), np.array(hr_err)


def _cyclic_distance(a: int, b: int, period: int) -> int:
    """Frames apart on an R-to-R clip, whose last frame is next to the first frame of the next beat."""
    d = abs(a - b) % period
    return min(d, period - d)


@pytest.fixture(scope="module")
def phantom_errors() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _phantom_errors()


def test_phantom_clips_meet_the_timing_acceptance_bounds(phantom_errors) -> None:
    """ED and ES within ±1 frame for ≥ 95 % of clips, heart rate within ±2 bpm."""
    _, ed_es_ok, hr_err = phantom_errors
    assert np.mean(ed_es_ok) >= 0.95
    assert hr_err.max() <= 2.0


def test_phantom_clips_meet_the_ef_acceptance_bound(phantom_errors) -> None:
    """EF MAE ≤ 3 points against the label (the whole LV is in the sector, so the label is imaged)."""
    ef_err, _, _ = phantom_errors
    assert ef_err.mean() <= 3.0, f"EF MAE {ef_err.mean():.2f} points"


def test_real_echopulse_gifs_give_an_ef_for_every_clip(shared_data: Path) -> None:
    bench = _benchmark_module()
    pairs = bench.visualization_pairs(shared_data / "echopulse")
    assert len(pairs) >= 6
    for _, truth, pred in pairs:
        for path in (truth, pred):
            clip, fps = bench.read_echo_panel(path)
            assert clip.shape == (11, 128, 128) and clip.dtype == np.uint8
            assert fps == pytest.approx(1000 / 120)
            m = measure_clip(clip, fps, frames_per_cycle=len(clip))
            assert math.isfinite(m.ef) and 0.0 <= m.ef <= 100.0, path.name


def test_small_phantom_clips_are_measured_at_their_own_size() -> None:
    """At a native 64 px (the generator's size), EF MAE ≤ 3 points and ED/ES within ±1 frame for ≥ 95 %.

    The partial-volume band scales with the frame size; with the 128-px band (±2 px) the MAE on these
    seeds was 4.0 points, with the scaled one (±1 px) 2.4.
    """
    phantom = pytest.importorskip("echopulse.echo.phantom")
    frames = 11
    ef_err, ed_es_ok = [], []
    for seed in TEST_SEEDS:
        sample = phantom.make_phantom(seed, size=64, frames=frames, layout="cycle")
        labels = sample.labels
        m = measure_clip(sample.clip, frames / labels.rr_s, frames_per_cycle=frames)
        ef_err.append(abs(m.ef - labels.ef))
        ed_es_ok.append(
            all(
                _cyclic_distance(a, b, frames) <= 1
                for a, b in ((m.ed_frame, labels.ed_frame), (m.es_frame, labels.es_frame))
            )
        )
    assert np.mean(ef_err) <= 3.0, f"EF MAE {np.mean(ef_err):.2f} points"
    assert np.mean(ed_es_ok) >= 0.95

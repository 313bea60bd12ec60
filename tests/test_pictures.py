"""The pictures: drawn without touching the caller's matplotlib backend, every ECG strip with a scale bar,
and every beat without a clip marked with its reason (ecg.png, contact sheets, the video's 'no clip' card)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from echopulse.drawing.ecg_strip import reason_kind, scale_bar_mv, short_reason
from echopulse.ecg import ECGRecord
from echopulse.generator.clip import EchoClip, Provenance
from echopulse.plot import beats_figure
from echopulse.preprocess.beats import Beat
from echopulse.preprocess.offline import Preprocessed
from echopulse.video.clip_files import upscale, view_size
from echopulse.video.sheet import contact_sheet_figure
from echopulse.video.timeline import ECG_MARGIN_PX, ECG_PANEL_PX, SCALE, TimelineVideo

REPO = Path(__file__).resolve().parents[1]
FS = 250.0
RR_S = 0.8
LOW_QUALITY = "QRS unlike its neighbours (r=0.12) and not a clean beat (noise 80% of QRS); quality 0.41 < 0.6"


def _signal(seconds: float = 12.0, r_mv: float = 1.5) -> np.ndarray:
    """Narrow R waves every `RR_S` on a flat baseline: the range a real lead I strip has."""
    t = np.arange(int(seconds * FS)) / FS
    phase = (t - 0.4) % RR_S
    return (r_mv * np.exp(-0.5 * (np.minimum(phase, RR_S - phase) / 0.012) ** 2)).astype(np.float32)


def _beats(n: int, refused: dict[int, str]) -> list[Beat]:
    beats = []
    for i in range(n):
        r = 0.4 + i * RR_S
        rr = None if i == 0 else RR_S
        beats.append(Beat(i, round(r * FS), r, rr, None if rr is None else 60 / rr, 0.9, i not in refused,
                          refused.get(i)))
    return beats


def _record(refused: dict[int, str]) -> tuple[ECGRecord, Preprocessed]:
    signal = _signal()
    record = ECGRecord(signal=signal[None], fs=FS, leads=("I",))
    beats = _beats(int((signal.size / FS - 0.4) / RR_S) + 1, refused)
    return record, Preprocessed(beats=beats, windows=[], detection_lead="I", method="test", layout="stmem")


def _texts(fig: Figure) -> list[str]:
    """Every text drawn, including those inside offset boxes (the scale bar's label)."""
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def _clip(beat: Beat) -> EchoClip:
    frames = np.random.default_rng(beat.index).integers(0, 255, (11, 32, 32), dtype=np.uint8)
    provenance = Provenance("test", "0", 0, 1, 1.0, False, "cpu")
    return EchoClip(frames, 11 / RR_S, RR_S, beat.r_peak_s, beat.index, provenance)


# ---------------------------------------------------------------------------------------------- backend
def test_importing_and_drawing_leaves_the_backend_alone(tmp_path: Path) -> None:
    """A program that picked its own backend keeps it, and pyplot (which would start a GUI) stays out."""
    script = textwrap.dedent(
        f"""
        import sys
        import matplotlib
        matplotlib.use("pdf")
        import numpy as np
        from pathlib import Path
        import echopulse.plot, echopulse.outputs, echopulse.drawing.ecg_strip, echopulse.drawing.frame_sheet
        import echopulse.echo.contact_sheet, echopulse.echo.measure_plot, echopulse.evaluation.plots
        import echopulse.video.sheet, echopulse.video.timeline
        sys.path.insert(0, {str(REPO / "tests")!r})
        from test_pictures import _record
        from echopulse.echo.phantom import make_phantom
        out = Path({str(tmp_path)!r})
        record, result = _record({{3: "flat signal: QRS under 0.1 mV"}})
        echopulse.plot.plot_beats(record, result, out / "ecg.png")
        echopulse.echo.contact_sheet.contact_sheet([make_phantom(1, size=32, frames=4)], out / "sheet.png")
        video = np.zeros((1, 3, 8, 8))
        echopulse.evaluation.plots.tokenizer_strip(out / "tok.png", video, video, ["a"], "t")
        assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
        assert matplotlib.get_backend() == "pdf", matplotlib.get_backend()
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert all((tmp_path / name).stat().st_size > 1000 for name in ("ecg.png", "sheet.png", "tok.png"))


# ------------------------------------------------------------------------------------------- scale bars
@pytest.mark.parametrize(
    ("span", "bar"), [(2.0, 1.0), (1.6, 1.0), (1.3, 0.5), (0.5, 0.2), (0.05, 0.1), (9.0, 5.0)]
)
def test_the_scale_bar_is_a_round_value_that_fits(span: float, bar: float) -> None:
    assert scale_bar_mv(span) == bar


def test_ecg_png_strips_have_a_1_mv_bar() -> None:
    record, result = _record({})
    texts = _texts(beats_figure(record, result))
    assert texts.count("1 mV") == 2  # 12 s: two 10-s strips, a bar on each


def test_a_small_trace_gets_a_smaller_bar() -> None:
    record, result = _record({})
    record.signal[:] *= 0.3
    assert "0.2 mV" in _texts(beats_figure(record, result))


def test_both_contact_sheets_have_a_scale_bar() -> None:
    from echopulse.echo.contact_sheet import contact_sheet_figure as phantom_sheet_figure
    from echopulse.echo.phantom import make_phantom

    _, result = _record({})
    sheet = contact_sheet_figure(_signal(), FS, result.beats, [_clip(result.beats[2])], title="t", mark=False)
    assert "1 mV" in _texts(sheet)
    phantom = phantom_sheet_figure([make_phantom(1, size=32, frames=4), make_phantom(2, size=32, frames=4)])
    assert sum(t.endswith(" mV") for t in _texts(phantom)) == 2


def test_the_video_strip_has_a_scale_bar_of_the_traces_scale(tmp_path: Path) -> None:
    _, result = _record({})
    signal = _signal()
    video = TimelineVideo(tmp_path / "v.mp4", signal, FS, signal.size / FS, result.beats, fps=5,
                          image_size=64, scale=4, mark=False)
    try:
        panel = video.frame(1.0, None)[video.echo_px :]
    finally:
        video.abort()
    bar_rows = np.flatnonzero((panel[:, :ECG_MARGIN_PX] == SCALE).all(axis=-1).any(axis=1))
    low, high = video._range
    expected_px = video.scale_mv * (ECG_PANEL_PX - 16) / (high - low)
    assert video.scale_mv == 1.0
    assert bar_rows.size == pytest.approx(expected_px, abs=2)


# ------------------------------------------------------------------------------------- refusal reasons
def test_reasons_are_shortened_to_their_figure_or_first_clause() -> None:
    assert short_reason(LOW_QUALITY) == "quality 0.41"
    assert short_reason("window quality 0.52 < 0.6: noisy segment") == "window quality 0.52"
    assert short_reason("flat signal: QRS under 0.1 mV peak to peak") == "flat signal"
    assert short_reason("no RR interval (no accepted beat before it)") == "no RR interval"
    assert len(short_reason("x" * 200)) <= 30
    assert reason_kind(LOW_QUALITY) == "low quality"


def test_ecg_png_says_why_a_beat_was_refused() -> None:
    record, result = _record({4: LOW_QUALITY})
    texts = _texts(beats_figure(record, result))
    assert "refused: quality 0.41" in texts
    assert not any("beats refused" in t for t in texts)  # one refusal: its label says it all


def test_ecg_png_sums_up_many_refusals_in_a_legend_line() -> None:
    refused = {i: LOW_QUALITY for i in range(1, 14, 2)} | {6: "flat signal: QRS under 0.1 mV peak to peak"}
    record, result = _record(refused)
    heading = beats_figure(record, result)._suptitle.get_text()
    assert "8 beats refused: low quality ×7, flat signal ×1" in heading


def test_contact_sheet_marks_refused_beats_and_beats_without_a_clip() -> None:
    _, result = _record({5: LOW_QUALITY})
    clips = [_clip(result.beats[2])]
    texts = _texts(contact_sheet_figure(_signal(), FS, result.beats, clips, title="t", mark=False))
    assert "refused: quality 0.41" in texts
    assert "no clip: no RR interval" in texts  # beat 0: inferred from the beats alone
    skipped = {0: "no RR interval (no accepted beat before it)", 9: "window quality 0.52 < 0.6: noisy"}
    texts = _texts(contact_sheet_figure(_signal(), FS, result.beats, clips, title="t", mark=False,
                                        skipped=skipped))
    assert "no clip: window quality 0.52" in texts


def test_the_no_clip_card_says_why(tmp_path: Path) -> None:
    _, result = _record({3: LOW_QUALITY})
    signal = _signal()
    video = TimelineVideo(tmp_path / "v.mp4", signal, FS, signal.size / FS, result.beats, fps=5,
                          image_size=64, scale=4, mark=False, skipped={6: "window quality 0.52 < 0.6: noisy"})
    try:
        beat = result.beats
        assert video.gap_reason(0.1) == ("no clip", "before the first beat")
        assert video.gap_reason(beat[3].r_peak_s - 0.1) == ("beat 3 refused", "quality 0.41")
        assert video.gap_reason(beat[6].r_peak_s - 0.1) == ("no clip for beat 6", "window quality 0.52")
        assert video.gap_reason(beat[-1].r_peak_s + 0.1) == ("no clip", "after the last beat")
    finally:
        video.abort()


@pytest.mark.parametrize("shape", [(11, 64, 64), (11, 63, 65), (2, 1, 1)])
def test_the_size_a_server_announces_is_the_size_its_clip_files_have(shape: tuple[int, int, int]) -> None:
    """The service states each clip's height and width without enlarging it twice: what it states must be
    what `upscale` makes (enlarged, then padded to even sizes for the video codecs)."""
    frames = np.zeros(shape, np.uint8)
    for scale in (1, 2, 3):
        assert view_size(frames, scale) == upscale(frames, scale).shape[1:3]

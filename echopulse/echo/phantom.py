"""The paired ECG–echo phantom: (ECG, apical four-chamber clip, labels), deterministic for a seed.

- ECG (`ecg_phantom`): 12 leads (I, II, III, aVR, aVL, aVF, V1–V6), 250 Hz, mV, 11 s; the clip's closing
  R-peak sits at 10.0 s, so the 9-s ST-MEM window ending at it has a 1-s margin on either side.
- Cycle (`heart_cycle`): end-diastole at the R-peak, ejection after the QRS, end-systole at the T end,
  rapid filling, diastasis, atrial kick after the P wave.
- Echo (`apical4c`): sector, speckle, attenuation, chambers moving with the cycle; depth, sector angle, gain,
  wall thickness, chamber sizes, tilt and noise are drawn per sample; the sector is then widened (up to a
  70° fan), the heart turned towards the centre line and, if need be, moved deeper until the whole LV,
  with a margin of its wall, is inside the sector in every frame, so the labels describe what the clip
  images; the fan ends just below the atria, so the heart fills it, as in an acquired apical view.

EF coupling rule (see `heart_cycle.target_ef`):

    EF = 62 − 0.30·max(0, QRS − 100 ms) − 25·max(0, 0.8 − QRS voltage scale) − 45·|ST deviation mV|
         + N(0, 3²), clipped to [15, 75]

Clip layouts: ``"cycle"``: the last RR interval (opening R-peak to closing R-peak) in `frames` frames, frame k
at k·RR/frames (frame 0 is end-diastole); ``"fps"``: `frames` frames at `fps` from the opening R-peak (the
ECHOPulse layout: the first frames of a cycle segment; past the closing R-peak the cycle repeats).

Labels: volumes by the single-plane area–length formula V = 8·A²/(3·π·L) on the true LV masks (A the cavity
area in cm², L the true apex-to-mitral-annulus-midpoint length in cm) at the clip's ED frame (largest LV
area) and ES frame (smallest), EF = (EDV − ESV)/EDV from them; the labels describe the frames in the clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from echopulse.echo.apical4c import Apical4CRenderer, FrameState, draw_anatomy
from echopulse.echo.ecg_phantom import CLOSING_R_S, ECG_FS, HR_RANGE_BPM, simulate_ecg
from echopulse.echo.heart_cycle import EF_NOISE_SD, CycleTiming, target_ef, volume_fraction
from echopulse.errors import EchopulseError

LAYOUTS = ("cycle", "fps")
PATCH = 8  # the video tokenizer's spatial patch: sizes must be multiples of it
MAX_FRAMES = 256
MAX_SIZE = 512
SEED_TAG = 0x45434850
"""Mixed into every sample's seed sequence, so phantom streams differ from other users of the same seed."""


def seed_stream(seed: int, heart_draw: int = 0) -> np.random.Generator:
    """The random stream of sample `seed`, whose first draws are its ECG (`simulate_ecg(seed_stream(s))` is
    sample s's ECG); `heart_draw` k ≥ 1: the stream of its k-th other heart (see `make_phantom`)."""
    extra = [int(heart_draw)] if heart_draw else []
    return np.random.default_rng(np.random.SeedSequence([int(seed), SEED_TAG, *extra]))


class PhantomError(EchopulseError):
    """Arguments the phantom cannot honour (zero frames, a size that is not a multiple of 8, ...)."""


@dataclass(frozen=True)
class PhantomLabels:
    ef: float  # percent, from EDV/ESV below
    edv_ml: float
    esv_ml: float
    ed_frame: int
    es_frame: int
    hr_bpm: float
    rr_s: float
    fps: float  # frames per second of the clip
    px_per_cm: float  # image scale, for volumes
    lv_area_px: np.ndarray  # (frames,) float, LV cavity area in pixels per frame
    lv_mask: np.ndarray  # (frames, H, W) bool
    fiducials_s: dict[str, np.ndarray]  # "r_peak", "p_onset", "qrs_end", "t_end": seconds from ECG start


@dataclass(frozen=True)
class PhantomSample:
    ecg: np.ndarray  # float32 (12, n) at 250 Hz, mV, lead order I..V6
    ecg_fs: float  # 250.0
    clip: np.ndarray  # uint8 (frames, H, W) grayscale
    labels: PhantomLabels
    seed: int


def area_length_ml(area_cm2: float, length_cm: float) -> float:
    """Single-plane area–length volume in ml (cm³)."""
    return float(8.0 * area_cm2**2 / (3.0 * np.pi * length_cm))


def check_arguments(size: int, frames: int, layout: str, fps: float, hr_bpm: float | None = None) -> None:
    if not isinstance(frames, int | np.integer) or frames < 1 or frames > MAX_FRAMES:
        raise PhantomError(f"phantom: frames must be an integer from 1 to {MAX_FRAMES}, got {frames!r}")
    if not isinstance(size, int | np.integer) or size < 2 * PATCH or size > MAX_SIZE or size % PATCH:
        raise PhantomError(
            f"phantom: size must be a multiple of the tokenizer patch ({PATCH}) from {2 * PATCH} to "
            f"{MAX_SIZE}, got {size!r}"
        )
    if layout not in LAYOUTS:
        raise PhantomError(f"phantom: layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if not np.isfinite(fps) or fps <= 0 or fps > 1000:
        raise PhantomError(f"phantom: fps must be in (0, 1000], got {fps!r}")
    if hr_bpm is not None and not (HR_RANGE_BPM[0] <= hr_bpm <= HR_RANGE_BPM[1]):
        raise PhantomError(
            f"phantom: heart rate must be from {HR_RANGE_BPM[0]:.0f} to {HR_RANGE_BPM[1]:.0f} bpm, "
            f"got {hr_bpm!r}"
        )


def make_phantom(
    seed: int,
    size: int = 128,
    frames: int = 11,
    layout: str = "cycle",
    fps: float = 30.0,
    hr_bpm: float | None = None,
    heart_draw: int = 0,
    ef_noise_sd: float = EF_NOISE_SD,
) -> PhantomSample:
    """One (ECG, clip, labels) triple; the same arguments give the same arrays. `hr_bpm` fixes the mean
    heart rate (30–200 bpm) instead of drawing it.

    `heart_draw` k ≥ 1 keeps the seed's ECG and draws everything the ECG does not decide afresh, from a
    stream of its own: the EF rule's random part, the rapid-filling share, the anatomy, the sector and
    the speckle. That is another heart the same ECG could belong to, i.e. what an ideal ECG-to-echo
    generator would make as its k-th sample; the eval measures it to show the best score a generator
    that follows the phantom's own distribution can reach. Draw 0 is the seed's own heart.
    `ef_noise_sd` is the EF rule's random part (0: the EF the ECG decides, for measuring what a generator
    that reads the ECG perfectly and never varies the EF would score).
    """
    check_arguments(size, frames, layout, fps, hr_bpm)
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise PhantomError(f"phantom: seed must be a non-negative integer, got {seed!r}")
    if not isinstance(heart_draw, int | np.integer) or heart_draw < 0:
        raise PhantomError(f"phantom: heart_draw must be a non-negative integer, got {heart_draw!r}")
    if not (isinstance(ef_noise_sd, int | float) and 0.0 <= ef_noise_sd <= 20.0):
        raise PhantomError(f"phantom: ef_noise_sd must be a number from 0 to 20 points, got {ef_noise_sd!r}")
    rng = seed_stream(seed)
    ecg = simulate_ecg(rng, hr_bpm)
    if heart_draw:
        rng = seed_stream(seed, heart_draw)
    timing = CycleTiming.of_closing_cycle(ecg, rapid_fraction=float(rng.uniform(0.7, 0.8)))
    rr = timing.rr
    ef_goal = target_ef(ecg.morphology, rng, ef_noise_sd)
    anatomy = draw_anatomy(rng, ef_goal)
    renderer = Apical4CRenderer(anatomy, size, rng)
    renderer.calibrate_ef()

    if layout == "cycle":
        times = np.arange(frames) * rr / frames
        clip_fps = frames / rr
    else:
        times = np.arange(frames) / fps
        clip_fps = float(fps)
    g = volume_fraction(times, timing)
    openness = _mitral_openness(times, timing)

    clip = np.empty((frames, size, size), np.uint8)
    masks = np.empty((frames, size, size), bool)
    lengths = np.empty(frames)
    for i in range(frames):
        clip[i], masks[i], lengths[i] = renderer.render(FrameState(float(g[i]), float(openness[i]), i))
    area_px = masks.reshape(frames, -1).sum(axis=1).astype(np.float64)
    ed, es = int(np.argmax(area_px)), int(np.argmin(area_px))
    ppc2 = renderer.px_per_cm**2
    edv = area_length_ml(area_px[ed] / ppc2, lengths[ed])
    esv = area_length_ml(area_px[es] / ppc2, lengths[es])
    labels = PhantomLabels(
        ef=float(100.0 * (edv - esv) / edv) if edv > 0 else 0.0,
        edv_ml=edv,
        esv_ml=esv,
        ed_frame=ed,
        es_frame=es,
        hr_bpm=60.0 / rr,
        rr_s=rr,
        fps=float(clip_fps),
        px_per_cm=float(renderer.px_per_cm),
        lv_area_px=area_px,
        lv_mask=masks,
        fiducials_s={
            "r_peak": ecg.r_peak.copy(),
            "p_onset": ecg.p_onset.copy(),
            "qrs_end": ecg.qrs_end.copy(),
            "t_end": ecg.t_end.copy(),
        },
    )
    assert abs(ecg.r_peak[ecg.closing_index] - CLOSING_R_S) < 1e-9
    return PhantomSample(ecg=ecg.signal, ecg_fs=ECG_FS, clip=clip, labels=labels, seed=int(seed))


def _mitral_openness(t: np.ndarray, c: CycleTiming) -> np.ndarray:
    """0 closed (systole, isovolumic phases), 1 wide open (rapid filling), partly closed in diastasis."""
    t = np.mod(t, c.rr)
    opening = np.clip((t - c.mitral_opening) / 0.04, 0.0, 1.0)
    closing = np.clip((c.rr - t) / 0.03, 0.0, 1.0)
    diastasis = np.clip((t - c.mitral_opening - 0.15) / 0.1, 0.0, 1.0) * np.clip(
        (c.atrial_start + 0.04 - t) / 0.04, 0.0, 1.0
    )
    return opening * closing * (1.0 - 0.4 * diastasis)

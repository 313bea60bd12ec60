"""Echo measurement benchmark: accuracy on unseen phantom clips, speed, and the real ECHOPulse GIFs.

    python benchmarks/measure.py [--clips 200] [--seed-base 900000] [--out measure.json]

Phantom: `--clips` one-cycle clips (128×128, 11 frames) from seeds `seed_base + i`. The default base,
900 000, was never used while developing the measurement, so these clips are unseen. Reported: EF MAE
(points) against the phantom's label, the share of clips with ED and ES within ±1 frame, heart-rate error
(bpm), and clips/s at 64×64×11 on one core (BLAS/OpenMP pools limited to 1 thread).

Real: each Visualization GIF pair in ../shared/data/echopulse (ground truth `X.mp4.gif` beside the
model's `X.mp4_pred.gif`; `sample_with_ekg_N.gif` beside `sample_with_ekg_pred_N.gif`): the 128×128 echo
panel is cut out of the 800×1000 figure (found by its black background), measured at the GIFs' frame rate,
and the two EFs are reported side by side. Real echo is out of the phantom's domain: these numbers are
reported for a human to judge, and nothing was tuned to them.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence
from scipy import ndimage
from threadpoolctl import threadpool_limits

from echopulse.echo.measure import MeasureError, area_length_volume, measure_clip, principal_extent

REPO = Path(__file__).resolve().parents[1]
ECHOPULSE_DATA = REPO.parent / "shared" / "data" / "echopulse"
SEED_BASE = 900_000
PANEL_SIZE = 128
BLACK_LEVEL = 40


def read_echo_panel(path: Path, size: int = PANEL_SIZE) -> tuple[np.ndarray, float]:
    """The echo panel of an ECHOPulse Visualization GIF as uint8 (frames, size, size), and its fps.

    Frames are read one by one (their modes and shapes differ, so a stacked read fails). The panel is the
    bounding box of the largest near-black region of the first frame: its black background surrounds the
    fan, while the figure around it is white.
    """
    with Image.open(path) as image:
        duration_ms = float(image.info.get("duration") or 120)
        frames = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)]
    rows, cols = panel_box(frames[0])
    panel = []
    for frame in frames:
        gray = frame[rows, cols].astype(np.float32).mean(axis=2)
        small = Image.fromarray(gray.astype(np.uint8)).resize((size, size), Image.Resampling.BOX)
        panel.append(np.asarray(small))
    return np.stack(panel), 1000.0 / duration_ms


def panel_box(frame_rgb: np.ndarray) -> tuple[slice, slice]:
    """Row and column slices of the largest near-black connected region (the echo panel)."""
    labels, n = ndimage.label(frame_rgb.max(axis=2) < BLACK_LEVEL)
    if n == 0:
        raise ValueError("no black echo panel in this figure")
    largest = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    rows, cols = ndimage.find_objects((labels == largest).astype(np.int32))[0]
    return rows, cols


def visualization_pairs(data_dir: Path = ECHOPULSE_DATA) -> list[tuple[str, Path, Path]]:
    """(name, ground truth, prediction) for every Visualization GIF pair present, found at run time."""
    pairs = []
    for truth in sorted(data_dir.glob("*.mp4.gif")):
        pred = truth.with_name(truth.name.replace(".mp4.gif", ".mp4_pred.gif"))
        if pred.exists():
            pairs.append((truth.name.removesuffix(".mp4.gif"), truth, pred))
    for truth in sorted(data_dir.glob("sample_with_ekg_[0-9]*.gif")):
        number = truth.stem.rsplit("_", 1)[1]
        pred = truth.with_name(f"sample_with_ekg_pred_{number}.gif")
        if pred.exists():
            pairs.append((truth.stem, truth, pred))
    return pairs


def measure_real_pairs(data_dir: Path = ECHOPULSE_DATA) -> list[dict]:
    """EF and ED/ES frames of ground truth and prediction per pair; a refusal is reported, not raised."""
    rows = []
    for name, truth, pred in visualization_pairs(data_dir):
        row: dict = {"pair": name}
        for tag, path in (("truth", truth), ("pred", pred)):
            clip, fps = read_echo_panel(path)
            try:
                m = measure_clip(clip, fps, frames_per_cycle=len(clip))
                row[tag] = {"ef": round(m.ef, 1), "ed_frame": m.ed_frame, "es_frame": m.es_frame}
            except MeasureError as err:
                row[tag] = {"error": str(err)}
        rows.append(row)
    return rows


def phantom_accuracy(n_clips: int, seed_base: int, size: int = 128, frames: int = 11) -> dict:
    """EF, ED/ES and heart-rate errors of `measure_clip` against the phantom's labels."""
    from echopulse.echo.phantom import make_phantom

    ef_err, ed_ok, es_ok, hr_err, refused, outside, ef_err_imaged = [], [], [], [], [], [], []
    for i in range(n_clips):
        sample = make_phantom(seed_base + i, size=size, frames=frames, layout="cycle")
        labels = sample.labels
        outside.append(label_outside_sector(sample.clip, labels.lv_mask[labels.ed_frame]))
        try:
            m = measure_clip(sample.clip, labels.fps, labels.px_per_cm, frames_per_cycle=frames)
        except MeasureError as err:
            refused.append({"seed": seed_base + i, "error": str(err)})
            continue
        ef_err.append(abs(m.ef - labels.ef))
        ef_err_imaged.append(abs(m.ef - in_sector_ef(sample.clip, labels.lv_mask)))
        ed_ok.append(cyclic_distance(m.ed_frame, labels.ed_frame, frames) <= 1)
        es_ok.append(cyclic_distance(m.es_frame, labels.es_frame, frames) <= 1)
        hr_err.append(abs(m.hr_bpm - labels.hr_bpm))
    ef_err_a, hr_err_a = np.array(ef_err), np.array(hr_err)
    return {
        "clips": n_clips,
        "seed_base": seed_base,
        "size": size,
        "frames": frames,
        "refused": refused,
        "ef_mae_points": round(float(ef_err_a.mean()), 3),
        "ef_p95_abs_error_points": round(float(np.percentile(ef_err_a, 95)), 3),
        "ef_max_abs_error_points": round(float(ef_err_a.max()), 3),
        "ed_within_1_frame": round(float(np.mean(ed_ok)), 4),
        "es_within_1_frame": round(float(np.mean(es_ok)), 4),
        "ed_and_es_within_1_frame": round(float(np.mean(np.logical_and(ed_ok, es_ok))), 4),
        "hr_mae_bpm": round(float(hr_err_a.mean()), 4),
        "hr_max_abs_error_bpm": round(float(hr_err_a.max()), 4),
        "hr_within_2_bpm": round(float(np.mean(hr_err_a <= 2.0)), 4),
        "ef_mae_vs_in_sector_label_points": round(float(np.mean(ef_err_imaged)), 3),
        "label_lv_outside_sector_at_ed_mean": round(float(np.mean(outside)), 4),
        "clips_with_over_5pct_of_label_lv_outside_sector_at_ed": int(np.sum(np.array(outside) > 0.05)),
    }


def in_sector_ef(clip: np.ndarray, lv_masks: np.ndarray) -> float:
    """EF of the labelled masks cut to the imaged sector (true long axis kept): the best any image-based
    measurement could do, so the gap between the two MAEs is the label's, not the measurement's."""
    imaged = clip.max(axis=0) > 0
    area = (lv_masks & imaged).sum(axis=(1, 2)).astype(np.float64)
    length = np.array([principal_extent(mask) for mask in lv_masks])
    volume = area_length_volume(area, length, None)
    return float(100.0 * (volume.max() - volume.min()) / volume.max())


def label_outside_sector(clip: np.ndarray, lv_mask: np.ndarray) -> float:
    """Share of the labelled LV lying where the clip is black in every frame (outside the imaged sector).

    No measurement on the image can see that part; a clip where it is large has an EF label the image
    does not support, which this number makes visible next to the errors.
    """
    imaged = clip.max(axis=0) > 0
    return float((lv_mask & ~imaged).sum() / max(1, lv_mask.sum()))


def cyclic_distance(a: int, b: int, period: int) -> int:
    """Frame distance on a one-cycle clip, where the last frame is next to the first of the next beat."""
    d = abs(a - b) % period
    return min(d, period - d)


def throughput(n_clips: int = 100, size: int = 64, frames: int = 11, seed_base: int = 950_000) -> dict:
    """Clips per second of `measure_clip` alone (clips rendered beforehand) on one core."""
    from echopulse.echo.phantom import make_phantom

    clips = [make_phantom(seed_base + i, size=size, frames=frames, layout="cycle") for i in range(n_clips)]
    with threadpool_limits(limits=1):
        measure_clip(clips[0].clip, clips[0].labels.fps, frames_per_cycle=frames)  # warm caches
        start = time.perf_counter()
        for sample in clips:
            measure_clip(sample.clip, sample.labels.fps, sample.labels.px_per_cm, frames_per_cycle=frames)
        elapsed = time.perf_counter() - start
    return {"clips": n_clips, "shape": [frames, size, size], "clips_per_s": round(n_clips / elapsed, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--seed-base", type=int, default=SEED_BASE)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    result = {
        "python": platform.python_version(),
        "phantom": phantom_accuracy(args.clips, args.seed_base),
        "speed_one_core": throughput(),
        "real_echopulse_gifs_out_of_domain": measure_real_pairs(),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

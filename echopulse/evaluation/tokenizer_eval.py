"""How well the video tokenizer reconstructs echo: encode → decode, against the input, frame by frame.

Reported on the held-out phantom clips (the training domain) and on the real echo of the ECHOPulse
Visualization GIFs (ground-truth figures only, `*.mp4.gif` and `sample_with_ekg_<n>.gif`, not the
model predictions beside them). Each of those is an 800×1000 matplotlib figure per frame with the echo
(a 128×128 frame upscaled ≈ 4.1×) on top and the lead II ECG below; the echo panel is the bounding box of
the largest near-black region of the first frame (its black background around the sector), its 11
frames are one clip, grey, resized to the model's size by the training code's `prepare_clip`. Real echo is
out of the phantom's domain: those numbers are reported, nothing is tuned to them.

MSE and MAE are on grey values in [0, 1]; SSIM is skimage's `structural_similarity` per frame
(data_range 1), averaged over frames and clips.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from echopulse.evaluation.heldout import EvalError

BLACK_LEVEL = 40
DEFAULT_REAL_ECHO_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "echopulse"


@dataclass
class Reconstruction:
    names: list[str]
    originals: np.ndarray  # float32 (n, frames, H, W) in [0, 1]: what the tokenizer was given (grey)
    reconstructions: np.ndarray  # float32 (n, frames, H, W), clamped to [0, 1]
    mse: np.ndarray  # per clip
    mae: np.ndarray
    ssim: np.ndarray

    def summary(self) -> dict[str, float]:
        return {"mse": float(self.mse.mean()), "mae": float(self.mae.mean()), "ssim": float(self.ssim.mean())}


def reconstruct(
    tokenizer,
    tokenizer_config,
    clips: Sequence[np.ndarray],
    names: Sequence[str],
    *,
    periodic: bool,
    batch_size: int = 16,
    progress: Callable[[int], object] | None = None,
) -> Reconstruction:
    """Encode and decode `clips` (uint8 (frames, H, W), any size and count: prepared as in training)."""
    import torch
    from skimage.metrics import structural_similarity

    from echopulse.generator.training.data import prepare_clip

    device = next(tokenizer.parameters()).device
    originals, recons = [], []
    for start in range(0, len(clips), batch_size):
        chunk = clips[start : start + batch_size]
        batch = torch.stack([prepare_clip(c, tokenizer_config, periodic) for c in chunk])
        with torch.no_grad(), _autocast(device):
            video = tokenizer.reconstruct(batch.to(device)).float()
        originals.append(batch.mean(dim=1).numpy())
        recons.append(video.clamp(0, 1).mean(dim=1).cpu().numpy())
        if progress is not None:
            progress(len(batch))
    x = np.concatenate(originals).astype(np.float32)
    y = np.concatenate(recons).astype(np.float32)
    mse = ((x - y) ** 2).mean(axis=(1, 2, 3))
    mae = np.abs(x - y).mean(axis=(1, 2, 3))
    ssim = np.array(
        [
            np.mean([structural_similarity(a, b, data_range=1.0) for a, b in zip(xc, yc, strict=True)])
            for xc, yc in zip(x, y, strict=True)
        ]
    )
    return Reconstruction(list(names), x, y, mse, mae, ssim)


def _autocast(device):
    import contextlib

    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def real_echo_gifs(data_dir: Path) -> list[Path]:
    """The ground-truth Visualization GIFs present in `data_dir` (model predictions excluded)."""
    truths = sorted(data_dir.glob("*.mp4.gif"))
    truths += sorted(
        p
        for p in data_dir.glob("sample_with_ekg_*.gif")
        if p.stem.rsplit("_", 1)[-1].isdigit() and "_pred_" not in p.name
    )
    return truths


def panel_box(frame_rgb: np.ndarray) -> tuple[slice, slice]:
    """Rows and columns of the echo panel: the bounding box of the largest near-black connected region."""
    from scipy import ndimage

    labels, n = ndimage.label(np.asarray(frame_rgb)[..., :3].max(axis=2) < BLACK_LEVEL)
    if n == 0:
        raise EvalError("no black echo panel in this figure")
    largest = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    rows, cols = ndimage.find_objects((labels == largest).astype(np.int32))[0]
    height, width = rows.stop - rows.start, cols.stop - cols.start
    if min(height, width) < 32 or not 0.8 <= height / width <= 1.25:
        raise EvalError(f"the darkest region ({height}×{width} px) is not a square echo panel")
    return rows, cols


def read_echo_panel(path: Path) -> np.ndarray:
    """uint8 grey (frames, h, w) echo panel of a Visualization GIF, at the figure's resolution.

    Frames are read one by one (their modes and shapes differ, so a stacked read fails)."""
    from PIL import Image, ImageSequence

    try:
        with Image.open(path) as image:
            frames = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)]
    except OSError as error:
        raise EvalError(f"{path}: unreadable GIF ({error})") from error
    try:
        rows, cols = panel_box(frames[0])
    except EvalError as error:
        raise EvalError(f"{path}: {error}") from error
    return np.stack([f[rows, cols].astype(np.float32).mean(axis=2).round().astype(np.uint8) for f in frames])


def real_echo_clips(data_dir: Path) -> tuple[list[np.ndarray], list[str], list[str]]:
    """(panels, their file names, one line per GIF that could not be used): a bad GIF is skipped, said."""
    clips, names, skipped = [], [], []
    for path in real_echo_gifs(data_dir):
        try:
            clips.append(read_echo_panel(path))
        except EvalError as error:
            skipped.append(str(error))
            continue
        names.append(path.name)
    return clips, names, skipped

"""Sample grids written during training: a PNG of frame strips (one row per clip) and an animated GIF.

Rows come in groups (input / reconstruction, or one generated clip per held-out ECG); every row is one
clip's frames left to right, grey, values clamped to [0, 1]. The GIF plays all rows side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor

GIF_FRAME_MS = 120  # the official figures' frame duration
GAP = 2  # pixels between frames and rows


def _frames(clip: Tensor) -> np.ndarray:
    """(c, f, H, W) float → (f, H, W) uint8 grey (channel mean)."""
    x = clip.detach().float().clamp(0, 1).mean(dim=0).cpu().numpy()
    return (x * 255 + 0.5).astype(np.uint8)


def frame_strips(clips: Sequence[Tensor]) -> np.ndarray:
    """(rows·(H+gap), f·(W+gap)) uint8: each clip's frames in one row."""
    frames = [_frames(c) for c in clips]
    f = max(x.shape[0] for x in frames)
    h, w = frames[0].shape[1:]
    sheet = np.full((len(frames) * (h + GAP) - GAP, f * (w + GAP) - GAP), 255, np.uint8)
    for r, clip in enumerate(frames):
        for k in range(clip.shape[0]):
            sheet[r * (h + GAP) : r * (h + GAP) + h, k * (w + GAP) : k * (w + GAP) + w] = clip[k]
    return sheet


def side_by_side(clips: Sequence[Tensor]) -> np.ndarray:
    """(f, H, n·(W+gap)) uint8: the clips next to each other, frame by frame."""
    frames = [_frames(c) for c in clips]
    f = max(x.shape[0] for x in frames)
    h, w = frames[0].shape[1:]
    out = np.full((f, h, len(frames) * (w + GAP) - GAP), 255, np.uint8)
    for i, clip in enumerate(frames):
        for k in range(f):
            out[k, :, i * (w + GAP) : i * (w + GAP) + w] = clip[min(k, clip.shape[0] - 1)]
    return out


def save_samples(directory: Path, name: str, clips: Sequence[Tensor]) -> tuple[Path, Path]:
    """Write `<name>.png` (frame strips) and `<name>.gif` (clips side by side) into `directory`."""
    import imageio.v3 as iio

    directory.mkdir(parents=True, exist_ok=True)
    png, gif = directory / f"{name}.png", directory / f"{name}.gif"
    Image.fromarray(frame_strips(clips)).save(png)
    iio.imwrite(gif, side_by_side(clips), extension=".gif", duration=GIF_FRAME_MS, loop=0)
    return png, gif

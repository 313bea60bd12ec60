"""The visible SYNTHETIC mark: white text on a darkened box in a frame's top-left corner.

Frames stay grey (uint8, (h, w)) so a GIF keeps every grey level; RGB frames ((h, w, 3)) are marked alike.
The text scales with the frame (a twentieth of its width by default, never under 8 px) and is drawn with
Pillow's bundled font, so a given frame is always marked the same way.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MARK_TEXT = "SYNTHETIC"
MARK_RELATIVE = 1 / 20
BOX_DARKEN = 0.35
"""The box keeps this share of the pixels under it, so the text reads on a bright frame too."""


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


@lru_cache(maxsize=16)
def _mark_layer(height: int, width: int, relative: float) -> tuple[tuple[slice, slice], np.ndarray]:
    """Where the mark goes (rows, columns) and its text mask (0..1 float) over that box."""
    size = max(8, round(width * relative))
    font = _font(size)
    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), MARK_TEXT, font=font)
    pad = max(2, size // 4)
    box_w = min(width, right - left + 2 * pad)
    box_h = min(height, bottom - top + 2 * pad)
    text = Image.new("L", (box_w, box_h), 0)
    ImageDraw.Draw(text).text((pad - left, pad - top), MARK_TEXT, fill=255, font=font)
    margin = max(1, size // 4)
    rows = slice(min(margin, height - box_h), min(margin, height - box_h) + box_h)
    cols = slice(min(margin, width - box_w), min(margin, width - box_w) + box_w)
    return (rows, cols), np.asarray(text, dtype=np.float32) / 255.0


def mark_frame(frame: np.ndarray, relative: float = MARK_RELATIVE) -> np.ndarray:
    """A copy of `frame` (uint8 (h, w) or (h, w, 3)) with the SYNTHETIC mark in its top-left corner; the
    text is `relative` times the frame's width high (at least 8 px)."""
    out = np.array(frame, dtype=np.uint8, copy=True)
    (rows, cols), alpha = _mark_layer(out.shape[0], out.shape[1], relative)
    region = out[rows, cols].astype(np.float32)
    if region.ndim == 3:
        alpha = alpha[..., None]
    region = region * BOX_DARKEN
    out[rows, cols] = np.round(region * (1 - alpha) + 255.0 * alpha).astype(np.uint8)
    return out


def mark_frames(frames: np.ndarray, relative: float = MARK_RELATIVE) -> np.ndarray:
    """Every frame of a (t, h, w) or (t, h, w, 3) stack marked."""
    if not len(frames):
        return np.array(frames, copy=True)
    return np.stack([mark_frame(f, relative) for f in frames])

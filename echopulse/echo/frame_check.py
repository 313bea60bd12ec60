"""Does an image look like an echo frame? A cheap check for `--prime`, whose image becomes frame 0 of every
clip: a photo, a document or an ECG plot given by mistake would make a ghost heart, silently.

An echo frame (B-mode, any view) is grey, and mostly dark: the imaged sector is dark blood pools and grey
tissue on a black background. An ECG plot or a document is the opposite: a bright page with coloured grid
and trace. The limits are loose on purpose: the check warns, it never refuses.
"""

from __future__ import annotations

import numpy as np

MAX_MEAN_LEVEL = 0.45
"""Echo frames measured here average 0.10-0.30 of full scale; ECG paper and documents 0.8 or more."""
MIN_DARK_SHARE = 0.2
"""Share of pixels below 0.12 of full scale: the background and the blood pools of an echo frame."""
MAX_COLOUR = 0.12
"""Mean channel spread (max − min of R, G, B): about 0 for a grey frame, far above for a red-on-pink strip."""


def echo_frame_doubt(image: np.ndarray) -> str | None:
    """None when `image` (H, W) grey or (H, W, 3/4) colour, uint8 or float in [0, 1], could be an echo frame;
    else why it does not look like one, in words a user can act on."""
    pixels = np.asarray(image, dtype=np.float64)
    if np.issubdtype(np.asarray(image).dtype, np.integer):
        pixels = pixels / 255.0
    if pixels.ndim == 3:
        rgb = pixels[..., :3]
        colour = float((rgb.max(axis=-1) - rgb.min(axis=-1)).mean()) if rgb.shape[-1] == 3 else 0.0
        grey = rgb.mean(axis=-1)
    else:
        colour, grey = 0.0, pixels
    doubts = []
    if grey.mean() > MAX_MEAN_LEVEL:
        doubts.append(f"mostly bright (mean level {grey.mean():.2f}; echo frames are dark)")
    if (grey < 0.12).mean() < MIN_DARK_SHARE:
        doubts.append(f"little dark background ({(grey < 0.12).mean():.0%} of pixels)")
    if colour > MAX_COLOUR:
        doubts.append(f"in colour (echo frames are grey; channel spread {colour:.2f})")
    return "; ".join(doubts) or None

"""What both contact sheets (phantom samples, generated clips) are built from: a white figure, an ECG strip
styled one way, frame cells and the save, so the two sheets render frames and read amplitudes alike.

A bare `matplotlib.figure.Figure` (no pyplot): importing or drawing never touches the caller's backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from echopulse.drawing.ecg_strip import add_scale_bar

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.gridspec import SubplotSpec


def sheet_figure(width_in: float, height_in: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=100, facecolor="white")


def finish_strip(ax: Axes, t0: float, t1: float, labelsize: float, span_mv: float | None = None) -> float:
    """Time range, no y ticks (the scale bar gives the amplitude instead), the bar; returns its mV.

    Call after everything that sets the y range. The bar's value is picked for `span_mv`, the trace's own
    range (default: the y range, which may include room kept free for labels).
    """
    ax.set_xlim(t0, t1)
    ax.set_yticks([])
    ax.tick_params(labelsize=labelsize, length=2)
    return add_scale_bar(ax, span_mv=span_mv)


def frame_cell(fig: Figure, spec: SubplotSpec, frame: np.ndarray | None, edge: str | None = None) -> Axes:
    """One frame, grey 0–255, one screen pixel block per model pixel (nothing smoothed in).

    `edge` colours the frame's border (e.g. to point out ED and ES); None leaves it borderless. A None
    frame leaves the cell empty, so rows of clips with fewer frames stay aligned.
    """
    ax = fig.add_subplot(spec)
    if frame is not None:
        ax.imshow(frame, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        if edge is None:
            spine.set_visible(False)
        else:
            spine.set_color(edge)
    return ax


def save_sheet(fig: Figure, path: Path | str) -> Path:
    """PNG without a software stamp, so the same input gives the same bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, facecolor="white", bbox_inches="tight", metadata={"Software": None})
    return path

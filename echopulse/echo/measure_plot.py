"""The picture that shows whether a measurement can be trusted: frames with LV contour, area curve below.

Drawn on a bare `matplotlib.figure.Figure` (no pyplot), so importing echopulse never changes a program's
matplotlib backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.gridspec import GridSpec

from echopulse.echo.measure import ClipMeasurement

MAX_STRIP_FRAMES = 12


def plot_measurement(
    clip: np.ndarray, measurement: ClipMeasurement, path: Path | str, title: str | None = None
) -> Path:
    """Write a PNG: a strip of frames with the segmented LV outlined (ED, ES marked), the area curve below.

    A wrong EF is nearly always a wrong contour in one or two frames, so every frame is shown with its
    contour (up to `MAX_STRIP_FRAMES`, evenly picked, always including ED and ES).
    """
    path = Path(path)
    frames = np.asarray(clip)
    shown = _frames_to_show(len(frames), measurement.ed_frame, measurement.es_frame)
    fig = Figure(figsize=(1.5 * len(shown), 4.2))
    grid = GridSpec(2, len(shown), height_ratios=[1.0, 0.9], hspace=0.12, wspace=0.04, figure=fig)
    for col, k in enumerate(shown):
        _draw_frame(fig.add_subplot(grid[0, col]), frames[k], measurement, k)
    _draw_curve(fig.add_subplot(grid[1, :]), measurement)
    unit = "ml" if measurement.px_per_cm else "px units"
    m = measurement
    summary = (
        f"EF {m.ef:.1f} %  ·  EDV {m.edv:.1f} {unit}  ·  ESV {m.esv:.1f} {unit}  ·  "
        f"ED frame {m.ed_frame}, ES frame {m.es_frame}  ·  HR {m.hr_bpm:.0f} bpm"
    )
    fig.suptitle(f"{title}\n{summary}" if title else summary, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _frames_to_show(n: int, ed: int, es: int) -> list[int]:
    if n <= MAX_STRIP_FRAMES:
        return list(range(n))
    picked = set(np.linspace(0, n - 1, MAX_STRIP_FRAMES - 2).round().astype(int).tolist()) | {ed, es}
    return sorted(picked)


def _draw_frame(ax: Axes, frame: np.ndarray, m: ClipMeasurement, k: int) -> None:
    ax.imshow(frame, cmap="gray", vmin=0, vmax=255 if frame.dtype == np.uint8 else None)
    if m.lv_masks[k].any():
        ax.contour(m.lv_masks[k].astype(float), levels=[0.5], colors=["#39d353"], linewidths=0.9)
    tag = " ED" if k == m.ed_frame else " ES" if k == m.es_frame else ""
    ax.set_title(f"{k}{tag}", fontsize=8, color="#c0392b" if tag else "black")
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_curve(ax: Axes, m: ClipMeasurement) -> None:
    k = np.arange(len(m.lv_area_px))
    ax.plot(k, m.lv_area_px, "o-", color="#1f3b73", markersize=3.5, linewidth=1.2)
    ax.plot([m.ed_frame], [m.lv_area_px[m.ed_frame]], "s", color="#c0392b", label="ED")
    ax.plot([m.es_frame], [m.lv_area_px[m.es_frame]], "v", color="#e67e22", label="ES")
    ax.set_xlabel("frame")
    ax.set_ylabel("LV area (px)")
    ax.set_xlim(-0.5, len(k) - 0.5)
    ax.grid(True, color="#dddddd", linewidth=0.5)
    ax.legend(fontsize=7, loc="best")

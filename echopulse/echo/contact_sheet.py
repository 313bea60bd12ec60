"""A contact sheet of phantom clips: for each sample its ECG (lead II, the clip's cycle shaded, fiducials
marked) above its frames, with the labels in the title. `python -m echopulse.echo.contact_sheet OUT.png`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from echopulse.drawing.ecg_strip import mark_beats
from echopulse.drawing.frame_sheet import finish_strip, frame_cell, save_sheet, sheet_figure
from echopulse.echo.phantom import PhantomSample, make_phantom

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FIDUCIAL_COLOURS = (("p_onset", "tab:green"), ("qrs_end", "tab:orange"), ("t_end", "tab:red"))
CLOSE_S = 10.0
"""Where the phantom's ECG closes the clip's cycle (its R-peak), in seconds from the ECG's start."""


def contact_sheet(samples: Sequence[PhantomSample], path: Path, ecg_seconds: float = 3.0) -> Path:
    """One block per sample: its lead II (cycle shaded, fiducials, mV bar) above its frames, ED/ES boxed."""
    return save_sheet(contact_sheet_figure(samples, ecg_seconds), path)


def contact_sheet_figure(samples: Sequence[PhantomSample], ecg_seconds: float = 3.0) -> Figure:
    """The figure `contact_sheet` saves; apart so that what it shows can be checked unsaved."""
    n = len(samples)
    frames = samples[0].clip.shape[0]
    fig = sheet_figure(frames * 1.2, n * 2.2)
    grid = fig.add_gridspec(2 * n, frames, height_ratios=[0.6, 1.2] * n, hspace=0.45, wspace=0.04)
    for row, s in enumerate(samples):
        _draw_ecg(fig.add_subplot(grid[2 * row, :]), s, ecg_seconds)
        lab = s.labels
        for k in range(frames):
            special = k in (lab.ed_frame, lab.es_frame)
            cell = frame_cell(fig, grid[2 * row + 1, k], s.clip[k], edge="tab:red" if special else "white")
            label = "ED" if k == lab.ed_frame else "ES" if k == lab.es_frame else str(k)
            cell.set_xlabel(label, fontsize=6, labelpad=1)
    return fig


def _draw_ecg(ax: Axes, s: PhantomSample, ecg_seconds: float) -> None:
    lab, fs = s.labels, s.ecg_fs
    i0 = int((CLOSE_S + 0.6 - ecg_seconds) * fs)
    i1 = int((CLOSE_S + 0.6) * fs)
    t = np.arange(i0, i1) / fs
    ax.plot(t, s.ecg[1, i0:i1], color="black", lw=0.8)
    ax.axvspan(CLOSE_S - lab.rr_s, CLOSE_S, color="tab:blue", alpha=0.08)
    for name, colour in FIDUCIAL_COLOURS:
        for x in lab.fiducials_s[name]:
            if t[0] <= x <= t[-1]:
                ax.axvline(x, color=colour, lw=0.6, alpha=0.7)
    r = lab.fiducials_s["r_peak"]
    in_view = r[(r >= t[0]) & (r <= t[-1])]
    mark_beats(ax, in_view, np.full(in_view.size, ax.get_ylim()[1]), colour="tab:blue", ms=4)
    finish_strip(ax, t[0], t[-1], labelsize=6)
    ax.set_title(
        f"seed {s.seed}: HR {lab.hr_bpm:.0f} bpm, EF {lab.ef:.0f}% (EDV {lab.edv_ml:.0f} ml, ESV "
        f"{lab.esv_ml:.0f} ml), ED frame {lab.ed_frame}, ES frame {lab.es_frame}  —  lead II; "
        "cycle shaded; P onset green, QRS end orange, T end red",
        fontsize=7,
        loc="left",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    out = Path(args[0]) if args else Path("docs/phantom_contact_sheet.png")
    samples = [make_phantom(seed, size=128, frames=11) for seed in range(8)]
    print(contact_sheet(samples, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

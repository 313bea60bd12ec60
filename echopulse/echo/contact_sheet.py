"""A contact sheet of phantom clips: for each sample its ECG (lead II, the clip's cycle shaded, fiducials
marked) above its frames, with the labels in the title. `python -m echopulse.echo.contact_sheet OUT.png`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from echopulse.echo.phantom import PhantomSample, make_phantom


def contact_sheet(samples: Sequence[PhantomSample], path: Path, ecg_seconds: float = 3.0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(samples)
    frames = samples[0].clip.shape[0]
    fig = plt.figure(figsize=(frames * 1.2, n * 2.2), dpi=100, facecolor="white")
    grid = fig.add_gridspec(2 * n, frames, height_ratios=[0.6, 1.2] * n, hspace=0.45, wspace=0.04)
    for row, s in enumerate(samples):
        lab = s.labels
        fs = s.ecg_fs
        r = lab.fiducials_s["r_peak"]
        close = 10.0
        i0 = int((close + 0.6 - ecg_seconds) * fs)
        i1 = int((close + 0.6) * fs)
        t = np.arange(i0, i1) / fs
        ax = fig.add_subplot(grid[2 * row, :])
        ax.plot(t, s.ecg[1, i0:i1], color="black", lw=0.8)
        ax.axvspan(close - lab.rr_s, close, color="tab:blue", alpha=0.08)
        for name, colour in (("p_onset", "tab:green"), ("qrs_end", "tab:orange"), ("t_end", "tab:red")):
            for x in lab.fiducials_s[name]:
                if t[0] <= x <= t[-1]:
                    ax.axvline(x, color=colour, lw=0.6, alpha=0.7)
        ax.plot(
            r[(r >= t[0]) & (r <= t[-1])],
            np.full(((r >= t[0]) & (r <= t[-1])).sum(), ax.get_ylim()[1]),
            "v",
            color="tab:blue",
            ms=4,
        )
        ax.set_xlim(t[0], t[-1])
        ax.set_yticks([])
        ax.tick_params(labelsize=6, length=2)
        ax.set_title(
            f"seed {s.seed}: HR {lab.hr_bpm:.0f} bpm, EF {lab.ef:.0f}% (EDV {lab.edv_ml:.0f} ml, ESV "
            f"{lab.esv_ml:.0f} ml), ED frame {lab.ed_frame}, ES frame {lab.es_frame}  —  lead II; "
            "cycle shaded; P onset green, QRS end orange, T end red",
            fontsize=7,
            loc="left",
        )
        for k in range(frames):
            fa = fig.add_subplot(grid[2 * row + 1, k])
            fa.imshow(s.clip[k], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            fa.set_xticks([])
            fa.set_yticks([])
            for spine in fa.spines.values():
                spine.set_color("tab:red" if k in (lab.ed_frame, lab.es_frame) else "white")
            label = "ED" if k == lab.ed_frame else "ES" if k == lab.es_frame else str(k)
            fa.set_xlabel(label, fontsize=6, labelpad=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, facecolor="white", bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    out = Path(args[0]) if args else Path("docs/phantom_contact_sheet.png")
    samples = [make_phantom(seed, size=128, frames=11) for seed in range(8)]
    print(contact_sheet(samples, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

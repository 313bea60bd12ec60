"""An eval's pictures: measured vs true EF (default, shuffled, ideal generator), best and worst beats,
tokenizer strips. Drawn on bare `matplotlib.figure.Figure`s (no pyplot), so the backend is left alone."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from echopulse.evaluation.generation_eval import GenerationEval, RunResult, run_metrics
from echopulse.evaluation.heldout import HeldoutSample

SYNTHETIC = "synthetic clips (generated), phantom labels"


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


PANEL_LABELS = {
    "default": "ECG of the beat",
    "shuffled": "ECG of another beat (derangement)",
    "ideal_generator": "the phantom, another heart for the ECG (one draw)",
}
PANEL_COLOURS = {"default": "#1f77b4", "shuffled": "#d62728", "ideal_generator": "#7f7f7f"}


def ef_scatter(
    path: Path,
    samples: Sequence[HeldoutSample],
    result: GenerationEval,
    ideal: RunResult | None = None,
    title: str = "",
) -> Path:
    """Measured EF against the label: the default run, the shuffled control, and (given) the ideal
    generator's run on the same beats, the yardstick for the first panel."""
    true_ef = np.array([s.ef for s in samples])
    runs = {name: result.runs[name] for name in ("default", "shuffled") if name in result.runs}
    if ideal is not None:
        runs["ideal_generator"] = ideal
    fig = Figure(figsize=(4.4 * len(runs), 4.4))
    axes = fig.subplots(1, len(runs), squeeze=False)
    lo, hi = 10.0, 80.0
    for ax, (name, run) in zip(axes[0], runs.items(), strict=True):
        m = result.metrics[name] if name in result.metrics else run_metrics(samples, run)
        ok = run.ok
        ax.plot([lo, hi], [lo, hi], color="#999999", lw=0.8, ls="--")
        ax.scatter(true_ef[ok], run.ef[ok], s=12, alpha=0.7, color=PANEL_COLOURS[name])
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_xlabel("true EF (%), phantom label")
        ax.set_ylabel("measured EF (%) of the clip")
        ax.set_title(
            f"{name}: {PANEL_LABELS[name]}\nMAE {_fmt(m['ef_mae'])}, R² {_fmt(m['ef_r2'])}, "
            f"n {m['measured']}, refused {m['measure_failures']}",
            fontsize=9,
        )
    fig.suptitle(title or SYNTHETIC, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def best_worst_strip(
    path: Path, samples: Sequence[HeldoutSample], result: GenerationEval, cases: int = 2
) -> Path:
    """True and generated frames of the beats with the smallest and largest EF error (default run)."""
    run = result.runs["default"]
    true_ef = np.array([s.ef for s in samples])
    ok = np.flatnonzero(run.ok)
    if ok.size:
        order = ok[np.argsort(np.abs(run.ef[ok] - true_ef[ok]), kind="stable")]
        picks = [("best", int(i)) for i in order[:cases]]
        picks += [("worst", int(i)) for i in order[::-1][:cases] if int(i) not in {p for _, p in picks}]
    else:  # nothing measured: show the first beats, refused
        picks = [("refused", i) for i in range(min(cases, len(samples)))]
    frames = len(samples[0].clip)
    fig = Figure(figsize=(1.1 * frames, 2.3 * len(picks)))
    axes = fig.subplots(2 * len(picks), frames, squeeze=False)
    for row, (tag, i) in enumerate(picks):
        measured = "refused" if not np.isfinite(run.ef[i]) else f"{run.ef[i]:.1f}"
        pair = (
            (samples[i].clip, f"{tag} · seed {samples[i].seed} · true clip, EF {samples[i].ef:.1f}"),
            (run.clips[i], f"clip made from its ECG, measured EF {measured}"),
        )
        for k, (clip, text) in enumerate(pair):
            ax_row = axes[2 * row + k]
            for f, ax in enumerate(ax_row):
                ax.imshow(clip[f], cmap="gray", vmin=0, vmax=255)
                ax.set_xticks([])
                ax.set_yticks([])
            ax_row[0].set_title(text, fontsize=8, loc="left")
    fig.suptitle(f"best and worst EF agreement ({SYNTHETIC})", fontsize=10)
    _tight_strip(fig)
    return _save(fig, path)


def tokenizer_strip(
    path: Path,
    originals: np.ndarray,
    reconstructions: np.ndarray,
    names: Sequence[str],
    title: str,
    clips: int = 3,
) -> Path:
    """Input and reconstruction, frame by frame, for the first `clips` clips."""
    shown = min(clips, len(originals))
    frames = originals.shape[1]
    fig = Figure(figsize=(1.1 * frames, 2.3 * shown))
    axes = fig.subplots(2 * shown, frames, squeeze=False)
    for c in range(shown):
        for k, (video, tag) in enumerate(((originals[c], "input"), (reconstructions[c], "reconstruction"))):
            for f, ax in enumerate(axes[2 * c + k]):
                ax.imshow(video[f], cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
            axes[2 * c + k][0].set_title(f"{names[c][:48]} · {tag}", fontsize=8, loc="left")
    fig.suptitle(title, fontsize=10)
    _tight_strip(fig)
    return _save(fig, path)


def _tight_strip(fig: Figure) -> None:
    """Frames close together, room above each row for its (left-aligned, possibly long) title."""
    height = fig.get_size_inches()[1]
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.45 / height, wspace=0.03, hspace=0.35)


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path

"""How every ECG strip the package draws reads: R-peaks marked, refused beats shaded with their reason,
and an amplitude scale bar, so ecg.png, both contact sheets and the video's strip can be read alike.

The matplotlib helpers draw on an Axes the caller made from `matplotlib.figure.Figure`; nothing here
imports pyplot or picks a backend (a program that imports echopulse keeps its own). The pure helpers
(`amplitude_range`, `scale_bar_mv`, `short_reason`) are shared with the Pillow-drawn video strip.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from echopulse.preprocess.beats import Beat

if TYPE_CHECKING:
    from matplotlib.axes import Axes

REFUSED_COLOUR = "#d62728"
SKIPPED_COLOUR = "#7f7f7f"
LABEL_COLOUR = "#8c1515"
SCALE_COLOUR = "#222222"
SHADE_HALF_WIDTH_S = 0.3
"""A refused beat's band reaches this far either side of its R-peak: its QRS and most of its P and T."""

LABEL_CHARS = 30
LABEL_FONT_PT = 7.0
LABEL_BAND_IN = 0.17
"""Room kept free above the trace for the reason labels, so they do not sit on R-peaks."""

MANY_REFUSALS = 6
"""With more refused beats than this, a legend line sums up the reasons (labels alone would crowd)."""

SCALE_BAR_STEPS_MV = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
SCALE_BAR_SHARE = 0.7
"""The bar is the largest round value no longer than this share of the strip's amplitude range."""

_QUALITY = re.compile(r"(window )?quality (\d+(?:\.\d+)?)")
_TRAILING_NUMBER = re.compile(r"\s+\d+(?:\.\d+)?$")


@dataclass(frozen=True)
class Refusal:
    """A beat that got no clip: a band at its R-peak, `label` beside it, `kind` counted in the legend.

    `refused` beats failed a quality check (red); the others were accepted but got no clip for another
    reason, such as the first beat having no RR interval (grey).
    """

    time_s: float
    label: str
    kind: str
    refused: bool


def amplitude_range(signal: np.ndarray, peaks: np.ndarray) -> tuple[float, float]:
    """The strip's y range (mV): the bulk of the trace and the typical R-peak, not one artefact's spike."""
    if signal.size == 0:
        return -1.0, 1.0
    low, high = (float(v) for v in np.percentile(signal, [0.5, 99.5]))
    peaks = peaks[(peaks >= 0) & (peaks < signal.size)]
    if peaks.size:
        heights = signal[peaks]
        low = min(low, float(np.percentile(heights, 5)))
        high = max(high, float(np.percentile(heights, 95)))
    pad = 0.15 * (high - low + 1e-6)
    return low - pad, high + pad


def scale_bar_mv(span_mv: float) -> float:
    """A round amplitude that fits a strip spanning `span_mv`: 1 mV on a usual strip, less on a small one."""
    fitting = [v for v in SCALE_BAR_STEPS_MV if v <= SCALE_BAR_SHARE * span_mv]
    return fitting[-1] if fitting else SCALE_BAR_STEPS_MV[0]


def short_reason(reason: str | None) -> str:
    """A refusal reason short enough to print beside a beat: its quality figure, else its first clause."""
    if not reason:
        return "no reason given"
    match = _QUALITY.search(reason)
    if match:
        return f"{match.group(1) or ''}quality {match.group(2)}"
    head = re.split(r"[:;(]", reason, maxsplit=1)[0].strip() or reason
    return head if len(head) <= LABEL_CHARS else head[: LABEL_CHARS - 1].rstrip() + "…"


def reason_kind(reason: str | None) -> str:
    """What the legend counts: the short reason without its figure ("low quality", "flat signal")."""
    kind = _TRAILING_NUMBER.sub("", short_reason(reason))
    return f"low {kind}" if kind.endswith("quality") else kind


def beat_refusals(
    beats: Sequence[Beat],
    skipped: Mapping[int, str] | None = None,
    refused_windows: Mapping[int, str] | None = None,
) -> list[Refusal]:
    """Refused beats (their own reason, or their window's) in red; accepted beats in `skipped` in grey."""
    out = []
    for beat in beats:
        window_reason = (refused_windows or {}).get(beat.index)
        if not beat.accepted or window_reason is not None:
            reason = beat.reason if not beat.accepted else window_reason
            out.append(Refusal(beat.r_peak_s, f"refused: {short_reason(reason)}", reason_kind(reason), True))
        elif skipped and beat.index in skipped:
            reason = skipped[beat.index]
            out.append(Refusal(beat.r_peak_s, f"no clip: {short_reason(reason)}", reason_kind(reason), False))
    return out


def refusal_legend(refusals: Sequence[Refusal]) -> str:
    """One line: how many beats were refused or got no clip, and the most common reasons of each."""
    parts = []
    for refused, what in ((True, "refused"), (False, "without a clip")):
        kinds = Counter(r.kind for r in refusals if r.refused == refused)
        if kinds:
            n = sum(kinds.values())
            common = ", ".join(f"{kind} ×{count}" for kind, count in kinds.most_common(3))
            more = ", …" if len(kinds) > 3 else ""
            parts.append(f"{n} beat{'s' if n != 1 else ''} {what}: {common}{more}")
    return " · ".join(parts)


def needs_legend(refusals: Sequence[Refusal], labelled: int) -> bool:
    """A legend when labels alone do not tell the story: many refusals, or some left unlabelled."""
    return len(refusals) > MANY_REFUSALS or labelled < len(refusals)


def mark_beats(
    ax: Axes, times_s: np.ndarray, values: np.ndarray, colour: str = "#e4572e", ms: float = 4
) -> None:
    """R-peaks as small downward triangles, where a reader looks for them on ECG paper."""
    ax.plot(times_s, values, "v", color=colour, markersize=ms)


def shade_refusals(ax: Axes, refusals: Sequence[Refusal], t0: float, t1: float) -> int:
    """Shade each refusal within [t0, t1) and print its label beside the band where there is room.

    Labels go in the band `reserve_label_band` keeps free at the top, left to right; one that would run
    into the previous label or off the strip is left out (the legend then counts it). Returns how many
    refusals in view got a label.
    """
    shown = sorted((r for r in refusals if t0 <= r.time_s < t1), key=lambda r: r.time_s)
    width_in = max(1e-6, ax.get_position().width * ax.figure.get_figwidth())
    span = max(1e-9, t1 - t0)
    free_from = 0.0
    labelled = 0
    for r in shown:
        colour = REFUSED_COLOUR if r.refused else SKIPPED_COLOUR
        ax.axvspan(r.time_s - SHADE_HALF_WIDTH_S, r.time_s + SHADE_HALF_WIDTH_S, color=colour, alpha=0.25,
                   linewidth=0)
        length = len(r.label) * LABEL_FONT_PT * 0.56 / 72.0 / width_in
        start = _label_start(r, t0, span, length, free_from)
        if start is None:
            continue
        ax.text(start, 0.985, r.label, transform=ax.transAxes, ha="left", va="top", fontsize=LABEL_FONT_PT,
                color=LABEL_COLOUR if r.refused else "#444444", clip_on=False)
        free_from = start + length + 0.01
        labelled += 1
    return labelled


def _label_start(r: Refusal, t0: float, span: float, length: float, free_from: float) -> float | None:
    """Where a label of `length` (axes fraction) starts: right of its band, else left of it (a beat near
    the strip's end), else nowhere (it would cover another label)."""
    gap = 0.003
    right = (r.time_s + SHADE_HALF_WIDTH_S - t0) / span + gap
    if right >= free_from and right + length <= 1.0:
        return right
    left = (r.time_s - SHADE_HALF_WIDTH_S - t0) / span - gap - length
    if left >= max(free_from, 0.0):
        return left
    return None


def reserve_label_band(ax: Axes) -> None:
    """Raise the top of the y range so the top `LABEL_BAND_IN` of the strip holds labels, not trace."""
    low, high = ax.get_ylim()
    height_in = max(1e-6, ax.get_position().height * ax.figure.get_figheight())
    share = min(0.4, LABEL_BAND_IN / height_in)
    ax.set_ylim(low, high + share / (1.0 - share) * (high - low))


def add_scale_bar(ax: Axes, span_mv: float | None = None) -> float:
    """A vertical bar of a round number of mV right of the strip, labelled; returns its mV.

    Outside the axes it never hides the trace; it is drawn in data units, so it stays true to the trace
    whatever the figure's size. The value is picked for `span_mv` (default: the strip's y range). Every
    strip here has a time axis with ticks, so no time bar is drawn.
    """
    from matplotlib.lines import Line2D
    from matplotlib.offsetbox import AnchoredOffsetbox, AuxTransformBox, HPacker, TextArea

    low, high = ax.get_ylim()
    mv = scale_bar_mv(high - low if span_mv is None else span_mv)
    bar = AuxTransformBox(ax.transData)
    bar.add_artist(Line2D([0, 0], [0, mv], color=SCALE_COLOUR, linewidth=1.6, solid_capstyle="butt"))
    label = TextArea(f"{mv:g} mV", textprops={"fontsize": 7, "color": SCALE_COLOUR})
    box = AnchoredOffsetbox(
        loc="center left", child=HPacker(children=[bar, label], align="center", pad=0, sep=2),
        pad=0, borderpad=0.4, frameon=False, bbox_to_anchor=(1.0, 0.5), bbox_transform=ax.transAxes,
    )
    ax.add_artist(box)
    return mv

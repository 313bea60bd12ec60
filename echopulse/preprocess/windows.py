"""One ST-MEM input window per beat: `stmem_windows`.

A window is the 9 s (2250 samples at 250 Hz) that end at its beat's closing R-peak, so a live stream can
produce it the moment the beat closes. It is computed from the raw samples of its own span plus
`MARGIN_S` on each side (resampling and filter edges fall in the margins, outside the window), never from
a whole-record pass: that is what lets the live path give the same numbers as the offline one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from echopulse.ecg import STMEM_LEADS, WINDOW_SAMPLES, lead_slot
from echopulse.preprocess.bandpass import bandpass
from echopulse.preprocess.beats import Beat
from echopulse.preprocess.compat import ECHOPULSE_LEAD_SLOT, echopulse_ecg_input
from echopulse.preprocess.quality import QUALITY_THRESHOLD
from echopulse.preprocess.resample import STMEM_FS, rational_ratio, resample

WINDOW_S = 9.0
"""ST-MEM's input span: `WINDOW_SAMPLES` (2250, from compat.py, which this module builds on) at 250 Hz."""
MARGIN_S = 1.0
"""Raw signal taken beyond each end of a window. Also the most a window waits after its R-peak, so it
must not exceed the beat detector's guard (1 s), which keeps windows available when beats commit."""

LAYOUTS = ("stmem", "mv", "compat")
"""`stmem`: z-scored over the kept leads, as ST-MEM was trained. `mv`: the same band-passed window left in
millivolts (mean removed): a z-score erases absolute QRS voltage, which on a single lead is the only sign of
low voltage, so models trained on amplitudes (the bundled one) take this. `compat`: the published ECHOPulse
input (see `compat.py`)."""


@dataclass
class STMEMWindow:
    """ST-MEM input for one beat: `signal` float32 (12, 2250) in lead order I, II, III, aVR, aVL, aVF,
    V1–V6; `lead_mask` says which slots hold a real lead (the rest are zero).

    `r_peaks_s` are the R-peaks inside the window (seconds from the record start), the last one being the
    closing beat's. `padded` windows start before the record did: `pad_samples` leading zeros.
    """

    signal: np.ndarray
    lead_mask: np.ndarray
    beat_index: int
    end_s: float
    r_peaks_s: np.ndarray
    rr_s: float | None
    hr_bpm: float | None
    quality: float | None
    accepted: bool
    reason: str | None
    padded: bool
    pad_samples: int
    layout: str = "stmem"


def lead_layout(leads: Sequence[str]) -> list[tuple[int, int]]:
    """(record row, ST-MEM slot) for each lead that has a slot, first lead first wins a slot.

    A record whose only lead has no standard name (a chest strap's "ECG") is treated as lead I, the
    wearable case; with several unnamed leads the first one is.
    """
    pairs: list[tuple[int, int]] = []
    taken: set[int] = set()
    for row, name in enumerate(leads):
        slot = lead_slot(name)
        if slot is not None and slot not in taken:
            pairs.append((row, slot))
            taken.add(slot)
    return pairs or [(0, 0)]


def window_span(r_peak: int, fs: float) -> tuple[int, int]:
    """Raw sample range [start, stop) a window needs: 9 s before the R-peak plus margins on both sides."""
    before = math.ceil((WINDOW_S + MARGIN_S) * fs)
    after = math.ceil(MARGIN_S * fs)
    return r_peak - before, r_peak + after + 1


def window_from_segments(
    segments: np.ndarray,
    seg_starts: Sequence[int],
    r_peaks: Sequence[int],
    fs: float,
    zscore: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Band-passed (k, leads, 2250) windows from equal-length raw segments, plus pad counts; z-scored over
    all their leads, or (`zscore=False`) in mV with the mean removed.

    Segment i holds raw samples from `seg_starts[i]` (negative: edge-padded before the record start);
    its window ends at raw sample `r_peaks[i]`.
    Rows are independent: computing k windows at once or one at a time gives the same numbers.
    """
    up, down = rational_ratio(fs, STMEM_FS)
    filtered = bandpass(resample(segments, fs, STMEM_FS), STMEM_FS)
    out = np.zeros((segments.shape[0], segments.shape[1], WINDOW_SAMPLES))
    pads = np.zeros(segments.shape[0], dtype=np.int64)
    for i, (start, r_peak) in enumerate(zip(seg_starts, r_peaks, strict=True)):
        end = min(round((r_peak - start) * up / down), filtered.shape[-1] - 1)
        begin = end + 1 - WINDOW_SAMPLES
        # Output samples before the record's first sample (start < 0 means edge-padded raw) are padding.
        first_real = max(begin, math.ceil(-start * up / down) if start < 0 else 0)
        pads[i] = first_real - begin
        real = filtered[i, :, first_real : end + 1]
        centred = real - real.mean()
        if zscore:
            std = real.std()
            centred = centred / std if std > 0 else np.zeros_like(centred)
        out[i, :, pads[i] :] = centred
    return out, pads


def stmem_windows(
    signal: np.ndarray,
    fs: float,
    leads: Sequence[str],
    beats: Sequence[Beat],
    layout: str = "stmem",
    signal_offset: int = 0,
    history: Sequence[Beat] = (),
) -> list[STMEMWindow]:
    """One `STMEMWindow` per beat in `beats`, from the raw (leads × samples) `signal` in mV.

    `signal_offset` is the absolute sample index of `signal[:, 0]` (non-zero for a live ring buffer);
    `history` holds earlier beats, so a window can list every R-peak inside it.

    >>> windows = stmem_windows(record.signal, record.fs, record.leads, beats)  # doctest: +SKIP
    >>> windows[-1].signal.shape
    (12, 2250)
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown window layout {layout!r}; choose from {LAYOUTS}")
    if not beats:
        return []
    pairs = lead_layout(leads)
    rows = [row for row, _ in pairs]
    all_beats = [*history, *beats]
    if layout == "compat":
        values = [_compat_window(signal, fs, rows[0], beat, all_beats, signal_offset) for beat in beats]
        mask = np.zeros(len(STMEM_LEADS), dtype=bool)
        mask[ECHOPULSE_LEAD_SLOT] = True
        pads = [0] * len(beats)
    else:
        values, pads = _stmem_values(signal, fs, rows, beats, signal_offset, zscore=layout == "stmem")
        mask = np.zeros(len(STMEM_LEADS), dtype=bool)
        mask[[slot for _, slot in pairs]] = True
    times = np.array([b.r_peak_s for b in all_beats])
    qualities = np.array([np.nan if b.quality is None else b.quality for b in all_beats])
    windows = []
    for beat, value, pad in zip(beats, values, pads, strict=True):
        full = value if layout == "compat" else _place(value, pairs)
        inside = slice(
            np.searchsorted(times, beat.r_peak_s - WINDOW_S, side="right"),
            np.searchsorted(times, beat.r_peak_s, side="right"),
        )
        windows.append(_describe(beat, full, mask, int(pad), times[inside], qualities[inside], layout))
    return windows


def _stmem_values(
    signal: np.ndarray, fs: float, rows: list[int], beats: Sequence[Beat], offset: int, zscore: bool = True
) -> tuple[list[np.ndarray], list[int]]:
    """Windows for `beats`, batched by segment length.

    A window that starts before the record gets its missing raw samples as copies of the first sample
    (flat, so the band-pass does not ring) and those positions are zeroed afterwards as padding; all
    windows then share one segment length except those cut by the end of the data.
    """
    n_total = offset + signal.shape[1]
    groups: dict[int, list[int]] = {}
    segments: list[np.ndarray] = []
    starts: list[int] = []
    for i, beat in enumerate(beats):
        start, stop = window_span(beat.r_peak, fs)
        stop = min(stop, n_total)
        if max(start, 0) < offset:
            raise ValueError(f"window of beat {beat.index} needs sample {start}, buffer starts at {offset}")
        segment = signal[rows, max(start, 0) - offset : stop - offset]
        if start < 0:
            segment = np.pad(segment, ((0, 0), (-start, 0)), mode="edge")
        segments.append(segment)
        starts.append(start)
        groups.setdefault(stop - start, []).append(i)
    values: list[np.ndarray] = [np.empty(0)] * len(beats)
    pads = [0] * len(beats)
    for members in groups.values():
        batch = np.stack([segments[i] for i in members])
        r_peaks = [beats[i].r_peak for i in members]
        out, pad = window_from_segments(batch, [starts[i] for i in members], r_peaks, fs, zscore)
        for j, i in enumerate(members):
            values[i], pads[i] = out[j], int(pad[j])
    return values, pads


def _compat_window(
    signal: np.ndarray, fs: float, row: int, beat: Beat, all_beats: Sequence[Beat], offset: int
) -> np.ndarray:
    """ECHOPulse input from the cycle that ends at this beat (previous R-peak to this one)."""
    previous = beat.r_peak - round(beat.rr_s * fs) if beat.rr_s else beat.r_peak - round(fs)
    start = max(previous, offset)
    return echopulse_ecg_input(signal[row, start - offset : beat.r_peak - offset])


def _place(value: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    full = np.zeros((len(STMEM_LEADS), WINDOW_SAMPLES))
    for k, (_, slot) in enumerate(pairs):
        full[slot] = value[k]
    return full


def _describe(
    beat: Beat,
    signal: np.ndarray,
    mask: np.ndarray,
    pad: int,
    r_peaks_s: np.ndarray,
    qualities: np.ndarray,
    layout: str,
) -> STMEMWindow:
    known = qualities[~np.isnan(qualities)]
    quality = float(known.mean()) if known.size else None
    reason = beat.reason
    if reason is None and quality is not None and quality < QUALITY_THRESHOLD:
        reason = f"window quality {quality:.2f} < {QUALITY_THRESHOLD}: noisy segment"
    return STMEMWindow(
        signal=signal.astype(np.float32),
        lead_mask=mask.copy(),
        beat_index=beat.index,
        end_s=beat.r_peak_s,
        r_peaks_s=r_peaks_s.copy(),
        rr_s=beat.rr_s,
        hr_bpm=beat.hr_bpm,
        quality=quality,
        accepted=reason is None,
        reason=reason,
        padded=pad > 0,
        pad_samples=pad,
        layout=layout,
    )

"""`match_beats`: score detected R-peaks against reference beat annotations (sensitivity, PPV, F1).

This is how a detector is judged against a database such as MIT-BIH (ANSI/AAMI EC57 uses a ±150 ms
window; ±50 ms is the stricter one used in most R-peak papers). A detection counts only once and a
reference beat is matched at most once, so a detector that reports one QRS twice is charged a false
positive instead of being rewarded with two hits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BeatMatch:
    """How detected beats line up with reference beats.

    `sensitivity` = tp / (tp + fn) (share of real beats found), `ppv` = tp / (tp + fp) (share of
    detections that are real beats), `f1` their harmonic mean. A ratio with nothing to count (say, PPV
    with no detections) is NaN rather than a flattering 0 or 1.
    """

    tp: int
    fp: int
    fn: int
    sensitivity: float
    ppv: float
    f1: float

    @classmethod
    def from_counts(cls, tp: int, fp: int, fn: int) -> BeatMatch:
        """Scores from counts, e.g. counts summed over records for gross (pooled) statistics."""
        return cls(
            tp=tp,
            fp=fp,
            fn=fn,
            sensitivity=_ratio(tp, tp + fn),
            ppv=_ratio(tp, tp + fp),
            f1=_ratio(2 * tp, 2 * tp + fp + fn),
        )


def match_beats(detected: np.ndarray, reference: np.ndarray, tolerance: float) -> BeatMatch:
    """One-to-one matching of `detected` to `reference` beat times, each within `tolerance`.

    Times may be sample indices or seconds, as long as both arrays and `tolerance` use the same unit;
    order does not matter and a pair exactly `tolerance` apart still matches. The matching has the
    largest possible number of pairs, so the counts do not depend on the order beats are visited in.

    >>> m = match_beats(np.array([100, 205, 400]), np.array([101, 200, 300]), tolerance=18)
    >>> m.tp, m.fp, m.fn, round(m.f1, 3)
    (2, 1, 1, 0.667)
    """
    found = _sorted_times(detected, "detected")
    truth = _sorted_times(reference, "reference")
    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    tp = _count_matches(found, truth, float(tolerance))
    return BeatMatch.from_counts(tp=tp, fp=found.size - tp, fn=truth.size - tp)


def _sorted_times(times: np.ndarray, name: str) -> np.ndarray:
    """A sorted 1-D float copy; NaN or inf would silently match nothing, so they are refused."""
    values = np.sort(np.asarray(times, dtype=np.float64).ravel())
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} beat times must be finite")
    return values


def _count_matches(found: np.ndarray, truth: np.ndarray, tolerance: float) -> int:
    """Greedy two-pointer matching over sorted times.

    Pairing the earliest unmatched detection with the earliest reference still in reach is optimal for
    points on a line with a symmetric window (a swap argument shows any maximum matching can be turned
    into this one), so this gives the maximum number of pairs in linear time.
    """
    i = j = tp = 0
    while i < found.size and j < truth.size:
        if found[i] < truth[j] - tolerance:
            i += 1  # this detection is before every remaining reference: a false positive
        elif truth[j] < found[i] - tolerance:
            j += 1  # this reference is before every remaining detection: missed
        else:
            tp += 1
            i += 1
            j += 1
    return tp


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan

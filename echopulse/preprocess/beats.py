"""R-peaks, RR intervals and heart rate: `find_beats`, and the `BeatTracker` behind it.

Detection runs at fixed sample positions (hops), each time on a trailing buffer of the causally cleaned
signal, and a peak is committed once it lies `guard_s` behind the hop. Because the hops sit at fixed
positions from the first sample and the cleaning filter is causal (carried state), the beats cannot depend
on how the samples arrived: a live stream fed in chunks of any size and one offline call over the whole
record run the same procedure and commit the same beats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import signal as sps

from echopulse.preprocess.quality import MIN_QRS_AMPLITUDE_MV, beat_quality


@dataclass(frozen=True)
class Beat:
    """One detected heartbeat, closed by its R-peak.

    `r_peak` is the sample index in the record's own fs; `r_peak_s` the same in seconds from the record's
    first sample. `rr_s`/`hr_bpm` measure from the last accepted beat (None before the first one).
    `accepted` is False when the beat's quality is below threshold; `reason` then says why.
    """

    index: int
    r_peak: int
    r_peak_s: float
    rr_s: float | None
    hr_bpm: float | None
    quality: float | None
    accepted: bool
    reason: str | None = None


DEFAULT_METHOD = "pantompkins1985"

DETECTION_BANDS_HZ: dict[str, tuple[float, float]] = {
    "neurokit": (0.5, 40.0),
    "pantompkins1985": (5.0, 15.0),
    "elgendi2010": (8.0, 20.0),
    "engzeemod2012": (0.5, 40.0),
    "kalidas2017": (0.5, 40.0),
    "rodrigues2021": (0.5, 40.0),
    "nabian2018": (0.5, 40.0),
    "martinez2004": (0.5, 40.0),
}
"""Each neurokit2 detector with the pass band its own `ecg_clean` would give it, here applied causally.

hamilton2002 was tried and left out: on 8-s hop buffers about 13 % of its beats on MIT-BIH 100 land on
the P wave, 140–280 ms before the R-peak (F1 0.87), too far for refinement to pull back."""

QUALITY_BAND_HZ = (0.5, 40.0)


@dataclass(frozen=True)
class DetectorSettings:
    """How the hop detector runs. Latency of a beat = between `guard_s` and `guard_s + hop_s`.

    Half-second hops commit the same R-peaks as 1-s hops did on every annotated and watch record here
    (`benchmarks/beats.py`: F1 0.9998 on MIT-BIH 100 either way; only the quality scores move, by ~0.01,
    as each is read off the buffer of its commit hop), for half the waiting, at 1.6× the detector's small
    cost (2 ms per second of ECG)."""

    method: str = DEFAULT_METHOD
    hop_s: float = 0.5
    buffer_s: float = 8.0
    guard_s: float = 1.0
    front_guard_s: float = 2.0
    refractory_s: float = 0.25
    refine_back_s: float = 0.12
    refine_ahead_s: float = 0.05
    final_guard_s: float = 0.1
    lead_in_s: float = 2.0
    tip_s: float = 0.05


@lru_cache(maxsize=32)
def _causal_sos(fs: float, band: tuple[float, float]) -> np.ndarray:
    high = min(band[1], 0.45 * fs)
    return sps.butter(2, [band[0], high], btype="bandpass", fs=fs, output="sos")


class _CausalFilter:
    """A Butterworth band-pass with carried state: chunked or whole, the output is the same."""

    def __init__(self, fs: float, band: tuple[float, float]) -> None:
        self.sos = _causal_sos(fs, band)
        self.state: np.ndarray | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.state is None:
            # Start in steady state on the first sample, so a DC offset does not ring as a fake beat.
            self.state = sps.sosfilt_zi(self.sos) * x[0]
        y, self.state = sps.sosfilt(self.sos, x, zi=self.state)
        return y


class BeatTracker:
    """Incremental R-peak detector over one ECG lead; `push` samples, get back the beats they close.

    The tracker keeps only a bounded trailing buffer (`buffer_s` plus one hop), so it can run for hours.
    `finish()` runs one last detection at the end of the data.
    """

    def __init__(self, fs: float, settings: DetectorSettings | None = None) -> None:
        self.fs = float(fs)
        self.settings = settings or DetectorSettings()
        method = self.settings.method
        if method not in DETECTION_BANDS_HZ:
            raise ValueError(f"unknown R-peak method {method!r}; choose from {sorted(DETECTION_BANDS_HZ)}")
        self._detect_filter = _CausalFilter(self.fs, DETECTION_BANDS_HZ[method])
        self._same_filters = DETECTION_BANDS_HZ[method] == QUALITY_BAND_HZ
        self._quality_filter = None if self._same_filters else _CausalFilter(self.fs, QUALITY_BAND_HZ)
        s = self.settings
        self.hop_n = max(1, round(s.hop_s * self.fs))
        self.buffer_n = round(s.buffer_s * self.fs)
        self.guard_n = round(s.guard_s * self.fs)
        self.front_n = round(s.front_guard_s * self.fs)
        self.refractory_n = round(s.refractory_s * self.fs)
        self.refine_span = (round(s.refine_back_s * self.fs), round(s.refine_ahead_s * self.fs))
        self.final_guard_n = round(s.final_guard_s * self.fs)
        self.lead_in_n = round(s.lead_in_s * self.fs)
        self.tip_n = round(s.tip_s * self.fs)
        keep = self.buffer_n + self.hop_n
        self._detect_buf = _TrailingBuffer(keep)
        self._quality_buf = self._detect_buf if self._same_filters else _TrailingBuffer(keep)
        self._raw_buf = _TrailingBuffer(keep)
        self.n_seen = 0
        self._next_hop = self.hop_n
        self._last_peak: int | None = None
        self._last_accepted_peak: int | None = None
        self._n_beats = 0
        self._finished = False

    def push(self, samples: np.ndarray) -> list[Beat]:
        """Feed the next samples of the lead (any count); returns the beats committed by them."""
        if self._finished:
            raise RuntimeError("BeatTracker already finished")
        x = np.asarray(samples, dtype=np.float64).ravel()
        if x.size == 0:
            return []
        # Filtering the whole chunk at once is the same as hop by hop (the state carries), only faster.
        detect = self._detect_filter(x)
        quality = detect if self._same_filters else self._quality_filter(x)
        beats: list[Beat] = []
        position = 0
        while position < x.size:
            # Feed up to the next hop position, then detect there.
            piece = slice(position, position + min(x.size - position, self._next_hop - self.n_seen))
            self._append(x[piece], detect[piece], quality[piece])
            position = piece.stop
            if self.n_seen == self._next_hop:
                beats += self._detect(hop=self.n_seen, guard=self.guard_n)
                self._next_hop += self.hop_n
        return beats

    def finish(self) -> list[Beat]:
        """Commit what the end of the data holds (the live stream's `stop`, the record's last samples)."""
        if self._finished or self.n_seen == 0:
            self._finished = True
            return []
        self._finished = True
        return self._detect(hop=self.n_seen, guard=self.final_guard_n)

    def _append(self, raw: np.ndarray, detect: np.ndarray, quality: np.ndarray) -> None:
        self._raw_buf.extend(raw)
        self._detect_buf.extend(detect)
        if not self._same_filters:
            self._quality_buf.extend(quality)
        self.n_seen += raw.size

    def _detect(self, hop: int, guard: int) -> list[Beat]:
        start = max(0, hop - self.buffer_n)
        detect = self._detect_buf.view(start, hop)
        quality_signal = self._quality_buf.view(start, hop)
        raw = self._raw_buf.view(start, hop)
        peaks = self._find_peaks(detect, quality_signal, raw, at_record_start=start == 0)
        lowest = start + self.front_n if start > 0 else 0
        if self._last_peak is not None:
            lowest = max(lowest, self._last_peak + self.refractory_n + 1)
        absolute = peaks + start
        new = absolute[(absolute >= lowest) & (absolute < hop - guard)]
        if new.size == 0:
            return []
        quality, reasons = beat_quality(quality_signal, peaks, self.fs, targets=new - start)
        beats = []
        for peak, q, reason in zip(new, quality, reasons, strict=True):
            beats.append(self._make_beat(int(peak), q, reason))
        return beats

    def _find_peaks(
        self, detect: np.ndarray, wide: np.ndarray, raw: np.ndarray, at_record_start: bool
    ) -> np.ndarray:
        """R-peaks in the buffer: the detector's candidates on its own band, moved to the raw signal's
        dominant deflection, then kept only where the wide-band (0.5–40 Hz) signal has a QRS upstroke: in
        a detector's narrow band a QRS stands out less against T waves and baseline."""
        none = np.empty(0, dtype=np.int64)
        if detect.size < round(0.5 * self.fs) or np.ptp(raw) < MIN_QRS_AMPLITUDE_MV:
            return none  # too short to judge, or a flat line (a lead-off electrode): no beats
        # Detectors learn their thresholds on the first second or two and miss the beats there; at the
        # record's start they first read a mirror image of its opening seconds, then the record itself.
        lead_in = min(detect.size - 1, self.lead_in_n) if at_record_start else 0
        signal = np.concatenate([detect[lead_in:0:-1], detect]) if lead_in else detect
        import neurokit2 as nk  # here, not at the top: it costs a second, and `echopulse --help` is not ECG

        try:
            found = nk.ecg_findpeaks(signal, sampling_rate=self.fs, method=self.settings.method)
        except (ValueError, IndexError):
            # Some neurokit2 detectors fail on degenerate buffers (e.g. martinez2004 on filtered DC) rather
            # than report no peaks; a stream must not die of a bad second of signal.
            return none
        # A peak found in the mirror image stands for its original (an R at 65 ms and its mirror merge).
        peaks = np.abs(np.asarray(found["ECG_R_Peaks"], dtype=np.int64) - lead_in)
        peaks = peaks[(peaks >= 0) & (peaks < detect.size)]
        peaks = np.unique(_refine(raw, wide, peaks, self.refine_span, self.tip_n))
        if peaks.size == 0:
            return peaks
        half_width = round(SLOPE_HALF_WIDTH_S * self.fs)
        keep = _strongest_per_qrs(peaks, _steepness(detect, peaks, half_width), self.refractory_n)
        peaks = peaks[keep]
        qrs = _is_qrs(detect, peaks, half_width)
        if not qrs.all():  # the wide band is asked only about what the detector's band turned down
            qrs |= _is_qrs(wide, peaks, half_width)
        return peaks[qrs]

    def _make_beat(self, peak: int, quality: float, reason: str | None) -> Beat:
        # RR runs from the last accepted beat: a refused beat is most often a false detection, and an
        # RR cut short by it would give the next clip a fraction of the true cardiac cycle.
        last = self._last_accepted_peak
        rr = None if last is None else (peak - last) / self.fs
        beat = Beat(
            index=self._n_beats,
            r_peak=peak,
            r_peak_s=peak / self.fs,
            rr_s=rr,
            hr_bpm=None if rr is None else 60.0 / rr,
            quality=None if math.isnan(quality) else float(quality),
            accepted=reason is None,
            reason=reason,
        )
        self._last_peak = peak
        if beat.accepted:
            self._last_accepted_peak = peak
        self._n_beats += 1
        return beat


SLOPE_GATE = 0.3
NOISE_GATE = 8.0
"""A QRS upstroke is many times the buffer's median slope (ECG is smooth between beats); in white noise
the steepest slope near any peak is only ~4.5 times the median, so peaks under 8 times are noise."""
SLOPE_HALF_WIDTH_S = 0.05


def _steepness(signal: np.ndarray, peaks: np.ndarray, half_width: int) -> np.ndarray:
    """Steepest slope of `signal` within `half_width` of each peak."""
    slope = np.abs(np.diff(signal, prepend=signal[:1]))
    offsets = np.arange(-half_width, half_width + 1)
    index = np.clip(peaks[:, None] + offsets, 0, signal.size - 1)
    return slope[index].max(axis=1)


def _is_qrs(signal: np.ndarray, peaks: np.ndarray, half_width: int) -> np.ndarray:
    """Which peaks have a QRS upstroke in `signal`: steep against the buffer's other peaks and its noise.

    neurokit2's detectors set their threshold over the last second or so, so in a pause (MIT-BIH 232 has
    pauses of up to 6 s) they mark baseline noise, after a tall beat sometimes its T wave, and while
    learning a P wave. All of these rise far more slowly than a QRS: a peak must reach `SLOPE_GATE` of the
    75th percentile of the buffer's peaks and `NOISE_GATE` times its median slope. The caller asks two
    bands and keeps a peak either passes: a detector's narrow band favours normal beats beside tall
    PVCs (MIT-BIH 106), the wide band the fragmented QS complexes of an infarct (PTB s0010_re, lead II).
    """
    steepness = _steepness(signal, peaks, half_width)
    noise_floor = np.median(np.abs(np.diff(signal)))
    typical = np.percentile(steepness, 75)
    return (steepness >= SLOPE_GATE * typical) & (steepness >= NOISE_GATE * noise_floor)


def _strongest_per_qrs(peaks: np.ndarray, steepness: np.ndarray, refractory: int) -> np.ndarray:
    """Indices of the peaks to keep when several fall within `refractory` of each other: the steepest
    (two detections of one QRS, or a P wave reported beside its R, count once, as the R)."""
    kept: list[int] = []
    for i in range(peaks.size):
        if kept and peaks[i] - peaks[kept[-1]] <= refractory:
            if steepness[i] > steepness[kept[-1]]:
                kept[-1] = i
        else:
            kept.append(i)
    return np.array(kept, dtype=np.int64)


def _refine(
    raw: np.ndarray, wide: np.ndarray, peaks: np.ndarray, span: tuple[int, int], tip: int
) -> np.ndarray:
    """Move each peak onto its QRS's dominant deflection in the raw signal: the R-peak itself, not where
    a causal filter, a detector's narrow band or its integrator put it.

    First the steepest point of the wide-band signal from `span[0]` samples before to `span[1]` after
    (detectors lag, hence the longer look back): that is the QRS, not a tall T wave beside it. Then,
    within `tip` samples of it, the raw sample farthest from the local median, up or down: ectopic beats
    of MIT-BIH 106 point down in lead II, and their fiducial point is their tip, not a small notch.
    """
    if peaks.size == 0:
        return peaks
    rows = np.arange(peaks.size)
    slope = np.abs(np.diff(wide, prepend=wide[:1]))
    index = np.clip(peaks[:, None] + np.arange(-span[0], span[1] + 1), 0, raw.size - 1)
    steepest = index[rows, np.argmax(slope[index], axis=1)]
    index = np.clip(steepest[:, None] + np.arange(-tip, tip + 1), 0, raw.size - 1)
    around = raw[index]
    deviation = np.abs(around - np.median(around, axis=1, keepdims=True))
    return index[rows, np.argmax(deviation, axis=1)]


class _TrailingBuffer:
    """The last `capacity` samples of a stream, addressed by absolute sample index."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._data = np.empty(0)
        self._offset = 0  # absolute index of self._data[0]

    def extend(self, x: np.ndarray) -> None:
        self._data = np.concatenate([self._data, x])
        excess = self._data.size - self.capacity
        if excess > self.capacity:  # trim in large steps, so appends stay amortised O(1)
            self._data = self._data[excess:]
            self._offset += excess

    def view(self, start: int, stop: int) -> np.ndarray:
        if start < self._offset:
            raise ValueError(f"samples from {start} are no longer buffered (oldest {self._offset})")
        return self._data[start - self._offset : stop - self._offset]


def find_beats(signal: np.ndarray, fs: float, method: str = DEFAULT_METHOD) -> list[Beat]:
    """R-peaks of one ECG lead (mV), with RR, heart rate and per-beat quality.

    The offline form of `BeatTracker`: the same hops over the whole record, so a live stream of the same
    samples yields the same beats.

    >>> beats = find_beats(record.signal[0], record.fs)  # doctest: +SKIP
    >>> [round(b.hr_bpm) for b in beats[1:4]]  # doctest: +SKIP
    [72, 71, 73]
    """
    tracker = BeatTracker(fs, DetectorSettings(method=method))
    return tracker.push(signal) + tracker.finish()

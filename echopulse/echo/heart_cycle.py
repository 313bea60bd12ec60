"""The cardiac cycle of the phantom, timed by the ECG, and the rule that couples function to ECG morphology.

Timing (times relative to the opening R-peak of the cycle, RR long):

- end-diastole at the R-peak (t = 0, volume fraction g = 1);
- isovolumic contraction until the QRS end + 20 ms, then ejection (front-loaded) to end-systole at the
  T-wave end of the opening beat (g = 0), so systolic duration follows QRS duration and QT;
- isovolumic relaxation (70 ms), rapid filling (exponential, to 70–80 % of the stroke volume), diastasis
  (slow filling), then the atrial kick from 60 ms after the next P onset up to the closing R-peak (g = 1).

The atria fill while the ventricles empty: atrial fraction a = 1 − g (largest at end-systole, smallest after
the atrial kick).

EF coupling rule (percent; QRS in ms, voltage = QRS amplitude scale (1 normal), ST deviation in mV):

    EF = 62 − 0.30·max(0, QRS − 100) − 25·max(0, 0.8 − voltage) − 45·|ST| + N(0, 3²), clipped to [15, 75]

so a wide QRS (150 ms: −15 points), low QRS voltage (0.4: −10) or ST deviation (0.2 mV: −9) each lowers EF.
This is the target EF: the renderer tunes the end-systolic LV shape so that the area–length EF of the true
masks at end-diastole and at the exact end-systole equals it. The labelled EF comes from the clip's ED and
ES frames, so it differs from the target only by pixel quantisation and by how near a frame falls to
end-systole (over seeds 0–29 at 128 px and 11 frames: mean difference ≈ 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from echopulse.echo.ecg_phantom import ECGMorphology, PhantomECG

EF_RANGE = (15.0, 75.0)


def ecg_ef(m: ECGMorphology) -> float:
    """The part of the coupling rule the ECG decides (no noise, not clipped): what an ECG reader can know."""
    return 62.0 - 0.30 * max(0.0, m.qrs_ms - 100.0) - 25.0 * max(0.0, 0.8 - m.voltage) - 45.0 * abs(m.st_mv)


EF_NOISE_SD = 3.0
"""The coupling rule's random part (EF points): what no ECG shows, so no ECG reader can know it."""


def target_ef(m: ECGMorphology, rng: np.random.Generator, noise_sd: float = EF_NOISE_SD) -> float:
    """The coupling rule above (EF in percent). `noise_sd` 0 gives the part the ECG decides (clipped); the
    random draw is made either way, so the rest of the sample's stream does not move."""
    return float(np.clip(ecg_ef(m) + rng.normal(0.0, noise_sd), *EF_RANGE))


@dataclass(frozen=True)
class CycleTiming:
    """Mechanical event times in seconds from the opening R-peak."""

    rr: float
    ejection_start: float
    end_systole: float
    mitral_opening: float
    atrial_start: float
    rapid_fraction: float  # share of the filling done in the rapid phase
    tau: float  # rapid-filling time constant

    @classmethod
    def from_fiducials(
        cls, rr: float, qrs_end: float, t_end: float, p_onset_next: float, rapid_fraction: float = 0.75
    ) -> CycleTiming:
        ej = min(qrs_end + 0.02, 0.25 * rr)
        es = float(np.clip(t_end, ej + 0.1, 0.75 * rr))
        mo = min(es + 0.07, 0.85 * rr)
        atrial = float(np.clip(p_onset_next + 0.06, mo + 0.02, rr - 0.06))
        return cls(rr, ej, es, mo, atrial, rapid_fraction, 0.06)

    @classmethod
    def of_closing_cycle(cls, ecg: PhantomECG, rapid_fraction: float = 0.75) -> CycleTiming:
        """The timing of the cycle a clip shows: from the R-peak before the ECG's closing one to it."""
        k = ecg.closing_index
        r_open = ecg.r_peak[k - 1]
        return cls.from_fiducials(
            float(ecg.r_peak[k] - r_open),
            qrs_end=float(ecg.qrs_end[k - 1] - r_open),
            t_end=float(ecg.t_end[k - 1] - r_open),
            p_onset_next=float(ecg.p_onset[k] - r_open),
            rapid_fraction=rapid_fraction,
        )


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def volume_fraction(t: np.ndarray, c: CycleTiming) -> np.ndarray:
    """g(t) in [0, 1]: 1 at end-diastole, 0 at end-systole. `t` is wrapped into one cycle."""
    t = np.mod(np.asarray(t, float), c.rr)
    g = np.ones_like(t)
    x = (t - c.ejection_start) / (c.end_systole - c.ejection_start)
    eject = (t >= c.ejection_start) & (t < c.end_systole)
    g[eject] = 1.0 - _smoothstep(np.clip(x[eject], 0, 1) ** 0.75)
    g[(t >= c.end_systole) & (t < c.mitral_opening)] = 0.0

    def filling(tt: np.ndarray) -> np.ndarray:
        dt = np.maximum(tt - c.mitral_opening, 0.0)
        rapid = c.rapid_fraction * (1.0 - np.exp(-dt / c.tau))
        slow = 0.05 * dt / max(c.atrial_start - c.mitral_opening, 1e-3)
        return np.minimum(rapid + slow, 0.95)

    fill = (t >= c.mitral_opening) & (t < c.atrial_start)
    g[fill] = filling(t[fill])
    kick = t >= c.atrial_start
    base = float(filling(np.asarray([c.atrial_start]))[0])
    y = (t[kick] - c.atrial_start) / (c.rr - c.atrial_start)
    g[kick] = base + (1.0 - base) * _smoothstep(y)
    return g

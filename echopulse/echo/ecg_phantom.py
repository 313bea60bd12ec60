"""A 12-lead ECG with exactly known fiducials, for the paired phantom.

Each beat is a sum of Gaussian waves (P, Q, R, S, T; the ECGSYN idea written in the time domain), each wave a
3-D heart vector projected on the twelve lead vectors (limb leads in the frontal plane, V1–V6 in the
horizontal plane), plus an ST plateau, baseline wander and white noise. Because the waves are placed, the
fiducials are known by construction:

- R-peak: the R wave's centre;
- P onset: P centre − 2.5 σ_P;
- QRS end (J point): R-peak + 0.55 × QRS duration (the S wave is over by then);
- T end: T centre + 2.5 σ_T (its descending limb), with QT from Bazett (QT = QTc·√RR).

Per sample the model draws heart rate, heart-rate variability (respiratory sinus arrhythmia plus random
jitter), PR, QRS duration (a third of samples wide, 120–170 ms, bundle-branch-like with a discordant T),
QRS voltage (some low-voltage), electrical axis, ST deviation, QTc, T amplitude and noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ECG_FS = 250.0
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
#: the clip's closing R-peak sits at this time; 1 s of ECG follows it (so a 9-s ST-MEM window ending at the
#: R-peak has a 1-s filter margin on either side)
CLOSING_R_S = 10.0
ECG_SECONDS = 11.0
HR_RANGE_BPM = (30.0, 200.0)


def _lead_vectors() -> np.ndarray:
    """(12, 3) lead vectors in (left, inferior, anterior) coordinates."""
    limb = {"I": 0, "II": 60, "III": 120, "aVR": -150, "aVL": -30, "aVF": 90}
    rows = []
    for name in LEADS[:6]:
        a = np.deg2rad(limb[name])
        rows.append([np.cos(a), np.sin(a), 0.0])
    for a in (115, 95, 75, 60, 35, 5):  # V1..V6, angle from left towards anterior in the horizontal plane
        r = np.deg2rad(a)
        rows.append([np.cos(r), 0.15, np.sin(r)])
    return np.asarray(rows)


LEAD_VECTORS = _lead_vectors()


@dataclass(frozen=True)
class ECGMorphology:
    """What was drawn for one sample (the EF coupling rule reads `qrs_ms`, `voltage` and `st_mv`)."""

    hr_bpm: float
    hrv: float  # relative RR jitter
    pr_ms: float
    qrs_ms: float
    voltage: float  # QRS amplitude scale (1 = normal, < 0.6 low voltage)
    st_mv: float  # ST deviation in lead II (signed)
    qtc_ms: float
    axis_deg: float


@dataclass(frozen=True)
class PhantomECG:
    signal: np.ndarray  # float32 (12, n) mV at ECG_FS
    fs: float
    r_peak: np.ndarray  # seconds, every beat in the record
    p_onset: np.ndarray
    qrs_end: np.ndarray
    t_end: np.ndarray
    closing_index: int  # index into r_peak of the clip's closing R-peak (at CLOSING_R_S)
    morphology: ECGMorphology


def draw_morphology(rng: np.random.Generator, hr_bpm: float | None = None) -> ECGMorphology:
    hr = float(rng.uniform(50.0, 110.0)) if hr_bpm is None else float(hr_bpm)
    wide = rng.random() < 1 / 3
    qrs = rng.uniform(120.0, 170.0) if wide else rng.uniform(75.0, 105.0)
    voltage = rng.uniform(0.35, 0.65) if rng.random() < 0.25 else rng.uniform(0.7, 1.5)
    st = rng.choice([-1.0, 1.0]) * rng.uniform(0.08, 0.25) if rng.random() < 0.25 else rng.normal(0, 0.025)
    return ECGMorphology(
        hr_bpm=hr,
        hrv=float(rng.uniform(0.01, 0.05)),
        pr_ms=float(rng.uniform(120.0, 200.0)),
        qrs_ms=float(qrs),
        voltage=float(voltage),
        st_mv=float(st),
        qtc_ms=float(rng.uniform(380.0, 450.0) + (40.0 if wide else 0.0)),
        axis_deg=float(rng.uniform(-20.0, 85.0)),
    )


def _rr_series(rng: np.random.Generator, m: ECGMorphology) -> np.ndarray:
    """R-peak times (s) such that one sits exactly at CLOSING_R_S, covering [0, ECG_SECONDS]."""
    rr0 = 60.0 / m.hr_bpm
    resp_hz, phase = rng.uniform(0.15, 0.35), rng.uniform(0, 2 * np.pi)
    back, t = [CLOSING_R_S], CLOSING_R_S
    while t > -0.5:
        rr = rr0 * (1 + m.hrv * (0.7 * np.sin(2 * np.pi * resp_hz * t + phase) + 0.5 * rng.standard_normal()))
        t -= max(rr, 0.25)
        back.append(t)
    fwd, t = [], CLOSING_R_S
    while t < ECG_SECONDS + 0.5:
        t += max(rr0 * (1 + m.hrv * 0.5 * rng.standard_normal()), 0.25)
        fwd.append(t)
    return np.asarray(back[::-1] + fwd)


def _gauss(t: np.ndarray, centres: np.ndarray, sigma: float, sigma_left: float | None = None) -> np.ndarray:
    d = t[None, :] - centres[:, None]
    if sigma_left is None:
        return np.exp(-0.5 * (d / sigma) ** 2).sum(axis=0)
    s = np.where(d < 0, sigma_left, sigma)
    return np.exp(-0.5 * (d / s) ** 2).sum(axis=0)


def _unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, float)
    return a / np.linalg.norm(a)


def simulate_ecg(rng: np.random.Generator, hr_bpm: float | None = None) -> PhantomECG:
    m = draw_morphology(rng, hr_bpm)
    r = _rr_series(rng, m)
    n = round(ECG_SECONDS * ECG_FS)
    t = np.arange(n) / ECG_FS
    rr_prev = np.diff(r, prepend=r[0] - 60.0 / m.hr_bpm)
    d = m.qrs_ms / 1000.0
    wide = m.qrs_ms >= 120.0

    ax = np.deg2rad(m.axis_deg)
    r_vec = _unit([np.cos(ax), np.sin(ax), -0.45 + rng.normal(0, 0.1)])
    q_vec = _unit([-0.5, 0.2, 0.8])
    s_vec = _unit([-0.4, -0.6, -0.6]) if not wide else _unit([-0.6, -0.2, -0.7])
    p_vec = _unit([0.6, 0.8, 0.1])
    t_vec = _unit(list(r_vec * (-1.0 if wide else 1.0) + [0.1, 0.2, 0.35]))
    st_vec = _unit([0.3, 0.9, 0.2])

    v = m.voltage
    p_sigma = rng.uniform(0.018, 0.024)
    p_centre = r - 0.45 * d - m.pr_ms / 1000.0 + 2.5 * p_sigma
    p_on = p_centre - 2.5 * p_sigma
    qt = m.qtc_ms / 1000.0 * np.sqrt(np.clip(rr_prev, 0.3, 2.0))
    t_sigma = rng.uniform(0.035, 0.05)
    t_end = r - 0.45 * d + qt
    t_centre = t_end - 2.5 * t_sigma
    qrs_end = r + 0.55 * d

    waves = [
        (p_vec * rng.uniform(0.1, 0.2), _gauss(t, p_centre, p_sigma)),
        (q_vec * 0.15 * v, _gauss(t, r - 0.25 * d, 0.07 * d)),
        (r_vec * rng.uniform(1.1, 1.6) * v, _gauss(t, r, 0.09 * d)),
        (s_vec * 0.45 * v, _gauss(t, r + 0.25 * d, 0.08 * d)),
        (t_vec * rng.uniform(0.3, 0.55) * (0.6 + 0.4 * v), _gauss(t, t_centre, t_sigma, 1.5 * t_sigma)),
    ]
    # ST plateau: from the J point to the T peak, smooth edges
    st_shape = np.zeros(n)
    for a, b in zip(qrs_end, t_centre, strict=True):
        i0, i1 = int(a * ECG_FS), int(b * ECG_FS)
        if i1 > 0 and i0 < n:
            k = np.arange(max(i0, 0), min(i1, n))
            x = (k - i0) / max(i1 - i0, 1)
            st_shape[k] = np.sin(np.pi * np.clip(x, 0, 1)) ** 0.3
    st_amp = m.st_mv / max(float(LEAD_VECTORS[1] @ st_vec), 1e-3)
    waves.append((st_vec * st_amp, st_shape))

    signal = np.zeros((12, n))
    for vec, shape in waves:
        signal += np.outer(LEAD_VECTORS @ vec, shape)
    wander_hz = rng.uniform(0.1, 0.4, size=2)
    wander = 0.05 * np.sin(2 * np.pi * wander_hz[0] * t + rng.uniform(0, 6.3))
    wander += 0.03 * np.sin(2 * np.pi * wander_hz[1] * t + rng.uniform(0, 6.3))
    signal += wander[None, :] * rng.uniform(0.3, 1.0, size=(12, 1))
    signal += rng.normal(0.0, rng.uniform(0.005, 0.025), size=signal.shape)

    keep = (r >= 0) & (r <= ECG_SECONDS)
    closing = int(np.flatnonzero(np.isclose(r[keep], CLOSING_R_S))[0])
    return PhantomECG(
        signal=signal.astype(np.float32),
        fs=ECG_FS,
        r_peak=r[keep],
        p_onset=p_on[keep],
        qrs_end=qrs_end[keep],
        t_end=t_end[keep],
        closing_index=closing,
        morphology=m,
    )

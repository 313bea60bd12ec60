"""Renderer of an apical four-chamber echo frame: sector geometry, chambers, valves, speckle.

Geometry lives in centimetres with the transducer (the sector's apex) at the origin, depth pointing down the
screen. The heart's long axis is tilted a few degrees off the sector's centre line; the LV is on the screen's
right, the RV on its left (the usual display), the atria below them across the mitral and tricuspid annuli.
Chambers are (truncated) ellipses whose sizes follow the cycle: the LV apex stays put while the base
descends in systole, the walls thicken as the cavity shrinks, the atria fill while the ventricles empty.
A drawn anatomy is fitted to its sector (`fit_lv_in_sector`): the whole LV and a margin of its wall are
always imaged, as in an acquired apical view, so no labelled LV lies outside the fan.

Per sample everything static is computed once (pixel grid in cm, sector mask, attenuation, a slowly varying
dropout map with faint per-beam streaks, two complex speckle fields blurred on the polar grid (axially and,
more, laterally) and resampled to the image); per frame only the chamber shapes are evaluated and the
speckle is rotated between its two fields, so consecutive frames decorrelate slowly, as a real scanner's do.

The image: echogenicity (blood ≈ 0, faint textured tissue around the heart, myocardium bright, the
septum brighter, annuli and leaflets brightest) × Rayleigh speckle ×
depth attenuation × gain, compressed with a power law; black outside the sector.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.ndimage import gaussian_filter

#: the LV cavity is an ellipse truncated this far past its centre (as a fraction of its long semi-axis),
#: so the mitral annulus is narrower than the ventricle
BASE_CUT = 0.55

MAX_HALF_ANGLE_DEG = 35.0
"""The widest sector a fitted anatomy may use (a 70° apical fan; acquired A4C views use about 60–75°)."""

SEPTUM_BRIGHTNESS = 1.3
"""The septum's echogenicity relative to the free walls (it is usually the brightest wall in an A4C view)."""

MAX_TILT_DEG = 12.0
"""How far the fit may turn the heart's long axis off the sector's centre line."""

LV_MARGIN_CM = 0.5
"""Wall kept in view beyond the LV cavity on every side: an edge needs tissue on its far side to be seen."""

LV_MARGIN_DEG = 2.0
"""Angular clearance between that wall and the sector edge, past the dimmed, soft edge of the fan."""


@dataclass(frozen=True)
class Anatomy:
    """What is drawn per sample (lengths in cm, angles in degrees)."""

    depth_cm: float  # drawn: the margin below the atria; fitted (`fit_lv_in_sector`): the imaged depth
    half_angle_deg: float
    sector_radius: float  # fraction of the image height
    gain: float
    gamma: float
    attenuation_per_cm: float
    tilt_deg: float
    cone: float  # how far each ventricle's axis turns away from the septum (x half-width / length)
    centre_cm: float  # lateral position of the septum at the apex
    apex_cm: float  # depth of the LV apex
    lv_length_cm: float  # end-diastolic long axis, apex to mitral annulus midpoint
    lv_width_cm: float  # end-diastolic half-width at the widest point
    lv_wall_cm: float
    septum_cm: float
    rv_length_ratio: float
    rv_width_ratio: float
    rv_wall_cm: float
    la_length_cm: float
    la_width_cm: float
    ra_length_cm: float
    ra_width_cm: float
    myo_level: float
    peri_level: float
    specular: float
    blood_level: float
    background_level: float
    haze: float
    speckle_axial_px: float
    speckle_lateral_px: float
    decorrelation: float  # speckle rotation per frame (radians)
    ef_target: float
    rv_ef_target: float


def draw_anatomy(rng: np.random.Generator, ef_target: float) -> Anatomy:
    """A random anatomy, fitted so the whole LV (and a margin of its wall) is inside the imaged sector."""
    u = rng.uniform
    drawn = Anatomy(
        depth_cm=u(0.3, 1.0),  # margin below the atria's floor; `fit_lv_in_sector` adds the heart
        half_angle_deg=u(28.0, 33.0),
        sector_radius=u(0.84, 0.95),
        gain=u(0.85, 1.2),
        gamma=u(0.65, 0.85),
        attenuation_per_cm=u(0.02, 0.06),
        tilt_deg=u(-6.0, 6.0),
        cone=u(0.7, 1.0),
        centre_cm=u(-1.0, -0.2),
        apex_cm=u(1.8, 2.5),
        lv_length_cm=u(7.8, 9.3),
        lv_width_cm=u(1.8, 2.25),
        lv_wall_cm=u(0.55, 0.85),
        septum_cm=u(0.7, 1.0),
        rv_length_ratio=u(0.74, 0.88),
        rv_width_ratio=u(0.75, 0.95),
        rv_wall_cm=u(0.3, 0.5),
        la_length_cm=u(3.6, 4.6),
        la_width_cm=u(1.7, 2.3),
        ra_length_cm=u(4.0, 5.2),
        ra_width_cm=u(1.5, 2.1),
        myo_level=u(0.4, 0.65),
        peri_level=u(0.3, 0.6),
        specular=u(1.0, 2.5),
        blood_level=u(0.008, 0.025),
        background_level=u(0.03, 0.07),
        haze=u(0.0, 0.15),
        speckle_axial_px=u(1.2, 1.7),
        speckle_lateral_px=u(2.2, 3.2),
        decorrelation=u(0.15, 0.4),
        ef_target=ef_target,
        rv_ef_target=float(np.clip(ef_target * u(0.8, 1.0), 15.0, 70.0)),
    )
    return fit_lv_in_sector(drawn)


def lv_outline_xy(a: Anatomy, grow_cm: float) -> tuple[np.ndarray, np.ndarray]:
    """Screen coordinates (x, y in cm, transducer at the origin) of the end-diastolic LV cavity's outline
    grown by `grow_cm`, the largest the LV gets (every other frame's cavity lies inside it)."""
    tilt = np.deg2rad(a.tilt_deg)
    beta = np.arctan(a.cone * a.lv_width_cm / a.lv_length_cm)
    semi = a.lv_length_cm / (1 + BASE_CUT)
    phi = np.linspace(0.0, 2.0 * np.pi, 361)
    lu = semi + (semi + grow_cm) * np.cos(phi)
    lv = (a.lv_width_cm + grow_cm) * np.sin(phi)
    keep = lu <= a.lv_length_cm + grow_cm
    lu, lv = lu[keep], lv[keep]
    u = a.apex_cm + lu * np.cos(beta) - lv * np.sin(beta)
    v = a.septum_cm / 2 + 0.3 + lu * np.sin(beta) + lv * np.cos(beta)
    x = a.centre_cm + u * np.sin(tilt) + v * np.cos(tilt)
    y = u * np.cos(tilt) - v * np.sin(tilt)
    return x, y


def lv_angle_needed_deg(a: Anatomy) -> float:
    """Half-angle of the narrowest centred sector holding the LV, its wall margin and the angular margin."""
    x, y = lv_outline_xy(a, LV_MARGIN_CM)
    return float(np.rad2deg(np.abs(np.arctan2(x, y))).max()) + LV_MARGIN_DEG


def fit_lv_in_sector(a: Anatomy) -> Anatomy:
    """Widen the sector (up to `MAX_HALF_ANGLE_DEG`), then turn the heart towards the centre line (up to
    `MAX_TILT_DEG`) and, if still needed, move it deeper, until the LV fits in the fan with margins.

    A sonographer acquires an apical view with the LV in view; a phantom that cropped it would label
    cavity no image shows. Turning the long axis (tilt) about the transducer moves every point's angle by
    about the same amount, so a few steps close the gap; the RV, on the other side, may then reach the
    fan's edge, as it often does in real apical views.
    """
    need = lv_angle_needed_deg(a)
    a = replace(a, half_angle_deg=float(np.clip(need, a.half_angle_deg, MAX_HALF_ANGLE_DEG)))
    for _ in range(60):
        x, y = lv_outline_xy(a, LV_MARGIN_CM)
        theta = np.rad2deg(np.arctan2(x, y))
        excess = float(np.abs(theta).max()) + LV_MARGIN_DEG - a.half_angle_deg
        if excess <= 0.0:
            break
        lean = float(theta.max() + theta.min()) / 2  # > 0: the LV's outline leans to the right
        if abs(lean) > 0.5 and abs(a.tilt_deg) < MAX_TILT_DEG:
            tilt = float(np.clip(a.tilt_deg - np.clip(lean, -2.0, 2.0), -MAX_TILT_DEG, MAX_TILT_DEG))
            a = replace(a, tilt_deg=tilt)
        else:  # a heart further from the transducer subtends a smaller angle
            a = replace(a, apex_cm=a.apex_cm + 0.2)
    depth_needed = float(np.hypot(*lv_outline_xy(a, LV_MARGIN_CM)).max()) + LV_MARGIN_CM
    floor = a.apex_cm + a.lv_length_cm + 0.3 + a.la_length_cm  # the atria's floor (see `render`)
    return replace(a, depth_cm=max(floor + a.depth_cm, depth_needed))


@dataclass(frozen=True)
class FrameState:
    """The cycle at one frame: ventricular volume fraction g (1 ED, 0 ES) and valve openness (0–1)."""

    g: float
    mitral_open: float
    frame_index: int


def _scales(g: float, ef: float) -> tuple[float, float]:
    """Width and length scale of a ventricle at volume fraction g: V ∝ w²·l with l = w^0.4."""
    ratio = (1.0 - ef / 100.0) + (ef / 100.0) * g
    sw = ratio ** (1.0 / 2.4)
    return sw, sw**0.4


class Apical4CRenderer:
    def __init__(self, anatomy: Anatomy, size: int, rng: np.random.Generator) -> None:
        self.a = a = anatomy
        self.size = size
        radius_px = a.sector_radius * size
        apex_y = 0.02 * size
        self.px_per_cm = radius_px / a.depth_cm
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
        self.x = (xx + 0.5 - size / 2) / self.px_per_cm
        self.y = (yy + 0.5 - apex_y) / self.px_per_cm
        r = np.hypot(self.x, self.y)
        theta = np.arctan2(self.x, self.y)
        half = np.deg2rad(a.half_angle_deg)
        inside_r = np.clip((a.depth_cm - r) * self.px_per_cm, 0.0, 1.0)
        inside_t = np.clip((half - np.abs(theta)) * r * self.px_per_cm, 0.0, 1.0)
        sector = inside_r * inside_t * (self.y > 0)
        edge_dim = 1.0 - 0.35 * np.clip((np.abs(theta) / half - 0.75) / 0.25, 0.0, 1.0)
        self.sector = sector
        # depth attenuation (after time-gain compensation: what is left), a dim near field
        self.depth_gain = np.exp(-a.attenuation_per_cm * r) * np.clip(0.55 + r / 3.0, 0.0, 1.0) * edge_dim
        self.edge_cm = 0.14 + 0.02 * r  # resolution worsens with depth
        # near-field clutter and the bright ring-down at the transducer
        self.near_haze = a.haze * np.exp(-r / 2.5) + 0.9 * np.exp(-r / 0.45)

        # static low-frequency maps: dropout of the walls and background texture
        low = gaussian_filter(rng.standard_normal((size, size)), sigma=size / 14, mode="reflect")
        low /= low.std() + 1e-9
        mid = gaussian_filter(rng.standard_normal((size, size)), sigma=size / 40, mode="reflect")
        mid /= mid.std() + 1e-9
        # per-beam gain: a few beams brighter, others in dropout (streaks along the beam, as in real fans)
        beams = gaussian_filter(rng.standard_normal(size), sigma=size / 24, mode="wrap")
        beams /= beams.std() + 1e-9
        t_norm = np.clip((theta / half + 1.0) / 2.0 * (size - 1), 0, size - 1).astype(np.intp)
        self.dropout = np.clip(1.0 + 0.4 * low + 0.25 * mid + 0.1 * beams[t_norm], 0.15, 2.0)
        low2 = gaussian_filter(rng.standard_normal((size, size)), sigma=size / 20, mode="reflect")
        low2 /= low2.std() + 1e-9
        self.background = a.background_level * np.clip(1.0 + 0.5 * low2, 0.5, 2.5)

        # speckle: two complex Gaussian fields on the polar grid, blurred, resampled to the image grid
        n_r = n_t = size
        r_idx = np.clip(np.round(r / a.depth_cm * (n_r - 1)), 0, n_r - 1).astype(np.intp)
        t_idx = np.clip(np.round((theta + half) / (2 * half) * (n_t - 1)), 0, n_t - 1).astype(np.intp)
        fields = []
        for _ in range(4):
            f = gaussian_filter(
                rng.standard_normal((n_r, n_t)),
                sigma=(a.speckle_axial_px * size / 128, a.speckle_lateral_px * size / 128),
                mode="wrap",
            )
            fields.append((f / (f.std() + 1e-9))[r_idx, t_idx])
        self.speckle = fields  # re A, im A, re B, im B; |.| is Rayleigh with mean sqrt(pi/2)
        self.speckle_norm = 1.0 / np.sqrt(np.pi / 2)
        self.blur_px = 0.75 * size / 128
        self.rx, self.ry = self.x / np.maximum(r, 1e-6), self.y / np.maximum(r, 1e-6)

        tilt = np.deg2rad(a.tilt_deg)
        self.eu = (np.sin(tilt), np.cos(tilt))  # long axis, pointing away from the transducer
        self.ev = (np.cos(tilt), -np.sin(tilt))  # across, towards the LV (screen right)
        # heart coordinates: u along the long axis from the transducer, v across from the septum's line
        ox = a.centre_cm
        self.u = (self.x - ox) * self.eu[0] + self.y * self.eu[1]
        self.v = (self.x - ox) * self.ev[0] + self.y * self.ev[1]
        # ventricles: LV apex just right of the septum, its axis turned so that the septal wall runs
        # along the septum and the lateral wall bows out; the RV mirrors it, shorter, its apex lower
        # the ventricles form a cone: each one's axis is turned away from the septum, and what of its
        # ellipse crosses the septum's line is cut off, so the septal side runs straight
        self.lv_beta = float(np.arctan(a.cone * a.lv_width_cm / a.lv_length_cm))
        self.lv_apex = (a.apex_cm, a.septum_cm / 2 + 0.3)
        rv_w = a.lv_width_cm * a.rv_width_ratio
        rv_len = a.lv_length_cm * a.rv_length_ratio
        self.rv_beta = -float(np.arctan(a.cone * rv_w / rv_len))
        lv_base_u = a.apex_cm + a.lv_length_cm * np.cos(self.lv_beta)
        self.rv_apex = (lv_base_u - 0.3 - rv_len * np.cos(self.rv_beta), -(a.septum_cm / 2 + 0.3))
        self.ef_shape = a.ef_target  # the shape parameter that calibrate_ef tunes
        self.lv_uv = self._local(*self.lv_apex, self.lv_beta)
        self.rv_uv = self._local(*self.rv_apex, self.rv_beta)

    # -- geometry -------------------------------------------------------------------------------------
    def _local(self, pu: float, pv: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates along (from point p, turned by beta towards +v) and across a chamber's long axis."""
        c, s = np.cos(beta), np.sin(beta)
        du, dv = self.u - pu, self.v - pv
        return du * c + dv * s, -du * s + dv * c

    def lv_geometry(self, g: float) -> tuple[float, float, float]:
        """(half-width, long-axis length, semi long axis) of the LV cavity at volume fraction g."""
        a = self.a
        sw, sl = _scales(g, self.ef_shape)
        length = a.lv_length_cm * sl
        return a.lv_width_cm * sw, length, length / (1 + BASE_CUT)

    def lv_mask(self, g: float) -> tuple[np.ndarray, float]:
        """The LV cavity (bool image) and its long-axis length in cm at volume fraction g."""
        w, length, semi = self.lv_geometry(g)
        lu, lv = self.lv_uv
        du = (lu - semi) / semi
        dv = lv / w
        return (du * du + dv * dv < 1.0) & (lu <= length) & (self.v > self.a.septum_cm / 2), length

    def lv_volume_ml(self, g: float) -> float:
        """Area–length volume of the true LV mask at volume fraction g."""
        mask, length = self.lv_mask(g)
        area_cm2 = float(mask.sum()) / self.px_per_cm**2
        return 8.0 * area_cm2**2 / (3.0 * np.pi * length)

    def calibrate_ef(self, iterations: int = 12) -> float:
        """Tune the end-systolic shape so that the masks' area–length EF (ED at g = 1, ES at g = 0) equals
        the anatomy's target EF (the septum cuts the ventricle's ellipse, which the scaling law ignores).
        Returns the EF reached."""
        edv = self.lv_volume_ml(1.0)
        goal = self.a.ef_target
        low, high = 1.0, 95.0
        for _ in range(iterations):
            self.ef_shape = (low + high) / 2
            ef = 100.0 * (1.0 - self.lv_volume_ml(0.0) / edv)
            low, high = (self.ef_shape, high) if ef < goal else (low, self.ef_shape)
        self.ef_shape = (low + high) / 2
        return 100.0 * (1.0 - self.lv_volume_ml(0.0) / edv)

    def _ellipse(self, uv, uc: float, vc: float, au: float, bv: float) -> np.ndarray:
        """Soft indicator (1 inside, 0 outside, ramp over the local resolution) of an ellipse."""
        du = uv[0] - uc
        dv = uv[1] - vc
        f = (du / au) ** 2 + (dv / bv) ** 2 - 1.0
        grad = 2.0 * np.sqrt((du / au**2) ** 2 + (dv / bv**2) ** 2) + 1e-6
        return np.clip(0.5 - (f / grad) / self.edge_cm, 0.0, 1.0)

    def _below(self, u: np.ndarray, u0: float) -> np.ndarray:
        """Soft indicator of u <= u0."""
        return np.clip(0.5 + (u0 - u) / self.edge_cm, 0.0, 1.0)

    def _segment(self, uv, p: tuple[float, float], d: tuple[float, float], length: float, width: float):
        """Soft indicator of a line segment from p (u, v) along unit d."""
        pu = uv[0] - p[0]
        pv = uv[1] - p[1]
        s = np.clip(pu * d[0] + pv * d[1], 0.0, length)
        dist = np.hypot(pu - s * d[0], pv - s * d[1])
        return np.clip(1.0 - (dist - width) / self.edge_cm, 0.0, 1.0)

    def _blob(self, uv, p: tuple[float, float], sigma: float) -> np.ndarray:
        return np.exp(-((uv[0] - p[0]) ** 2 + (uv[1] - p[1]) ** 2) / (2 * sigma * sigma))

    # -- one frame ------------------------------------------------------------------------------------
    def render(self, state: FrameState) -> tuple[np.ndarray, np.ndarray, float]:
        """(uint8 image, bool LV mask, LV long-axis length in cm) for one frame."""
        a = self.a
        g = state.g
        atrial = 1.0 - g
        w, length, semi = self.lv_geometry(g)
        wall = a.lv_wall_cm * (2.0 - w / a.lv_width_cm)
        lv = self.lv_uv
        sh = a.septum_cm / 2
        lv_side = np.clip(0.5 + (self.v - sh) / self.edge_cm, 0.0, 1.0)
        lv_cav = self._ellipse(lv, semi, 0.0, semi, w) * self._below(lv[0], length) * lv_side
        lv_out = self._ellipse(lv, semi, 0.0, semi + wall, w + wall) * self._below(lv[0], length + 0.15)

        rsw, rsl = _scales(g, a.rv_ef_target)
        rv_w = a.lv_width_cm * a.rv_width_ratio * rsw
        rv_len = a.lv_length_cm * a.rv_length_ratio * rsl
        rv_semi = rv_len / (1 + BASE_CUT)
        rv = self.rv_uv
        rv_side = np.clip(0.5 + (-sh - self.v) / self.edge_cm, 0.0, 1.0)
        rv_cav = self._ellipse(rv, rv_semi, 0.0, rv_semi, rv_w) * self._below(rv[0], rv_len) * rv_side
        rv_out = self._ellipse(rv, rv_semi, 0.0, rv_semi + a.rv_wall_cm, rv_w + a.rv_wall_cm)
        rv_out = rv_out * self._below(rv[0], rv_len + 0.15)
        sept = np.clip(0.5 + (sh + 0.25 - np.abs(self.v)) / self.edge_cm, 0, 1)
        lv_base = self.lv_apex[0] + length * np.cos(self.lv_beta)
        sept = (
            sept
            * self._below(self.u, lv_base)
            * np.clip(0.5 + (self.u - a.apex_cm - 0.3) / self.edge_cm, 0, 1)
        )

        # atria hang from the annuli down to a fixed floor; widest at end-systole
        mv_mid = (
            self.lv_apex[0] + length * np.cos(self.lv_beta),
            self.lv_apex[1] + length * np.sin(self.lv_beta),
        )
        tv_mid = (
            self.rv_apex[0] + rv_len * np.cos(self.rv_beta),
            self.rv_apex[1] + rv_len * np.sin(self.rv_beta),
        )
        floor = a.apex_cm + a.lv_length_cm + 0.3 + a.la_length_cm
        uv = (self.u, self.v)
        la_w = a.la_width_cm * (0.8 + 0.2 * atrial)
        ra_w = a.ra_width_cm * (0.82 + 0.18 * atrial)
        la_a = (floor - mv_mid[0] - 0.25) / 2
        ra_a = (floor - 0.2 - tv_mid[0] - 0.25) / 2
        la_c = (mv_mid[0] + 0.25 + la_a, 0.15 + a.la_width_cm)
        ra_c = (tv_mid[0] + 0.25 + ra_a, -0.15 - a.ra_width_cm)
        # atria are egg-shaped, widening towards their floor (the v coordinate is squeezed near the annulus)
        la_uv = (
            self.u,
            la_c[1] + (self.v - la_c[1]) / (1.0 + 0.18 * np.clip((self.u - la_c[0]) / la_a, -1, 1)),
        )
        ra_uv = (
            self.u,
            ra_c[1] + (self.v - ra_c[1]) / (1.0 + 0.12 * np.clip((self.u - ra_c[0]) / ra_a, -1, 1)),
        )
        la_cav = self._ellipse(la_uv, *la_c, la_a, la_w)
        la_out = self._ellipse(la_uv, *la_c, la_a + 0.25, la_w + 0.25)
        ra_cav = self._ellipse(ra_uv, *ra_c, ra_a, ra_w)
        ra_out = self._ellipse(ra_uv, *ra_c, ra_a + 0.25, ra_w + 0.25)
        # the pericardium behind the atria: a bright crescent at the bottom of the heart
        peri_c = (la_c[0], (la_c[1] + ra_c[1]) / 2)
        peri_a, peri_b = la_a + 0.7, (la_c[1] - ra_c[1]) / 2 + a.la_width_cm + 0.7
        peri = self._ellipse(uv, *peri_c, peri_a + 0.45, peri_b + 0.45) - self._ellipse(
            uv, *peri_c, peri_a, peri_b
        )
        peri = peri * np.clip((self.u - peri_c[0]) / 1.5, 0.0, 1.0)

        tissue = np.maximum(np.maximum(lv_out, rv_out), sept)
        tissue = np.maximum(tissue, 0.35 * np.maximum(la_out, ra_out))
        cavity = np.maximum(np.maximum(lv_cav, rv_cav), np.maximum(la_cav, ra_cav))
        echo = self.background * (1.0 - tissue) + a.myo_level * tissue
        echo = np.maximum(echo, a.peri_level * peri)
        echo = np.maximum(echo, SEPTUM_BRIGHTNESS * a.myo_level * sept)  # the septum shines along its length
        echo = echo * (1.0 - cavity) + a.blood_level * cavity
        # specular reflection: interfaces facing the beam (apex, AV plane, atrial floors) shine, walls
        # running along the beam (septum, lateral walls) stay dimmer
        gy, gx = np.gradient(echo)
        echo = echo + a.specular * self.size / 128 * np.abs(gx * self.rx + gy * self.ry)
        echo *= self.dropout

        # annuli and leaflets, in each ventricle's own frame (open: leaflets point towards the apex)
        mv_half = w * np.sqrt(1 - BASE_CUT**2)
        tv_half = rv_w * np.sqrt(1 - BASE_CUT**2)
        hinges = [
            (lv, (length, -mv_half), 1.0, 0.95 * mv_half),  # anterior mitral leaflet (septal side)
            (lv, (length, mv_half), -1.0, 0.7 * mv_half),  # posterior mitral leaflet
            (rv, (rv_len, -tv_half), 1.0, 0.9 * tv_half),
            (rv, (rv_len, tv_half), -1.0, 0.8 * tv_half),
        ]
        angle = np.deg2rad(20.0 + 60.0 * state.mitral_open)
        valves = np.zeros_like(echo)
        for frame_uv, p, side, leaf_len in hinges:
            d = (-np.sin(angle), side * np.cos(angle))
            valves = np.maximum(valves, self._segment(frame_uv, p, d, leaf_len, 0.05))
            valves = np.maximum(valves, self._blob(frame_uv, p, 0.16))
        echo = np.maximum(echo, 0.9 * a.myo_level * valves + 0.1 * valves)

        c = np.cos(a.decorrelation * state.frame_index)
        s = np.sin(a.decorrelation * state.frame_index)
        sp = self.speckle
        speckle = np.hypot(c * sp[0] + s * sp[2], c * sp[1] + s * sp[3]) * self.speckle_norm
        speckle = 0.35 + 0.65 * speckle
        intensity = (echo + self.near_haze) * speckle * self.depth_gain * a.gain
        intensity = gaussian_filter(intensity, self.blur_px, mode="nearest")
        image = np.clip(intensity, 0.0, 1.0) ** a.gamma * self.sector
        lu, lv_ = lv
        mask = (((lu - semi) / semi) ** 2 + (lv_ / w) ** 2 < 1.0) & (lu <= length) & (self.v > sh)
        return (image * 255.0 + 0.5).astype(np.uint8), mask, length

"""`video.mp4`: every clip at its real place on the ECG's timeline, at a constant frame rate.

Video frame j shows time j/fps from the record's first sample, and the video lasts as long as the record
(round(duration·fps) frames). A clip covers its cardiac cycle, R-peak to R-peak: its frame k belongs to
time start + k·RR/n, and a video frame shows the clip frame of the nearest earlier time (no blending, so
every frame shown is one the model made). Where no clip covers the time (before the first beat with an RR,
a refused beat, after the last R-peak) the echo panel is a dark card saying why, rather than a held frame
that would look like a heart standing still.

Under the echo runs the ECG (detection lead) in 10-s pages like ECG paper: beats marked, refused beats
shaded red, the cycle being shown tinted, and a cursor at the current time. Frames are streamed to the
encoder as clips arrive (`add`, in time order), so a long record never holds its video in memory.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from echopulse.generator.clip import EchoClip
from echopulse.preprocess.beats import Beat
from echopulse.video.clip_files import mp4_writer, upscale
from echopulse.video.mark import _font, mark_frame

PAGE_S = 10.0
ECG_PANEL_PX = 144
MIN_WIDTH_PX = 512
BACKGROUND = (12, 12, 16)
TRACE = (40, 70, 140)
PAPER = (255, 250, 250)
GRID = (243, 193, 193)
REFUSED = (214, 39, 40)
CURSOR = (228, 87, 46)
CYCLE_TINT = (60, 120, 220)


def _even(n: int, multiple: int = 2) -> int:
    return int(math.ceil(n / multiple) * multiple)


class TimelineVideo:
    """Write `path` while clips arrive in time order; `close()` renders the rest and finishes the file."""

    def __init__(
        self,
        path: Path,
        signal: np.ndarray,
        fs: float,
        duration_s: float,
        beats: Sequence[Beat],
        *,
        fps: float,
        image_size: int,
        scale: int,
        mark: bool,
        title: str = "synthetic echo",
    ) -> None:
        if fps <= 0:
            raise ValueError(f"video fps must be positive, got {fps}")
        self.signal = np.asarray(signal, dtype=np.float32)
        self.fs = float(fs)
        self.fps = float(fps)
        self.beats = list(beats)
        self._beat_times = [b.r_peak_s for b in self.beats]
        self.scale = scale
        self.mark = mark
        self.echo_px = _even(image_size * scale)
        self.width = _even(max(self.echo_px, MIN_WIDTH_PX), 16)
        self.height = _even(self.echo_px + ECG_PANEL_PX)
        self.echo_x = (self.width - self.echo_px) // 2
        self.n_frames = max(1, round(duration_s * self.fps))
        self._next = 0
        self._range = self._y_range()
        self._pages: dict[int, np.ndarray] = {}
        self._cards: dict[tuple[str, str], np.ndarray] = {}
        self._writer = mp4_writer(path, self.fps, title)
        self._closed = False

    # ---- feeding ------------------------------------------------------------------------------------------
    def add(self, clip: EchoClip) -> None:
        """Render every frame up to the end of `clip` (clips must come in time order)."""
        if clip.end_s is None:
            raise ValueError("a timeline clip needs beat times (end_s)")
        while self._next < self.n_frames and self._time(self._next) < clip.end_s:
            t = self._time(self._next)
            self._emit(t, clip if t >= clip.start_s else None)

    def close(self) -> None:
        if self._closed:
            return
        try:
            while self._next < self.n_frames:
                self._emit(self._time(self._next), None)
        finally:
            self._closed = True
            self._writer.close()

    def abort(self) -> None:
        """Stop without rendering the rest (the caller throws the file away)."""
        if not self._closed:
            self._closed = True
            self._writer.close()

    def _time(self, j: int) -> float:
        return j / self.fps

    # ---- one frame ----------------------------------------------------------------------------------------
    def _emit(self, t: float, clip: EchoClip | None) -> None:
        self._writer.append_data(self.frame(t, clip))
        self._next += 1

    def frame(self, t: float, clip: EchoClip | None) -> np.ndarray:
        """The video frame (h, w, 3) uint8 at time `t`, showing `clip` (None: the no-clip card)."""
        canvas = np.empty((self.height, self.width, 3), np.uint8)
        canvas[:] = BACKGROUND
        if clip is not None:
            n = len(clip.frames)
            k = min(n - 1, max(0, math.floor((t - clip.start_s) * n / clip.rr_s + 1e-9)))
            echo = upscale(clip.frames[k : k + 1], self.scale)[0][: self.echo_px, : self.echo_px]
        else:
            echo = self._card(*self._gap_reason(t))
        if self.mark:
            echo = mark_frame(echo)
        canvas[: echo.shape[0], self.echo_x : self.echo_x + echo.shape[1]] = echo[..., None]
        canvas[self.echo_px :] = self._ecg_panel(t, clip)
        self._caption(canvas, t, clip)
        return canvas

    def _caption(self, canvas: np.ndarray, t: float, clip: EchoClip | None) -> None:
        if self.echo_x < 40:
            return
        image = Image.fromarray(canvas)
        draw = ImageDraw.Draw(image)
        font = _font(13)
        lines = [f"t {t:6.2f} s"]
        if clip is not None:
            lines += [f"beat {clip.beat_index}", f"RR {clip.rr_s:.2f} s", f"HR {60.0 / clip.rr_s:.0f} bpm"]
        draw.multiline_text((8, 10), "\n".join(lines), fill=(230, 230, 230), font=font, spacing=6)
        draw.multiline_text(
            (self.echo_x + self.echo_px + 8, 10), "SYNTHETIC\nnot a\nrecording", fill=(150, 150, 150),
            font=font, spacing=6,
        )
        canvas[:] = np.asarray(image)

    def _gap_reason(self, t: float) -> tuple[str, str]:
        """Why no clip covers `t`: from the beat that closes the cycle `t` is in."""
        i = bisect.bisect_right(self._beat_times, t)
        if i >= len(self.beats):
            return "no clip", "after the last beat"
        beat = self.beats[i]
        if not beat.accepted:
            return "no clip", "beat refused"
        if beat.rr_s is None:
            return "no clip", "waiting for a beat"
        return "no clip", "beat window refused"

    def _card(self, headline: str, detail: str) -> np.ndarray:
        key = (headline, detail)
        if key not in self._cards:
            self._cards[key] = self._draw_card(headline, detail)
        return self._cards[key]

    def _draw_card(self, headline: str, detail: str) -> np.ndarray:
        image = Image.new("L", (self.echo_px, self.echo_px), 28)
        draw = ImageDraw.Draw(image)
        big, small = _font(max(12, self.echo_px // 12)), _font(max(10, self.echo_px // 20))
        centre = self.echo_px / 2
        draw.text((centre, centre - 4), headline, fill=200, font=big, anchor="ms")
        draw.text((centre, centre + 6), detail, fill=150, font=small, anchor="mt")
        return np.asarray(image)

    # ---- ECG panel ----------------------------------------------------------------------------------------
    def _y_range(self) -> tuple[float, float]:
        if self.signal.size == 0:
            return -1.0, 1.0
        low, high = (float(v) for v in np.percentile(self.signal, [0.5, 99.5]))
        peaks = np.array([b.r_peak for b in self.beats], dtype=np.int64)
        peaks = peaks[(peaks >= 0) & (peaks < self.signal.size)]
        if peaks.size:
            heights = self.signal[peaks]
            low = min(low, float(np.percentile(heights, 5)))
            high = max(high, float(np.percentile(heights, 95)))
        pad = 0.15 * (high - low + 1e-6)
        return low - pad, high + pad

    def _x(self, t: float, page: int) -> float:
        return (t - page * PAGE_S) / PAGE_S * (self.width - 1)

    def _page(self, page: int) -> np.ndarray:
        if page not in self._pages:
            if len(self._pages) > 4:
                self._pages.clear()
            self._pages[page] = self._draw_page(page)
        return self._pages[page]

    def _draw_page(self, page: int) -> np.ndarray:
        w, h = self.width, ECG_PANEL_PX
        image = Image.new("RGB", (w, h), PAPER)
        draw = ImageDraw.Draw(image)
        t0, t1 = page * PAGE_S, (page + 1) * PAGE_S
        for beat in self.beats:
            if not beat.accepted and t0 - 0.3 <= beat.r_peak_s < t1 + 0.3:
                x0, x1 = self._x(beat.r_peak_s - 0.3, page), self._x(beat.r_peak_s + 0.3, page)
                draw.rectangle((x0, 0, x1, h), fill=(246, 190, 190))
        font = _font(10)
        for second in range(math.ceil(t0), math.floor(t1) + 1):
            x = self._x(second, page)
            draw.line((x, 0, x, h), fill=GRID, width=1)
            draw.text((x + 2, h - 12), f"{second} s", fill=(170, 120, 120), font=font)
        low, high = self._range
        a, b = max(0, int(t0 * self.fs)), min(self.signal.size, math.ceil(t1 * self.fs))
        if b - a > 1:
            cols = np.floor((np.arange(a, b) / self.fs - t0) / PAGE_S * (w - 1)).astype(np.int64)
            values = self.signal[a:b]
            edges = np.flatnonzero(np.diff(cols)) + 1
            starts = np.concatenate(([0], edges))
            lo, hi = np.minimum.reduceat(values, starts), np.maximum.reduceat(values, starts)
            y_lo, y_hi = ((1 - (v - low) / (high - low)) * (h - 16) + 2 for v in (lo, hi))
            xs = cols[starts].astype(float)
            points = [p for x, ya, yb in zip(xs, y_lo, y_hi, strict=True) for p in ((x, ya), (x, yb))]
            draw.line(points, fill=TRACE, width=1)
        for beat in self.beats:
            if t0 <= beat.r_peak_s < t1:
                x = self._x(beat.r_peak_s, page)
                colour = CURSOR if beat.accepted else REFUSED
                draw.polygon(((x - 4, 1), (x + 4, 1), (x, 8)), fill=colour)
        return np.asarray(image)

    def _ecg_panel(self, t: float, clip: EchoClip | None) -> np.ndarray:
        page = int(t // PAGE_S)
        panel = self._page(page).copy()
        if clip is not None:
            x0 = max(0, math.floor(self._x(clip.start_s, page)))
            x1 = min(self.width, math.ceil(self._x(clip.end_s, page)) + 1)
            if x1 > x0:
                tinted = panel[:, x0:x1].astype(np.float32) * 0.85 + np.array(CYCLE_TINT) * 0.15
                panel[:, x0:x1] = tinted.astype(np.uint8)
        x = round(self._x(t, page))
        panel[:, max(0, x - 1) : x + 1] = CURSOR
        return panel

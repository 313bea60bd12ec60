"""`video.mp4`: every clip at its real place on the ECG's timeline, at a constant frame rate.

Video frame j shows time j/fps from the record's first sample, and the video lasts as long as the record
(round(duration·fps) frames). A clip covers its cardiac cycle, R-peak to R-peak: its frame k belongs to
time start + k·RR/n, and a video frame shows the clip frame of the nearest earlier time (no blending, so
every frame shown is one the model made). Where no clip covers the time (before the first beat with an RR,
a refused beat, after the last R-peak) the echo panel is a dark card saying why (the beat and its reason),
rather than a held frame that would look like a heart standing still.

Under the echo runs the ECG (detection lead) in 10-s pages like ECG paper: beats marked, refused beats
shaded red (beats left without a clip for another reason grey), the cycle being shown tinted, a cursor at
the current time, and in a margin on the left a scale bar of a round number of mV. Frames are streamed to
the encoder as clips arrive (`add`, in time order), so a long record never holds its video in memory.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from echopulse.drawing.ecg_strip import amplitude_range, scale_bar_mv, short_reason
from echopulse.generator.clip import EchoClip
from echopulse.preprocess.beats import Beat
from echopulse.video.clip_files import mp4_writer, upscale
from echopulse.video.mark import _font, mark_frame

PAGE_S = 10.0
ECG_PANEL_PX = 144
ECG_MARGIN_PX = 44
"""Left of the trace: the scale bar and its label, so neither covers the page's first beat."""
MAX_CARDS = 32
MIN_WIDTH_PX = 512
BACKGROUND = (12, 12, 16)
TRACE = (40, 70, 140)
PAPER = (255, 250, 250)
GRID = (243, 193, 193)
REFUSED = (214, 39, 40)
CURSOR = (228, 87, 46)
CYCLE_TINT = (60, 120, 220)
SCALE = (60, 60, 60)
REFUSED_SHADE = (246, 190, 190)
SKIPPED_SHADE = (226, 222, 222)


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
        skipped: Mapping[int, str] | None = None,
    ) -> None:
        """`skipped` (beat index -> reason) says why a beat got no clip; the 'no clip' card shows it. Without
        it the card tells what `beats` can: a refused beat's reason, or no RR interval."""
        if fps <= 0:
            raise ValueError(f"video fps must be positive, got {fps}")
        self.signal = np.asarray(signal, dtype=np.float32)
        self.fs = float(fs)
        self.fps = float(fps)
        self.beats = list(beats)
        self.skipped = dict(skipped or {})
        self._beat_times = [b.r_peak_s for b in self.beats]
        self.scale = scale
        self.mark = mark
        self.echo_px = _even(image_size * scale)
        self.width = _even(max(self.echo_px, MIN_WIDTH_PX), 16)
        self.height = _even(self.echo_px + ECG_PANEL_PX)
        self.echo_x = (self.width - self.echo_px) // 2
        self.n_frames = max(1, round(duration_s * self.fps))
        self._next = 0
        peaks = np.array([b.r_peak for b in self.beats], dtype=np.int64)
        self._range = amplitude_range(self.signal, peaks)
        self.scale_mv = scale_bar_mv(self._range[1] - self._range[0])
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
            echo = self._card(*self.gap_reason(t))
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

    def gap_reason(self, t: float) -> tuple[str, str]:
        """Why no clip covers `t` (headline, detail), from the beat that closes the cycle `t` is in."""
        i = bisect.bisect_right(self._beat_times, t)
        if i >= len(self.beats):
            return "no clip", "after the last beat"
        if i == 0:
            return "no clip", "before the first beat"
        beat = self.beats[i]
        if not beat.accepted:
            return f"beat {beat.index} refused", short_reason(beat.reason)
        if beat.index in self.skipped:
            return f"no clip for beat {beat.index}", short_reason(self.skipped[beat.index])
        if beat.rr_s is None:
            return f"no clip for beat {beat.index}", "no RR interval"
        return f"no clip for beat {beat.index}", "window refused"

    def _card(self, headline: str, detail: str) -> np.ndarray:
        key = (headline, detail)
        if key not in self._cards:
            if len(self._cards) >= MAX_CARDS:  # one per refused beat: bounded on a long record
                self._cards.clear()
            self._cards[key] = self._draw_card(headline, detail)
        return self._cards[key]

    def _draw_card(self, headline: str, detail: str) -> np.ndarray:
        image = Image.new("L", (self.echo_px, self.echo_px), 28)
        draw = ImageDraw.Draw(image)
        big, small = _font(max(12, self.echo_px // 12)), _font(max(10, self.echo_px // 20))
        centre, room = self.echo_px / 2, self.echo_px - 12
        draw.text((centre, centre - 4), _fit(draw, headline, big, room), fill=200, font=big, anchor="ms")
        draw.text((centre, centre + 6), _fit(draw, detail, small, room), fill=150, font=small, anchor="mt")
        return np.asarray(image)

    # ---- ECG panel ----------------------------------------------------------------------------------------
    def _x(self, t: float | np.ndarray, page: int) -> float | np.ndarray:
        return ECG_MARGIN_PX + (t - page * PAGE_S) / PAGE_S * (self.width - 1 - ECG_MARGIN_PX)

    def _y(self, value: float | np.ndarray) -> float | np.ndarray:
        low, high = self._range
        return (1 - (value - low) / (high - low)) * (ECG_PANEL_PX - 16) + 2

    def _draw_scale_bar(self, draw: ImageDraw.ImageDraw) -> None:
        """A vertical bar of `scale_mv` on the trace's scale, its value beside it, in the left margin."""
        length = self.scale_mv * (ECG_PANEL_PX - 16) / (self._range[1] - self._range[0])
        bottom = ECG_PANEL_PX - 20
        top = bottom - length
        draw.line((6, top, 6, bottom), fill=SCALE, width=2)
        draw.text((10, (top + bottom) / 2), f"{self.scale_mv:g} mV", fill=SCALE, font=_font(10), anchor="lm")

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
        self._draw_scale_bar(draw)
        for beat in self.beats:
            no_clip = not beat.accepted or beat.index in self.skipped
            if no_clip and t0 - 0.3 <= beat.r_peak_s < t1 + 0.3:
                x0, x1 = self._x(beat.r_peak_s - 0.3, page), self._x(beat.r_peak_s + 0.3, page)
                shade = REFUSED_SHADE if not beat.accepted else SKIPPED_SHADE
                draw.rectangle((max(x0, ECG_MARGIN_PX), 0, x1, h), fill=shade)
        font = _font(10)
        for second in range(math.ceil(t0), math.floor(t1) + 1):
            x = self._x(second, page)
            draw.line((x, 0, x, h), fill=GRID, width=1)
            draw.text((x + 2, h - 12), f"{second} s", fill=(170, 120, 120), font=font)
        a, b = max(0, int(t0 * self.fs)), min(self.signal.size, math.ceil(t1 * self.fs))
        if b - a > 1:
            cols = np.floor(self._x(np.arange(a, b) / self.fs, page)).astype(np.int64)
            values = self.signal[a:b]
            edges = np.flatnonzero(np.diff(cols)) + 1
            starts = np.concatenate(([0], edges))
            lo, hi = np.minimum.reduceat(values, starts), np.maximum.reduceat(values, starts)
            y_lo, y_hi = self._y(lo), self._y(hi)
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
            x0 = max(ECG_MARGIN_PX, math.floor(self._x(clip.start_s, page)))
            x1 = min(self.width, math.ceil(self._x(clip.end_s, page)) + 1)
            if x1 > x0:
                tinted = panel[:, x0:x1].astype(np.float32) * 0.85 + np.array(CYCLE_TINT) * 0.15
                panel[:, x0:x1] = tinted.astype(np.uint8)
        x = round(self._x(t, page))
        panel[:, max(0, x - 1) : x + 1] = CURSOR
        return panel


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
         width: float) -> str:
    """`text`, cut short with "..." where it would run off a card `width` px wide."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text.rstrip() + "..."

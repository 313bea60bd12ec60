"""One websocket session: samples in, beats and clips (or skips) out, every beat answered.

Three tasks share a session: the receiver (messages in → samples → `StreamingPreprocessor` → beats and
windows), the scheduler's clip tasks (at most one generating and one waiting; a newer beat takes the waiting
slot and the one it replaces is `skipped: busy`; a beat whose clip cannot arrive before its deadline is
`skipped: late`), and the sender (one bounded outbox; when the client stops reading, clips are dropped as
`skipped: backpressure`, so memory stays bounded whatever the client does).

Nothing here lets a bad message end the session: it is answered with an `error` and what was accepted
before it stays accepted. Only a protocol breach that makes the stream meaningless (samples before `start`
are refused, not fatal) or a client that cannot keep up even with small messages closes the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from echopulse.ecg import canonical_lead
from echopulse.errors import EchopulseError, one_line
from echopulse.ingest.live import StreamSpec, decode_chunk
from echopulse.pipeline import skip_reason
from echopulse.preprocess.streaming import StreamingPreprocessor
from echopulse.streaming.engine import EngineBusy, GenerationFailed
from echopulse.streaming.protocol import (
    Ack,
    BeatEvent,
    ClientMessage,
    ClipMessage,
    End,
    ErrorMessage,
    Ready,
    Skipped,
    Start,
)
from echopulse.video.clip_files import view_size

if TYPE_CHECKING:
    from echopulse.preprocess.windows import STMEMWindow
    from echopulse.streaming.engine import Engine
    from echopulse.streaming.metrics import Metrics

ACK_EVERY_S = 0.5
OUTBOX_MESSAGES = 256
"""Small messages a client may leave unread before the session is closed as stuck."""
OUTBOX_CLIPS = 2
"""Clips that may wait unsent; a further one is dropped as backpressure."""
CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_STUCK, CLOSE_IDLE = 1008, 1009, 1013, 1001
GENERIC = {"ecg", "ekg"}
"""Names a single-lead device gives its one lead; it is read as lead I, the wearable case."""


@dataclass(frozen=True)
class SessionSettings:
    deadline_s: float = 2.0
    max_message_bytes: int = 256 * 1024
    idle_timeout_s: float = 60.0
    clip_scale: int = 2
    mark: bool = True
    max_backlog_s: float = 30.0
    """ECG a session may have waiting for the beat detector before it is closed as overloaded."""


@dataclass
class _Beat:
    window: STMEMWindow
    event_time: float

    @property
    def index(self) -> int:
        return self.window.beat_index


class Session:
    def __init__(
        self, socket: WebSocket, engine: Engine, metrics: Metrics, settings: SessionSettings,
        pool: Executor | None = None,
    ) -> None:
        self.socket = socket
        self.pool = pool
        self.engine = engine
        self.metrics = metrics
        self.settings = settings
        self.id = secrets.token_hex(8)
        self.start: Start | None = None
        self.spec: StreamSpec | None = None
        self.live: StreamingPreprocessor | None = None
        self.seed = 0
        self.received = 0
        self.beats = self.clips = self.skipped = 0
        self._last_ack = 0.0
        self._acked = -1
        self._generating: asyncio.Task | None = None
        self._waiting: _Beat | None = None
        self._outbox: asyncio.Queue[tuple[dict[str, Any], bytes | None]] = asyncio.Queue()
        self._clips_queued = 0
        self._closing: tuple[int, str] | None = None
        self._backlog: list[np.ndarray] = []
        self._backlog_n = 0
        self._has_samples = asyncio.Event()
        self._drained = asyncio.Event()
        self._detecting = False
        self._detector: asyncio.Task | None = None

    @property
    def clips_waiting(self) -> int:
        """Clips made but not yet written to the socket: never more than `OUTBOX_CLIPS`."""
        return self._clips_queued

    # ---- the session ---------------------------------------------------------------------------------
    async def run(self) -> None:
        sender = asyncio.create_task(self._send_loop(), name=f"send-{self.id}")
        try:
            await self._receive_loop()
        except WebSocketDisconnect:
            pass
        finally:
            for task in (self._generating, self._detector):
                if task is not None and not task.done():
                    task.cancel()
            await self._outbox.put(({}, None))  # the sender's end mark
            try:
                await asyncio.wait_for(sender, timeout=5.0)
            except (TimeoutError, asyncio.CancelledError):
                sender.cancel()

    async def _receive_loop(self) -> None:
        while self._closing is None:
            try:
                message = await asyncio.wait_for(self.socket.receive(), self.settings.idle_timeout_s)
            except TimeoutError:
                await self._close(CLOSE_IDLE, f"idle for {self.settings.idle_timeout_s:g} s")
                return
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            data, text = message.get("bytes"), message.get("text")
            size = len(data) if data is not None else len((text or "").encode())
            if size > self.settings.max_message_bytes:
                await self._error("too_large", f"message of {size} bytes; at most "
                                  f"{self.settings.max_message_bytes} (split the samples)")
                continue
            if data is not None:
                await self._samples(data)
            elif text is not None and await self._text(text):
                return

    async def _text(self, text: str) -> bool:
        """Handle a JSON message; True when the session has ended (`stop`)."""
        try:
            payload = json.loads(text)
        except ValueError:
            await self._error("bad_json", "not valid JSON (samples go as binary messages)")
            return False
        if not isinstance(payload, dict) or payload.get("type") not in ("start", "stop"):
            kind = payload.get("type") if isinstance(payload, dict) else type(payload).__name__
            await self._error("unknown_type", f"unknown message type {kind!r} (start, stop)")
            return False
        try:
            message = ClientMessage.validate_python(payload)
        except ValidationError as error:
            await self._error("bad_message", _validation_text(error))
            return False
        if isinstance(message, Start):
            await self._begin(message)
            return False
        await self._stop()
        return True

    async def _begin(self, start: Start) -> None:
        if self.start is not None:
            await self._error("already_started", "this session has started already; one start per session")
            return
        leads = (start.lead,) if isinstance(start.lead, str) else tuple(start.lead)
        unknown = [n for n in leads if canonical_lead(n) is None and n.strip().lower() not in GENERIC]
        if unknown:
            await self._error("bad_start", f"unknown lead {unknown[0]!r} (I, II, III, aVR, aVL, aVF, V1-V6, "
                              "or ECG for a single-lead device)")
            return
        try:
            spec = StreamSpec(fs=start.fs, leads=leads, units=start.units, sample_format=start.format)
            live = StreamingPreprocessor(spec.fs, spec.leads, layout=self.engine.generator.window_layout)
            self.engine.sampling_settings(start.steps, start.guidance)
        except (EchopulseError, ValueError) as error:
            await self._error("bad_start", one_line(error))
            return
        self.start, self.spec, self.live = start, spec, live
        self._detector = asyncio.create_task(self._detect_loop(), name=f"detect-{self.id}")
        self.seed = start.seed if start.seed is not None else secrets.randbits(31)
        generator = self.engine.generator
        await self._send(Ready(session=self.id, model=generator.model_id,
                               frames=generator.config.tokenizer.num_frames,
                               max_message_bytes=self.settings.max_message_bytes,
                               deadline_ms=round(self.settings.deadline_s * 1000)))

    async def _samples(self, data: bytes) -> None:
        """Accept a chunk: decoded, counted, acknowledged, and queued for the beat detector.

        Detection runs in its own task on the joined backlog, so a slow detector (a loaded server) never
        stops the socket being read, nor samples being acknowledged; a backlog over `max_backlog_s` closes
        the session as overloaded rather than holding samples without bound."""
        if self.spec is None or self.live is None:
            await self._error("not_started", "samples before start: send a start message first")
            return
        try:
            chunk = decode_chunk(data, self.spec)
        except EchopulseError as error:
            await self._error("bad_samples", one_line(error))
            return
        self._backlog.append(chunk)
        self._backlog_n += chunk.shape[1]
        self.received += chunk.shape[1]
        self.metrics.samples.inc(chunk.shape[1])
        self._has_samples.set()
        if time.monotonic() - self._last_ack >= ACK_EVERY_S:
            await self._ack()
        if self._backlog_n > self.settings.max_backlog_s * self.spec.fs:
            await self._error("overloaded", f"the server is {self._backlog_n / self.spec.fs:.0f} s of ECG "
                              "behind; try another server or later")
            await self._close(CLOSE_STUCK, "overloaded")

    async def _detect_loop(self) -> None:
        """Beats and windows from the backlog, all queued chunks in one push (the result is the same)."""
        assert self.live is not None
        while True:
            await self._has_samples.wait()
            self._has_samples.clear()
            if not self._backlog:
                continue
            chunks, self._backlog, self._backlog_n = self._backlog, [], 0
            joined = chunks[0] if len(chunks) == 1 else np.concatenate(chunks, axis=1)
            self._detecting = True
            try:
                out = await self._in_pool(self.live.push, joined)
                await self._close_beats(out.windows)
            except Exception as error:  # a bug of ours must not leave `stop` waiting forever
                await self._error("detector_failed", f"beat detection failed ({type(error).__name__}: "
                                  f"{one_line(error)}); samples are still acknowledged")
            finally:
                self._detecting = False
            if not self._backlog:
                self._drained.set()

    async def _stop(self) -> None:
        if self.live is not None:
            while self._backlog or self._detecting:
                self._drained.clear()
                self._has_samples.set()
                await self._drained.wait()
            out = await self._in_pool(self.live.finish)
            await self._close_beats(out.windows)
        while self._generating is not None and not self._generating.done():
            await asyncio.wait({self._generating})
        await self._ack(force=True)
        end = End(received=self.received, beats=self.beats, clips=self.clips, skipped=self.skipped)
        await self._send(end)
        await self._close(1000, "stop")

    # ---- beats and the two slots ---------------------------------------------------------------------
    async def _close_beats(self, windows: list[STMEMWindow]) -> None:
        for window in windows:
            self.beats += 1
            self.metrics.beats.inc()
            await self._send(BeatEvent(index=window.beat_index, t=round(float(window.end_s), 4),
                                       rr=window.rr_s, hr=window.hr_bpm, quality=window.quality))
            reason = skip_reason(window)
            if reason is not None:
                await self._skip(window.beat_index, "quality", reason)
                continue
            beat = _Beat(window, time.monotonic())
            if self._generating is None or self._generating.done():
                self._generating = asyncio.create_task(self._make_clip(beat))
            else:
                if self._waiting is not None:
                    await self._skip(self._waiting.index, "busy", "a newer beat took its place in the queue")
                self._waiting = beat

    async def _make_clip(self, beat: _Beat) -> None:
        while beat is not None:
            await self._generate(beat)
            beat, self._waiting = self._waiting, None

    async def _generate(self, beat: _Beat) -> None:
        remaining = beat.event_time + self.settings.deadline_s - time.monotonic()
        if remaining <= 0:
            await self._skip(beat.index, "late", "its deadline passed while it waited")
            return
        start = self.start
        assert start is not None
        try:
            made = await asyncio.wait_for(
                self.engine.submit(beat.window, seed=self.seed + beat.index, steps=start.steps,
                                   guidance=start.guidance),
                remaining,
            )
        except TimeoutError:
            deadline = self.settings.deadline_s
            await self._skip(beat.index, "late", f"no clip within the {deadline:g}-s deadline")
            return
        except EngineBusy as error:
            await self._skip(beat.index, "busy", one_line(error))
            return
        except GenerationFailed as error:
            await self._error("generation_failed", f"beat {beat.index}: {one_line(error)}")
            await self._skip(beat.index, "late", "the generator failed")
            return
        fmt = start.clip_format
        clip = made.clip
        payload = await self._in_pool(_encode, clip, fmt, self.settings.clip_scale, self.settings.mark)
        height, width = view_size(clip.frames, self.settings.clip_scale)
        message = ClipMessage(beat=beat.index, fps=round(clip.fps, 4), frames=len(clip.frames), height=height,
                              width=width, format=fmt, bytes=len(payload), seed=clip.provenance.seed,
                              queue_ms=round(made.queue_ms, 1), generate_ms=round(made.generate_ms, 1))
        if self._clips_queued >= OUTBOX_CLIPS:
            await self._skip(beat.index, "backpressure", "the client is not reading its clips")
            return
        self._clips_queued += 1
        self.clips += 1
        self.metrics.clips.inc()
        self.metrics.beat_to_clip_seconds.observe(time.monotonic() - beat.event_time)
        await self._send(message, payload)

    # ---- sending -------------------------------------------------------------------------------------
    async def _send(self, message: Any, payload: bytes | None = None) -> None:
        if self._outbox.qsize() >= OUTBOX_MESSAGES:
            await self._close(CLOSE_STUCK, "the client is not reading (outbox full)")
            return
        await self._outbox.put((message.model_dump(), payload))

    async def _send_loop(self) -> None:
        while True:
            message, payload = await self._outbox.get()
            if not message:
                return
            try:
                await self.socket.send_text(json.dumps(message))
                if payload is not None:
                    await self.socket.send_bytes(payload)
            except (WebSocketDisconnect, RuntimeError, OSError):
                return
            finally:
                if payload is not None:
                    self._clips_queued -= 1

    async def _ack(self, force: bool = False) -> None:
        if force or self.received != self._acked:
            self._acked, self._last_ack = self.received, time.monotonic()
            await self._send(Ack(received=self.received))

    async def _skip(self, beat: int, reason: str, detail: str) -> None:
        self.skipped += 1
        self.metrics.skips.labels(reason).inc()
        await self._send(Skipped(beat=beat, reason=reason, detail=detail))

    async def _error(self, code: str, message: str) -> None:
        self.metrics.errors.labels(code).inc()
        await self._send(ErrorMessage(code=code, message=message))

    async def _close(self, code: int, reason: str) -> None:
        """Close after what is already in the outbox has gone out."""
        if self._closing is not None:
            return
        self._closing = (code, reason)
        await self._outbox.put(({}, None))
        for _ in range(50):  # up to 5 s for the sender to drain
            if self._outbox.empty():
                break
            await asyncio.sleep(0.1)
        with contextlib.suppress(RuntimeError, OSError):
            await self.socket.close(code=code, reason=reason[:120])


    async def _in_pool(self, function: Any, *args: Any) -> Any:
        """CPU work (detection, windows, encoding) on the service's shared pool: as many threads as cores,
        so a thousand sessions never mean a thousand threads fighting for them."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, function, *args)


def _encode(clip: Any, fmt: str, scale: int, mark: bool) -> bytes:
    from echopulse.video.clip_files import encode_clip

    return encode_clip(clip, fmt, scale, mark)


def _validation_text(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid"))

"""A device's side of `WS /v1/stream`: replay a record in real time and time every beat's answer.

`stream_record(url, record)` sends the record's samples the way a wearable would (a chunk of `chunk_s`
seconds every `chunk_s / speed` seconds, paced against a monotonic clock from one start time, so a slow
send never shifts the chunks after it), reads the server's messages concurrently, and returns everything
that came back with three latencies per beat: R-peak sample sent → beat event, beat event → clip, and
their sum. `echopulse stream` and `benchmarks/stream_load.py` are both thin layers over it, so what the
command shows and what the benchmark measures are the same numbers. `stream_chunks` does the same for
samples that arrive as they are recorded (a Polar H10), sending each block the moment it comes.

Messages are parsed with the server's own Pydantic models (`protocol.py`), so a client of this package
cannot drift from the server it ships with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from socket import gaierror
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from echopulse.errors import EchopulseError, one_line
from echopulse.streaming.protocol import (
    Ack,
    BeatEvent,
    ClipMessage,
    End,
    ErrorMessage,
    Ready,
    ServerMessage,
    Skipped,
    Start,
)

if TYPE_CHECKING:
    from echopulse.ecg import ECGRecord

MessageHandler = Callable[[Any, "bytes | None"], None]
"""`on_message(message, payload)`: each server message as its protocol model; a clip comes with its bytes
(or None when `keep_clip_bytes` is off), every other message with None."""

CLOSE_POLICY, CLOSE_FULL = 1008, 1013
MAX_INCOMING_BYTES = 64 * 1024 * 1024
"""A raw clip at a large scale is a few MB; the bound only stops a broken server from exhausting memory."""
STOP_POLL_S = 0.25
"""Longest the sender sleeps before looking at the stop request again: a Ctrl-C is answered this soon."""


class StreamError(EchopulseError):
    """A stream that could not run or ended without its `end` message; the message is one plain line."""


class ServerUnreachable(StreamError):
    """Nothing answered at the URL (refused, unresolvable, timed out)."""


class TokenRefused(StreamError):
    """The server closed the handshake with 1008 (or answered 401/403): missing or wrong token."""


@dataclass(frozen=True)
class ReceivedClip:
    """A clip's announcement, its bytes (None when not kept), and when its last byte arrived."""

    message: ClipMessage
    data: bytes | None
    arrived_s: float


@dataclass
class BeatTiming:
    """When (seconds from the stream's first send time) a beat's R-peak sample left, its event came, and
    its clip came (None when it was skipped). The three latencies are differences of these."""

    index: int
    t: float
    sent_s: float
    beat_s: float
    clip_s: float | None = None

    @property
    def to_beat(self) -> float:
        """R-peak sample sent → beat event: the detector's look-ahead plus the network."""
        return self.beat_s - self.sent_s

    @property
    def to_clip(self) -> float | None:
        """Beat event → clip: queueing, batching, generation and encoding."""
        return None if self.clip_s is None else self.clip_s - self.beat_s

    @property
    def total(self) -> float | None:
        return None if self.clip_s is None else self.clip_s - self.sent_s


@dataclass
class StreamResult:
    """Everything one replay sent and got back, in arrival order."""

    url: str
    fs: float
    leads: tuple[str, ...]
    samples: int
    ready: Ready | None = None
    beats: list[BeatEvent] = field(default_factory=list)
    clips: list[ReceivedClip] = field(default_factory=list)
    skips: list[Skipped] = field(default_factory=list)
    errors: list[ErrorMessage] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    end: End | None = None
    timings: dict[int, BeatTiming] = field(default_factory=dict)
    samples_sent: int = 0
    close_code: int | None = None
    close_reason: str = ""
    interrupted: bool = False
    problems: list[str] = field(default_factory=list)
    """What went wrong on the wire (an unparsable message, a clip of the wrong size), one line each."""
    duration_s: float = 0.0
    send_lag_max_s: float = 0.0
    """Most a chunk left after its due time: large values mean the client, not the server, fell behind."""
    source_error: str | None = None
    """Why a live source stopped early (a strap that disconnected or went silent); the session was still
    ended politely, so the clips of beats already sent came back."""

    @property
    def final_ack(self) -> int | None:
        return self.acks[-1].received if self.acks else None

    @property
    def clean(self) -> bool:
        """An `end` came, every sample sent was acknowledged, and nothing broke on the wire."""
        return (self.end is not None and self.final_ack == self.samples_sent == self.end.received
                and not self.problems)

    def unanswered(self) -> list[int]:
        """Beats that got neither a clip nor a skip (the protocol promises one of the two)."""
        answered = {c.message.beat for c in self.clips} | {s.beat for s in self.skips}
        return [b.index for b in self.beats if b.index not in answered]

    def skips_by_reason(self) -> dict[str, int]:
        return dict(Counter(s.reason for s in self.skips))

    def latencies(self) -> dict[str, list[float]]:
        """The three latencies of every beat that has them, in seconds (a beat whose R-peak chunk is unknown,
        sent_s NaN, has none)."""
        timings = [t for t in sorted(self.timings.values(), key=lambda t: t.index) if t.sent_s == t.sent_s]
        return {
            "r_peak_to_beat": [t.to_beat for t in timings],
            "beat_to_clip": [t.to_clip for t in timings if t.to_clip is not None],
            "r_peak_to_clip": [t.total for t in timings if t.total is not None],
        }

    def latency_summary(self) -> dict[str, dict[str, float | int | None]]:
        return {name: summarize(values) for name, values in self.latencies().items()}


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """n, p50, p95 and max in seconds (None without values), the figures a latency budget is checked on."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    array = np.asarray(values, dtype=float)
    return {"n": len(array), "p50": round(float(np.percentile(array, 50)), 4),
            "p95": round(float(np.percentile(array, 95)), 4), "max": round(float(array.max()), 4)}


def record_samples(
    record: ECGRecord, leads: Sequence[str] | None = None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """(frames × leads) little-endian float32 mV and the lead names: the first lead unless `leads` names
    others, since a wearable streams one lead and the server finds beats on lead II or the first."""
    names = tuple(leads) if leads else record.leads[:1]
    missing = [n for n in names if n not in record.leads]
    if missing:
        raise StreamError(f"lead {missing[0]!r} is not in the record (it has {', '.join(record.leads)})")
    rows = [record.leads.index(n) for n in names]
    return np.ascontiguousarray(record.signal[rows].T, dtype="<f4"), names


async def stream_record(
    url: str,
    record: ECGRecord,
    *,
    speed: float = 1.0,
    token: str | None = None,
    seed: int = 0,
    clip_format: str = "gif",
    chunk_s: float = 0.1,
    on_message: MessageHandler | None = None,
    leads: Sequence[str] | None = None,
    keep_clip_bytes: bool = True,
    stop: asyncio.Event | None = None,
    open_timeout_s: float = 10.0,
    end_timeout_s: float = 60.0,
) -> StreamResult:
    """Replay `record` to the server at `url` like a device, and return what came back, timed.

    `stop`, when set, ends the replay early the polite way (a `stop` message, then the server's `end`), so
    an interrupted run still has its beats and clips; `result.interrupted` says it happened. Raises
    `ServerUnreachable`, `TokenRefused` or `StreamError` (one line each) when no session could start.
    """
    if not speed > 0 or not chunk_s > 0:
        raise ValueError("speed and chunk_s must be positive")
    frames, names = record_samples(record, leads)
    result = StreamResult(url=url, fs=float(record.fs), leads=names, samples=len(frames))
    start = _start(record.fs, names, "mV", seed, clip_format)
    async with _connect(url, token, open_timeout_s) as socket:
        result.ready = await _begin(socket, start, url)
        replay = _Replay(socket, result, frames, speed, chunk_s, on_message, keep_clip_bytes)
        await replay.run(stop or asyncio.Event(), end_timeout_s)
    return result


async def stream_chunks(
    url: str,
    chunks: AsyncIterator[np.ndarray],
    fs: float,
    *,
    leads: Sequence[str] = ("I",),
    units: str = "mV",
    token: str | None = None,
    seed: int = 0,
    clip_format: str = "gif",
    on_message: MessageHandler | None = None,
    keep_clip_bytes: bool = True,
    stop: asyncio.Event | None = None,
    open_timeout_s: float = 10.0,
    end_timeout_s: float = 60.0,
) -> StreamResult:
    """Send samples as a live source yields them (each block: samples, or samples × leads), and return what
    came back, timed as `stream_record` times it. The stream ends when `chunks` ends or `stop` is set; a
    source that fails ends it politely too, with its reason in `result.source_error`."""
    names = tuple(leads)
    result = StreamResult(url=url, fs=float(fs), leads=names, samples=0)
    start = _start(fs, names, units, seed, clip_format)
    async with _connect(url, token, open_timeout_s) as socket:
        result.ready = await _begin(socket, start, url)
        live = _Live(socket, result, chunks, len(names), on_message, keep_clip_bytes)
        await live.run(stop or asyncio.Event(), end_timeout_s)
    result.samples = result.samples_sent
    return result


def _start(fs: float, leads: Sequence[str], units: str, seed: int, clip_format: str) -> Start:
    """The `start` message: one lead by name, several as the list their samples interleave in."""
    lead = leads[0] if len(leads) == 1 else list(leads)
    return Start(type="start", fs=float(fs), lead=lead, units=units, seed=seed,
                 clip_format=clip_format)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def _connect(url: str, token: str | None, timeout_s: float):
    """The websocket, with every way of not getting one turned into a one-line `StreamError`."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        socket = await connect(url, additional_headers=headers, max_size=MAX_INCOMING_BYTES,
                               open_timeout=timeout_s)
    except InvalidURI:
        raise StreamError(f"{url}: not a websocket URL (ws://HOST:PORT/v1/stream)") from None
    except InvalidStatus as error:
        code = error.response.status_code
        if code in (401, 403):
            raise TokenRefused(f"{url}: the server refused the token") from None
        raise StreamError(f"{url}: the server answered HTTP {code}, not a websocket") from None
    except (OSError, TimeoutError, InvalidHandshake) as error:
        why = _why_unreachable(error, timeout_s)
        raise ServerUnreachable(f"{url}: cannot reach the server ({why})") from None
    try:
        yield socket
    finally:
        await socket.close()


def _why_unreachable(error: Exception, timeout_s: float) -> str:
    """The plain reason behind a failed connect: refused, unknown host, or silence."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused: is `echopulse serve` running there?"
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(error, gaierror):
        return "unknown host"
    return one_line(error, 200)


async def _begin(socket: Any, start: Start, url: str) -> Ready:
    """Send `start` and wait for `ready`; a refusal (token, full server, bad start) is a `StreamError`."""
    from websockets.exceptions import ConnectionClosed

    try:
        await socket.send(start.model_dump_json(exclude_none=True))
        text = await socket.recv()
    except ConnectionClosed as error:
        raise _closed_error(error, url) from None
    message = _parse(text)
    if isinstance(message, Ready):
        return message
    if isinstance(message, ErrorMessage):
        raise StreamError(f"{url}: the server refused the stream: {message.message} ({message.code})")
    raise StreamError(f"{url}: the server answered start with {type(message).__name__}, not ready")


def _closed_error(error: Exception, url: str) -> StreamError:
    """What a close before `ready` means: 1008 a missing or wrong token, 1013 a full server."""
    rcvd = getattr(error, "rcvd", None)
    code = rcvd.code if rcvd is not None else None
    reason = rcvd.reason if rcvd is not None else ""
    if code == CLOSE_POLICY:
        return TokenRefused(f"{url}: the server refused the token")
    if code == CLOSE_FULL:
        return StreamError(f"{url}: the server is full, try again later ({reason or code})")
    why = f"code {code}, {reason}" if reason else f"code {code}"
    return StreamError(f"{url}: the server closed the connection before the stream began ({why})")


def _parse(text: str | bytes) -> Any:
    if isinstance(text, bytes):
        raise StreamError(f"the server sent {len(text)} binary bytes where a JSON message belongs")
    try:
        return ServerMessage.validate_json(text)
    except ValidationError as error:
        why = one_line(error, 200)
        raise StreamError(f"the server sent a message this client does not understand ({why})") from None


class _Replay:
    """One session after `ready`: the paced sender and the reader, sharing the stream's start time."""

    def __init__(
        self, socket: Any, result: StreamResult, frames: np.ndarray, speed: float, chunk_s: float,
        on_message: MessageHandler | None, keep_clip_bytes: bool,
    ) -> None:
        self.socket, self.result, self.frames, self.speed = socket, result, frames, speed
        self.on_message, self.keep = on_message, keep_clip_bytes
        assert result.ready is not None
        self.most = max(1, result.ready.max_message_bytes // (4 * frames.shape[1]))
        """Most frames (samples × leads) one message may hold."""
        self.chunk_n = max(1, min(round(chunk_s * result.fs), self.most))
        self.chunk_ends: list[int] = []
        self.sent_at: list[float] = []
        self.t0 = 0.0
        self._clip: ClipMessage | None = None

    async def run(self, stop: asyncio.Event, end_timeout_s: float) -> None:
        from websockets.exceptions import ConnectionClosed

        self.t0 = time.monotonic()
        reader = asyncio.create_task(self._read(), name="echopulse-stream-reader")
        try:
            await self._send_all(stop, reader)
            with contextlib.suppress(ConnectionClosed):
                await self.socket.send(json.dumps({"type": "stop"}))
            await asyncio.wait_for(asyncio.shield(reader), end_timeout_s)
        except TimeoutError:
            self.result.problems.append(f"no end message within {end_timeout_s:g} s of stop")
        except asyncio.CancelledError:  # cancelled from outside: still tell the server, briefly
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.socket.send(json.dumps({"type": "stop"})), 1.0)
            raise
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self.result.interrupted = stop.is_set() and self._cut_short()
            self.result.duration_s = time.monotonic() - self.t0
            self._time_beats()

    def _cut_short(self) -> bool:
        return self.result.samples_sent < len(self.frames)

    # ---- sending -------------------------------------------------------------------------------------
    async def _send_all(self, stop: asyncio.Event, reader: asyncio.Task) -> None:
        """Chunk k goes when its last sample would have been recorded: t0 + end_k / fs / speed."""
        from websockets.exceptions import ConnectionClosed

        total = len(self.frames)
        for begin in range(0, total, self.chunk_n):
            end = min(begin + self.chunk_n, total)
            due = self.t0 + end / self.result.fs / self.speed
            if not await self._wait_until(due, stop, reader):
                return
            try:
                await self.socket.send(self.frames[begin:end].tobytes())
            except ConnectionClosed:
                return
            now = time.monotonic()
            self.chunk_ends.append(end)
            self.sent_at.append(now - self.t0)
            self.result.samples_sent = end
            self.result.send_lag_max_s = max(self.result.send_lag_max_s, now - due)

    @staticmethod
    async def _wait_until(due: float, stop: asyncio.Event, reader: asyncio.Task) -> bool:
        """Sleep to the monotonic time `due`; False when a stop was asked or the server went away."""
        while True:
            if stop.is_set() or reader.done():
                return False
            remaining = due - time.monotonic()
            if remaining <= 0:
                return True
            await asyncio.sleep(min(remaining, STOP_POLL_S))

    # ---- reading -------------------------------------------------------------------------------------
    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for frame in self.socket:
                now = time.monotonic() - self.t0
                if isinstance(frame, bytes):
                    self._payload(frame, now)
                else:
                    self._message(frame, now)
        except ConnectionClosed:
            pass
        finally:
            self.result.close_code = self.socket.close_code
            self.result.close_reason = self.socket.close_reason or ""

    def _message(self, text: str, now: float) -> None:
        result = self.result
        try:
            message = _parse(text)
        except StreamError as error:
            result.problems.append(str(error))
            return
        if self._clip is not None:
            result.problems.append(f"clip of beat {self._clip.beat}: a message came before its bytes")
            self._clip = None
        if isinstance(message, ClipMessage):
            self._clip = message
            return
        if isinstance(message, BeatEvent):
            result.beats.append(message)
            result.timings[message.index] = BeatTiming(message.index, message.t, float("nan"), now)
        elif isinstance(message, Skipped):
            result.skips.append(message)
        elif isinstance(message, Ack):
            result.acks.append(message)
        elif isinstance(message, ErrorMessage):
            result.errors.append(message)
        elif isinstance(message, End):
            result.end = message
        self._tell(message, None)

    def _payload(self, data: bytes, now: float) -> None:
        clip, self._clip = self._clip, None
        if clip is None:
            self.result.problems.append(f"{len(data)} binary bytes without a clip message")
            return
        if len(data) != clip.bytes:
            wrong = f"clip of beat {clip.beat}: {len(data)} bytes, announced {clip.bytes}"
            self.result.problems.append(wrong)
        kept = data if self.keep else None
        self.result.clips.append(ReceivedClip(clip, kept, now))
        timing = self.result.timings.get(clip.beat)
        if timing is not None:
            timing.clip_s = now
        self._tell(clip, data)

    def _tell(self, message: Any, payload: bytes | None) -> None:
        if self.on_message is not None:
            self.on_message(message, payload)

    # ---- timing --------------------------------------------------------------------------------------
    def _time_beats(self) -> None:
        """Give each beat the send time of the chunk that held its R-peak sample (round(t × fs))."""
        last = max(self.result.samples_sent - 1, 0)
        for timing in self.result.timings.values():
            sample = min(max(round(timing.t * self.result.fs), 0), last)
            chunk = bisect_right(self.chunk_ends, sample)
            if chunk < len(self.sent_at):
                timing.sent_s = self.sent_at[chunk]


class _Live(_Replay):
    """A session fed by a live source: each block goes out when it arrives (split to the server's message
    size), so the stream's clock is the source's."""

    def __init__(
        self, socket: Any, result: StreamResult, chunks: AsyncIterator[np.ndarray], n_leads: int,
        on_message: MessageHandler | None, keep_clip_bytes: bool,
    ) -> None:
        super().__init__(socket, result, np.empty((0, n_leads), dtype="<f4"), 1.0, 1.0, on_message,
                         keep_clip_bytes)
        self.chunks = chunks

    def _cut_short(self) -> bool:
        return True  # a live source has no end of its own: a stop is always before it

    async def _send_all(self, stop: asyncio.Event, reader: asyncio.Task) -> None:
        from websockets.exceptions import ConnectionClosed

        source = aiter(self.chunks)
        pending: asyncio.Future | None = None
        try:
            while not (stop.is_set() or reader.done()):
                if pending is None:
                    pending = asyncio.ensure_future(anext(source))
                done, _ = await asyncio.wait({pending}, timeout=STOP_POLL_S)
                if not done:
                    continue
                task, pending = pending, None
                try:
                    block = task.result()
                except StopAsyncIteration:
                    return
                except EchopulseError as error:
                    self.result.source_error = str(error)
                    return
                frames = np.ascontiguousarray(np.asarray(block, dtype="<f4").reshape(len(block), -1))
                for begin in range(0, len(frames), self.most):
                    part = frames[begin : begin + self.most]
                    try:
                        await self.socket.send(part.tobytes())
                    except ConnectionClosed:
                        return
                    self.result.samples_sent += len(part)
                    self.chunk_ends.append(self.result.samples_sent)
                    self.sent_at.append(time.monotonic() - self.t0)
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pending

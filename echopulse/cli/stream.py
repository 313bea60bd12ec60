"""`echopulse stream`: replay an ECG file to a running service as a device would, and keep what comes back.

The replay itself is `echopulse.streaming.client.stream_record`; this module adds what a person at a
terminal needs: a live count of beats, clips and skips, clip files written the moment they arrive (so an
interrupted run keeps what it got), `stream.json`, and one line at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from echopulse.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    check_output_folder,
    fail,
    positive_float,
    status,
    warn,
)
from echopulse.errors import EchopulseError

if TYPE_CHECKING:
    from echopulse.ecg import ECGRecord
    from echopulse.streaming.client import StreamResult

TOKEN_ENV = "ECHOPULSE_TOKEN"
DEFAULT_URL = "ws://127.0.0.1:8000/v1/stream"
CLIP_FORMATS = ("gif", "mp4", "raw")
"""The same as `echopulse.streaming.protocol.CLIP_FORMATS`, written out so that building the parser needs
neither pydantic nor the serve extra (a test checks the two agree)."""
MANIFEST = "stream.json"


def add_parser(commands: Any) -> None:
    stream = commands.add_parser(
        "stream",
        help="replay an ECG file to a running `echopulse serve` like a device, and save the clips",
        description="Send FILE's samples over WS /v1/stream in real time (or --speed times faster), as a "
        "wearable would, and show the beats, clips and skips as they come back. With --out, each clip "
        "is saved as beat_NNNN.gif/.mp4/.raw the moment it arrives, and stream.json lists every beat, "
        "clip and skip (with its reason) and the latencies (R-peak sample sent → beat event → clip). "
        "The first lead is sent unless --lead names others. Ctrl-C stops the stream politely (the "
        "server finishes and says end); a second Ctrl-C stops at once. Every clip is SYNTHETIC.",
    )
    stream.add_argument("file", type=Path, metavar="FILE", nargs="?",
                        help="an ECG file (any format ingest reads); or use --polar / --simulated-h10")
    stream.add_argument("--polar", nargs="?", const="", metavar="ADDRESS",
                        help="stream a Polar H10 chest strap live over Bluetooth LE instead of a file: the "
                        "first strap found, or the one at ADDRESS (needs the polar extra)")
    stream.add_argument("--simulated-h10", type=Path, metavar="FILE",
                        help="a simulated Polar H10 playing FILE: the strap's PMD frames at 130 Hz, through "
                        "the same decoder as a real strap's (the device path without the device)")
    stream.add_argument("--seconds", type=positive_float,
                        help="with --polar or --simulated-h10: stop after this many seconds (default: at "
                        "Ctrl-C, or the simulated file's end)")
    stream.add_argument("--url", default=DEFAULT_URL, help=f"the service's websocket (default {DEFAULT_URL})")
    stream.add_argument("--speed", type=positive_float, default=1.0,
                        help="replay speed; 1 is real time (default), 20 sends 30 s of ECG in 1.5 s")
    stream.add_argument("--out", type=Path,
                        help="folder for the clips and stream.json (default: save nothing)")
    stream.add_argument("--token", help=f"bearer token (default: ${TOKEN_ENV})")
    stream.add_argument("--seed", type=_seed, default=0,
                        help="beat k's clip is drawn with seed + k (default 0)")
    stream.add_argument("--format", dest="clip_format", choices=CLIP_FORMATS, default="gif",
                        help="clip format the server sends (default gif)")
    stream.add_argument("--fs", type=positive_float, help="sample rate in Hz, for files that do not state it")
    stream.add_argument("--lead", action="append", metavar="NAME",
                        help="a lead of the file to send (repeat for several; default: the first lead)")
    stream.add_argument("--chunk-ms", type=positive_float, default=100.0,
                        help="ECG per message, as a device batches it (default 100)")
    stream.set_defaults(func=run)


def _seed(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**31:
        raise argparse.ArgumentTypeError(f"must be in 0 … 2^31 - 1, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    sources = [args.file is not None, args.polar is not None, args.simulated_h10 is not None]
    if sum(sources) != 1:
        fail("stream needs exactly one source: FILE, --polar [ADDRESS] or --simulated-h10 FILE")
        return EXIT_REFUSED
    if args.seconds is not None and args.file is not None:
        fail("--seconds is for a live source (--polar, --simulated-h10); a file streams to its end")
        return EXIT_REFUSED
    if args.out is not None:
        check_output_folder(args.out)
    _need_websockets()
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if args.file is None:
        return _run_polar(args, token)
    from echopulse.ingest import read_record

    record = read_record(args.file, fs=args.fs)
    args.source_label = args.file.name
    status(f"streaming {args.file.name} ({record.duration_s:.0f} s at {args.speed:g}×) to "
           f"{public_url(args.url)}")
    sink = ClipSink(args.out, args.clip_format, args.file.name, record.fs, record.duration_s)
    try:
        result = asyncio.run(_replay(args, record, token, sink))
    except asyncio.CancelledError:  # the second Ctrl-C
        raise KeyboardInterrupt from None
    finally:
        sink.close()
    return _report(args, result, sink)


def _run_polar(args: argparse.Namespace, token: str | None) -> int:
    """A Polar H10 (or its simulator) → PMD frames → decoder → the service, until Ctrl-C or --seconds."""
    from echopulse.ingest.polar import H10_ECG_FS
    from echopulse.ingest.polar_link import H10_LEAD

    label = "simulated Polar H10" if args.simulated_h10 is not None else "Polar H10"
    args.source_label = label if args.simulated_h10 is None else f"{label} ({args.simulated_h10.name})"
    sink = ClipSink(args.out, args.clip_format, args.source_label, H10_ECG_FS, args.seconds)
    until = f"{args.seconds:g} s" if args.seconds else "Ctrl-C"
    status(f"streaming {args.source_label} (ECG at {H10_ECG_FS} Hz, lead {H10_LEAD}) to "
           f"{public_url(args.url)} until {until}")
    try:
        result = asyncio.run(_live(args, token, sink))
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        sink.close()
    return _report(args, result, sink)


async def _live(args: argparse.Namespace, token: str | None, sink: ClipSink) -> StreamResult:
    from echopulse.ingest.polar import H10_ECG_FS
    from echopulse.ingest.polar_link import H10_LEAD, ecg_chunks
    from echopulse.streaming.client import stream_chunks

    async with polar_frames(args, sink.on_device) as frames:
        chunks = _for_seconds(ecg_chunks(frames, sink.on_device), args.seconds, H10_ECG_FS)
        async with _stop_on_interrupt() as stop:
            return await stream_chunks(
                args.url, chunks, H10_ECG_FS, leads=(H10_LEAD,), units="uV", token=token, seed=args.seed,
                clip_format=args.clip_format, on_message=sink.on_message, keep_clip_bytes=False, stop=stop,
            )


@contextlib.asynccontextmanager
async def polar_frames(args: argparse.Namespace, on_event: Any):
    """The strap's PMD frames: a real H10 over Bluetooth, or the simulator playing --simulated-h10's file
    at --speed."""
    from echopulse.ingest.polar_link import h10_link, simulated_link

    if args.simulated_h10 is not None:
        from echopulse.ingest import read_record
        from echopulse.ingest.polar_simulator import record_frames

        record = read_record(args.simulated_h10, fs=args.fs)
        lead = (getattr(args, "lead", None) or [None])[0]
        if lead is not None and lead not in record.leads:
            raise EchopulseError(f"{args.simulated_h10}: no lead {lead!r} (it has {', '.join(record.leads)})")
        yield simulated_link(record_frames(record, lead), speed=getattr(args, "speed", 1.0))
        return
    async with h10_link(args.polar or None, on_event=on_event) as frames:
        yield frames


async def _for_seconds(chunks: Any, seconds: float | None, fs: float):
    """The blocks of the first `seconds` of ECG (all of them without a limit)."""
    sent = 0
    async for block in chunks:
        if seconds is not None:
            room = round(seconds * fs) - sent
            if room <= 0:
                return
            block = block[:room]
        sent += len(block)
        yield block


@contextlib.asynccontextmanager
async def _stop_on_interrupt():
    """An event set by the first Ctrl-C (a polite stop); the second cancels the run."""
    stop = asyncio.Event()
    loop, task = asyncio.get_running_loop(), asyncio.current_task()

    def interrupt() -> None:
        if stop.is_set() and task is not None:
            task.cancel()
        stop.set()

    handled = False
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
        loop.add_signal_handler(signal.SIGINT, interrupt)
        handled = True
    try:
        yield stop
    finally:
        if handled:
            loop.remove_signal_handler(signal.SIGINT)


def _need_websockets() -> None:
    """The client library comes with the serve extra; without it, say how to get it instead of a traceback."""
    try:
        import websockets  # noqa: F401
    except ImportError:
        raise EchopulseError("stream needs the websockets package: pip install 'echopulse[serve]'") from None


async def _replay(
    args: argparse.Namespace, record: ECGRecord, token: str | None, sink: ClipSink
) -> StreamResult:
    """The replay, with Ctrl-C turned into a polite stop (first press) or a cancel (second press)."""
    from echopulse.streaming.client import stream_record

    async with _stop_on_interrupt() as stop:
        return await stream_record(
            args.url, record, speed=args.speed, token=token, seed=args.seed, clip_format=args.clip_format,
            chunk_s=args.chunk_ms / 1000.0, on_message=sink.on_message, leads=args.lead,
            keep_clip_bytes=False, stop=stop,
        )


@dataclass
class ClipSink:
    """Writes each clip as it arrives and keeps the live count on a progress bar (terminals only)."""

    out: Path | None
    clip_format: str
    label: str
    fs: float
    total_s: float | None
    files: dict[int, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"beats": 0, "clips": 0, "skipped": 0})
    device: dict[str, int] = field(default_factory=dict)
    """What a live device reported: refused frames, gaps (held at the last value), restarts."""

    def __post_init__(self) -> None:
        from tqdm import tqdm

        bar = ("{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s ECG{postfix}" if self.total_s
               else "{desc}: {n:.1f} s ECG{postfix}")
        self.bar = tqdm(total=round(self.total_s, 1) if self.total_s else None, unit="s", desc=self.label,
                        disable=None, leave=False, file=sys.stderr, bar_format=bar)

    def on_device(self, kind: str, text: str) -> None:
        if kind == "connected":
            status(text)
            return
        self.device[kind] = self.device.get(kind, 0) + 1
        warn(f"{self.label}: {text}")

    def on_message(self, message: Any, payload: bytes | None) -> None:
        kind = getattr(message, "type", "")
        if kind == "clip" and payload is not None:
            self._save(message.beat, payload)
            self.counts["clips"] += 1
        elif kind == "beat":
            self.counts["beats"] += 1
        elif kind == "skipped":
            self.counts["skipped"] += 1
        elif kind == "ack":
            seconds = round(message.received / self.fs, 1)
            self.bar.n = min(seconds, self.bar.total) if self.bar.total else seconds
        elif kind == "error":
            warn(f"server: {message.message} ({message.code})")
        self.bar.set_postfix_str(" ".join(f"{k} {v}" for k, v in self.counts.items()), refresh=True)

    def _save(self, beat: int, payload: bytes) -> None:
        if self.out is None:
            return
        name = f"beat_{beat:04d}.{self.clip_format}"
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / name).write_bytes(payload)
        self.files[beat] = name

    def close(self) -> None:
        self.bar.close()


def _report(args: argparse.Namespace, result: StreamResult, sink: ClipSink) -> int:
    """stream.json, the summary line, and the exit code: 130 interrupted, 2 no `end` or a live source that
    failed, else 0."""
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        document = manifest(args, result, sink.files, sink.device)
        (args.out / MANIFEST).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    print(summary_line(args, result), flush=True)
    if result.source_error is not None:
        fail(f"{args.source_label}: {result.source_error}")
        return EXIT_REFUSED
    if result.interrupted:
        if args.file is None and args.seconds is None:
            return EXIT_OK  # a live stream without --seconds ends at Ctrl-C: its normal end
        limit = "the file's end" if args.file is not None else f"{args.seconds:g} s"
        fail(f"interrupted: the stream was stopped before {limit}")
        return EXIT_INTERRUPTED
    if result.end is None:
        closed = f"closed with code {result.close_code} {result.close_reason}".strip()
        why = result.problems[0] if result.problems else closed
        fail(f"{public_url(args.url)}: the stream ended without its end message ({why})")
        return EXIT_REFUSED
    return EXIT_OK


def summary_line(args: argparse.Namespace, result: StreamResult) -> str:
    from echopulse.pipeline import refusal_summary

    reasons = [s.reason for s in result.skips]
    why = f" ({refusal_summary(reasons)})" if reasons else ""
    latency = result.latency_summary()["beat_to_clip"]
    timing = (f", beat→clip p50 {latency['p50']:.2f} s, p95 {latency['p95']:.2f} s"
              if latency["n"] else "")
    where = f" -> {args.out}" if args.out is not None else ""
    return (f"{args.source_label}: {len(result.beats)} beats, {len(result.clips)} synthetic clips, "
            f"{len(result.skips)} skipped{why}{timing}{where}")


def manifest(
    args: argparse.Namespace, result: StreamResult, files: dict[int, str],
    device: dict[str, int] | None = None,
) -> dict[str, Any]:
    """What stream.json holds: the run, every beat with what became of it, the clips, skips, latencies."""
    ready, end = result.ready, result.end
    skips = {s.beat: s for s in result.skips}
    return {
        "synthetic": True,
        "note": "every clip is a SYNTHETIC echocardiogram generated from the ECG, not an image of a heart",
        "source": args.source_label,
        "device": device or {},
        "source_error": result.source_error,
        "url": public_url(args.url),
        "session": ready.session if ready else None,
        "model": ready.model if ready else None,
        "fs": result.fs,
        "leads": list(result.leads),
        "speed": args.speed,
        "seed": args.seed,
        "format": args.clip_format,
        "samples": result.samples,
        "samples_sent": result.samples_sent,
        "acknowledged": result.final_ack,
        "interrupted": result.interrupted,
        "end": end.model_dump() if end else None,
        "close": {"code": result.close_code, "reason": result.close_reason},
        "beats": [_beat_entry(b, files.get(b.index), skips.get(b.index), result) for b in result.beats],
        "clips": [_clip_entry(c.message, files.get(c.message.beat)) for c in result.clips],
        "skips": [s.model_dump(exclude={"type"}) for s in result.skips],
        "skips_by_reason": result.skips_by_reason(),
        "errors": [e.model_dump(exclude={"type"}) for e in result.errors],
        "problems": result.problems,
        "latency_s": result.latency_summary(),
    }


def _beat_entry(beat: Any, file: str | None, skip: Any, result: StreamResult) -> dict[str, Any]:
    timing = result.timings.get(beat.index)
    latency = None
    if timing is not None and timing.sent_s == timing.sent_s:  # NaN: its R-peak chunk is unknown
        latency = {"r_peak_to_beat": _round(timing.to_beat), "beat_to_clip": _round(timing.to_clip),
                   "r_peak_to_clip": _round(timing.total)}
    return {
        **beat.model_dump(exclude={"type"}),
        "clip": file,
        "skipped": None if skip is None else {"reason": skip.reason, "detail": skip.detail},
        "latency_s": latency,
    }


def _clip_entry(clip: Any, file: str | None) -> dict[str, Any]:
    return {"file": file, **clip.model_dump(exclude={"type", "synthetic"})}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def public_url(url: str) -> str:
    """`url` without a `token` query parameter, for screens and files (a token is never written down)."""
    parts = urlsplit(url)
    query = [(k, v if k != "token" else "***") for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))

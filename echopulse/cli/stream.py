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
    stream.add_argument("file", type=Path, metavar="FILE", help="an ECG file (any format ingest reads)")
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
    if args.out is not None:
        check_output_folder(args.out)
    _need_websockets()
    from echopulse.ingest import read_record

    record = read_record(args.file, fs=args.fs)
    token = args.token or os.environ.get(TOKEN_ENV) or None
    status(f"streaming {args.file.name} ({record.duration_s:.0f} s at {args.speed:g}×) to "
           f"{public_url(args.url)}")
    sink = ClipSink(args.out, args.clip_format, record, args.file.name)
    try:
        result = asyncio.run(_replay(args, record, token, sink))
    except asyncio.CancelledError:  # the second Ctrl-C
        raise KeyboardInterrupt from None
    finally:
        sink.close()
    return _report(args, record, result, sink)


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
        return await stream_record(
            args.url, record, speed=args.speed, token=token, seed=args.seed, clip_format=args.clip_format,
            chunk_s=args.chunk_ms / 1000.0, on_message=sink.on_message, leads=args.lead,
            keep_clip_bytes=False, stop=stop,
        )
    finally:
        if handled:
            loop.remove_signal_handler(signal.SIGINT)


@dataclass
class ClipSink:
    """Writes each clip as it arrives and keeps the live count on a progress bar (terminals only)."""

    out: Path | None
    clip_format: str
    record: ECGRecord
    label: str
    files: dict[int, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"beats": 0, "clips": 0, "skipped": 0})

    def __post_init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=round(self.record.duration_s, 1), unit="s", desc=self.label,
                        disable=None, leave=False, file=sys.stderr,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s ECG{postfix}")

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
            self.bar.n = min(round(message.received / self.record.fs, 1), self.bar.total)
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


def _report(args: argparse.Namespace, record: ECGRecord, result: StreamResult, sink: ClipSink) -> int:
    """stream.json, the summary line, and the exit code: 130 interrupted, 2 no `end`, else 0."""
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        document = manifest(args, record, result, sink.files)
        (args.out / MANIFEST).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    print(summary_line(args, result), flush=True)
    if result.interrupted:
        fail("interrupted: the stream was stopped before the file's end")
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
    return (f"{args.file.name}: {len(result.beats)} beats, {len(result.clips)} synthetic clips, "
            f"{len(result.skips)} skipped{why}{timing}{where}")


def manifest(
    args: argparse.Namespace, record: ECGRecord, result: StreamResult, files: dict[int, str]
) -> dict[str, Any]:
    """What stream.json holds: the run, every beat with what became of it, the clips, skips, latencies."""
    ready, end = result.ready, result.end
    skips = {s.beat: s for s in result.skips}
    return {
        "synthetic": True,
        "note": "every clip is a SYNTHETIC echocardiogram generated from the ECG, not an image of a heart",
        "source": args.file.name,
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

"""Load on the live service: simulated devices replay a real ECG in real time against `echopulse serve`.

    python benchmarks/stream_load.py --devices 2 --seconds 15       # one run
    python benchmarks/stream_load.py --scenarios                    # half, search, search1, hundred
    python benchmarks/stream_load.py --scenarios search,hundred     # some of them

Prints one JSON object on stdout (progress goes to stderr). The server is a real `echopulse serve`
subprocess on 127.0.0.1 and a free port, so its memory is measured as a deployment would see it
(/proc/PID/status VmRSS and VmHWM, summed with its model process). Every device is
`echopulse.streaming.client.stream_record` replaying a loop of one real recording (default: the 70-bpm
Apple Watch trace in ../shared/data, else the bundled sample), each device rolled to its own phase of
the loop so that beats do not all land together.

What a run reports:
- `latency_s`: over every beat of every device, R-peak sample sent → beat event (the detector's
  look-ahead), beat event → clip (queue, batch, generation, encoding), and their sum: n, p50, p95, max;
- `skips`: by reason; `load_skips` counts busy, late and backpressure (quality skips are the signal's:
  the first beat of a stream has no RR interval);
- `batch_sizes`: the server's `echopulse_batch_size` histogram over the run (scraped before and after);
  `engine_time`: the mean queue wait of a window and generation time of a batch, from the same scrapes;
- `server_rss_mib`, `acknowledged` (every sample sent was acknowledged), `clean_ends` (an `end` and close
  1000), `send_lag_max_s` (how far the devices themselves fell behind their schedule).

`engine` is measured in the same run, before the server starts (so they do not share the cores): the
model's offline throughput at the largest batch (`generator.generate` of max_batch random windows, best of
`--repeats`) and at batch 1, and capacity = throughput ÷ (70/60) devices, one clip per beat at 70 bpm.

Scenarios: `half` (half the capacity, at least 2 devices, `--half-seconds`); `search` (the most devices
with no load skips and beat→clip p95 under `--budget-s`, `--trial-seconds` per try, at most
`--max-trials` tries); `search1` (the same with `--max-batch 1`, for the batching gain); `hundred`
(`--crowd` devices for `--crowd-seconds`: the server stays up, RSS under 2 GiB, every sample
acknowledged, every session ends cleanly).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from echopulse.ecg import ECGRecord
from echopulse.ingest import read_record
from echopulse.pipeline import preprocess_record
from echopulse.sample import SAMPLE_ECG_FS, sample_ecg_path
from echopulse.streaming.client import StreamResult, stream_record, summarize

ROOT = Path(__file__).resolve().parents[1]
WATCH_70BPM = ROOT.parent / "shared" / "data" / "apple_watch" / "ecg_2023-09-26.csv"
REFERENCE_BPM = 70.0
LOAD_REASONS = ("busy", "late", "backpressure")
RSS_LIMIT_MIB = 2048
SCENARIOS = ("half", "search", "search1", "hundred")
READY_TIMEOUT_S = 300.0
END_GRACE_S = 60.0
"""After the last sample, how long a run waits for every device's `end` before it gives up on it."""


def log(message: str) -> None:
    print(f"stream_load: {message}", file=sys.stderr, flush=True)


# ---- the ECG every device replays ----------------------------------------------------------------------
@dataclass(frozen=True)
class Loop:
    """One lead of a recording cut between two mid-RR points, so that it repeats without a false beat."""

    samples: np.ndarray
    fs: float
    lead: str
    source: str
    hr_bpm: float

    def device_record(self, device: int, devices: int, seconds: float) -> ECGRecord:
        """`seconds` of the loop, rolled by device/devices of its length: each device in its own phase."""
        shift = round(len(self.samples) * device / max(devices, 1))
        rolled = np.roll(self.samples, -shift)
        needed = math.ceil(seconds * self.fs)
        tiled = np.tile(rolled, math.ceil(needed / len(rolled)))[:needed]
        return ECGRecord(tiled[np.newaxis, :], self.fs, (self.lead,))


def load_loop(path: Path | None, fs: float | None) -> Loop:
    if path is None:
        path, fs = (WATCH_70BPM, None) if WATCH_70BPM.is_file() else (sample_ecg_path(), SAMPLE_ECG_FS)
    record = read_record(path, fs=fs)
    result = preprocess_record(record, layout="mv")
    peaks = [b.r_peak for b in result.beats]
    if len(peaks) < 4:
        raise SystemExit(f"{path}: {len(peaks)} beats, too few to loop")
    start, stop = (peaks[0] + peaks[1]) // 2, (peaks[-2] + peaks[-1]) // 2
    hr = 60.0 * (len(peaks) - 1) / ((peaks[-1] - peaks[0]) / record.fs)
    return Loop(record.signal[0, start:stop].copy(), record.fs, record.leads[0], path.name, round(hr, 1))


# ---- the engine offline ------------------------------------------------------------------------------
def engine_throughput(max_batch: int, device: str, repeats: int) -> dict[str, Any]:
    """Clips per second of `generate` at max_batch and at 1 (best of `repeats`), in this process, which
    then lets the model go so the server has the memory and the cores to itself."""
    from echopulse.generator.model_files import load_generator

    generator = load_generator(None, device, "auto")
    best_time(generator, 1, 1)  # warm-up: kernels, caches, allocator
    one = best_time(generator, 1, repeats)
    batched = best_time(generator, max_batch, repeats) if max_batch > 1 else one
    rate = max_batch / batched
    facts = {"model": generator.model_id, "precision": generator.precision, "device": str(generator.device)}
    del generator
    gc.collect()
    return {
        **facts, "max_batch": max_batch, "batch_s": round(batched, 4), "clips_per_s": round(rate, 3),
        "batch1_s": round(one, 4), "batch1_clips_per_s": round(1 / one, 3),
        "capacity_devices_at_70bpm": round(rate / (REFERENCE_BPM / 60.0), 2),
    }


def best_time(generator: Any, batch: int, repeats: int) -> float:
    """Shortest of `repeats` `generate` calls on `batch` random windows (the ECG's content does not change
    the work: the sampler runs the same steps whatever it conditions on)."""
    from echopulse.ecg import STMEM_LEADS, WINDOW_SAMPLES

    windows = np.random.default_rng(0).standard_normal((batch, len(STMEM_LEADS), WINDOW_SAMPLES))
    windows = windows.astype(np.float32)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        generator.generate(windows, seed=0, batch_size=batch)
        times.append(time.perf_counter() - started)
    return min(times)


# ---- the server --------------------------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`echopulse serve` as a subprocess on 127.0.0.1; its log goes to a temporary file, not our stdout."""

    def __init__(self, max_batch: int, max_wait_ms: float, deadline_ms: float, device: str) -> None:
        self.port = free_port()
        self.settings = {"max_batch": max_batch, "max_wait_ms": max_wait_ms, "deadline_ms": deadline_ms}
        self.command = [sys.executable, "-m", "echopulse", "serve", "--host", "127.0.0.1", "--port",
                        str(self.port), "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms),
                        "--deadline-ms", str(deadline_ms), "--device", device, "--log-level", "warning"]
        handle, name = tempfile.mkstemp(prefix="stream_load-serve-", suffix=".log")
        os.close(handle)
        self.log = Path(name)
        self.process: subprocess.Popen | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"

    def http(self, path: str, timeout_s: float = 5.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout_s) as answer:
                return answer.status, answer.read().decode()
        except OSError as error:
            return getattr(error, "code", 0) or 0, ""

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "ECHOPULSE_TOKEN"}
        with self.log.open("wb") as log_file:  # the child keeps its own descriptor
            self.process = subprocess.Popen(self.command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while self.http("/readyz", 2.0)[0] != 200:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log.read_text(errors="replace")[-2000:]
                raise SystemExit(f"the server did not become ready: {tail}")
            time.sleep(0.25)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None and self.http("/healthz")[0] == 200

    def rss_mib(self) -> dict[str, float | None]:
        """VmRSS and VmHWM (peak) in MiB, from /proc, summed over the server and its children (the engine's
        model process): what the deployment holds. The peak is the sum of each one's own peak, an upper
        bound. None where /proc has none."""
        facts: dict[str, float | None] = {"rss": None, "peak": None, "processes": None}
        if self.process is None:
            return facts
        totals = {"rss": 0, "peak": 0}
        pids = process_tree(self.process.pid)
        for pid in pids:
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{pid}/status").read_text()
                for key, field in (("rss", "VmRSS"), ("peak", "VmHWM")):
                    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
                    totals[key] += int(match.group(1)) if match else 0
        if totals["rss"]:
            facts = {key: round(value / 1024, 1) for key, value in totals.items()}
            facts["processes"] = len(pids)
        return facts

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.unlink(missing_ok=True)


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, from /proc/PID/task/*/children."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(child) for child in children.read_text().split()]
    return found


@contextlib.contextmanager
def running(max_batch: int, args: argparse.Namespace) -> Iterator[Server]:
    server = Server(max_batch, args.max_wait_ms, args.deadline_ms, args.device)
    log(f"starting echopulse serve --max-batch {max_batch} on port {server.port}")
    server.start()
    try:
        yield server
    finally:
        server.stop()


# ---- the batch-size histogram --------------------------------------------------------------------------
BUCKET = re.compile(r'^echopulse_batch_size_bucket\{le="([^"]+)"\}\s+(\S+)$', re.M)
TOTAL = re.compile(r"^echopulse_batch_size_(count|sum)\s+(\S+)$", re.M)
ENGINE_TIMES = re.compile(r"^echopulse_(queue_wait|generate)_seconds_(count|sum)\s+(\S+)$", re.M)


def engine_times(text: str) -> dict[str, float]:
    """Running totals of the engine's queue-wait and generation histograms, from /metrics."""
    return {f"{name}_{kind}": float(value) for name, kind, value in ENGINE_TIMES.findall(text)}


def engine_means(before: dict[str, float], after: dict[str, float]) -> dict[str, float | None]:
    """Mean seconds a window queued before its batch started, and a batch's generation, between scrapes."""
    means: dict[str, float | None] = {}
    for name in ("queue_wait", "generate"):
        count = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
        total = after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0)
        means[f"{name}_mean_s"] = round(total / count, 4) if count else None
    return means


def batch_histogram(text: str) -> dict[str, float]:
    """Cumulative bucket counts by upper bound, plus `count` and `sum`, from /metrics."""
    values = {le: float(v) for le, v in BUCKET.findall(text)}
    values.update({name: float(v) for name, v in TOTAL.findall(text)})
    return values


def batch_sizes(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Batches per size range between two scrapes ("5-6": sizes 5 and 6 share a bucket), and the mean."""
    bounds = sorted((float(le), le) for le in after if le not in ("count", "sum", "+Inf"))
    seen, previous, below = {}, 0, 0.0
    for bound, label in bounds:
        cumulative = after.get(label, 0.0) - before.get(label, 0.0)
        if cumulative - below:
            low, high = previous + 1, int(bound)
            seen[str(high) if low == high else f"{low}-{high}"] = int(cumulative - below)
        previous, below = int(bound), cumulative
    count = after.get("count", 0.0) - before.get("count", 0.0)
    total = after.get("sum", 0.0) - before.get("sum", 0.0)
    return {"batches": int(count), "mean": round(total / count, 2) if count else None, "by_size": seen}


# ---- one run -----------------------------------------------------------------------------------------
async def run_devices(url: str, loop: Loop, devices: int, seconds: float, stagger_s: float) -> list[Any]:
    """Every device's StreamResult (or the exception that stopped it), bounded in time."""

    async def device(k: int) -> StreamResult:
        await asyncio.sleep(k * stagger_s)
        return await stream_record(url, loop.device_record(k, devices, seconds), seed=1000 * k,
                                   keep_clip_bytes=False, end_timeout_s=END_GRACE_S)

    tasks = [asyncio.create_task(device(k)) for k in range(devices)]
    done, pending = await asyncio.wait(tasks, timeout=seconds + devices * stagger_s + 2 * END_GRACE_S)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return [_outcome(t) if t in done else TimeoutError("device did not finish") for t in tasks]


def _outcome(task: asyncio.Task) -> Any:
    return task.exception() or task.result()


def measure(server: Server, loop: Loop, devices: int, seconds: float, args: argparse.Namespace) -> dict:
    """One run of `devices` devices for `seconds`, and what it did to the server."""
    log(f"{devices} device(s) for {seconds:g} s (max batch {server.settings['max_batch']})")
    text_before = server.http("/metrics")[1]
    started = time.monotonic()
    outcomes = asyncio.run(run_devices(server.ws_url, loop, devices, seconds, args.stagger_s))
    wall = time.monotonic() - started
    text_after = server.http("/metrics")[1]
    before, after = batch_histogram(text_before), batch_histogram(text_after)
    results = [o for o in outcomes if isinstance(o, StreamResult)]
    failures = Counter(f"{type(o).__name__}: {o}" for o in outcomes if not isinstance(o, StreamResult))
    report = summarize_results(results)
    report.update({
        "devices": devices, "seconds": seconds, **server.settings, "wall_s": round(wall, 1),
        "failed_devices": dict(failures), "batch_sizes": batch_sizes(before, after),
        "engine_time": engine_means(engine_times(text_before), engine_times(text_after)),
        "server_rss_mib": server.rss_mib(), "server_alive": server.alive(),
    })
    return report


def summarize_results(results: list[StreamResult]) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {"r_peak_to_beat": [], "beat_to_clip": [], "r_peak_to_clip": []}
    skips: Counter[str] = Counter()
    for result in results:
        for name, values in result.latencies().items():
            latencies[name].extend(values)
        skips.update(result.skips_by_reason())
    beats = sum(len(r.beats) for r in results)
    return {
        "beats": beats, "clips": sum(len(r.clips) for r in results), "skips": dict(skips),
        "load_skips": sum(skips[r] for r in LOAD_REASONS),
        "unanswered_beats": sum(len(r.unanswered()) for r in results),
        "latency_s": {name: summarize(values) for name, values in latencies.items()},
        "acknowledged": all(r.final_ack == r.samples_sent == r.samples for r in results),
        "clean_ends": sum(r.clean and r.close_code == 1000 for r in results),
        "ends": ends(results),
        "server_errors": dict(Counter(e.code for r in results for e in r.errors)),
        "send_lag_max_s": round(max((r.send_lag_max_s for r in results), default=0.0), 4),
    }


def ends(results: list[StreamResult]) -> dict[str, Any]:
    """How the sessions ended, for when they did not all end cleanly: `end` messages, close codes, and
    what went wrong on the wire (counted, first 80 characters)."""
    return {
        "end_received": sum(r.end is not None for r in results),
        "close_codes": dict(Counter(str(r.close_code) for r in results)),
        "unacknowledged_samples": sum(r.samples_sent - (r.final_ack or 0) for r in results),
        "problems": dict(Counter(p[:80] for r in results for p in r.problems)),
    }


def within_budget(report: dict[str, Any], devices: int, budget_s: float) -> bool:
    """No load skips, beat → clip p95 under the budget, every device ended cleanly."""
    p95 = report["latency_s"]["beat_to_clip"]["p95"]
    return (report["load_skips"] == 0 and p95 is not None and p95 < budget_s
            and report["clean_ends"] == devices and report["acknowledged"])


# ---- scenarios ---------------------------------------------------------------------------------------
def capacity_search(server: Server, loop: Loop, start: int, args: argparse.Namespace) -> dict[str, Any]:
    """Grow from `start` by half again (at least one) while a run passes, shrink while it fails, then
    bisect between the best pass and the first fail; at most `--max-trials` runs of `--trial-seconds`."""
    trials: dict[int, bool] = {}
    runs = []
    n = max(1, start)
    for _ in range(args.max_trials):
        report = measure(server, loop, n, args.trial_seconds, args)
        trials[n] = within_budget(report, n, args.budget_s)
        runs.append(_trial_line(report, trials[n]))
        n = _next_trial(trials)
        if n is None:
            break
    passed = [k for k, ok in trials.items() if ok]
    return {"max_devices": max(passed, default=0), "budget_s": args.budget_s, "trials": runs}


def _next_trial(trials: dict[int, bool]) -> int | None:
    passed = [k for k, ok in trials.items() if ok]
    failed = [k for k, ok in trials.items() if not ok]
    best, worst = max(passed, default=0), min(failed, default=None)
    if worst is None:
        return best + max(1, best // 2)
    if not passed:
        return None if worst == 1 else max(1, worst * 2 // 3)
    middle = (best + worst) // 2
    return None if middle in trials or middle <= best else middle


def _trial_line(report: dict[str, Any], ok: bool) -> dict[str, Any]:
    latency = report["latency_s"]["beat_to_clip"]
    return {"devices": report["devices"], "pass": ok, "load_skips": report["load_skips"],
            "beat_to_clip_p95_s": latency["p95"], "clips": report["clips"], "beats": report["beats"],
            "mean_batch": report["batch_sizes"]["mean"], "clean_ends": report["clean_ends"],
            "send_lag_max_s": report["send_lag_max_s"]}


def crowd_checks(report: dict[str, Any], devices: int) -> dict[str, bool]:
    rss = report["server_rss_mib"]["peak"]
    return {
        "server_up": report["server_alive"],
        "rss_under_2GiB": rss is not None and rss < RSS_LIMIT_MIB,
        "every_sample_acknowledged": report["acknowledged"] and not report["failed_devices"],
        "clean_ends": report["clean_ends"] == devices,
        "every_beat_answered": report["unanswered_beats"] == 0,
    }


def run_scenarios(names: list[str], loop: Loop, engine: dict[str, Any], args: argparse.Namespace) -> dict:
    out: dict[str, Any] = {}
    capacity = engine["capacity_devices_at_70bpm"]
    if {"half", "search", "hundred"} & set(names):
        with running(args.max_batch, args) as server:
            if "half" in names:
                devices = max(2, math.floor(capacity / 2))
                out["half"] = measure(server, loop, devices, args.half_seconds, args)
            if "search" in names:
                out["search"] = capacity_search(server, loop, max(1, round(capacity)), args)
            if "hundred" in names:
                report = measure(server, loop, args.crowd, args.crowd_seconds, args)
                out["hundred"] = {**report, "checks": crowd_checks(report, args.crowd)}
    if "search1" in names:
        with running(1, args) as server:
            start = max(1, round(engine["batch1_clips_per_s"] / (REFERENCE_BPM / 60.0)))
            out["search1"] = capacity_search(server, loop, start, args)
    if "search" in out and "search1" in out and out["search1"]["max_devices"]:
        out["batching_gain"] = round(out["search"]["max_devices"] / out["search1"]["max_devices"], 2)
    return out


# ---- the command -------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2, help="devices of the single run (default 2)")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the single run (default 15)")
    parser.add_argument("--scenarios", nargs="?", const=",".join(SCENARIOS), default=None,
                        help=f"run these instead of the single run (comma-separated; default all: "
                        f"{','.join(SCENARIOS)})")
    parser.add_argument("--max-batch", type=int, default=8, help="the server's --max-batch (default 8)")
    parser.add_argument("--max-wait-ms", type=float, default=60.0, help="the server's (default 60, as serve)")
    parser.add_argument("--deadline-ms", type=float, default=2000.0)
    parser.add_argument("--device", default="auto", help="the model's device, server and offline alike")
    parser.add_argument("--ecg", type=Path, help="recording to replay (default: a 70-bpm watch trace)")
    parser.add_argument("--fs", type=float, help="its rate, if the file does not say")
    parser.add_argument("--repeats", type=int, default=3, help="offline timing: best of (default 3)")
    parser.add_argument("--stagger-s", type=float, default=0.02, help="between device connects")
    parser.add_argument("--half-seconds", type=float, default=60.0)
    parser.add_argument("--trial-seconds", type=float, default=20.0)
    parser.add_argument("--max-trials", type=int, default=4)
    parser.add_argument("--budget-s", type=float, default=1.0, help="beat → clip p95 a search allows")
    parser.add_argument("--crowd", type=int, default=100, help="devices of the hundred scenario")
    parser.add_argument("--crowd-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.devices < 1 or args.seconds <= 0 or args.max_batch < 1 or args.max_trials < 1:
        parser.error("--devices, --seconds, --max-batch and --max-trials must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()] if args.scenarios else []
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        raise SystemExit(f"unknown scenario {unknown[0]!r} ({', '.join(SCENARIOS)})")
    loop = load_loop(args.ecg, args.fs)
    log(f"measuring the engine offline (max batch {args.max_batch}, best of {args.repeats})")
    engine = engine_throughput(args.max_batch, args.device, args.repeats)
    engine["capacity_devices_at_record_hr"] = round(engine["clips_per_s"] / (loop.hr_bpm / 60.0), 2)
    document: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "ecg": {"source": loop.source, "fs": loop.fs, "lead": loop.lead, "hr_bpm": loop.hr_bpm,
                "loop_s": round(len(loop.samples) / loop.fs, 2)},
        "engine": engine,
    }
    if names:
        document["scenarios"] = run_scenarios(names, loop, engine, args)
    else:
        with running(args.max_batch, args) as server:
            document["run"] = measure(server, loop, args.devices, args.seconds, args)
    print(json.dumps(document, indent=1))


if __name__ == "__main__":
    main()

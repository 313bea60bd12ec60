"""`echopulse record`: keep N seconds of a Polar H10's ECG as a CSV that every other command reads.

The file is `time_s,I (uV)`: one row per sample at the strap's 130 Hz, whole µV as the strap sends them, so
`echopulse ingest/generate/stream FILE.csv` read it with its rate and units and no options. Gaps the radio
link left are held at the last value and counted on the terminal, never silently.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

import numpy as np

from echopulse.cli.common import EXIT_INTERRUPTED, EXIT_OK, EXIT_REFUSED, fail, positive_float, status, warn
from echopulse.errors import EchopulseError

HEADER = "time_s,I (uV)"


def add_parser(commands: Any) -> None:
    record = commands.add_parser(
        "record",
        help="record a Polar H10 chest strap's ECG to a CSV (Bluetooth LE)",
        description="Connect to a Polar H10 (the first found, or the one at ADDRESS), start its ECG "
        "(130 Hz, µV), and write --seconds of it to --out as CSV (time_s, I (uV)), readable by every other "
        "command. Ctrl-C stops early and keeps what was recorded. --simulated-h10 FILE plays FILE as a "
        "simulated strap instead (the same frames and decoder, no hardware).",
    )
    source = record.add_mutually_exclusive_group(required=True)
    source.add_argument("--polar", nargs="?", const="", metavar="ADDRESS",
                        help="record a Polar H10 (needs the polar extra: pip install 'echopulse[polar]')")
    source.add_argument("--simulated-h10", type=Path, metavar="FILE",
                        help="record a simulated Polar H10 playing FILE (any format ingest reads)")
    record.add_argument("--seconds", type=positive_float, required=True, help="how much ECG to record")
    record.add_argument("--out", type=Path, required=True, help="the CSV file to write")
    record.add_argument("--fs", type=positive_float, help="with --simulated-h10: FILE's rate, if it has none")
    record.add_argument("--speed", type=positive_float, default=1.0,
                        help="with --simulated-h10: play faster than real time (default 1)")
    record.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.out.suffix.lower() != ".csv":
        fail(f"{args.out}: the recording is a CSV file; name it *.csv")
        return EXIT_REFUSED
    if args.out.is_dir() or not args.out.parent.is_dir():
        fail(f"{args.out}: not a file in an existing folder")
        return EXIT_REFUSED
    from echopulse.ingest.polar import H10_ECG_FS

    label = "Polar H10" if args.simulated_h10 is None else f"simulated Polar H10 ({args.simulated_h10.name})"
    blocks: list[np.ndarray] = []
    events: dict[str, int] = {}
    status(f"recording {args.seconds:g} s of ECG from {label}; Ctrl-C stops early and keeps what came")
    interrupted, failure = False, None
    try:
        asyncio.run(_record(args, blocks, events, label))
    except KeyboardInterrupt:
        interrupted = True
    except EchopulseError as error:  # the strap went away mid-recording: keep what came, then say why
        if not blocks:
            raise
        failure = str(error)
    samples = np.concatenate(blocks) if blocks else np.empty(0, dtype=np.float32)
    if samples.size < 2:
        fail(f"{label}: no ECG came, nothing written")
        return EXIT_INTERRUPTED if interrupted else EXIT_REFUSED
    write_csv(args.out, samples, H10_ECG_FS)
    noted = "".join(f", {n} {kind}" for kind, n in sorted(events.items()))
    seconds = samples.size / H10_ECG_FS
    print(f"{args.out}: {seconds:.1f} s of ECG, {samples.size} samples at {H10_ECG_FS} Hz{noted}", flush=True)
    short = f"{seconds:.1f} s of the {args.seconds:g} s asked were recorded"
    if failure is not None:
        fail(f"{failure}; {short}")
        return EXIT_REFUSED
    if interrupted:
        fail(f"interrupted: {short}")
        return EXIT_INTERRUPTED
    if samples.size < round(args.seconds * H10_ECG_FS):
        warn(f"{label}: the source ended early; {short}")
    return EXIT_OK


async def _record(args: argparse.Namespace, blocks: list[np.ndarray], events: dict[str, int],
                  label: str) -> None:
    from tqdm import tqdm

    from echopulse.cli.stream import polar_frames
    from echopulse.ingest.polar import H10_ECG_FS
    from echopulse.ingest.polar_link import ecg_chunks

    wanted = round(args.seconds * H10_ECG_FS)
    got = 0

    def on_event(kind: str, text: str) -> None:
        if kind == "connected":
            status(text)
            return
        events[kind] = events.get(kind, 0) + 1
        warn(f"{label}: {text}")

    bar = tqdm(total=round(args.seconds, 1), unit="s", desc="recording", disable=None, leave=False,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s")
    with bar:
        async with polar_frames(args, on_event) as frames:
            async for block in ecg_chunks(frames, on_event):
                block = block[: wanted - got]
                blocks.append(block)
                got += len(block)
                bar.n = round(got / H10_ECG_FS, 1)
                bar.refresh()
                if got >= wanted:
                    return


def write_csv(path: Path, samples_uv: np.ndarray, fs: float) -> None:
    """The recording, written to a temporary name and renamed, so an interrupted write leaves no half file."""
    times = np.arange(samples_uv.size) / fs
    table = np.column_stack([times, samples_uv.astype(np.float64)])
    partial = path.with_name(f".{path.name}.partial")
    np.savetxt(partial, table, delimiter=",", header=HEADER, comments="", fmt=["%.6f", "%.0f"])
    os.replace(partial, path)

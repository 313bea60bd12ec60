"""`echopulse phantom`: paired (ECG, echo clip, labels) training and scoring data, as NPZ shards."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from echopulse.cli.common import EXIT_OK, check_output_folder


def add_parser(commands: Any) -> None:
    phantom = commands.add_parser(
        "phantom",
        help="write paired (ECG, echo clip, labels) phantom samples as NPZ shards plus a manifest",
        description="Render N phantom samples: a 12-lead ECG (250 Hz, 11 s, closing R-peak at 10 s), an "
        "apical four-chamber clip of its last cardiac cycle and exact labels (EF, volumes, ED/ES frames, "
        "heart rate, LV masks, ECG fiducials). The same seed gives byte-identical files, whatever --workers.",
    )
    phantom.add_argument("--n", type=int, required=True, help="number of samples")
    phantom.add_argument("--out", type=Path, required=True, help="output folder")
    phantom.add_argument("--seed", type=int, default=0, help="seed of the whole run (default 0)")
    phantom.add_argument("--size", type=int, default=128, help="frame size in pixels, a multiple of 8 (128)")
    phantom.add_argument("--frames", type=int, default=11, help="frames per clip (default 11)")
    phantom.add_argument(
        "--layout",
        default="cycle",
        choices=("cycle", "fps"),
        help="cycle: one R-to-R cycle in --frames frames; fps: --frames frames at --fps from the R-peak",
    )
    phantom.add_argument("--fps", type=float, default=30.0, help="frame rate of the fps layout (default 30)")
    phantom.add_argument("--hr", type=float, help="fix the mean heart rate (30-200 bpm)")
    phantom.add_argument("--shard-size", type=int, default=256, help="samples per shard (default 256)")
    phantom.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    phantom.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from echopulse.echo.shards import PhantomRun, write_shards

    a = args
    run = PhantomRun(a.n, a.seed, a.size, a.frames, a.layout, a.fps, a.hr, a.shard_size, a.workers)
    run.check()  # before the progress bar: a bad argument is one line, not a bar then a line
    check_output_folder(args.out)
    with tqdm(total=run.n, desc="phantom", unit="clip", leave=False) as bar:
        paths = write_shards(args.out, run, progress=bar.update)
    print(f"phantom: {args.n} samples in {len(paths)} shards -> {args.out} (manifest.jsonl, phantom.json)")
    return EXIT_OK

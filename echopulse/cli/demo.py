"""`echopulse demo`: `generate --video` on the bundled sample ECG with the bundled model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from echopulse.cli import generate
from echopulse.cli.common import EXIT_OK


def add_parser(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="run generate --video on the bundled sample ECG (a real 30-s Apple Watch trace)",
        description="Generate a synthetic echo clip for every beat of the bundled sample ECG with the "
        "bundled model: beat_NNNN.mp4/.gif, contact_sheet.png, video.mp4 (the ECG's timeline) and "
        "manifest.json.",
    )
    demo.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from echopulse.sample import SAMPLE_ECG_FS, sample_ecg_path

    parser = argparse.ArgumentParser(prog="echopulse")
    generate.add_parser(parser.add_subparsers())
    argv = ["generate", str(sample_ecg_path()), "--fs", str(SAMPLE_ECG_FS), "--out", str(args.out), "--video"]
    code = generate.run(parser.parse_args(argv))
    if code == EXIT_OK:
        print(f"demo: synthetic echo for every beat of the bundled sample ECG in {args.out} "
              f"(open {args.out / 'contact_sheet.png'} and {args.out / 'video.mp4'})")
    return code

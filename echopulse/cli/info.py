"""`echopulse info`: what an ECG file holds (format, rate, leads, duration, heart rate, classification)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from echopulse.cli.common import EXIT_OK, EXIT_REFUSED, for_each_recording


def add_parser(commands: Any) -> None:
    info = commands.add_parser(
        "info",
        help="describe an ECG file: format, rate, leads, duration, heart rate, classification",
        description="Describe an ECG file, or each ECG of a Health export.zip (a JSON list with --json). "
        "Never prints a name or birth date (they are dropped on reading).",
    )
    info.add_argument("file", type=Path, help="ECG file or export.zip (format is sniffed from its content)")
    info.add_argument("--fs", type=float, help="sample rate in Hz, for files that do not state it")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    described: list[dict[str, Any]] = []
    in_archive = False

    def describe(recording, record, folder) -> None:
        nonlocal in_archive
        in_archive = recording.in_archive
        described.append(facts(recording.label, record))

    refused = for_each_recording([args.file], args.fs, describe)
    if args.json and described:
        print(json.dumps(described if in_archive else described[0], indent=1))
    elif described:
        print("\n\n".join(facts_text(f) for f in described))
    return EXIT_REFUSED if refused else EXIT_OK


def facts(label: str, record) -> dict[str, Any]:
    """What `info` says about one recording; `file` is the file name or `<zip name>:<member>`."""
    from echopulse.preprocess.offline import preprocess_record

    result = preprocess_record(record, progress=record.duration_s > 600)
    return {
        "file": label,
        "format": record.source_format,
        "fs": record.fs,
        "leads": list(record.leads),
        "duration_s": round(record.duration_s, 3),
        "samples": record.n_samples,
        "hr_bpm": None if result.hr_bpm is None else round(result.hr_bpm, 1),
        "beats": len(result.beats),
        "refused_beats": sum(not b.accepted for b in result.beats),
        "classification": record.meta.get("classification"),
        "device": record.device,
        "start": record.start.isoformat() if record.start else None,
    }


def facts_text(facts: dict[str, Any]) -> str:
    width = max(len(k) for k in facts)
    lines = []
    for key, value in facts.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        lines.append(f"{key:<{width}}  {'-' if shown is None else shown}")
    return "\n".join(lines)

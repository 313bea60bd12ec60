"""`echopulse ingest`: beats and ST-MEM windows for every input, as windows.npz, beats.json and ecg.png."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from echopulse.cli.common import (
    EXIT_OK,
    EXIT_REFUSED,
    add_input_options,
    check_output_folder,
    for_each_recording,
)


def add_parser(commands: Any) -> None:
    from echopulse.preprocess.windows import LAYOUTS

    ingest = commands.add_parser(
        "ingest",
        help="find beats and write ST-MEM windows, beats.json and an ECG plot per input",
        description="For each input write windows.npz (one 12×2250 ST-MEM window per beat), beats.json "
        "(R-peaks, RR, heart rate, quality) and ecg.png (the ECG with beat marks, refused beats shaded and "
        "labelled with the reason). "
        "With one input the files go into --out itself, with several into one sub-folder per input. "
        "A Health export.zip writes one sub-folder per ECG, named by its recorded date and a hash of its "
        "samples (YYYY-MM-DD_HHMMSS_<12 hex>), never by anything about the person. "
        "A refused input writes nothing and the others still complete; a re-run replaces the files.",
    )
    add_input_options(ingest)
    ingest.add_argument(
        "--layout",
        default="stmem",
        choices=LAYOUTS,
        help="window layout: stmem (band-passed 9-s windows, own lead slots, z-scored), mv (the same in mV, "
        "what the bundled model reads) or compat (the published ECHOPulse input: one cycle tiled in the "
        "lead II slot, for the official weights)",
    )
    ingest.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_output_folder(args.out)

    def ingest_one(recording, record, folder: Path) -> str:
        from echopulse.outputs import write_ingest_outputs
        from echopulse.pipeline import preprocess_record, refusal_summary

        result = preprocess_record(record, method=args.method, layout=args.layout,
                                   progress=record.duration_s > 600)
        write_ingest_outputs(record, result, folder, source=recording.label)
        accepted = sum(w.accepted for w in result.windows)
        hr = "n/a" if result.hr_bpm is None else f"{result.hr_bpm:.0f} bpm"
        refused = [str(w.reason) for w in result.windows if not w.accepted]
        why = f" ({len(refused)} refused: {refusal_summary(refused)})" if refused else ""
        beats = len(result.beats)
        return f"{recording.label}: {beats} beats, {accepted} windows accepted, HR {hr}{why} -> {folder}"

    refused = for_each_recording(args.files, args.fs, ingest_one, out=args.out)
    return EXIT_REFUSED if refused else EXIT_OK

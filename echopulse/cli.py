"""The `echopulse` command.

Exit codes: 0 all inputs done; 2 an input was refused (one line on stderr per refused input, the
others still complete); 1 an internal error. No traceback ever reaches the terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from echopulse import __version__
from echopulse.errors import EchopulseError

EXIT_OK, EXIT_INTERNAL, EXIT_REFUSED = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    from echopulse.preprocess.beats import DEFAULT_METHOD, DETECTION_BANDS_HZ
    from echopulse.preprocess.windows import LAYOUTS

    parser = argparse.ArgumentParser(
        prog="echopulse",
        description="Wearable ECG in, synthetic echocardiogram clips out, one per heartbeat. "
        "Reads Apple Watch CSV exports, WFDB, EDF/BDF, CSV, NumPy and ST-MEM/ECHOPulse array pickles.",
    )
    parser.add_argument("--version", action="version", version=f"echopulse {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser(
        "info",
        help="describe an ECG file: format, rate, leads, duration, heart rate, classification",
        description="Describe an ECG file. Never prints a name or birth date (they are dropped on reading).",
    )
    info.add_argument("file", type=Path, help="ECG file (format is sniffed from its content)")
    info.add_argument("--fs", type=float, help="sample rate in Hz, for files that do not state it")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")

    ingest = commands.add_parser(
        "ingest",
        help="find beats and write ST-MEM windows, beats.json and an ECG plot per input",
        description="For each input write windows.npz (one 12×2250 ST-MEM window per beat), beats.json "
        "(R-peaks, RR, heart rate, quality) and ecg.png (the ECG with beat marks, refused beats shaded). "
        "With one input the files go into --out itself, with several into one sub-folder per input. "
        "A refused input writes nothing and the others still complete.",
    )
    ingest.add_argument("files", type=Path, nargs="+", metavar="FILE", help="ECG files")
    ingest.add_argument("--out", type=Path, required=True, help="output folder")
    ingest.add_argument("--fs", type=float, help="sample rate in Hz, for files that do not state it")
    ingest.add_argument(
        "--method",
        default=DEFAULT_METHOD,
        choices=sorted(DETECTION_BANDS_HZ),
        help=f"neurokit2 R-peak detector (default {DEFAULT_METHOD}, the most accurate we measured)",
    )
    ingest.add_argument(
        "--layout",
        default="stmem",
        choices=LAYOUTS,
        help="window layout: stmem (band-passed 9-s windows, own lead slots) or compat (the published "
        "ECHOPulse input: one cycle tiled in the lead II slot, for the official weights)",
    )

    demo = commands.add_parser(
        "demo",
        help="run ingest on the bundled sample ECG (a real 30-s Apple Watch trace)",
        description="Ingest the bundled sample ECG and write its windows, beats and plot.",
    )
    demo.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "info":
            return _info(args)
        if args.command == "demo":
            return _demo(args)
        return _ingest(args.files, args.out, args.fs, args.method, args.layout)
    except EchopulseError as error:
        _fail(str(error))
        return EXIT_REFUSED
    except KeyboardInterrupt:
        _fail("interrupted")
        return EXIT_INTERNAL
    except Exception as error:  # a bug of ours: one line, not a traceback
        _fail(f"internal error ({type(error).__name__}: {error}); please report it")
        return EXIT_INTERNAL


def _info(args: argparse.Namespace) -> int:
    from echopulse.ingest import read_record
    from echopulse.preprocess.offline import preprocess_record

    record = read_record(args.file, fs=args.fs)
    result = preprocess_record(record, progress=record.duration_s > 600)
    facts = {
        "file": args.file.name,
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
    if args.json:
        print(json.dumps(facts, indent=1))
    else:
        width = max(len(k) for k in facts)
        for key, value in facts.items():
            shown = ", ".join(value) if isinstance(value, list) else value
            print(f"{key:<{width}}  {'-' if shown is None else shown}")
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from echopulse.preprocess.beats import DEFAULT_METHOD
    from echopulse.sample import SAMPLE_ECG_FS, sample_ecg_path

    code = _ingest([sample_ecg_path()], args.out, SAMPLE_ECG_FS, DEFAULT_METHOD, "stmem")
    if code == EXIT_OK:
        print(f"demo: the bundled sample ECG is in {args.out} (open {args.out / 'ecg.png'})")
    return code


def _ingest(files: list[Path], out: Path, fs: float | None, method: str, layout: str) -> int:
    from tqdm import tqdm

    from echopulse.ingest import read_record
    from echopulse.outputs import write_ingest_outputs
    from echopulse.preprocess.offline import preprocess_record

    folders = _output_folders(files, out)
    refused = 0
    for path in tqdm(files, desc="ingest", unit="file", disable=len(files) < 2, leave=False):
        try:
            record = read_record(path, fs=fs)
            result = preprocess_record(record, method=method, layout=layout, progress=record.duration_s > 600)
            folder = write_ingest_outputs(record, result, folders[path], source=path.name)
        except EchopulseError as error:
            _fail(str(error))
            refused += 1
            continue
        accepted = sum(w.accepted for w in result.windows)
        hr = "n/a" if result.hr_bpm is None else f"{result.hr_bpm:.0f} bpm"
        summary = f"{len(result.beats)} beats, {accepted} windows accepted, HR {hr}"
        tqdm.write(f"{path.name}: {summary} -> {folder}")
    return EXIT_REFUSED if refused else EXIT_OK


def _output_folders(files: list[Path], out: Path) -> dict[Path, Path]:
    """One input writes into `out`; several into `out/<file stem>` (made unique when stems repeat)."""
    if len(files) == 1:
        return {files[0]: out}
    folders: dict[Path, Path] = {}
    used: set[str] = set()
    for path in files:
        name, k = path.stem or "input", 2
        while name in used:
            name, k = f"{path.stem}-{k}", k + 1
        used.add(name)
        folders[path] = out / name
    return folders


def _fail(message: str) -> None:
    """One line on stderr; `tqdm.write` lifts a progress bar out of the way so the line stands alone."""
    from tqdm import tqdm

    tqdm.write(f"echopulse: error: {' '.join(message.split())}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())

"""The `echopulse` command.

Exit codes: 0 all inputs done; 2 an input was refused (one line on stderr per refused input, the
others still complete); 1 an internal error. No traceback ever reaches the terminal.

An input is an ECG file or a Health app `export.zip`, which holds one recording per ECG. A broken archive
(its directory fails the checks) is one refused input and writes nothing; a broken ECG inside a sound
archive is one refused recording, and the archive's other ECGs still complete.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from echopulse.errors import EchopulseError
from echopulse.version import __version__

if TYPE_CHECKING:
    from echopulse.ecg import ECGRecord

EXIT_OK, EXIT_INTERNAL, EXIT_REFUSED = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    from echopulse.preprocess.beats import DEFAULT_METHOD, DETECTION_BANDS_HZ
    from echopulse.preprocess.windows import LAYOUTS

    parser = argparse.ArgumentParser(
        prog="echopulse",
        description="Wearable ECG in, synthetic echocardiogram clips out, one per heartbeat. "
        "Reads Apple Watch CSV exports (alone or in the Health app's export.zip), WFDB, EDF/BDF, CSV, "
        "NumPy and ST-MEM/ECHOPulse array pickles.",
    )
    parser.add_argument("--version", action="version", version=f"echopulse {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser(
        "info",
        help="describe an ECG file: format, rate, leads, duration, heart rate, classification",
        description="Describe an ECG file, or each ECG of a Health export.zip (a JSON list with --json). "
        "Never prints a name or birth date (they are dropped on reading).",
    )
    info.add_argument("file", type=Path, help="ECG file or export.zip (format is sniffed from its content)")
    info.add_argument("--fs", type=float, help="sample rate in Hz, for files that do not state it")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")

    ingest = commands.add_parser(
        "ingest",
        help="find beats and write ST-MEM windows, beats.json and an ECG plot per input",
        description="For each input write windows.npz (one 12×2250 ST-MEM window per beat), beats.json "
        "(R-peaks, RR, heart rate, quality) and ecg.png (the ECG with beat marks, refused beats shaded). "
        "With one input the files go into --out itself, with several into one sub-folder per input. "
        "A Health export.zip writes one sub-folder per ECG, named by its recorded date and a hash of its "
        "samples (YYYY-MM-DD_HHMMSS_<12 hex>), never by anything about the person. "
        "A refused input writes nothing and the others still complete.",
    )
    ingest.add_argument("files", type=Path, nargs="+", metavar="FILE", help="ECG files or export.zip")
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
        help="window layout: stmem (band-passed 9-s windows, own lead slots, z-scored), mv (the same in mV, "
        "what the bundled model reads) or compat (the published ECHOPulse input: one cycle tiled in the "
        "lead II slot, for the official weights)",
    )

    demo = commands.add_parser(
        "demo",
        help="run generate --video on the bundled sample ECG (a real 30-s Apple Watch trace)",
        description="Generate a synthetic echo clip for every beat of the bundled sample ECG with the "
        "bundled model: beat_NNNN.mp4/.gif, contact_sheet.png, video.mp4 (the ECG's timeline) and "
        "manifest.json.",
    )
    demo.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")

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

    from echopulse.eval_cli import add_eval_parser
    from echopulse.generate_cli import add_generate_parser
    from echopulse.generator.convert_cli import add_convert_parser
    from echopulse.generator.training.cli import add_train_parser

    add_convert_parser(commands)
    add_train_parser(commands)
    add_eval_parser(commands)
    add_generate_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "info":
            return _info(args)
        if args.command == "demo":
            return _demo(args)
        if args.command == "phantom":
            return _phantom(args)
        if args.command == "generate":
            from echopulse.generate_cli import run_generate

            return run_generate(args)
        if args.command == "eval":
            from echopulse.eval_cli import run_eval

            return run_eval(args)
        if args.command == "train":
            from echopulse.generator.training.cli import run_train

            return run_train(args)
        if args.command == "convert-official":
            from echopulse.generator.convert_cli import run_convert

            return run_convert(args)
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


@dataclass(frozen=True)
class _Recording:
    """One recording of an input: how outputs and errors name it, and how to read it (deferred, so that a
    broken ECG inside an archive is refused on its own)."""

    label: str
    read: Callable[[], ECGRecord]
    in_archive: bool


@contextmanager
def _open_input(path: Path, fs: float | None) -> Iterator[list[_Recording]]:
    """The recordings of one input: the one of an ECG file, or each ECG of a Health export.zip.

    An archive's directory is checked on opening, so a broken archive raises here, before anything is read
    or written. Archives are read through `HealthExport` rather than `read_records`: a generator ends at its
    first error, and one broken ECG must not cost the archive's others.
    """
    from echopulse.ingest import ARCHIVE_FORMATS, limits, read_record, sniff_format
    from echopulse.ingest.validate import check_file_size

    fmt = sniff_format(check_file_size(path, limit=limits.MAX_ARCHIVE_BYTES))
    if fmt not in ARCHIVE_FORMATS:
        yield [_Recording(path.name, partial(read_record, path, fs=fs, fmt=fmt), in_archive=False)]
        return
    from echopulse.ingest.health_export import open_export_zip

    with open_export_zip(path) as export:
        yield [_Recording(export.label(m), partial(export.read, m), in_archive=True) for m in export.members]


def _info(args: argparse.Namespace) -> int:
    described, refused, in_archive = [], 0, False
    with _open_input(args.file, args.fs) as recordings:
        for recording in recordings:
            in_archive = recording.in_archive
            try:
                described.append(_facts(recording))
            except EchopulseError as error:
                _fail(str(error))
                refused += 1
    if args.json and described:
        print(json.dumps(described if in_archive else described[0], indent=1))
    elif described:
        print("\n\n".join(_facts_text(facts) for facts in described))
    return EXIT_REFUSED if refused else EXIT_OK


def _facts(recording: _Recording) -> dict[str, Any]:
    """What `info` says about one recording; `file` is the file name or `<zip name>:<member>`."""
    from echopulse.preprocess.offline import preprocess_record

    record = recording.read()
    result = preprocess_record(record, progress=record.duration_s > 600)
    return {
        "file": recording.label,
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


def _facts_text(facts: dict[str, Any]) -> str:
    width = max(len(k) for k in facts)
    lines = []
    for key, value in facts.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        lines.append(f"{key:<{width}}  {'-' if shown is None else shown}")
    return "\n".join(lines)


def _demo(args: argparse.Namespace) -> int:
    """`echopulse generate --video` on the bundled sample ECG with the bundled model."""
    from echopulse.generate_cli import run_generate
    from echopulse.sample import SAMPLE_ECG_FS, sample_ecg_path

    argv = ["generate", str(sample_ecg_path()), "--fs", str(SAMPLE_ECG_FS), "--out", str(args.out), "--video"]
    code = run_generate(build_parser().parse_args(argv))
    if code == EXIT_OK:
        print(f"demo: synthetic echo for every beat of the bundled sample ECG in {args.out} "
              f"(open {args.out / 'contact_sheet.png'} and {args.out / 'video.mp4'})")
    return code


def _phantom(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from echopulse.echo.shards import PhantomRun, write_shards

    a = args
    run = PhantomRun(a.n, a.seed, a.size, a.frames, a.layout, a.fps, a.hr, a.shard_size, a.workers)
    run.check()  # before the progress bar: a bad argument is one line, not a bar then a line
    with tqdm(total=run.n, desc="phantom", unit="clip", leave=False) as bar:
        paths = write_shards(args.out, run, progress=bar.update)
    print(f"phantom: {args.n} samples in {len(paths)} shards -> {args.out} (manifest.jsonl, phantom.json)")
    return EXIT_OK


def _ingest(files: list[Path], out: Path, fs: float | None, method: str, layout: str) -> int:
    from tqdm import tqdm

    folders = _output_folders(files, out)
    used: set[Path] = set()
    refused = 0
    for path in tqdm(files, desc="ingest", unit="file", disable=len(files) < 2, leave=False):
        try:
            with _open_input(path, fs) as recordings:
                shown = tqdm(recordings, desc=path.name, unit="ECG", disable=len(recordings) < 2, leave=False)
                for recording in shown:
                    refused += not _ingest_recording(recording, folders[path], used, method, layout)
        except EchopulseError as error:  # the input itself (a missing file, a broken archive)
            _fail(str(error))
            refused += 1
    return EXIT_REFUSED if refused else EXIT_OK


def _ingest_recording(recording: _Recording, base: Path, used: set[Path], method: str, layout: str) -> bool:
    """Read, preprocess and write one recording; False (and one error line) when it is refused."""
    from tqdm import tqdm

    from echopulse.outputs import write_ingest_outputs
    from echopulse.preprocess.offline import preprocess_record

    try:
        record = recording.read()
        result = preprocess_record(record, method=method, layout=layout, progress=record.duration_s > 600)
        folder = _unused(base / recording_folder_name(record), used) if recording.in_archive else base
        write_ingest_outputs(record, result, folder, source=recording.label)
    except EchopulseError as error:
        _fail(str(error))
        return False
    accepted = sum(w.accepted for w in result.windows)
    hr = "n/a" if result.hr_bpm is None else f"{result.hr_bpm:.0f} bpm"
    summary = f"{len(result.beats)} beats, {accepted} windows accepted, HR {hr}"
    tqdm.write(f"{recording.label}: {summary} -> {folder}")
    return True


def recording_folder_name(record: ECGRecord) -> str:
    """`YYYY-MM-DD_HHMMSS_<12 hex>`: when it was recorded (local time, as the export writes it) and a hash of
    what was recorded, so re-runs land in the same folder. Nothing about the person goes into it."""
    when = record.start.strftime("%Y-%m-%d_%H%M%S") if record.start else "undated"
    return f"{when}_{record.content_hash()[:12]}"


def _unused(folder: Path, used: set[Path]) -> Path:
    """`folder`, or `folder-2`, `-3`, … when this run already wrote there (one ECG twice in an archive)."""
    candidate, k = folder, 2
    while candidate in used:
        candidate, k = folder.with_name(f"{folder.name}-{k}"), k + 1
    used.add(candidate)
    return candidate


def _output_folders(files: list[Path], out: Path) -> dict[Path, Path]:
    """One input writes into `out`; several into `out/<file stem>` (made unique when stems repeat)."""
    if len(files) == 1:
        return {files[0]: out}
    used: set[Path] = set()
    return {path: _unused(out / (path.stem or "input"), used) for path in files}


def _fail(message: str) -> None:
    """One line on stderr; `tqdm.write` lifts a progress bar out of the way so the line stands alone."""
    from tqdm import tqdm

    tqdm.write(f"echopulse: error: {' '.join(message.split())}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())

"""What every command shares: exit codes, one-line messages, argument types, output folders, and the one loop
over inputs and their recordings.

A refused input or recording is one line on stderr and the others still complete; the loop counts the
refusals so the command can exit 2 at the end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from echopulse.errors import EchopulseError, one_line

if TYPE_CHECKING:
    from echopulse.ecg import ECGRecord
    from echopulse.ingest.recordings import Recording

EXIT_OK, EXIT_INTERNAL, EXIT_REFUSED, EXIT_INTERRUPTED = 0, 1, 2, 130


class OutputError(EchopulseError):
    """`--out` cannot be written: found before any work, so nothing is spent on a run that cannot land."""


def fail(message: str) -> None:
    """One line on stderr; `tqdm.write` lifts a progress bar out of the way so the line stands alone."""
    from tqdm import tqdm

    tqdm.write(f"echopulse: error: {one_line(message)}", file=sys.stderr)


def warn(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"echopulse: warning: {one_line(message)}", file=sys.stderr)


def status(message: str) -> None:
    """A line of what is happening now, on a terminal only (pipes and logs get the results alone)."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        tqdm.write(f"echopulse: {message}", file=sys.stderr)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def add_input_options(parser: argparse.ArgumentParser) -> None:
    """FILE… --out --fs --method: what every command over ECG inputs takes, worded once."""
    from echopulse.preprocess.beats import DEFAULT_METHOD, DETECTION_BANDS_HZ

    parser.add_argument("files", type=Path, nargs="+", metavar="FILE", help="ECG files or export.zip")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--fs", type=float, help="sample rate in Hz, for files that do not state it")
    parser.add_argument(
        "--method",
        default=DEFAULT_METHOD,
        choices=sorted(DETECTION_BANDS_HZ),
        help=f"neurokit2 R-peak detector (default {DEFAULT_METHOD}, the most accurate we measured)",
    )


def check_output_folder(out: Path) -> None:
    """Refuse, before any work, an `--out` that names a file or lies where nothing can be written.

    Nothing is created: a run whose every input is refused leaves no folder behind. Writability is tried
    for real (a temporary folder made and removed in the nearest existing ancestor) because permission
    bits say nothing for root or on a read-only mount.
    """
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: exists and is not a folder")
    ancestor = out
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"--out {out}: {ancestor} is a file, so no folder can be made there")
    try:
        Path(tempfile.mkdtemp(prefix=".echopulse-check-", dir=ancestor)).rmdir()
    except OSError as error:
        raise OutputError(f"--out {out}: cannot write in {ancestor} ({error.strerror or error})") from None


def unique_folder(folder: Path, used: set[Path]) -> Path:
    """`folder`, or `folder-2`, `-3`, … when this run already wrote there (one ECG twice in an archive)."""
    candidate, k = folder, 2
    while candidate in used:
        candidate, k = folder.with_name(f"{folder.name}-{k}"), k + 1
    used.add(candidate)
    return candidate


def output_folders(files: Sequence[Path], out: Path) -> dict[Path, Path]:
    """One input writes into `out`; several into `out/<file stem>` (made unique when stems repeat)."""
    if len(files) == 1:
        return {files[0]: out}
    used: set[Path] = set()
    return {path: unique_folder(out / (path.stem or "input"), used) for path in files}


def recording_folder_name(record: ECGRecord) -> str:
    """`YYYY-MM-DD_HHMMSS_<12 hex>`: when it was recorded (local time, as the export writes it) and a hash of
    what was recorded, so re-runs land in the same folder. Nothing about the person goes into it."""
    when = record.start.strftime("%Y-%m-%d_%H%M%S") if record.start else "undated"
    return f"{when}_{record.content_hash()[:12]}"


RecordingHandler = Callable[["Recording", "ECGRecord", "Path | None"], "str | None"]
"""Does a command's work on one recording (read already) and returns the line to print, if any; raises
`EchopulseError` to refuse it. Gets the folder to write into, or None for commands that write nothing."""


def for_each_recording(
    files: Sequence[Path], fs: float | None, handle: RecordingHandler, out: Path | None = None
) -> int:
    """Run `handle` on every recording of every input; returns how many inputs or recordings were refused.

    An input is an ECG file or a Health `export.zip` (one recording per ECG, each in a sub-folder named by
    `recording_folder_name`). A broken archive is one refusal; a broken ECG inside a sound one is one
    refusal and the archive's other ECGs still complete.
    """
    from tqdm import tqdm

    from echopulse.ingest import iter_recordings

    folders = output_folders(files, out) if out is not None else {}
    used: set[Path] = set()
    refused = 0
    for path in tqdm(files, desc="inputs", unit="file", disable=len(files) < 2 or None, leave=False):
        try:
            for recording in iter_recordings(path, fs=fs):
                if recording.error is not None or recording.record is None:
                    fail(str(recording.error))
                    refused += 1
                    continue
                folder = None
                if out is not None:
                    base = folders[path]
                    named = base / recording_folder_name(recording.record)
                    folder = unique_folder(named, used) if recording.in_archive else base
                try:
                    line = handle(recording, recording.record, folder)
                except EchopulseError as error:
                    fail(str(error))
                    refused += 1
                    continue
                if line:
                    tqdm.write(line)
        except EchopulseError as error:  # the input itself (a missing file, a broken archive)
            fail(str(error))
            refused += 1
    return refused

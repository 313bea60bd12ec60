"""`echopulse batch`: an archive of ECG files through the Apache Beam pipeline (`echopulse.batch`).

This module turns options into `BatchSettings`, loads the model once up front when clips are asked for
(so a bad --model is refused before any work, and every worker draws with the same resolved settings),
and says what the run did. Options it does not know are Beam pipeline options and go to Beam.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Any

from echopulse.cli.common import EXIT_OK, EXIT_REFUSED, positive_float, positive_int, status

BEAM_OPTIONS_NOTE = (
    "Any other --option is a Apache Beam pipeline option, passed on as given; write it with '=' "
    "(--temp_location=gs://bucket/tmp) so its value is not taken for an input."
)


def add_parser(commands: Any) -> None:
    from echopulse.preprocess.beats import DEFAULT_METHOD, DETECTION_BANDS_HZ
    from echopulse.preprocess.windows import LAYOUTS

    batch = commands.add_parser(
        "batch",
        help="run an archive of ECG files through an Apache Beam pipeline: windows (Parquet), clips (MP4), "
        "manifest.jsonl and errors.jsonl",
        description="Match every INPUT (files, folders, globs; gs:// or s3:// where Beam's extra for it is "
        "installed), read each ECG (every ECG of a Health export.zip; a WFDB record once, through its .hea), "
        "find beats and ST-MEM windows with the same steps as `echopulse ingest`, and write "
        "windows/<record>.parquet (one row per beat, the 12x2250 window with it), "
        "manifest.jsonl (one row per distinct record, keyed by a hash of its samples, never a name or path) "
        "and errors.jsonl (every input that failed, with the reason; a bad file never stops the job). With "
        "--generate also clips/<record>/beat_NNNN.mp4, one synthetic echo clip per usable beat, the same "
        "clips `echopulse generate --seed <the manifest's seed>` makes. The same inputs and options give "
        "the same bytes whatever the runner or the number of workers. Runs on Beam's FnApiRunner here "
        "(--workers N for N processes); --runner PortableRunner/DataflowRunner/FlinkRunner/SparkRunner "
        "with their options for a cluster (deploy/beam/README.md). " + BEAM_OPTIONS_NOTE,
    )
    batch.add_argument("inputs", nargs="+", metavar="INPUT", help="ECG files, folders or globs")
    batch.add_argument("--output", "--out", dest="output", required=True, help="output folder (or gs://…)")
    batch.add_argument("--generate", action="store_true", help="also generate one MP4 clip per usable beat")
    batch.add_argument("--fs", type=float, help="sample rate in Hz, for files that do not state it")
    batch.add_argument("--method", default=DEFAULT_METHOD, choices=sorted(DETECTION_BANDS_HZ),
                       help=f"neurokit2 R-peak detector (default {DEFAULT_METHOD})")
    batch.add_argument("--layout", choices=LAYOUTS,
                       help="window layout (default stmem, or with --generate the model's own)")
    batch.add_argument("--workers", type=positive_int, default=1,
                       help="processes of the local FnApiRunner (default 1: in this process)")
    batch.add_argument("--runner", help="a Beam runner for a cluster (default: the local FnApiRunner)")
    batch.add_argument("--beam-options", action="append", default=[], metavar="FILE",
                       help="Beam pipeline options, one per line ('#' comments), e.g. deploy/beam/*.options; "
                       "options given on the command line come after them and win")
    batch.add_argument("--attempts", type=positive_int, default=2,
                       help="runs of the whole job before giving up, when a worker dies (default 2)")
    batch.add_argument("--read-timeout", type=positive_float, default=600.0, metavar="SECONDS",
                       help="give up on an input whose reading takes longer (default 600)")
    clips = batch.add_argument_group("clips (with --generate)")
    clips.add_argument("--model", action="append", metavar="PATH",
                       help="model folder or official files, as for `generate` (default: the bundled model)")
    clips.add_argument("--device", default="auto",
                       help="where the model runs (default auto: CUDA if present)")
    clips.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                       help="as for `generate` (default auto)")
    clips.add_argument("--steps", type=positive_int, help="sampling steps (default: the model's)")
    clips.add_argument("--guidance", type=float, help="guidance scale (default: the model's)")
    clips.add_argument("--seed", type=int, default=0,
                       help="added to each record's own seed, which comes from a hash of its samples "
                       "(default 0)")
    clips.add_argument("--min-batch", type=positive_int, default=1, help="fewest windows per model call")
    clips.add_argument("--max-batch", type=positive_int, default=8, help="most windows per model call")
    clips.add_argument("--scale", type=positive_int,
                       help="enlarge frames this many times (default: the least that gives >= 256 px)")
    clips.add_argument("--torch-threads", type=positive_int,
                       help="torch threads per worker (default: cores / workers)")
    clips.add_argument("--no-mark", action="store_true", help="leave out the visible SYNTHETIC mark")
    batch.set_defaults(func=run, accepts_beam_options=True)


def run(args: argparse.Namespace) -> int:
    import logging

    logging.getLogger().setLevel(logging.ERROR)  # before Beam is imported: it warns of absent cloud clients
    from tqdm import tqdm

    from echopulse.batch.run import run_batch

    settings = batch_settings(args)
    beam_args = [*options_from_files(args.beam_options), *args.beam_args]
    beam_args += [f"--runner={args.runner}"] if args.runner else []

    def on_retry(attempt: int, why: str) -> None:
        tqdm.write(f"echopulse: warning: the job failed ({why}); running it again (attempt {attempt} of "
                   f"{args.attempts}): outputs are fixed by the inputs, so nothing is lost or doubled",
                   file=sys.stderr)

    started = time.monotonic()
    with _elapsed(f"batch: {len(settings.inputs)} input(s) → {settings.output}"):
        report = run_batch(settings, beam_args, workers=args.workers, attempts=args.attempts,
                           on_retry=on_retry)
    took = time.monotonic() - started
    counts = report.counters
    clips = f", {counted(counts['clips'], 'clip')}" if settings.clips is not None else ""
    again = f" (attempt {report.attempts})" if report.attempts > 1 else ""
    print(
        f"{counted(counts['records'], 'record')} ({counts['duplicates']} duplicates), "
        f"{counted(counts['beats'], 'beat')}, {counted(counts['windows'], 'window')}{clips}, "
        f"{counted(counts['refusals'], 'beat')} without a clip, {counted(counts['errors'], 'error')}; "
        f"{counted(counts['inputs'], 'file')} read in {took:.1f} s on {report.runner}{again} "
        f"-> {settings.output}"
    )
    if counts["errors"]:
        status(f"errors: {settings.output.rstrip('/')}/errors.jsonl")
    return EXIT_REFUSED if counts["errors"] else EXIT_OK


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def options_from_files(paths: list[str]) -> list[str]:
    """The options in each --beam-options file: one per line, blank lines and `#` comments skipped."""
    from echopulse.batch.run import BatchError

    options = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as file:
                text = file.read()
        except OSError as error:
            raise BatchError(f"--beam-options {path}: {error.strerror or error}") from None
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not line.startswith("--"):
                raise BatchError(f"--beam-options {path}: line {number} is not an --option: {line[:60]!r}")
            options.append(line)
    return options


def batch_settings(args: argparse.Namespace):
    """Options → `BatchSettings`; with --generate the model is loaded here once, to refuse a bad one early
    and to resolve the settings every worker uses."""
    from echopulse.batch.elements import ModelChoice
    from echopulse.batch.pipeline import BatchSettings, ClipSettings
    from echopulse.batch.run import BatchError

    output = args.output if "://" in args.output else os.path.abspath(args.output)
    if "://" not in output and os.path.exists(output) and not os.path.isdir(output):
        raise BatchError(f"--output {args.output}: exists and is not a folder")
    layout = args.layout or "stmem"
    clip_settings = None
    summary: dict[str, Any] = {}
    if args.generate:
        from echopulse.generator.model_files import load_generator
        from echopulse.video.clip_files import default_scale
        from echopulse.video.generate_outputs import model_facts

        status("loading the model …")
        generator = load_generator(args.model, args.device, args.precision)
        if args.layout and args.layout != generator.window_layout:
            raise BatchError(f"--layout {args.layout}: the model reads {generator.window_layout} windows")
        layout = generator.window_layout
        steps, guidance = generator.sampling_settings(args.steps, args.guidance)
        threads = args.torch_threads or max(1, (os.cpu_count() or 1) // args.workers)
        choice = ModelChoice(tuple(args.model or ()), args.device, generator.precision, steps, guidance,
                             threads)
        scale = args.scale or default_scale(generator.config.tokenizer.image_size)
        clip_settings = ClipSettings(choice, args.seed, args.min_batch, max(args.min_batch, args.max_batch),
                                     scale, not args.no_mark)
        summary["clips"] = {
            "model": model_facts(generator), "steps": steps, "guidance": float(guidance),
            "precision": generator.precision, "seed": args.seed,
            "seeds": "record seed = (first 8 hex digits of its key as a number + seed) mod 2^31; beat b uses "
            "record seed + b (the manifest gives each record's)",
            "format": "mp4", "scale": scale, "mark": not args.no_mark, "synthetic": True,
        }
    return BatchSettings(
        inputs=tuple(args.inputs), output=output, fs=args.fs, method=args.method, layout=layout,
        read_timeout_s=args.read_timeout, clips=clip_settings, summary=summary,
    )


class _elapsed:
    """A line that counts the seconds while Beam runs (on a terminal), since Beam reports nothing itself
    until the end."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.done = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> _elapsed:
        if sys.stderr.isatty():
            self.thread = threading.Thread(target=self._tick, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        if self.thread is not None:
            self.thread.join()
            sys.stderr.write("\r\033[K")

    def _tick(self) -> None:
        start = time.monotonic()
        while not self.done.wait(1.0):
            sys.stderr.write(f"\r{self.text} … {time.monotonic() - start:.0f} s")
            sys.stderr.flush()

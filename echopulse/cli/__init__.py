"""The `echopulse` command: one module per sub-command, each adding its parser and the function it runs.

Exit codes: 0 all inputs done; 2 something was refused (one line on stderr per refused input, the others
still complete; a bad option or `--out` before any work); 130 interrupted (Ctrl-C); 1 an internal error.
No traceback ever reaches the terminal. Building the parser imports neither torch nor the model.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from echopulse.cli import (
    batch,
    convert,
    demo,
    evaluate,
    generate,
    info,
    ingest,
    phantom,
    record,
    serve,
    stream,
    train,
)
from echopulse.cli.common import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_REFUSED, fail
from echopulse.errors import EchopulseError
from echopulse.version import __version__

COMMANDS = (info, ingest, generate, demo, batch, serve, stream, record, evaluate, phantom, train, convert)
"""In the order `--help` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="echopulse",
        description="Wearable ECG in, synthetic echocardiogram clips out, one per heartbeat. "
        "Reads Apple Watch CSV and PDF exports (alone or in the Health app's export.zip), ECG strip images, "
        "WFDB, EDF/BDF, CSV, NumPy and ST-MEM/ECHOPulse array pickles.",
    )
    parser.add_argument("--version", action="version", version=f"echopulse {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_beam_options", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.beam_args = extra
    try:
        return args.func(args)
    except EchopulseError as error:
        fail(str(error))
        return EXIT_REFUSED
    except KeyboardInterrupt:
        fail("interrupted")
        return EXIT_INTERRUPTED
    except OSError as error:  # the machine refused (a full disk, a folder that vanished): not our bug
        where = f"{error.filename}: " if error.filename else ""
        fail(f"{where}{error.strerror or error}")
        return EXIT_REFUSED
    except Exception as error:  # a bug of ours: one line, not a traceback
        fail(f"internal error ({type(error).__name__}: {error}); please report it")
        return EXIT_INTERNAL

"""`echopulse eval`: do the clips a model generates follow their ECG? (held-out phantom, measured)

Building its parser imports no torch; the evaluation itself lives in `echopulse.evaluation`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_N = 200
DEFAULT_SEED = 900_000


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "eval",
        help="evaluate a generator on held-out phantom beats: do its clips follow their ECG?",
        description="Generate one clip per held-out phantom ECG, measure its EF, ED and ES frames without "
        "learned weights and compare them with the phantom's labels; the same with the ECGs shuffled across "
        "beats (EF R² must collapse) and with guidance 1; the tokenizer's reconstruction error on phantom "
        "and real echo. Beside the model, the same measurement scores the beats' own clips and the phantom "
        "as an ideal generator (another heart for each ECG): the best a generator that samples can do. "
        "Four clips per beat give the EF of their mean (r, R²), and the beats chained as `generate --video` "
        "chains them (each clip primed with the last frame of the one before) show what priming does to EF. "
        "Writes eval.json, per_sample.csv and PNG plots into --out.",
    )
    parser.add_argument("--n", type=int, default=DEFAULT_N, help=f"held-out beats (default {DEFAULT_N})")
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"first phantom seed; beats use seed … seed+n-1, clip i seed+i (default {DEFAULT_SEED})",
    )
    parser.add_argument(
        "--model", default=None, metavar="DIR", help="model folder (default: the bundled model)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=16, help="clips per batch (default 16)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, …")
    parser.add_argument(
        "--real-echo",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder of ECHOPulse Visualization GIFs for the real-echo tokenizer numbers "
        "(default ../shared/data/echopulse beside the source tree)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """The `eval` command; `EchopulseError`s propagate (the CLI prints them as one line)."""
    from echopulse.evaluation.heldout import EvalError, check_count

    check_count(args.n, args.seed)  # before torch and the model: a bad argument is one quick line
    if args.batch_size < 1:
        raise EvalError(f"eval: --batch-size must be a positive integer, got {args.batch_size!r}")
    if args.steps is not None and args.steps < 1:
        raise EvalError(f"eval: --steps must be a positive integer, got {args.steps!r}")

    from echopulse.evaluation.pipeline import evaluate
    from echopulse.evaluation.tokenizer_eval import DEFAULT_REAL_ECHO_DIR
    from echopulse.generator.device import resolve_device
    from echopulse.generator.echo_generator import EchoGenerator

    device = resolve_device(args.device)
    generator = EchoGenerator.from_pretrained(args.model, device=device)
    report = evaluate(
        generator,
        args.out,
        n=args.n,
        seed=args.seed,
        steps=args.steps,
        batch_size=args.batch_size,
        real_echo_dir=args.real_echo or DEFAULT_REAL_ECHO_DIR,
        progress=not args.no_progress,
    )
    print(
        f"eval: {report['n']} held-out beats, model {report['model']['id']}: EF MAE {_f(report['ef_mae'])}, "
        f"R² {_f(report['ef_r2'])} (shuffled ECG {_f(report['ef_r2_shuffled'])}; the phantom as an ideal "
        f"generator: MAE {_f(report['ef_mae_ideal_generator'])}, R² {_f(report['ef_r2_ideal_generator'])}); "
        f"mean of 4 clips r {_f(report['ef_r_mean4'])} (ideal {_f(report['ef_r_mean4_ideal_generator'])}); "
        f"primed − unprimed EF {_f(report['ef_primed_minus_unprimed'])}; "
        f"{report['measure_failures']} refused -> {args.out / 'eval.json'}"
    )
    return 0


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"

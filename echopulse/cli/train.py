"""`echopulse train tokenizer|generator`: the argument parser and the runner the main CLI wires in.

    echopulse train tokenizer --config small --data phantom/ --out runs/tok --steps 20000
    echopulse train ecg --config small --out runs/ecg --steps 3000
    echopulse train generator --config small --data phantom/ --tokenizer runs/tok --out runs/gen \
        --stmem runs/ecg --freeze-stmem

Both write into --out: `config.json` + `model.safetensors` (EMA weights, loadable with
`echopulse.generator.checkpoints.load_checkpoint`), `train_state.pt` (raw weights, optimizer, step: what
--resume reads), `train_log.jsonl` (one line per step) and `samples/step-NNNNNNN.{png,gif}`.
Every refusal is an `EchopulseError` with one line naming the folder or option.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from echopulse.generator.training.settings import TrainSettings

DEFAULTS = {
    "tokenizer": TrainSettings(lr=3e-4),
    "generator": TrainSettings(lr=1e-4, grad_clip=1.0),
    "ecg": TrainSettings(lr=1e-3, batch_size=32, grad_clip=1.0, ema_beta=0.99),
}


def add_parser(commands: Any) -> None:
    """`train` with its `tokenizer`, `ecg` and `generator` stages."""
    train = commands.add_parser(
        "train",
        help="train the video tokenizer, then the ECG-conditioned generator, on phantom shards or clips",
        description="Stage 1 (tokenizer) learns to turn clips into token ids and back; stage 2 (generator) "
        "learns to predict a clip's ids from its beat's ECG window, with the ST-MEM encoder. --data is a "
        "folder of phantom shards (echopulse phantom) or of .gif/.mp4 clips each with an ECG file of the "
        "same name stem. Writes a checkpoint, train_state.pt (for --resume), train_log.jsonl and sample "
        "grids into --out.",
    )
    stages = train.add_subparsers(dest="stage", required=True, metavar="STAGE")
    tokenizer = stages.add_parser(
        "tokenizer",
        help="train the video tokenizer (10·MSE + L1 + SSIM + VQ commitment, EMA codebook)",
        description="Train the C-ViViT video tokenizer. The checkpoint holds the EMA weights (part "
        "'tokenizer'); the sample grids show input and reconstruction rows.",
    )
    _common(tokenizer, "tokenizer")
    tokenizer.add_argument(
        "--init",
        type=Path,
        metavar="DIR",
        help="start from this tokenizer checkpoint's weights (fresh optimizer and schedule), to train on",
    )
    tokenizer.add_argument(
        "--decoder-only",
        action="store_true",
        help="with --init: train the decoder alone; every clip keeps its token ids, so a generator trained "
        "on the --init tokenizer's ids stays valid",
    )
    ecg = stages.add_parser(
        "ecg",
        help="train the ST-MEM encoder to read a beat's EF and timing from fresh phantom ECGs (stage 0)",
        description="Train the ST-MEM encoder of --config to regress what the phantom's ECG decides (EF, "
        "the systolic timing, heart rate, QRS width and voltage, ST deviation) from ECGs simulated afresh "
        "every step. The checkpoint holds the encoder (part 'stmem'), for `train generator --stmem DIR "
        "--freeze-stmem`; each save logs the held-out R² of every target.",
    )
    _common(ecg, "ecg", data=False)
    ecg.add_argument(
        "--leads",
        default="I",
        help="ECG leads the encoder sees: 'I' (default, a watch), 'all', a list such as 'I,II', or 'random'",
    )
    generator = stages.add_parser(
        "generator",
        help="train the masked-token transformer and the ST-MEM encoder on a trained tokenizer's ids",
        description="Train the masked-token transformer (MaskGIT objective, condition dropout for guidance) "
        "jointly with the ST-MEM ECG encoder; the tokenizer is frozen. The checkpoint holds all three parts; "
        "the sample grids show, per held-out ECG, the real clip and the generated one.",
    )
    _common(generator, "generator")
    generator.add_argument(
        "--tokenizer",
        type=Path,
        required=True,
        metavar="DIR",
        help="checkpoint folder of a trained tokenizer (echopulse train tokenizer --out)",
    )
    generator.add_argument(
        "--stmem",
        type=Path,
        metavar="DIR",
        help="start the ST-MEM encoder from this checkpoint folder's 'stmem' part",
    )
    generator.add_argument(
        "--freeze-stmem",
        action="store_true",
        help="keep the ST-MEM encoder fixed (with --stmem: as given; else as initialised)",
    )
    generator.add_argument(
        "--leads",
        default="I",
        help="ECG leads the generator sees, the other slots zeroed: 'I' (default, a watch), 'all', "
        "a list such as 'I,II,V2', or 'random' (a random non-empty subset per sample and step)",
    )
    generator.add_argument(
        "--init",
        type=Path,
        metavar="DIR",
        help="start the transformer from this generator checkpoint's (fine-tuning; use its config.json as "
        "--config)",
    )
    generator.add_argument(
        "--prime-prob",
        type=float,
        default=0.0,
        help="share of samples trained with their first frame given, as `generate --video` primes each "
        "clip with the last frame of the one before (default 0)",
    )
    generator.add_argument(
        "--holdout",
        type=int,
        default=DEFAULTS["generator"].holdout,
        help="samples kept out of training for the sample grids (default 4, at most a fifth)",
    )
    train.set_defaults(func=run)


def _common(parser: argparse.ArgumentParser, stage: str, data: bool = True) -> None:
    d = DEFAULTS[stage]
    parser.add_argument(
        "--config",
        default="small",
        help="small, cycle, paper or a config JSON file (as in a checkpoint's config.json; default small)",
    )
    if data:
        parser.add_argument("--data", type=Path, required=True, metavar="DIR", help="training data folder")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--steps", type=int, default=d.steps, help=f"total optimizer steps (default {d.steps})"
    )
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr:g})")
    parser.add_argument(
        "--warmup",
        type=int,
        default=d.warmup_steps,
        help=f"linear warm-up steps, at most a tenth of --steps (default {d.warmup_steps})",
    )
    parser.add_argument(
        "--grad-clip",
        type=float,
        default=d.grad_clip,
        help=f"gradient norm limit, 0 for none (default {d.grad_clip:g})",
    )
    parser.add_argument(
        "--ema-beta", type=float, default=d.ema_beta, help=f"EMA decay (default {d.ema_beta:g})"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation and batches (default 0)")
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="DIR",
        help="continue the run whose train_state.pt is in DIR (use the same --steps)",
    )
    parser.add_argument(
        "--until",
        type=int,
        metavar="N",
        help="stop (and save) after step N, for time-limited jobs; the schedule still spans --steps",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (bf16 autocast on cuda; default cpu)")
    parser.add_argument(
        "--sample-every",
        type=int,
        default=d.sample_every,
        help=f"write a sample grid every N steps and at the end (default {d.sample_every})",
    )
    parser.add_argument(
        "--save-every",
        type=int,
        default=d.save_every,
        help=f"save checkpoint and train state every N steps and at the end (default {d.save_every})",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run `echopulse train ...`; returns 0. Raises EchopulseError (one line) when it cannot."""
    from echopulse.generator.training.common import resolve_config
    from echopulse.generator.training.data import open_dataset, parse_leads

    settings = TrainSettings(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup,
        grad_clip=args.grad_clip,
        ema_beta=args.ema_beta,
        seed=args.seed,
        device=args.device,
        sample_every=args.sample_every,
        save_every=args.save_every,
        leads=getattr(args, "leads", "I"),
        holdout=getattr(args, "holdout", 0),
        progress=not args.no_progress,
        until=args.until,
    )
    settings.check()
    config = resolve_config(args.config)
    if args.stage == "ecg":
        from echopulse.generator.training.ecg_trainer import train_ecg_encoder

        parse_leads(settings.leads)
        result = train_ecg_encoder(config, args.out, settings, resume=args.resume)
        return _report(args.stage, result)
    if args.stage == "generator":
        parse_leads(settings.leads)  # a bad --leads is refused before any data is read
    data = open_dataset(args.data)
    if args.stage == "tokenizer":
        from echopulse.generator.training.tokenizer_trainer import train_tokenizer

        result = train_tokenizer(
            config, data, args.out, settings, resume=args.resume, init=args.init,
            decoder_only=args.decoder_only,
        )  # fmt: skip
    else:
        from echopulse.generator.training.generator_trainer import train_generator

        result = train_generator(
            config,
            data,
            args.tokenizer,
            args.out,
            settings,
            resume=args.resume,
            stmem_dir=args.stmem,
            freeze_stmem=args.freeze_stmem,
            init=args.init,
            prime_prob=args.prime_prob,
        )
    return _report(args.stage, result)


def _report(stage: str, result: Any) -> int:
    losses = "" if result.first_loss is None else f", loss {result.first_loss:.4f} -> {result.last_loss:.4f}"
    print(f"train {stage}: {result.steps} steps{losses} -> {result.out} (config.json, model.safetensors)")
    return 0

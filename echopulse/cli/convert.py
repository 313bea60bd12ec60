"""`echopulse convert-official`: the released ECHOPulse / ST-MEM weights into an echopulse model folder.

Building its parser imports no torch; the conversion itself lives in the generator package.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from echopulse.errors import ModelError


def add_parser(commands: Any) -> None:
    convert = commands.add_parser(
        "convert-official",
        help="convert the released ECHOPulse / ST-MEM weights into an echopulse model directory",
        description="Read the released weights (only as weights: a file holding any other pickled object is "
        "refused, never run) and write config.json and model.safetensors into --out. The stage-2 file holds "
        "all three networks; --tokenizer and --stmem give them from their own files, and the stage-2 file "
        "overrides those when both are given, as the official code does.",
    )
    convert.add_argument(
        "--tokenizer", type=Path, metavar="FILE",
        help="C-ViViT video tokenizer weights (CVIVIT_pytorch_model_finetune.bin)",
    )
    convert.add_argument(
        "--stage2", type=Path, metavar="FILE",
        help="stage-2 generator checkpoint (model-*.pt): tokenizer, transformer and ECG encoder",
    )
    convert.add_argument(
        "--stmem", type=Path, metavar="FILE", help="ST-MEM ECG encoder weights (st_mem_vit_base.pth)"
    )
    convert.add_argument("--out", type=Path, required=True, help="output model folder")
    convert.add_argument(
        "--config", default="paper", metavar="CONFIG",
        help="architecture the weights must fit: 'paper' (default, the released shapes), 'small', or the "
        "path of a config.json",
    )
    convert.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """The `convert-official` command; `ModelError` propagates (the CLI prints it as one line)."""
    from echopulse.generator.checkpoints import read_config
    from echopulse.generator.config import CONFIGS
    from echopulse.generator.official import convert_official
    from echopulse.generator.parts import PARTS

    if args.tokenizer is None and args.stage2 is None and args.stmem is None:
        raise ModelError("convert-official: no input; pass at least one of --tokenizer, --stage2, --stmem")
    config_arg = str(getattr(args, "config", None) or "paper")
    config = CONFIGS[config_arg]() if config_arg in CONFIGS else read_config(Path(config_arg))
    out = convert_official(args.out, tokenizer=args.tokenizer, stage2=args.stage2, stmem=args.stmem,
                           config=config)
    print(f"convert-official: {', '.join(PARTS)} (config {config.name}, hash {config.hash}) -> {out}")
    return 0

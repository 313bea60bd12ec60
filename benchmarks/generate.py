"""Speed of the bundled default model on this machine, and of the whole `echopulse generate` run.

    python benchmarks/generate.py [--model DIR] [--baseline DIR] [--steps N] [--device cpu] [--repeats 3]

Prints one JSON object:
- `clip_batch1_s`: seconds per clip at batch 1 (best of `--repeats` runs, the model's own sampling steps
  unless `--steps` is given, the model's guidance and guidance interval, `guidance_steps`, the generator's
  default `precision`: bf16 on a CPU that does bf16 natively, else float32);
- `batch16_clips_per_s`: clips per second at batch 16;
- `guidance1_*`: the same without the null-context pass, for scale; `fp32_*`: the same in float32 (the
  baseline, measured in the same run; equal to the default on a CPU without native bf16);
- `baseline` (with `--baseline DIR`): another model (the previous bundled one) timed the same way in the
  same run at its own settings, and this model's speed as a ratio of it (`batch16_speedup`,
  `batch1_speedup`): the machine is noisy, ratios from one run are what to compare;
- `generate_cli_s`: `echopulse generate` end to end on a real 30-s Apple Watch CSV (read, beats, windows,
  every clip, MP4 + GIF per beat, contact sheet, manifest), with the beat count, so the per-beat cost is
  there too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from echopulse.cli import main as cli_main
from echopulse.generator.echo_generator import EchoGenerator

ROOT = Path(__file__).resolve().parents[1]
WATCH_CSV = ROOT.parent / "shared" / "data" / "apple_watch" / "ecg_2021-12-17.csv"


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    parser.add_argument("--baseline", default=None, help="a model folder to time in the same run")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's own)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--csv", type=Path, default=WATCH_CSV)
    args = parser.parse_args()

    generator = EchoGenerator.from_pretrained(args.model, device=args.device)
    rng = np.random.default_rng(0)
    windows = rng.standard_normal((16, 12, 2250)).astype(np.float32)
    windows[:, 1:] = 0  # lead I only, as a watch gives
    guidance = generator.config.sampling.guidance
    generator.generate(windows[:2], steps=args.steps, seed=0)  # warm-up
    steps = generator.sampling_settings(args.steps)[0]

    def run(batch: int, g: float | None, model: EchoGenerator = generator, n: int | None = steps) -> float:
        return best_of(args.repeats, lambda: model.generate(
            windows[:batch], steps=n, guidance=g, seed=0, batch_size=batch))

    batch1 = run(1, guidance)
    batch16 = run(16, guidance)
    g1_batch1 = run(1, 1.0)
    g1_batch16 = run(16, 1.0)
    precision = generator.precision
    fp32 = generator.with_precision("fp32")  # the same weights: the baseline of the same run
    fp32_batch1 = run(1, guidance, fp32)
    fp32_batch16 = run(16, guidance, fp32)
    baseline = None
    if args.baseline:
        other = EchoGenerator.from_pretrained(args.baseline, device=args.device)
        other.generate(windows[:2], seed=0)  # warm-up
        other_batch1, other_batch16 = run(1, None, other, None), run(16, None, other, None)
        other_steps, other_guidance = other.sampling_settings()
        baseline = {"model": args.baseline, "config_hash": other.config.hash, "steps": other_steps,
                    "guidance": other_guidance, "precision": other.precision,
                    "clip_batch1_s": round(other_batch1, 4),
                    "batch16_clips_per_s": round(16 / other_batch16, 2),
                    "batch1_speedup": round(other_batch1 / batch1, 2),
                    "batch16_speedup": round(other_batch16 / batch16, 2)}

    with tempfile.TemporaryDirectory() as out:
        argv = ["generate", str(args.csv), "--out", out, "--steps", str(steps), "--device", args.device]
        if args.model:
            argv += ["--model", args.model]
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # stdout is the JSON alone
            code = cli_main(argv)
        cli_s = time.perf_counter() - start
        manifest = json.loads((Path(out) / "manifest.json").read_text()) if code == 0 else {}
    beats = int(manifest.get("clips", 0))

    print(json.dumps({
        "benchmark": "generate",
        "model": generator.model_id,
        "config_hash": generator.config.hash,
        "steps": steps,
        "guidance": guidance,
        "guidance_steps": generator.config.sampling.guidance_steps,
        "device": args.device,
        "precision": precision,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "clip_batch1_s": round(batch1, 4),
        "batch16_clips_per_s": round(16 / batch16, 2),
        "guidance1_clip_batch1_s": round(g1_batch1, 4),
        "guidance1_batch16_clips_per_s": round(16 / g1_batch16, 2),
        "fp32_clip_batch1_s": round(fp32_batch1, 4),
        "fp32_batch16_clips_per_s": round(16 / fp32_batch16, 2),
        "batch16_speedup_over_fp32": round(fp32_batch16 / batch16, 2),
        "baseline": baseline,
        "generate_cli": {"input": args.csv.name, "exit_code": code, "seconds": round(cli_s, 2),
                         "beats_with_clips": beats,
                         "seconds_per_beat": round(cli_s / beats, 3) if beats else None},
    }, indent=2))


if __name__ == "__main__":
    main()

"""The bundled model's sampling settings, scored on the development seeds only (800000 onwards).

For each (starting temperature, guidance, cycle temperature) setting: clips for `--n` development beats
with `--clips` clip seeds each, measured as `echopulse eval` measures them (EF, ES frame). Prints JSON: per
setting the single-clip EF MAE, R², r and spread (SD of the measured EF beside the truth's), the EF of the
mean of the clips (r, R²), ES within a frame, the ECG-shuffled control's R², and the seconds it took. The
held-out seeds (900000…) that `echopulse eval` reports on are never used here, so a setting chosen from
this table is not fitted to the figures it is judged by.

    python benchmarks/sampling.py [--n 100] [--clips 4] [--temperatures 0.9 0.6 0.3] [--guidance 2 3]
        [--cycle-temperatures 0 0.5 1] [--model DIR]

The cycle temperature applies to a model with a cycle tokenizer only (the spread of its volume curve around
the ECG's mean); for others it is left out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np
import torch

from echopulse.evaluation.generation_eval import (
    GeneratorClips,
    evaluate_generation,
    mean_clip_agreement,
    repeat_runs,
)
from echopulse.evaluation.heldout import eval_leads, heldout_set
from echopulse.generator.echo_generator import EchoGenerator

DEV_SEED = 800_000


def with_sampling(generator: EchoGenerator, temperature: float, cycle_temperature: float | None) -> None:
    config = generator.config
    sampling = dataclasses.replace(config.sampling, starting_temperature=temperature)
    if cycle_temperature is not None:
        sampling = dataclasses.replace(sampling, cycle_temperature=cycle_temperature)
    generator.config = dataclasses.replace(config, sampling=sampling)


def score(
    generator, samples, temperature: float, guidance: float, cycle_temperature: float | None, clips: int,
    seed: int,
) -> dict:
    with_sampling(generator, temperature, cycle_temperature)
    start = time.perf_counter()
    source = GeneratorClips(generator, None, 16)
    runs = evaluate_generation(samples, source, seed, guidance, runs=("default", "shuffled"))
    draws = [runs.runs["default"], *repeat_runs(samples, source, seed, guidance, clips)]
    one = runs.metrics["default"]
    mean = mean_clip_agreement(samples, draws)
    spread = [float(np.nanstd(run.ef)) for run in draws]
    return {
        "starting_temperature": temperature,
        "guidance": guidance,
        **({} if cycle_temperature is None else {"cycle_temperature": cycle_temperature}),
        "ef_mae": _r(one["ef_mae"]),
        "ef_r2": _r(one["ef_r2"]),
        "ef_r": _r(one["ef_r"]),
        "ef_sd": _r(float(np.mean(spread))),
        f"ef_r_mean{clips}": _r(mean["ef_r"]),
        f"ef_r2_mean{clips}": _r(mean["ef_r2"]),
        "es_frame_within_1": _r(one["es_frame_within_1"]),
        "ef_r2_shuffled": _r(runs.metrics["shuffled"]["ef_r2"]),
        "measure_failures": sum(run.failures for run in draws),
        "seconds": round(time.perf_counter() - start, 1),
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="development beats")
    parser.add_argument("--clips", type=int, default=4, help="clip seeds per beat")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.9, 0.6, 0.3])
    parser.add_argument("--guidance", type=float, nargs="+", default=[2.0, 3.0])
    parser.add_argument("--cycle-temperatures", type=float, nargs="+", default=None,
                        help="a cycle tokenizer's cycle temperatures (default: the model's own)")
    parser.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    parser.add_argument("--seed", type=int, default=DEV_SEED)
    args = parser.parse_args()
    if args.seed >= 900_000:
        parser.error("--seed: the held-out seeds (900000 onwards) are for `echopulse eval` only")
    torch.manual_seed(0)
    generator = EchoGenerator.from_pretrained(args.model)
    config, tok = generator.config, generator.config.tokenizer
    keep, _, _ = eval_leads(generator.metadata.get("leads", "I"))
    samples = heldout_set(args.n, args.seed, tok.image_size, tok.num_frames, keep, config.stmem.window_layout)
    truth = np.array([s.ef for s in samples])
    shipped = dataclasses.asdict(config.sampling)
    cycle_temperatures = [None]
    if config.tokenizer.cycle_dim:
        cycle_temperatures = args.cycle_temperatures or [config.sampling.cycle_temperature]
    settings = [score(generator, samples, t, g, c, args.clips, args.seed)
                for t in args.temperatures for g in args.guidance for c in cycle_temperatures]
    json.dump({"model": generator.model_id, "precision": generator.precision, "shipped": shipped,
               "dev_seed": args.seed, "n": args.n, "clips_per_beat": args.clips,
               "ef_true_sd": round(float(truth.std()), 3), "settings": settings}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()

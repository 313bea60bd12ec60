"""What the EF targets allow: `echopulse eval`'s EF scores for generators no model of the ECG can beat.

    python benchmarks/ef_ceiling.py [--n 200] [--seed 900000] [--draws 4] [--size 64] [--frames 11]

Each "generator" makes one clip per held-out beat (the eval's set: seeds seed … seed+n−1, one-cycle
clips), measured exactly as the eval measures the model's clips (`measure_run`: bicubic to 128 px,
`measure_clip`, the beat's RR):

- `own_clips`: the beat's own clip, an oracle that knows what no ECG says: the measurement's error alone;
- `ideal_generator`: the phantom drawing another heart for the beat's ECG (`make_phantom(heart_draw=k)`),
  what a generator that had learnt the phantom's distribution exactly would make. Its EF differs from the
  label by the coupling rule's random part twice (the label's draw and its own);
- `ecg_mean_generator`: another heart whose EF is exactly the one the ECG decides (`ef_noise_sd=0`), as
  a generator would make that read the ECG perfectly and always drew the most likely EF;
- `rule_without_clip`: the rule's ECG part against the labels, no clip and no measurement.

Prints JSON: per generator the mean, min and max over `--draws` draws of EF MAE, RMSE and R², and the
share of beats with ES within one frame.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from echopulse.echo.ecg_phantom import simulate_ecg
from echopulse.echo.heart_cycle import EF_NOISE_SD, EF_RANGE, ecg_ef
from echopulse.echo.phantom import seed_stream
from echopulse.evaluation.generation_eval import TrueClips, ideal_generator_runs, measure_run, run_metrics
from echopulse.evaluation.heldout import heldout_set
from echopulse.generator.training.scores import mae, r2, rmse

KEYS = ("ef_mae", "ef_rmse", "ef_r2", "es_frame_within_1")


def summary(metrics: list[dict]) -> dict:
    out: dict = {"draws": len(metrics)}
    for key in KEYS:
        values = np.array([m[key] for m in metrics if m[key] is not None], dtype=float)
        out[key] = {"mean": float(values.mean()), "min": float(values.min()), "max": float(values.max())}
    return out


def rule_ef(seed: int) -> float:
    """The EF the seed's ECG decides."""
    return float(np.clip(ecg_ef(simulate_ecg(seed_stream(seed)).morphology), *EF_RANGE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=900_000)
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=11)
    args = parser.parse_args()

    samples = heldout_set(args.n, args.seed, args.size, args.frames, ("I",), "mv")
    true_ef = np.array([s.ef for s in samples])

    def scores(runs) -> dict:
        return summary([run_metrics(samples, run) for run in runs])

    own = measure_run("own_clips", samples, TrueClips()(samples, None, args.seed), np.arange(args.n), None)
    generators = {
        "own_clips": scores([own]),
        "ideal_generator": scores(ideal_generator_runs(samples, args.size, args.frames, args.draws)),
        "ecg_mean_generator": scores(
            ideal_generator_runs(samples, args.size, args.frames, args.draws, ef_noise_sd=0.0)
        ),
    }
    rule = np.array([rule_ef(s.seed) for s in samples])
    generators["rule_without_clip"] = {"ef_mae": mae(true_ef, rule), "ef_rmse": rmse(true_ef, rule),
                                       "ef_r2": r2(true_ef, rule)}  # fmt: skip
    print(json.dumps({
        "benchmark": "ef_ceiling", "n": args.n, "seed": args.seed, "size": args.size, "frames": args.frames,
        "ef_noise_sd": EF_NOISE_SD, "ef_true_std": float(true_ef.std()), "generators": generators,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()

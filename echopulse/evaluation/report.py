"""`eval.json` (flat keys, only ever added to) and `per_sample.csv`."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from echopulse.evaluation.generation_eval import GenerationEval
from echopulse.evaluation.heldout import HeldoutSample

REQUIRED_KEYS = (
    "tokenizer_mse",
    "tokenizer_mae",
    "tokenizer_ssim",
    "real_echo_tokenizer_mse",
    "real_echo_tokenizer_ssim",
    "ef_mae",
    "ef_rmse",
    "ef_r2",
    "ef_r2_shuffled",
    "ef_mae_shuffled",
    "ef_r2_guidance1",
    "ef_mae_guidance1",
    "es_frame_within_1",
    "ed_frame_within_1",
    "hr_mae",
    "n",
    "measure_failures",
    "seed",
    "steps",
    "guidance",
    "model",
    "leads",
    "seconds",
)
CSV_COLUMNS = (
    "seed",
    "ef_true",
    "ef_default",
    "ef_shuffled",
    "ef_guidance1",
    "shuffled_ecg_seed",
    "ed_true",
    "ed_default",
    "es_true",
    "es_default",
    "hr_true",
    "rr_s",
)


def generation_keys(result: GenerationEval) -> dict[str, Any]:
    """The flat generation keys: the default run unsuffixed, the controls with `_shuffled`/`_guidance1`."""
    out: dict[str, Any] = {}
    for name, metrics in result.metrics.items():
        suffix = "" if name == "default" else f"_{name}"
        for key, value in metrics.items():
            if key == "measured":
                key = "n_measured"
            out[f"{key}{suffix}"] = value
    return out


def clean(value: Any) -> Any:
    """JSON-safe: NaN/inf → None, numpy scalars → Python."""
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_eval_json(out_dir: Path, report: Mapping[str, Any]) -> Path:
    missing = [key for key in REQUIRED_KEYS if key not in report]
    if missing:
        raise ValueError(f"eval report lacks {missing}")
    path = Path(out_dir) / "eval.json"
    path.write_text(json.dumps(clean(dict(report)), indent=2) + "\n")
    return path


def write_per_sample_csv(out_dir: Path, samples: Sequence[HeldoutSample], result: GenerationEval) -> Path:
    path = Path(out_dir) / "per_sample.csv"
    runs = result.runs

    def ef(name: str, i: int) -> str:
        run = runs.get(name)
        return "" if run is None or not np.isfinite(run.ef[i]) else f"{run.ef[i]:.3f}"

    default = runs["default"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for i, s in enumerate(samples):
            measured = bool(np.isfinite(default.ef[i]))
            writer.writerow(
                [
                    s.seed,
                    f"{s.ef:.3f}",
                    ef("default", i),
                    ef("shuffled", i),
                    ef("guidance1", i),
                    samples[int(result.permutation[i])].seed,
                    s.ed_frame,
                    int(default.ed_frame[i]) if measured else "",
                    s.es_frame,
                    int(default.es_frame[i]) if measured else "",
                    f"{s.hr_bpm:.3f}",
                    f"{s.rr_s:.4f}",
                ]
            )
    return path

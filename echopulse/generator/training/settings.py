"""The options of one training run (no torch import, so the CLI parser stays cheap to build)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

from echopulse.generator.training.errors import TrainingError


@dataclass
class TrainSettings:
    """Options of one run. `warmup_steps` is capped at a tenth of `steps` so short runs reach `lr`."""

    steps: int = 1000
    batch_size: int = 8
    lr: float = 3e-4
    min_lr: float = 1e-5
    warmup_steps: int = 100
    grad_clip: float = 0.5  # 0 or less: no clipping
    beta1: float = 0.9
    beta2: float = 0.99
    ema_beta: float = 0.999
    seed: int = 0
    device: str = "cpu"
    sample_every: int = 500
    save_every: int = 1000
    leads: str = "I"
    holdout: int = 4  # generator: held-out ECGs for the sample grids (at most a fifth of the data)
    progress: bool = True
    until: int | None = None  # stop after this step (the schedule still spans `steps`); resume later

    @property
    def end_step(self) -> int:
        return self.steps if self.until is None else min(self.until, self.steps)

    def check(self) -> None:
        positive = {
            "--steps": self.steps,
            "--batch-size": self.batch_size,
            "--sample-every": self.sample_every,
            "--save-every": self.save_every,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise TrainingError(f"{name} must be a positive integer, got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise TrainingError(f"--lr must be a positive number, got {self.lr!r}")
        if self.until is not None and (not isinstance(self.until, int) or self.until < 1):
            raise TrainingError(f"--until must be a positive integer, got {self.until!r}")
        if self.warmup_steps < 0 or self.holdout < 0 or self.seed < 0:
            raise TrainingError("--warmup, --holdout and --seed must not be negative")
        if not 0 <= self.ema_beta < 1:
            raise TrainingError(f"--ema-beta must be in [0, 1), got {self.ema_beta!r}")

    @property
    def effective_warmup(self) -> int:
        return min(self.warmup_steps, self.steps // 10)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

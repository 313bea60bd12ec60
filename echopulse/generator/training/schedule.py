"""Learning rate: linear warm-up from a fraction of the base rate, then cosine decay to a floor.

The official tokenizer trainer uses LinearLR(start_factor 0.1, 100 iterations) then CosineAnnealingLR
down to 1e-5; `WarmupCosine` is that schedule as a pure function of the step (no scheduler state to save:
a resumed run recomputes it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class WarmupCosine:
    base_lr: float
    total_steps: int
    warmup_steps: int = 100
    min_lr: float = 1e-5
    start_factor: float = 0.1

    def __call__(self, step: int) -> float:
        """Learning rate of step `step` (0-based)."""
        if self.warmup_steps > 0 and step < self.warmup_steps:
            fraction = step / self.warmup_steps
            return self.base_lr * (self.start_factor + (1 - self.start_factor) * fraction)
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        floor = min(self.min_lr, self.base_lr)
        return floor + (self.base_lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))

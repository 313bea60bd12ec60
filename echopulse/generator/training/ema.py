"""Exponential moving average of a model's weights (what the checkpoints hold).

Decay warms up as in ema-pytorch (the library the official trainer uses): at update k the decay is
min(beta, 1 − (1 + k)^(−2/3)), so early averages are not dominated by the random initial weights.
Buffers (the tokenizer's EMA codebook, its counts) are copied, not averaged: they are already averages.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn


class EMA:
    def __init__(self, model: nn.Module, beta: float = 0.999, power: float = 2 / 3) -> None:
        self.beta = beta
        self.power = power
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.updates = 0

    def decay(self) -> float:
        return min(self.beta, 1 - (1 + self.updates) ** -self.power)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.decay()
        for shadow, param in zip(self.model.parameters(), model.parameters(), strict=True):
            shadow.lerp_(param.detach().to(shadow.dtype), 1 - decay)
        for shadow, buffer in zip(self.model.buffers(), model.buffers(), strict=True):
            shadow.copy_(buffer)
        self.updates += 1

    def state_dict(self) -> dict[str, Tensor | int]:
        return {"model": self.model.state_dict(), "updates": torch.tensor(self.updates)}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])

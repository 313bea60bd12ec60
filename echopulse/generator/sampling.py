"""MaskGIT parallel decoding: all video tokens start masked and are filled in over a fixed number of steps.

At each step the transformer predicts every masked token at once; the least confident predictions are
masked again, fewer each step (cosine schedule), until none are left. The schedule, temperatures,
Gumbel-max sampling and the confidence rule are the official ECHOPulse ones (checked against its sampling
trace); what we add:

- classifier-free guidance that works: the conditional and the null-context pass run as one batch and
  `logits = uncond + s·(cond − uncond)`; they share the work done before the first cross-attention;
  guidance 1 skips the null pass;
- logits only for the tokens still masked (the official code projects all 1536 to 8192 logits each step);
- noise drawn from a `torch.Generator`, so a seed fixes the result on CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from echopulse.generator.transformer import MaskedTokenTransformer

NEVER_REMASK = -1e4


@dataclass
class SamplingStep:
    """What one decoding step saw and chose, for tests and debugging (`trace=` callback)."""

    step: int
    input_ids: Tensor  # (b, prefix + n) ids fed to the transformer, mask id where masked
    logits: Tensor  # (b, k, num_tokens) guided logits of the k masked positions
    masked: Tensor  # (b, n) bool, positions predicted at this step


def cosine_masked_count(n: int, t: Tensor) -> Tensor:
    """MaskGIT's cosine schedule: max(1, round(n · cos(π/2 · t))) of `n` tokens are masked at time t ∈ [0, 1].

    The one rule training and decoding share, elementwise over `t` and in its dtype: decoding
    (`num_masked`) follows the official sampler in float32, training (`mask_tokens`) draws t in float64.
    """
    return (n * torch.cos(t * math.pi * 0.5)).round().long().clamp(min=1)


def num_masked(n: int, step: int, steps: int) -> int:
    """How many of `n` tokens are masked going into `step` (the official float32 cosine rule, ≥ 1)."""
    if step == 0:
        return n
    return int(cosine_masked_count(n, torch.full((1,), step / steps, dtype=torch.float32)).item())


def temperature_at(step: int, steps: int, starting_temperature: float) -> float:
    return starting_temperature * (steps - (step + 1)) / steps


Generators = torch.Generator | Sequence[torch.Generator] | None


def gumbel_noise(shape: tuple[int, ...], generator: Generators, device: torch.device) -> Tensor:
    """Gumbel(0, 1) noise; with one generator per row, each row's noise depends on its own seed only."""
    if generator is None or isinstance(generator, torch.Generator):
        u = torch.rand(shape, generator=generator, device=device)
    else:
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
        u = torch.stack([torch.rand(shape[1:], generator=g, device=device) for g in generator])
    return -torch.log(-torch.log(u + 1e-10) + 1e-10)


def gaussian_noise(shape: tuple[int, ...], generator: Generators, device: torch.device) -> Tensor:
    """Standard normal noise, per row from that row's generator when one is given per row."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(shape, generator=generator, device=device)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
    return torch.stack([torch.randn(shape[1:], generator=g, device=device) for g in generator])


@torch.no_grad()
def sample_cycle(
    transformer: MaskedTokenTransformer,
    context: Tensor,
    *,
    temperature: float,
    generator: Generators = None,
    noise: bool = True,
) -> Tensor:
    """A cycle tokenizer's code (b, frames, cycle_dim) for ECG contexts (b, m, d): the cycle head's mean plus
    `temperature` times its standard deviation times normal noise (the mean alone with `noise=False` or
    temperature 0)."""
    mean, log_std = transformer.predict_cycle(context)
    mean, log_std = mean.float(), log_std.float()
    if not noise or temperature == 0:
        return mean
    return mean + temperature * log_std.exp() * gaussian_noise(tuple(mean.shape), generator, mean.device)


def guided_logits(
    transformer: MaskedTokenTransformer,
    ids: Tensor,
    context: Tensor,
    grid: tuple[int, int, int],
    positions: Tensor | None,
    guidance: float,
) -> Tensor:
    """Logits (b, k, num_tokens) at `positions` (b, k) (all positions when None), guided by `guidance`.

    With guidance ≠ 1 the null-context pass rides in the same batch as the conditional one.
    """
    b = ids.shape[0]
    if guidance != 1.0:
        # The ids stay b rows: the transformer fans them out to the 2b contexts where they first meet them.
        context = torch.cat((context, transformer.null_contexts(b, context.shape[1]).to(context.dtype)))
        positions = None if positions is None else torch.cat((positions, positions))
    embeds = transformer(ids, context, grid, return_embeds=True)
    if positions is not None:
        embeds = embeds.gather(1, positions[..., None].expand(-1, -1, embeds.shape[-1]))
    logits = transformer.to_logits(embeds).float()
    if guidance != 1.0:
        cond, uncond = logits.chunk(2)
        logits = uncond + guidance * (cond - uncond)
    return logits


@torch.no_grad()
def sample_ids(
    transformer: MaskedTokenTransformer,
    context: Tensor,
    grid: tuple[int, int, int],
    *,
    steps: int = 18,
    starting_temperature: float = 0.9,
    guidance: float = 1.0,
    guidance_steps: int | None = None,
    prefix_ids: Tensor | None = None,
    generator: Generators = None,
    noise: bool = True,
    trace: Callable[[SamplingStep], None] | None = None,
) -> Tensor:
    """Token ids (b, n) for the (t, h, w) `grid` of the generated part.

    `prefix_ids` (b, p) are fixed tokens in front (a prime frame's ids); the transformer then sees the grid
    (t_prefix + t, h, w) and only the generated part is returned. `noise=False` turns Gumbel sampling into
    argmax decoding (used to check against the official trace). `generator`: one for the batch, or one
    per row. `guidance_steps`: guidance on steps 0 … guidance_steps-1 only (None: on all).
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    b, device = context.shape[0], context.device
    n = grid[0] * grid[1] * grid[2]
    prefix = 0 if prefix_ids is None else prefix_ids.shape[1]
    full_grid = (grid[0] + prefix // (grid[1] * grid[2]), grid[1], grid[2])
    mask_id = transformer.mask_id

    ids = torch.full((b, n), mask_id, dtype=torch.long, device=device)
    masked = torch.ones((b, n), dtype=torch.bool, device=device)
    scores: Tensor | None = None
    for step in range(steps):
        k = num_masked(n, step, steps)
        if scores is not None:
            remask = scores.topk(k, dim=-1).indices
            masked = torch.zeros_like(masked).scatter_(1, remask, True)
        ids = ids.masked_fill(masked, mask_id)
        # Every row masks the same number of tokens, so the masked positions stack into (b, k).
        positions = masked.nonzero()[:, 1].view(b, k)
        model_ids = ids if prefix_ids is None else torch.cat((prefix_ids, ids), dim=1)
        scale = guidance if guidance_steps is None or step < guidance_steps else 1.0
        logits = guided_logits(transformer, model_ids, context, full_grid, positions + prefix, scale)

        temperature = temperature_at(step, steps, starting_temperature)
        sampled = logits / max(temperature, 1e-10)
        if noise:
            sampled = sampled + gumbel_noise(tuple(logits.shape), generator, device)
        chosen = sampled.argmax(dim=-1)
        ids = ids.scatter(1, positions, chosen)
        if trace is not None:
            trace(SamplingStep(step, model_ids.clone(), logits, masked.clone()))
        if step < steps - 1:
            confidence = logits.softmax(dim=-1).gather(2, chosen[..., None])[..., 0]
            scores = torch.full((b, n), NEVER_REMASK, device=device)
            scores = scores.scatter(1, positions, 1 - confidence)
    return ids

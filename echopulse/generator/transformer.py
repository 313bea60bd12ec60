"""The masked-token transformer: predicts video token ids from partly masked ids and an ECG context.

Bidirectional (every token sees every other), with a 3-D continuous position bias over the (t, h, w)
token grid and cross-attention to the ECG embedding. Its one addition to the official MaskGit is a learned
`null_context`: training replaces the ECG context by it with probability `cond_drop_prob`, and sampling
runs it beside the real context, which is what makes classifier-free guidance do something (in the
official code both passes are the same pass).

With a cycle tokenizer (`cycle_tokenizer.py`) the ids are one frame of anatomy and the motion is a small
continuous code per frame; `cycle_head` predicts that code from the pooled ECG context, as a mean and a
log standard deviation per number (trained by Gaussian likelihood), so sampling can draw around the mean.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from echopulse.generator.config import TransformerConfig
from echopulse.generator.layers import ContinuousPositionBias, Transformer

CYCLE_HEAD_HIDDEN = 256


class MaskedTokenTransformer(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.mask_id = config.num_tokens
        self.token_emb = nn.Embedding(config.num_tokens + 1, config.dim)  # the last row is [MASK]
        self.pos_emb = nn.Embedding(config.max_seq_len, config.dim)
        self.pos_bias = ContinuousPositionBias(dim=config.dim_head, heads=config.heads, num_dims=3)
        self.transformer = Transformer(
            config.dim, depth=config.depth, dim_head=config.dim_head, heads=config.heads,
            ff_mult=config.ff_mult, peg_causal=False, dim_context=config.dim_context,
        )
        self.to_logits = nn.Linear(config.dim, config.num_tokens)
        self.null_context = nn.Parameter(torch.zeros(1, 1, config.dim_context))
        nn.init.normal_(self.null_context, std=0.02)
        self.cycle_head = None
        if config.cycle_frames and config.cycle_dim:
            self.cycle_head = nn.Sequential(
                nn.LayerNorm(config.dim_context),
                nn.Linear(config.dim_context, CYCLE_HEAD_HIDDEN), nn.GELU(),
                nn.Linear(CYCLE_HEAD_HIDDEN, CYCLE_HEAD_HIDDEN), nn.GELU(),
                nn.Linear(CYCLE_HEAD_HIDDEN, 2 * config.cycle_frames * config.cycle_dim),
            )

    def predict_cycle(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """ECG context (b, m, dim_context) → the cycle code's mean and log standard deviation, each
        (b, cycle_frames, cycle_dim)."""
        if self.cycle_head is None:
            raise ValueError("this transformer has no cycle head (its tokenizer is not a cycle tokenizer)")
        out = self.cycle_head(context.mean(dim=1))
        mean, log_std = rearrange(out, "b (two f d) -> two b f d", two=2, f=self.config.cycle_frames)
        return mean, log_std.clamp(-7.0, 2.0)

    def embed(self, ids: Tensor) -> Tensor:
        n = ids.shape[1]
        if n > self.config.max_seq_len:
            raise ValueError(f"{n} tokens exceed max_seq_len {self.config.max_seq_len}")
        x = self.token_emb(ids) + self.pos_emb.weight[:n]
        # Gradient shrink: the forward value is x, the embedding gets a tenth of the gradient.
        alpha = self.config.gradient_shrink_alpha
        return x * alpha + x.detach() * (1 - alpha)

    def forward(
        self,
        ids: Tensor,
        context: Tensor | None,
        grid: tuple[int, int, int] | None = None,
        *,
        return_embeds: bool = False,
    ) -> Tensor:
        """ids (b, t, h, w) or (b, n) with `grid`; context (r·b, m, dim_context) or None (no cross-attention).

        Returns logits (r·b, n, num_tokens): with r > 1 (guidance: r = 2) row j·b + i is ids row i under
        context row j·b + i (see `Transformer.forward`).
        """
        if ids.ndim == 4:
            grid = tuple(ids.shape[1:])
            ids = rearrange(ids, "b t h w -> b (t h w)")
        if grid is None:
            raise ValueError("flat ids need their (t, h, w) grid")
        b = ids.shape[0]
        bias = self.pos_bias(tuple(grid), ids.device)
        x = self.transformer(self.embed(ids), grid=(b, *grid), bias=bias, context=context)
        return x if return_embeds else self.to_logits(x)

    def null_contexts(self, batch: int, length: int = 1) -> Tensor:
        return self.null_context.expand(batch, length, -1)

    def drop_context(self, context: Tensor, prob: float | None = None) -> Tensor:
        """Replace each sample's context by the null context with probability `prob` (training)."""
        prob = self.config.cond_drop_prob if prob is None else prob
        if prob <= 0:
            return context
        drop = torch.rand(context.shape[0], 1, 1, device=context.device) < prob
        return torch.where(drop, self.null_contexts(*context.shape[:2]).to(context.dtype), context)

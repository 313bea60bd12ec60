"""The transformer parts the video tokenizer and the masked-token transformer share.

They follow the official ECHOPulse attention code closely enough that its checkpoints load one to one
(see `official_keys.py`), but run attention through `scaled_dot_product_attention` and cache the continuous
position bias, which the official code recomputes on every pass.

The attention is cosine-similarity attention: q and k are l2-normalised, scaled per dimension by learned
`q_scale`/`k_scale` and then by a fixed 8 instead of 1/√d. Keeping the logits bounded this way is what lets
the official models train without the usual attention-logit blow-ups.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

ATTENTION_SCALE = 8.0


def l2norm(t: Tensor) -> Tensor:
    return F.normalize(t, dim=-1)


class LayerNorm(nn.Module):
    """LayerNorm with a learned gain and a bias that is a fixed zero buffer.

    The bias is a buffer (never trained) because that is what the official checkpoints hold; it is kept
    so those files map key for key.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.register_buffer("bias", torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias)


class ContinuousPositionBias(nn.Module):
    """Attention bias from a small MLP over signed log distances between grid positions (any number of axes).

    The bias depends only on the grid shape, so it is computed once per shape and cached (in eval mode);
    the official code recomputes the 1536×1536 table on every pass, which costs a third of a paper-size pass.
    """

    def __init__(self, *, dim: int, heads: int, num_dims: int, layers: int = 2) -> None:
        super().__init__()
        widths = [num_dims] + [dim] * layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.to_heads = nn.Linear(dim, heads)
        self._cache: dict[tuple, Tensor] = {}

    @staticmethod
    def relative_positions(shape: tuple[int, ...], device: torch.device | None = None) -> Tensor:
        """(n, n, axes) signed log distances, position i minus position j, row-major over `shape`."""
        axes = [torch.arange(size, device=device) for size in shape]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(shape))
        rel = (grid[:, None, :] - grid[None, :, :]).float()
        return torch.sign(rel) * torch.log(rel.abs() + 1)

    def compute(self, shape: tuple[int, ...], device: torch.device | None = None) -> Tensor:
        x = self.relative_positions(shape, device).to(self.to_heads.weight.dtype)
        for layer in self.hidden:
            x = F.leaky_relu(layer(x), 0.1)
        return rearrange(self.to_heads(x), "i j h -> h i j")

    def forward(self, shape: tuple[int, ...], device: torch.device | None = None) -> Tensor:
        if self.training or torch.is_grad_enabled():
            return self.compute(shape, device)
        key = (tuple(shape), str(device), self.to_heads.weight._version, self.to_heads.weight.data_ptr())
        bias = self._cache.get(key)
        if bias is None:
            bias = self.compute(shape, device)
            self._cache = {key: bias}  # replaced whole, never cleared in place: threads may share the model
        return bias


class PEG(nn.Module):
    """Position-encoding generator: a depthwise 3×3×3 convolution over the (t, h, w) token grid.

    `causal` pads two frames before and none after, so a frame never sees later ones. The grid is taken
    with a plain reshape of the flat sequence to (b, t, h, w, d); inside the tokenizer's temporal
    transformer the sequence is ordered (b h w) t, so that reshape scrambles the grid. The official
    weights were trained with the scramble, so we keep it (see tokenizer.py).
    """

    def __init__(self, dim: int, causal: bool = False) -> None:
        super().__init__()
        self.causal = causal
        self.conv = nn.Conv3d(dim, dim, 3, groups=dim)

    def forward(self, x: Tensor, grid: tuple[int, int, int, int]) -> Tensor:
        flat_shape = x.shape
        x = rearrange(x.reshape(*grid, -1), "b t h w d -> b d t h w")
        frame_pad = (2, 0) if self.causal else (1, 1)
        x = self.conv(F.pad(x, (1, 1, 1, 1, *frame_pad)))
        return rearrange(x, "b d t h w -> b t h w d").reshape(flat_shape)


class Attention(nn.Module):
    """Pre-norm cosine-similarity attention; self-attention when `context` is None, else cross-attention.

    `num_null_kv` learned key/value pairs are prepended to the keys (cross-attention only), so a query
    always has something to attend to. In self-attention the keys and values come from the input *before*
    the pre-norm (only the queries see the normed input): that is what the official code does, and its
    weights were trained that way. `context_norm` exists in self-attention too, unused, because the
    official checkpoints carry it.
    """

    def __init__(
        self, dim: int, *, dim_head: int, heads: int, dim_context: int | None = None, num_null_kv: int = 0
    ) -> None:
        super().__init__()
        inner = dim_head * heads
        dim_context = dim_context or dim
        self.heads = heads
        self.num_null_kv = num_null_kv
        if num_null_kv:
            self.null_kv = nn.Parameter(torch.randn(heads, 2 * num_null_kv, dim_head))
        self.q_scale = nn.Parameter(torch.ones(dim_head))
        self.k_scale = nn.Parameter(torch.ones(dim_head))
        self.norm = LayerNorm(dim)
        self.context_norm = LayerNorm(dim_context)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim_context, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def queries_keys_values(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(b, h, n, d) queries and (b, h, null + m, d) keys and values: normalised and scaled, null
        key/values in front, ready for `ATTENTION_SCALE`·q·kᵀ."""
        kv_input = x if context is None else self.context_norm(context)
        x = self.norm(x)
        q = self.to_q(x)
        k, v = self.to_kv(kv_input).chunk(2, dim=-1)
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.heads) for t in (q, k, v))
        if self.num_null_kv:
            null_k, null_v = repeat(self.null_kv, "h (n r) d -> r b h n d", b=x.shape[0], r=2)
            k, v = torch.cat((null_k, k), dim=-2), torch.cat((null_v, v), dim=-2)
        return l2norm(q) * self.q_scale, l2norm(k) * self.k_scale, v

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        bias: Tensor | None = None,
        key_mask: Tensor | None = None,
    ) -> Tensor:
        q, k, v = self.queries_keys_values(x, context)
        mask = self._attention_mask(bias, key_mask, q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=ATTENTION_SCALE)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))

    def _attention_mask(
        self, bias: Tensor | None, key_mask: Tensor | None, dtype: torch.dtype
    ) -> Tensor | None:
        """One additive mask from the position bias (h, i, j) and a boolean key mask (b, j)."""
        mask = None
        if bias is not None:
            # A 4-D mask keeps SDPA on its fused CPU kernel (a 3-D one falls back to explicit softmax).
            mask = bias if bias.ndim == 4 else bias[None]
            if self.num_null_kv:
                mask = F.pad(mask, (self.num_null_kv, 0))
            mask = mask.to(dtype)
        if key_mask is not None:
            key_mask = F.pad(key_mask, (self.num_null_kv, 0), value=True)
            fill = torch.zeros(key_mask.shape, dtype=dtype, device=key_mask.device)
            fill = fill.masked_fill(~key_mask, -torch.finfo(dtype).max)[:, None, None, :]
            mask = fill if mask is None else mask + fill
        return mask


class FeedForward(nn.Module):
    """LayerNorm → GEGLU → Linear, inner width 2/3 of `mult`·dim (so it costs what a 4× GELU MLP costs)."""

    def __init__(self, dim: int, mult: float = 4) -> None:
        super().__init__()
        inner = int(mult * (2 / 3) * dim)
        self.norm = nn.LayerNorm(dim)
        self.proj_in = nn.Linear(dim, 2 * inner, bias=False)
        self.proj_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        value, gate = self.proj_in(self.norm(x)).chunk(2, dim=-1)
        return self.proj_out(value * F.gelu(gate))


class Block(nn.Module):
    """PEG, self-attention, optional cross-attention, feed-forward; each added back to the stream."""

    def __init__(
        self,
        dim: int,
        *,
        dim_head: int,
        heads: int,
        ff_mult: float,
        peg_causal: bool,
        dim_context: int | None = None,
        num_null_kv: int = 2,
    ) -> None:
        super().__init__()
        self.peg = PEG(dim, causal=peg_causal)
        self.self_attn = Attention(dim, dim_head=dim_head, heads=heads)
        self.cross_attn = None
        if dim_context is not None:
            self.cross_attn = Attention(
                dim, dim_head=dim_head, heads=heads, dim_context=dim_context, num_null_kv=num_null_kv
            )
        self.ff = FeedForward(dim, ff_mult)


class Transformer(nn.Module):
    """A stack of `Block`s and a final LayerNorm. `grid` is the (b, t, h, w) shape the PEG reshapes to."""

    def __init__(
        self,
        dim: int,
        *,
        depth: int,
        dim_head: int,
        heads: int,
        ff_mult: float = 4,
        peg_causal: bool = False,
        dim_context: int | None = None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            Block(
                dim, dim_head=dim_head, heads=heads, ff_mult=ff_mult, peg_causal=peg_causal,
                dim_context=dim_context,
            )
            for _ in range(depth)
        )
        self.norm_out = LayerNorm(dim)

    def forward(
        self,
        x: Tensor,
        grid: tuple[int, int, int, int],
        bias: Tensor | None = None,
        context: Tensor | None = None,
        self_mask: Tensor | None = None,
    ) -> Tensor:
        """A `context` batch r times x's batch fans x out r-fold (row i of x → rows i, b + i, …) just
        before the first cross-attention. Nothing before that point sees the context, so classifier-free
        guidance computes the first block's PEG and self-attention once for its conditional and null
        passes instead of twice: the same result, with less work the fewer blocks there are."""
        for block in self.blocks:
            x = block.peg(x, grid) + x
            x = block.self_attn(x, bias=bias, key_mask=self_mask) + x
            if block.cross_attn is not None and context is not None:
                if context.shape[0] != x.shape[0]:
                    x, grid, self_mask = fan_out(x, grid, self_mask, context.shape[0])
                x = block.cross_attn(x, context=context) + x
            x = block.ff(x) + x
        return self.norm_out(x)


def fan_out(
    x: Tensor, grid: tuple[int, int, int, int], key_mask: Tensor | None, batch: int
) -> tuple[Tensor, tuple[int, int, int, int], Tensor | None]:
    """x, its grid and key mask repeated whole to `batch` rows (a multiple of x's batch)."""
    if batch % x.shape[0]:
        raise ValueError(f"a context batch of {batch} is not a multiple of the token batch {x.shape[0]}")
    times = batch // x.shape[0]
    key_mask = None if key_mask is None else key_mask.repeat(times, 1)
    return x.repeat(times, 1, 1), (batch, *grid[1:]), key_mask

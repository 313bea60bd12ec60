"""The ST-MEM ECG encoder: a ViT over 12-lead ECGs, cut into 0.3 s patches per lead.

ST-MEM (spatio-temporal masked ECG modelling) embeds every lead separately: a lead's `seq_len` samples
become `seq_len // patch_size` patch tokens, framed by a learned SEP token on each side, and every token
of lead c carries lead c's own learned embedding. All leads' tokens are then one sequence (lead-major,
`num_leads · (num_patches + 2)` tokens, 384 for the paper's 12 × 32), so attention mixes time and leads
freely. The layout and the parameter names follow the official checkpoints once they are put through
`official_keys.map_official_keys(..., "stmem")`, so the released ViT-B/75 weights load strictly.

Pooling, and why there are three:

- `"all"` is the original ST-MEM pooling: mean over every lead's patch tokens (SEP tokens dropped), then
  `norm`. It is what ST-MEM's fine-tuning head was trained on, so `head_logits` uses it.
- `"lead"` is ECHOPulse's: mean over the 30 patch tokens of one lead (`pooled_lead`, index 1 = lead II),
  then `norm`. ECHOPulse feeds ST-MEM a single trace (the ECG strip burned into the echo cine) placed in
  the lead-II row of a 12 × 2250 array; the other 11 leads are exactly zero. Those zero leads still pass
  through attention (their tokens are bias + SEP/position/lead embeddings, not nothing), but averaging them
  in would dilute the one lead that carries signal with 11 nearly input-independent ones, so ECHOPulse
  pools lead II alone. The generator's released weights were trained on this vector.
- `"tokens"` returns the whole final sequence with `norm` applied per token, for cross-attention over
  time instead of over one summary vector (the raw pre-norm stream is available from `encode`).

The input is cast with `.float()`, as the official module does (ECHOPulse's data loader yields float64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from echopulse.generator.config import Pooling, STMEMConfig

POOLINGS: tuple[Pooling, ...] = ("lead", "all", "tokens")
WINDOW_LAYOUTS = ("stmem", "mv")
"""The `stmem_windows` layouts an encoder can be trained on (`compat` is an official model's business)."""
WINDOW_SLOTS = 12  # an `STMEMWindow` always has the 12 lead slots I, II, III, aVR, aVL, aVF, V1–V6


class PatchEmbed(nn.Module):
    """LayerNorm over each raw patch, a linear projection, then LayerNorm over the width.

    The first norm makes every 0.3 s patch zero-mean and unit-variance on its own, so the encoder sees
    waveform shape rather than amplitude or baseline offset, which differ between recorders.
    """

    def __init__(self, patch_size: int, width: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.norm_in = nn.LayerNorm(patch_size)
        self.proj = nn.Linear(patch_size, width)
        self.norm_out = nn.LayerNorm(width)

    def forward(self, ecg: Tensor) -> Tensor:
        patches = rearrange(ecg, "b c (n p) -> b c n p", p=self.patch_size)
        return self.norm_out(self.proj(self.norm_in(patches)))


class Attention(nn.Module):
    """Plain multi-head softmax attention (scale 1/√dim_head) with a biased qkv projection."""

    def __init__(self, width: int, *, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = dim_head**-0.5
        self.to_qkv = nn.Linear(width, 3 * heads * dim_head, bias=True)
        self.to_out = nn.Linear(heads * dim_head, width)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = rearrange(self.to_qkv(x), "b n (qkv h d) -> qkv b h n d", qkv=3, h=self.heads)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


class FeedForward(nn.Module):
    """Linear → exact (erf) GELU → Linear."""

    def __init__(self, width: int, mlp_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + ff(norm(x)). No dropout, no drop-path."""

    def __init__(self, width: int, *, heads: int, dim_head: int, mlp_dim: int) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(width)
        self.attn = Attention(width, heads=heads, dim_head=dim_head)
        self.ff_norm = nn.LayerNorm(width)
        self.ff = FeedForward(width, mlp_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.attn_norm(x))
        return x + self.ff(self.ff_norm(x))


class STMEMEncoder(nn.Module):
    """ST-MEM ViT: (b, leads, seq_len) ECG → pooled (b, width) vector or (b, tokens, width) sequence."""

    def __init__(self, config: STMEMConfig) -> None:
        super().__init__()
        if config.seq_len % config.patch_size:
            raise ValueError(f"seq_len {config.seq_len} is not a multiple of patch_size {config.patch_size}")
        if config.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {config.pooling!r}")
        if config.window_layout not in WINDOW_LAYOUTS:
            raise ValueError(f"window_layout must be one of {WINDOW_LAYOUTS}, not {config.window_layout!r}")
        if not 0 <= config.pooled_lead < config.num_leads:
            raise ValueError(f"pooled_lead {config.pooled_lead} outside 0..{config.num_leads - 1}")
        self.config = config
        width = config.width
        self.patch_embed = PatchEmbed(config.patch_size, width)
        # Index 0 and the last index are the two SEP positions; 1..num_patches are the patches.
        self.pos_embedding = nn.Parameter(torch.empty(1, config.num_patches + 2, width))
        self.sep_embedding = nn.Parameter(torch.empty(width))
        self.lead_embeddings = nn.ParameterList(
            nn.Parameter(torch.empty(width)) for _ in range(config.num_leads)
        )
        self.blocks = nn.ModuleList(
            Block(width, heads=config.heads, dim_head=config.dim_head, mlp_dim=config.mlp_dim)
            for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, config.num_classes) if config.num_classes > 0 else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Small normal embeddings, truncated-normal linears, unit LayerNorms (for training from scratch)."""
        for embedding in (self.pos_embedding, self.sep_embedding, *self.lead_embeddings):
            nn.init.normal_(embedding, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def tokens_per_lead(self) -> int:
        return self.config.num_patches + 2

    def embed(self, ecg: Tensor) -> Tensor:
        """(b, leads, seq_len) → (b, leads·(n+2), width): SEP | patches | SEP per lead, lead-major.

        The input must be exactly `seq_len` samples long (the official code would take shorter ones, but then
        the token count no longer says how many leads there are, which `pool` relies on). Fewer leads than
        `num_leads` take the first lead embeddings; a 12-slot window given to an encoder of fewer leads is
        read from its first `num_leads` slots.
        """
        if ecg.ndim != 3:
            raise ValueError(f"expected an ECG of shape (batch, leads, samples), got {tuple(ecg.shape)}")
        b, leads, samples = ecg.shape
        if leads > self.config.num_leads:
            if leads != WINDOW_SLOTS:
                raise ValueError(
                    f"{leads} leads, but the encoder has {self.config.num_leads} lead embeddings"
                )
            # An encoder trained on the first slots alone (the bundled one reads lead I) ignores the others:
            # 12 × 32 tokens of which 11 × 32 carry nothing would cost it 12× the compute.
            ecg, leads = ecg[:, : self.config.num_leads], self.config.num_leads
        if samples != self.config.seq_len:
            raise ValueError(f"{samples} samples per lead, but the encoder takes {self.config.seq_len}")
        patches = self.patch_embed(ecg.float())  # (b, c, n, w)
        sep = repeat(self.sep_embedding, "w -> b c 1 w", b=b, c=leads)
        x = torch.cat((sep, patches, sep), dim=2)  # (b, c, n+2, w)
        lead = torch.stack(tuple(self.lead_embeddings[:leads]))  # (c, w)
        x = x + rearrange(self.pos_embedding, "1 n w -> 1 1 n w") + rearrange(lead, "c w -> 1 c 1 w")
        return rearrange(x, "b c n w -> b (c n) w")

    def encode(self, ecg: Tensor) -> Tensor:
        """(b, leads, seq_len) → output of the last block, before `norm`: (b, leads·(n+2), width)."""
        x = self.embed(ecg)
        for block in self.blocks:
            x = block(x)
        return x

    def pool(self, tokens: Tensor, pooling: Pooling | None = None) -> Tensor:
        """Pool `encode`'s tokens: "lead" / "all" → (b, width); "tokens" → normed (b, tokens, width)."""
        pooling = pooling or self.config.pooling
        if pooling == "tokens":
            return self.norm(tokens)
        grid = rearrange(tokens, "b (c n) w -> b c n w", n=self.tokens_per_lead)
        patches = grid[:, :, 1:-1]  # drop both SEP tokens of every lead
        if pooling == "lead":
            if self.config.pooled_lead >= grid.shape[1]:
                raise ValueError(f"pooled_lead {self.config.pooled_lead} but only {grid.shape[1]} leads")
            pooled = patches[:, self.config.pooled_lead].mean(dim=1)
        elif pooling == "all":
            pooled = patches.mean(dim=(1, 2))
        else:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
        return self.norm(pooled)

    def forward(self, ecg: Tensor) -> Tensor:
        """Pooled per `config.pooling`: (b, width), or (b, leads·(n+2), width) for "tokens"."""
        return self.pool(self.encode(ecg))

    def context(self, ecg: Tensor) -> Tensor:
        """Cross-attention context for the generator: (b, 1, width) pooled, or (b, m, width) tokens."""
        out = self(ecg)
        return out if out.ndim == 3 else rearrange(out, "b w -> b 1 w")

    def head_logits(self, ecg: Tensor, pooling: Pooling = "all") -> Tensor:
        """Classifier logits (b, num_classes) from the pooled vector; ST-MEM's head sees "all" pooling."""
        if self.head is None:
            raise RuntimeError("this encoder has no classification head (num_classes = 0)")
        if pooling == "tokens":
            raise ValueError("the head needs a pooled vector, not tokens")
        return self.head(self.pool(self.encode(ecg), pooling))

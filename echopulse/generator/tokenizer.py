"""C-ViViT video tokenizer: a clip becomes a (t, h, w) grid of codebook ids and back.

The first frame is patched on its own and every later pair of frames (`temporal_patch_size`) together,
so a single frame (an image prompt) tokenises with the same network and a clip of 1 + 2k frames gives
1 + k token frames. The encoder is factorised: a spatial transformer inside each token frame (with a
continuous relative position bias over the patch grid), then a temporal transformer along each patch
position's token frames. The decoder mirrors it, temporal first. A cosine-similarity VQ sits in between.

One quirk is kept on purpose. The temporal transformers run on a ((b h w), t, d) sequence but hand the
PEG the (b, t, h, w) video grid, as the official code does; the PEG's plain reshape therefore convolves
a scrambled grid. The official weights were trained with it, so fixing it would break them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from echopulse.generator.config import TokenizerConfig
from echopulse.generator.layers import ContinuousPositionBias, Transformer
from echopulse.generator.quantizer import CosineVectorQuantizer


@dataclass
class TokenizerOutput:
    """What a training step needs: the reconstruction, its ids, the VQ loss and codebook statistics."""

    recon: Tensor  # (b, c, f, H, W), unclamped
    ids: Tensor  # (b, t, h, w) int64
    recon_loss: Tensor  # MSE(recon, video)
    commit_loss: Tensor  # already weighted by commitment_weight; 0 in eval mode
    perplexity: Tensor  # of this batch's code histogram
    codebook_usage: Tensor  # fraction of codes used in this batch
    cycle_loss: Tensor | None = None  # a cycle tokenizer's estimate against its label (MSE), when labelled


class PatchEmbed(nn.Module):
    """LayerNorm → Linear → LayerNorm over flattened pixel patches (normalising the raw patch first
    makes the embedding indifferent to a clip's overall brightness and contrast)."""

    def __init__(self, patch_dim: int, dim: int) -> None:
        super().__init__()
        self.norm_in = nn.LayerNorm(patch_dim)
        self.proj = nn.Linear(patch_dim, dim)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm_out(self.proj(self.norm_in(x)))


class VideoTokenizer(nn.Module):
    """video (b, c, f, H, W) in [0, 1], f = 1 + k·temporal_patch_size  ⇄  ids (b, 1 + k, H/p, W/p)."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        c, p, pt, dim = config.channels, config.patch_size, config.temporal_patch_size, config.dim
        transformer_kwargs = dict(dim_head=config.dim_head, heads=config.heads, ff_mult=config.ff_mult,
                                  peg_causal=True)
        # Registration order follows the official module, so state_dict() lists keys in checkpoint order.
        self.spatial_pos_bias = ContinuousPositionBias(dim=dim, heads=config.heads, num_dims=2)
        self.patch_embed_first = PatchEmbed(c * p * p, dim)
        self.patch_embed = PatchEmbed(c * pt * p * p, dim)
        self.enc_spatial = Transformer(dim, depth=config.spatial_depth, **transformer_kwargs)
        self.enc_temporal = Transformer(dim, depth=config.temporal_depth, **transformer_kwargs)
        self.vq = CosineVectorQuantizer(
            dim, config.codebook_size, config.codebook_dim, commitment_weight=config.commitment_weight,
            decay=config.ema_decay, dead_code_threshold=config.dead_code_threshold,
        )
        self.dec_spatial = Transformer(dim, depth=config.spatial_depth, **transformer_kwargs)
        self.dec_temporal = Transformer(dim, depth=config.temporal_depth, **transformer_kwargs)
        self.to_pixels_first = nn.Linear(dim, c * p * p)
        self.to_pixels = nn.Linear(dim, c * pt * p * p)

    @property
    def side(self) -> int:
        """Patches per image side at the configured image size."""
        return self.config.image_size // self.config.patch_size

    def token_frames(self, frames: int) -> int:
        """Token frames of an f-frame clip (1 for the first frame, one per temporal patch after it)."""
        pt = self.config.temporal_patch_size
        if frames < 1 or (frames - 1) % pt:
            raise ValueError(f"a clip needs 1 + k·{pt} frames, got {frames}")
        return 1 + (frames - 1) // pt

    # ---- stages, separate so they can be checked one by one -------------------------------------------

    def patch_tokens(self, video: Tensor) -> Tensor:
        """video (b, c, f, H, W) → patch embeddings (b, t, h, w, dim)."""
        _, c, frames, height, width = video.shape
        p, pt = self.config.patch_size, self.config.temporal_patch_size
        if c != self.config.channels or height % p or width % p:
            raise ValueError(
                f"video must be (b, {self.config.channels}, f, H, W) with H, W multiples of {p}, "
                f"got {tuple(video.shape)}"
            )
        self.token_frames(frames)
        first = rearrange(video[:, :, :1], "b c 1 (h p1) (w p2) -> b 1 h w (c p1 p2)", p1=p, p2=p)
        tokens = [self.patch_embed_first(first)]
        if frames > 1:
            rest = rearrange(
                video[:, :, 1:], "b c (t pt) (h p1) (w p2) -> b t h w (c pt p1 p2)", pt=pt, p1=p, p2=p
            )
            tokens.append(self.patch_embed(rest))
        return torch.cat(tokens, dim=1)

    def encode_tokens(self, tokens: Tensor) -> Tensor:
        """(b, t, h, w, dim) → (b, t, h, w, dim): spatial transformer per token frame, then temporal."""
        b, t, h, w, _ = tokens.shape
        grid = (b, t, h, w)
        x = rearrange(tokens, "b t h w d -> (b t) (h w) d")
        x = self.enc_spatial(x, grid=grid, bias=self.spatial_pos_bias((h, w), x.device))
        x = rearrange(x, "(b t) (h w) d -> (b h w) t d", b=b, h=h, w=w)
        x = self.enc_temporal(x, grid=grid)  # the video grid, not this sequence's: see the module docstring
        return rearrange(x, "(b h w) t d -> b t h w d", b=b, h=h, w=w)

    def decode_tokens(self, tokens: Tensor) -> Tensor:
        """(b, t, h, w, dim) decoder inputs → video (b, c, 1 + (t − 1)·pt, H, W), unclamped."""
        b, t, h, w, _ = tokens.shape
        grid = (b, t, h, w)
        p, pt = self.config.patch_size, self.config.temporal_patch_size
        x = rearrange(tokens, "b t h w d -> (b h w) t d")
        x = self.dec_temporal(x, grid=grid)
        x = rearrange(x, "(b h w) t d -> (b t) (h w) d", b=b, h=h, w=w)
        x = self.dec_spatial(x, grid=grid, bias=self.spatial_pos_bias((h, w), x.device))
        x = rearrange(x, "(b t) (h w) d -> b t h w d", b=b, h=h, w=w)
        first = rearrange(
            self.to_pixels_first(x[:, :1]), "b 1 h w (c p1 p2) -> b c 1 (h p1) (w p2)", p1=p, p2=p
        )
        if t == 1:
            return first
        rest = rearrange(
            self.to_pixels(x[:, 1:]), "b t h w (c pt p1 p2) -> b c (t pt) (h p1) (w p2)", pt=pt, p1=p, p2=p
        )
        return torch.cat((first, rest), dim=2)

    # ---- public entry points --------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        """video (b, c, f, H, W) float in [0, 1] → ids (b, t, h, w) int64 (no EMA update, any mode)."""
        tokens = self.encode_tokens(self.patch_tokens(video))
        return self.vq.cosine_similarity(tokens).argmax(dim=-1)

    def decode(self, ids: Tensor) -> Tensor:
        """ids (b, t, h, w), or flat (b, t·h·w) at the configured image size → video (b, c, f, H, W)."""
        if ids.ndim == 2:
            per_frame = self.side * self.side
            if ids.shape[1] % per_frame:
                raise ValueError(f"{ids.shape[1]} flat ids are not whole token frames of {per_frame}")
            ids = rearrange(ids, "b (t h w) -> b t h w", h=self.side, w=self.side)
        if ids.ndim != 4:
            raise ValueError(f"ids must be (b, t, h, w) or (b, n), got {tuple(ids.shape)}")
        return self.decode_tokens(self.vq.codes_to_embeddings(ids))

    @torch.no_grad()
    def reconstruct(self, video: Tensor) -> Tensor:
        """video → what its ids decode to: the best a generator that predicted every id exactly could do."""
        return self.decode(self.encode(video))

    def forward(self, video: Tensor) -> TokenizerOutput:
        """Encode, quantise, decode. In training mode the VQ passes gradients straight through and
        updates its codebook by EMA; the caller adds `recon_loss` and `commit_loss` (and any perceptual
        loss) and steps the optimiser."""
        tokens = self.encode_tokens(self.patch_tokens(video))
        vq = self.vq(tokens)
        recon = self.decode_tokens(vq.quantized)
        return TokenizerOutput(
            recon=recon,
            ids=vq.ids,
            recon_loss=F.mse_loss(recon, video),
            commit_loss=vq.commit_loss,
            perplexity=vq.perplexity,
            codebook_usage=vq.usage,
        )

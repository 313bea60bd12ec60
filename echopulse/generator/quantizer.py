"""Cosine-similarity vector quantizer with an EMA codebook, the bottleneck of the video tokenizer.

Tokens are projected down to a small codebook space (`codebook_dim`, 32 in the paper), l2-normalised and
matched to the code with the largest dot product. Low-dimensional, unit-norm codes are what keeps a
large codebook in use: every code lives on the same sphere as the inputs, so none can hide far away.

The codes are not learned by gradient descent but by an exponential moving average of the (normalised)
inputs assigned to them, as in VQ-VAE-2. Codes nobody picks for a while ("dead" codes) can be restarted
on random inputs of the current batch, which is what keeps codebook usage high on small datasets.

The buffer layout (`initted`, `cluster_size`, `embed_avg`, `embed`, each with a leading codebook-head
axis of 1) is the one the official ECHOPulse checkpoints hold, so they load key for key.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


def l2norm(t: Tensor) -> Tensor:
    return F.normalize(t, dim=-1)


@dataclass
class QuantizerOutput:
    """`quantized` (..., dim) is what the decoder gets; `ids` (...) the code indices."""

    quantized: Tensor
    ids: Tensor
    commit_loss: Tensor
    perplexity: Tensor  # exp(entropy) of this batch's code histogram: the number of codes "really" used
    usage: Tensor  # fraction of the codebook picked at least once in this batch


class EMACodebook(nn.Module):
    """Unit-norm codes updated by an exponential moving average of the inputs assigned to them.

    Buffers (official shapes): `embed` (1, K, d) the unit codes the lookup uses, `embed_avg` (1, K, d)
    the running sum of the inputs per code, `cluster_size` (1, K) the running count per code, `initted`
    (1,) kept for checkpoint compatibility (the codebook is initialised at construction, so it is 1).
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        *,
        decay: float = 0.8,
        eps: float = 1e-5,
        dead_code_threshold: float = 0.0,
    ) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.decay = decay
        self.eps = eps
        self.dead_code_threshold = dead_code_threshold
        embed = l2norm(nn.init.kaiming_uniform_(torch.empty(1, codebook_size, dim)))
        self.register_buffer("initted", torch.ones(1))
        self.register_buffer("cluster_size", torch.zeros(1, codebook_size))
        self.register_buffer("embed_avg", embed.clone())
        self.register_buffer("embed", embed)

    @property
    def codes(self) -> Tensor:
        """(K, d) the codes the lookup uses."""
        return self.embed[0]

    def similarity(self, x: Tensor) -> Tensor:
        """(..., K) dot products of unit inputs (..., d) with the stored codes.

        The stored codes are used as they are, not re-normalised: they are unit-norm after every EMA
        update, and the official lookup does the same, so ids stay bit-compatible.
        """
        return x @ self.codes.t()

    def lookup(self, ids: Tensor) -> Tensor:
        """(..., d) codes for ids (...)."""
        return F.embedding(ids, self.codes)

    @torch.no_grad()
    def update(self, x: Tensor, ids: Tensor) -> None:
        """One EMA step from unit inputs x (n, d) and their ids (n,), then restart dead codes."""
        if x.shape[0] == 0:
            return
        onehot = F.one_hot(ids, self.codebook_size).type(x.dtype)  # (n, K)
        counts = onehot.sum(dim=0)  # (K,)
        sums = onehot.t() @ x  # (K, d)
        self.cluster_size[0].lerp_(counts, 1 - self.decay)
        self.embed_avg[0].lerp_(sums, 1 - self.decay)
        # Laplace smoothing keeps a code nobody picked from dividing by ~0.
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size[0] + self.eps) / (total + self.codebook_size * self.eps) * total
        self.embed[0].copy_(l2norm(self.embed_avg[0] / smoothed[:, None]))
        self.restart_dead_codes(x)

    @torch.no_grad()
    def restart_dead_codes(self, x: Tensor) -> Tensor:
        """Move every code whose running count is below the threshold onto a random input of the batch.

        Its running count is set to the threshold, so a restarted code gets a few steps to attract
        inputs before it can be declared dead again. Returns the (K,) boolean mask of restarted codes.
        """
        dead = self.cluster_size[0] < self.dead_code_threshold
        if self.dead_code_threshold <= 0:
            return dead
        num_dead = int(dead.sum())
        if num_dead == 0:
            return dead
        pick = torch.randint(0, x.shape[0], (num_dead,), device=x.device)
        sampled = l2norm(x[pick])
        self.embed[0][dead] = sampled
        self.embed_avg[0][dead] = sampled * self.dead_code_threshold
        self.cluster_size[0][dead] = self.dead_code_threshold
        return dead


class CosineVectorQuantizer(nn.Module):
    """project_in → l2norm → nearest unit code (max dot product) → code → project_out.

    Eval mode returns the codes exactly. Training mode passes gradients straight through the
    quantisation (`x + (q − x).detach()`, so the decoder's gradient reaches the encoder), returns the
    commitment loss that pulls the encoder's outputs toward their codes, and updates the codebook by EMA.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        codebook_dim: int,
        *,
        commitment_weight: float = 0.25,
        decay: float = 0.8,
        dead_code_threshold: float = 0.0,
    ) -> None:
        super().__init__()
        self.commitment_weight = commitment_weight
        self.project_in = nn.Linear(dim, codebook_dim)
        self.project_out = nn.Linear(codebook_dim, dim)
        self.codebook = EMACodebook(
            codebook_dim, codebook_size, decay=decay, dead_code_threshold=dead_code_threshold
        )

    @property
    def codebook_size(self) -> int:
        return self.codebook.codebook_size

    def normalized_inputs(self, x: Tensor) -> Tensor:
        """(..., codebook_dim) unit vectors the lookup compares with the codes."""
        return l2norm(self.project_in(x))

    def cosine_similarity(self, x: Tensor) -> Tensor:
        """(..., K) similarity of tokens x (..., dim) to every code."""
        return self.codebook.similarity(self.normalized_inputs(x))

    def codes_to_embeddings(self, ids: Tensor) -> Tensor:
        """(..., dim) decoder inputs for ids (...): code lookup then project_out."""
        return self.project_out(self.codebook.lookup(ids))

    def forward(self, x: Tensor) -> QuantizerOutput:
        """x (..., dim) → quantized (..., dim), ids (...)."""
        lead_shape = x.shape[:-1]
        flat = rearrange(self.normalized_inputs(x), "... d -> (...) d")
        ids = self.codebook.similarity(flat).argmax(dim=-1)  # (n,)
        quantized = self.codebook.lookup(ids)
        commit_loss = torch.zeros((), device=x.device, dtype=x.dtype)
        if self.training:
            commit_loss = self.commitment_weight * F.mse_loss(quantized.detach(), flat)
            quantized = flat + (quantized - flat).detach()
            self.codebook.update(flat.detach(), ids)
        perplexity, usage = self.usage_stats(ids)
        return QuantizerOutput(
            quantized=self.project_out(quantized).reshape(*lead_shape, -1),
            ids=ids.reshape(lead_shape),
            commit_loss=commit_loss,
            perplexity=perplexity,
            usage=usage,
        )

    @torch.no_grad()
    def usage_stats(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """(perplexity, fraction of codes used) of a batch of ids, for training logs."""
        counts = torch.bincount(ids.flatten(), minlength=self.codebook_size).float()
        probs = counts / counts.sum().clamp(min=1)
        entropy = -(probs * torch.log(probs.clamp(min=1e-12))).sum()
        return entropy.exp(), (counts > 0).float().mean()

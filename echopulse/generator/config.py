"""Model configurations: dataclasses written as JSON beside the weights.

`paper` has the exact shapes of the released ECHOPulse and ST-MEM checkpoints (so they load); `small` is
what trains on a CPU in minutes and what the bundled model uses. A config's hash goes into every clip's
provenance, so two clips can be traced to the same weights' architecture.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

Pooling = Literal["lead", "all", "tokens"]


@dataclass(frozen=True)
class STMEMConfig:
    """ST-MEM ViT encoder. `pooling="lead"` is ECHOPulse's (mean of one lead's patch tokens)."""

    seq_len: int = 2250
    patch_size: int = 75
    num_leads: int = 12
    width: int = 768
    depth: int = 12
    mlp_dim: int = 3072
    heads: int = 12
    dim_head: int = 64
    num_classes: int = 0
    pooling: Pooling = "lead"
    pooled_lead: int = 1
    window_layout: str = "stmem"  # the `stmem_windows` layout it reads: "stmem" (z-scored) or "mv"

    @property
    def num_patches(self) -> int:
        return self.seq_len // self.patch_size


@dataclass(frozen=True)
class TokenizerConfig:
    """C-ViViT video tokenizer: frame 0 alone, then pairs of frames, `patch_size` pixels square."""

    dim: int = 512
    codebook_size: int = 8192
    codebook_dim: int = 32
    image_size: int = 128
    patch_size: int = 8
    temporal_patch_size: int = 2
    spatial_depth: int = 4
    temporal_depth: int = 4
    dim_head: int = 64
    heads: int = 8
    ff_mult: float = 4
    channels: int = 3
    num_frames: int = 11
    commitment_weight: float = 0.25
    ema_decay: float = 0.8
    dead_code_threshold: float = 0.0
    cycle_dim: int = 0  # > 0: the anatomy-and-cycle tokenizer (`cycle_tokenizer.py`), numbers per frame

    @property
    def grid(self) -> tuple[int, int, int]:
        """Token grid (t, h, w) of a `num_frames` clip: one frame of anatomy ids for a cycle tokenizer."""
        side = self.image_size // self.patch_size
        if self.cycle_dim:
            return (1, side, side)
        return (1 + (self.num_frames - 1) // self.temporal_patch_size, side, side)


@dataclass(frozen=True)
class TransformerConfig:
    """Masked-token transformer. `cond_drop_prob` is the condition dropout that makes guidance work."""

    num_tokens: int = 8192
    max_seq_len: int = 2048
    dim: int = 512
    dim_context: int = 768
    depth: int = 6
    heads: int = 8
    dim_head: int = 64
    ff_mult: float = 4
    gradient_shrink_alpha: float = 0.1
    cond_drop_prob: float = 0.0
    cycle_frames: int = 0  # > 0 with cycle_dim: a head that predicts a cycle tokenizer's code from the ECG
    cycle_dim: int = 0


@dataclass(frozen=True)
class SamplingConfig:
    """`guidance_steps`: guidance on the first N decoding steps only (None: all), as in guidance over a
    limited interval (Kynkäänniemi et al. 2024): each guided step costs a second transformer pass. For the
    bundled model it is off: guiding only 4 of 12 steps made the measured EF about 5 points too low
    (development seeds); the late steps' guidance is what sets how far the walls move."""

    steps: int = 18
    starting_temperature: float = 0.9
    guidance: float = 1.0
    guidance_steps: int | None = None
    cycle_temperature: float = 1.0  # a cycle tokenizer's code: the head's mean + this × its σ × noise


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything needed to rebuild a generator: the three networks and the sampling defaults."""

    name: str = "paper"
    stmem: STMEMConfig = field(default_factory=STMEMConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @property
    def hash(self) -> str:
        """Short content hash of the three networks' configs (sampling defaults and name excluded).

        It covers the training settings stored there too (condition dropout, codebook EMA decay), so a
        checkpoint's config.json cannot be edited without the loader noticing."""
        arch = {k: v for k, v in self.to_dict().items() if k in ("stmem", "tokenizer", "transformer")}
        if arch["stmem"]["window_layout"] == "stmem":  # the default: older checkpoints keep their hash
            del arch["stmem"]["window_layout"]
        cycle_keys = (
            ("tokenizer", "cycle_dim"), ("transformer", "cycle_frames"), ("transformer", "cycle_dim"),
        )
        for part, key in cycle_keys:
            if not arch[part][key]:  # likewise for the fields the cycle tokenizer added
                del arch[part][key]
        return hashlib.sha256(json.dumps(arch, sort_keys=True).encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        parts = {"stmem": STMEMConfig, "tokenizer": TokenizerConfig, "transformer": TransformerConfig,
                 "sampling": SamplingConfig}
        kwargs: dict[str, Any] = {"name": str(data.get("name", "custom"))}
        for key, kind in parts.items():
            given = dict(data.get(key) or {})
            known = {f.name for f in fields(kind)}
            unknown = set(given) - known
            if unknown:
                raise ValueError(f"unknown {key} config fields: {sorted(unknown)}")
            kwargs[key] = kind(**given)
        return cls(**kwargs)

    @classmethod
    def load(cls, path: str | Path) -> GeneratorConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


def paper_config() -> GeneratorConfig:
    """The released ECHOPulse shapes: 128×128×11 clips, 1536 tokens, ST-MEM ViT-B/75."""
    return GeneratorConfig(name="paper", sampling=SamplingConfig(steps=18, guidance=1.0))


def small_config() -> GeneratorConfig:
    """64×64×11 clips, 6×8×8 = 384 tokens from a 512-code book; trains on a 2-core CPU. The ECG encoder reads
    lead I (what a watch records) in millivolts."""
    return GeneratorConfig(
        name="small",
        stmem=STMEMConfig(
            num_leads=1, width=128, depth=4, mlp_dim=256, heads=4, dim_head=32, pooling="all",
            pooled_lead=0, window_layout="mv",
        ),
        tokenizer=TokenizerConfig(
            dim=128, codebook_size=512, codebook_dim=16, image_size=64, patch_size=8, spatial_depth=2,
            temporal_depth=2, dim_head=32, heads=4, channels=1, dead_code_threshold=1.0,
        ),
        transformer=TransformerConfig(
            num_tokens=512, max_seq_len=384, dim=128, dim_context=128, depth=3, heads=4, dim_head=32,
            cond_drop_prob=0.15,
        ),
        sampling=SamplingConfig(steps=12, guidance=2.0),
    )


def cycle_config() -> GeneratorConfig:
    """`small`'s ECG encoder with the anatomy-and-cycle tokenizer: 8×8 anatomy ids from a 512-code book and
    one cycle number per frame (the LV area curve), which the transformer's cycle head predicts from the
    ECG. Sampling as the bundled model ships: the head's mean curve (cycle temperature 0) and no guidance,
    chosen on the development seeds (docs/MODEL_CARD.md)."""
    small = small_config()
    return GeneratorConfig(
        name="cycle",
        stmem=small.stmem,
        tokenizer=replace(small.tokenizer, cycle_dim=1),
        transformer=replace(small.transformer, max_seq_len=64, cycle_frames=11, cycle_dim=1),
        sampling=SamplingConfig(steps=8, starting_temperature=1.1, guidance=1.0, cycle_temperature=0.0),
    )


CONFIGS = {"paper": paper_config, "small": small_config, "cycle": cycle_config}

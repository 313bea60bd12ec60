"""Random-weight model directories for tests that need a generator but not a trained one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from echopulse.generator.checkpoints import save_checkpoint
from echopulse.generator.config import (
    GeneratorConfig,
    SamplingConfig,
    STMEMConfig,
    TokenizerConfig,
    TransformerConfig,
    small_config,
)
from echopulse.generator.parts import PARTS, new_module


def thin_small_config() -> GeneratorConfig:
    """The small config with one layer per network: every path of the real thing, quick to sample from."""
    config = small_config()
    return replace(
        config,
        name="test",
        stmem=replace(config.stmem, depth=1),
        tokenizer=replace(config.tokenizer, spatial_depth=1, temporal_depth=1),
        transformer=replace(config.transformer, depth=1),
    )


def save_random_model(directory: Path, config: GeneratorConfig, metadata: dict[str, str]) -> Path:
    """`config`'s three networks with seed-0 random weights, saved as a model directory."""
    torch.manual_seed(0)
    save_checkpoint(directory, config, {part: new_module(config, part) for part in PARTS}, metadata=metadata)
    return directory


def micro_config() -> GeneratorConfig:
    """32×32×11 clips from one-layer networks: random weights, but every path of the real thing."""
    return GeneratorConfig(
        name="micro",
        stmem=STMEMConfig(width=32, depth=1, mlp_dim=64, heads=2, dim_head=16, pooling="all"),
        tokenizer=TokenizerConfig(
            dim=32, codebook_size=64, codebook_dim=8, image_size=32, patch_size=8, spatial_depth=1,
            temporal_depth=1, dim_head=16, heads=2, channels=1,
        ),
        transformer=TransformerConfig(
            num_tokens=64, max_seq_len=96, dim=32, dim_context=32, depth=1, heads=2, dim_head=16
        ),
        sampling=SamplingConfig(steps=2, guidance=1.0),
    )

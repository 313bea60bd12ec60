"""The one table that maps official ECHOPulse / ST-MEM state-dict keys to ours.

Official names come from nested `nn.Sequential`s (`layers.3.1.weight`); ours say what a weight is
(`blocks.3.ff.proj_in.weight`). Shapes are the same on both sides, so a key map is all a loader needs.
Each part (tokenizer, transformer, stmem) is a list of (official regex, our replacement), applied in
order, first match wins. A key no rule matches is an error, never silently kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

Rules = list[tuple[str, str]]

# Blocks of `attention.Transformer`: [PEG, self-attention, cross-attention, GEGLU feed-forward].
_TRANSFORMER_BLOCK: Rules = [
    (r"layers\.(\d+)\.0\.dsconv\.", r"blocks.\1.peg.conv."),
    (r"layers\.(\d+)\.1\.", r"blocks.\1.self_attn."),
    (r"layers\.(\d+)\.2\.", r"blocks.\1.cross_attn."),
    (r"layers\.(\d+)\.3\.0\.", r"blocks.\1.ff.norm."),
    (r"layers\.(\d+)\.3\.1\.", r"blocks.\1.ff.proj_in."),
    (r"layers\.(\d+)\.3\.4\.", r"blocks.\1.ff.proj_out."),
]

_POSITION_BIAS: Rules = [
    (r"net\.(\d+)\.0\.", r"hidden.\1."),
    (r"net\.2\.", r"to_heads."),
]


def _prefixed(prefix_from: str, prefix_to: str, rules: Rules) -> Rules:
    return [(re.escape(prefix_from) + pattern, prefix_to + repl) for pattern, repl in rules]


# Custom LayerNorms (`gamma` + zero `beta` buffer) become weight/bias; applied after the structural rules.
_LAYERNORM_NAMES: Rules = [(r"\.gamma$", ".weight"), (r"\.beta$", ".bias")]

OFFICIAL_KEY_MAP: dict[str, Rules] = {
    "tokenizer": [
        *_prefixed("spatial_rel_pos_bias.", "spatial_pos_bias.", _POSITION_BIAS),
        (r"to_patch_emb_first_frame\.1\.", "patch_embed_first.norm_in."),
        (r"to_patch_emb_first_frame\.2\.", "patch_embed_first.proj."),
        (r"to_patch_emb_first_frame\.3\.", "patch_embed_first.norm_out."),
        (r"to_patch_emb\.1\.", "patch_embed.norm_in."),
        (r"to_patch_emb\.2\.", "patch_embed.proj."),
        (r"to_patch_emb\.3\.", "patch_embed.norm_out."),
        *[
            rule
            for stage in ("enc_spatial", "enc_temporal", "dec_temporal", "dec_spatial")
            for rule in [
                *_prefixed(f"{stage}_transformer.", f"{stage}.", _TRANSFORMER_BLOCK),
                (re.escape(f"{stage}_transformer.norm_out."), f"{stage}.norm_out."),
            ]
        ],
        (r"vq\.project_in\.", "vq.project_in."),
        (r"vq\.project_out\.", "vq.project_out."),
        (r"vq\._codebook\.", "vq.codebook."),
        (r"to_pixels_first_frame\.0\.", "to_pixels_first."),
        (r"to_pixels\.0\.", "to_pixels."),
    ],
    "transformer": [
        (r"token_emb\.", "token_emb."),
        (r"pos_emb\.", "pos_emb."),
        *_prefixed("continuous_pos_bias.", "pos_bias.", _POSITION_BIAS),
        *_prefixed("transformer.", "transformer.", _TRANSFORMER_BLOCK),
        (r"transformer\.norm_out\.", "transformer.norm_out."),
        (r"to_logits\.", "to_logits."),
    ],
    "stmem": [
        (r"to_patch_embedding\.1\.", "patch_embed.norm_in."),
        (r"to_patch_embedding\.2\.", "patch_embed.proj."),
        (r"to_patch_embedding\.3\.", "patch_embed.norm_out."),
        (r"pos_embedding$", "pos_embedding"),
        (r"sep_embedding$", "sep_embedding"),
        (r"lead_embeddings\.(\d+)$", r"lead_embeddings.\1"),
        (r"block(\d+)\.attn\.norm\.", r"blocks.\1.attn_norm."),
        (r"block(\d+)\.attn\.fn\.to_qkv\.", r"blocks.\1.attn.to_qkv."),
        (r"block(\d+)\.attn\.fn\.to_out\.0\.", r"blocks.\1.attn.to_out."),
        (r"block(\d+)\.ff\.norm\.", r"blocks.\1.ff_norm."),
        (r"block(\d+)\.ff\.fn\.net\.0\.", r"blocks.\1.ff.fc1."),
        (r"block(\d+)\.ff\.fn\.net\.3\.", r"blocks.\1.ff.fc2."),
        (r"norm\.", "norm."),
        (r"head\.", "head."),
    ],
}

# Prefixes the official C-ViViT checkpoint carries for its training losses (LPIPS-VGG, I3D): not part of
# the tokenizer, dropped with a log line.
DROPPED_PREFIXES = ("loss_fn_lpips.", "i3d.")

# Stage-2 `model-*.pt['model']`: which of our parts each prefix holds.
STAGE2_PREFIXES = {"cvivit.": "tokenizer", "maskgit.": "transformer", "encode_ekg.": "stmem"}


def official_key(key: str, part: str) -> str | None:
    """Our name for an official key of `part`, or None when no rule matches."""
    for pattern, replacement in OFFICIAL_KEY_MAP[part]:
        match = re.match(pattern, key)
        if match:
            ours = match.expand(replacement) + key[match.end():]
            for ln_pattern, ln_repl in _LAYERNORM_NAMES:
                if part != "stmem":
                    ours = re.sub(ln_pattern, ln_repl, ours)
            return ours
    return None


def map_official_keys(
    state: Mapping[str, object], part: str
) -> tuple[dict[str, object], list[str], list[str]]:
    """(our state dict, dropped official keys, official keys no rule knows)."""
    mapped: dict[str, object] = {}
    dropped: list[str] = []
    unknown: list[str] = []
    for key, value in state.items():
        if part == "tokenizer" and key.startswith(DROPPED_PREFIXES):
            dropped.append(key)
            continue
        ours = official_key(key, part)
        if ours is None:
            unknown.append(key)
        else:
            mapped[ours] = value
    return mapped, dropped, unknown

"""C-ViViT tokenizer and its cosine VQ: the official tiny fixture, the paper checkpoint's keys, VQ training
behaviour, and a small overfit run on phantom clips.

The fixtures in ../shared/compat were made by running the official ECHOPulse code (see its README); we
read them in place.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

from echopulse.echo.phantom import make_phantom
from echopulse.generator.config import TokenizerConfig
from echopulse.generator.official_keys import map_official_keys
from echopulse.generator.quantizer import CosineVectorQuantizer
from echopulse.generator.tokenizer import VideoTokenizer

REPO = Path(__file__).resolve().parents[1]
COMPAT = REPO.parent / "shared" / "compat"
TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def compat() -> Path:
    if not COMPAT.is_dir():
        pytest.fail(f"compat fixtures missing: {COMPAT} (the suite reads ../shared/compat)")
    return COMPAT


def tiny_config(compat: Path) -> TokenizerConfig:
    kwargs = json.loads((compat / "cvivit_tiny.config.json").read_text())["constructor_kwargs"]
    for unused in ("use_vgg_and_gan", "wandb_mode"):
        kwargs.pop(unused)
    return TokenizerConfig(**kwargs, num_frames=5)


@pytest.fixture(scope="module")
def tiny(compat: Path) -> VideoTokenizer:
    model = VideoTokenizer(tiny_config(compat))
    official = load_file(compat / "cvivit_tiny.state_dict.safetensors")
    mapped, dropped, unknown = map_official_keys(official, "tokenizer")
    assert unknown == [] and dropped == []
    model.load_state_dict(mapped, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def io(compat: Path) -> dict[str, torch.Tensor]:
    return load_file(compat / "cvivit_tiny.io.safetensors")


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, **TOL)


# ---- the official tiny fixture ------------------------------------------------------------------------


def test_tiny_state_dict_round_trips(tiny: VideoTokenizer, compat: Path) -> None:
    path = compat / "cvivit_tiny.state_dict.safetensors"
    with safe_open(path, "pt") as f:
        key_order = json.loads(f.metadata()["key_order"])  # safetensors itself stores keys sorted
    official = load_file(path)
    mapped, _, _ = map_official_keys({key: official[key] for key in key_order}, "tokenizer")
    ours = tiny.state_dict()
    assert list(ours) == list(mapped)  # same keys, in the official checkpoint order
    for key, value in mapped.items():
        assert torch.equal(ours[key], value), key


def test_tiny_stages_match_official(tiny: VideoTokenizer, io: dict[str, torch.Tensor]) -> None:
    """Each stage fed the official input of that stage, so a mismatch points at one stage."""
    with torch.no_grad():
        assert_close(tiny.patch_tokens(io["video"]), io["patch_tokens"])
        assert_close(tiny.encode_tokens(io["patch_tokens"]), io["encoder_out"])
        packed = io["encoder_out"].flatten(1, 3)
        assert_close(tiny.vq.normalized_inputs(packed), io["vq_in_l2normed"])
        assert_close(tiny.vq.cosine_similarity(packed), io["vq_cosine_sim"])
        assert_close(tiny.vq.codes_to_embeddings(io["codebook_ids"]), io["quantized_projected_out"])
        assert_close(tiny.decode_tokens(io["quantized_projected_out"]), io["decoded_from_ids"])


def test_tiny_codebook_ids_exact(tiny: VideoTokenizer, io: dict[str, torch.Tensor]) -> None:
    ids = tiny.encode(io["video"])
    assert ids.dtype == torch.int64
    assert torch.equal(ids, io["codebook_ids"])


def test_tiny_prime_frame_ids_exact(tiny: VideoTokenizer, io: dict[str, torch.Tensor]) -> None:
    ids = tiny.encode(io["prime_frame"])
    assert ids.shape == (2, 1, 4, 4)
    assert torch.equal(ids, io["prime_frame_codebook_ids"])


def test_tiny_decode_from_ids(tiny: VideoTokenizer, io: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        assert_close(tiny.decode(io["codebook_ids"]), io["decoded_from_ids"])
        assert_close(tiny.decode(io["codebook_ids"].reshape(2, 48)), io["decoded_from_ids"])


def test_tiny_forward_recon_eval(tiny: VideoTokenizer, io: dict[str, torch.Tensor]) -> None:
    before = {k: v.clone() for k, v in tiny.vq.state_dict().items()}
    with torch.no_grad():
        out = tiny(io["video"])
    assert_close(out.recon, io["recon_eval"])
    assert torch.equal(out.ids, io["codebook_ids"])
    assert out.commit_loss.item() == 0.0
    for key, value in tiny.vq.state_dict().items():
        assert torch.equal(value, before[key]), f"eval forward changed vq.{key}"


def test_decode_prime_only_and_bad_shapes(tiny: VideoTokenizer, io: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        frame = tiny.decode(io["prime_frame_codebook_ids"])
    assert frame.shape == (2, 3, 1, 32, 32)
    with pytest.raises(ValueError, match="1 \\+ k"):
        tiny.encode(io["video"][:, :, :4])
    with pytest.raises(ValueError, match="token frames"):
        tiny.decode(io["codebook_ids"].reshape(2, 48)[:, :40])


# ---- the paper checkpoint's keys ----------------------------------------------------------------------


def test_paper_config_matches_manifest(compat: Path) -> None:
    manifest = json.loads((compat / "manifest_cvivit_paper.json").read_text())["tensors"]
    official = {key: torch.Size(entry["shape"]) for key, entry in manifest.items()}
    core = [key for key, entry in manifest.items() if entry["group"] == "core"]
    mapped, dropped, unknown = map_official_keys(official, "tokenizer")
    assert unknown == []
    assert set(dropped) == set(official) - set(core)
    assert all(key.startswith(("loss_fn_lpips.", "i3d.")) for key in dropped)
    with torch.device("meta"):
        model = VideoTokenizer(TokenizerConfig())
    ours = {key: value.shape for key, value in model.state_dict().items()}
    assert len(mapped) == len(core) == len(ours) == 278
    assert set(ours) == set(mapped)
    for key, shape in ours.items():
        assert mapped[key] == shape, key


# ---- the quantizer in training mode -------------------------------------------------------------------


def identity_quantizer(
    codes: torch.Tensor, *, decay: float, dead_code_threshold: float
) -> CosineVectorQuantizer:
    """A VQ whose projections are the identity, so the codebook space is the input space."""
    size, dim = codes.shape
    vq = CosineVectorQuantizer(dim, size, dim, decay=decay, dead_code_threshold=dead_code_threshold)
    with torch.no_grad():
        for proj in (vq.project_in, vq.project_out):
            proj.weight.copy_(torch.eye(dim))
            proj.bias.zero_()
        vq.codebook.embed.copy_(codes[None])
        vq.codebook.embed_avg.copy_(codes[None] * 10)
        vq.codebook.cluster_size.fill_(10.0)
    return vq.train()


def clustered_batch(target: torch.Tensor, n: int = 64, noise: float = 0.05) -> torch.Tensor:
    return F.normalize(target + noise * torch.randn(n, target.shape[0]), dim=-1)


def test_ema_pulls_code_toward_data_and_dead_codes_restart() -> None:
    torch.manual_seed(0)
    target = F.normalize(torch.tensor([1.0, 0.6, 0.0, 0.0]), dim=-1)
    vq = identity_quantizer(torch.eye(4), decay=0.5, dead_code_threshold=1.0)
    first = vq(clustered_batch(target))
    assert (first.ids == 0).all()  # every input is nearest to e0
    assert first.commit_loss.item() > 0
    cos_before = float(torch.eye(4)[0] @ target)
    for _ in range(2):
        vq(clustered_batch(target))
    assert float(vq.codebook.codes[0] @ target) > max(0.99, cos_before + 0.1)
    # Codes 1..3 are never picked: their count halves each step, 10 → 0.625 < 1 at the 4th update.
    assert torch.allclose(vq.codebook.codes[1:], torch.eye(4)[1:], atol=1e-6)
    vq(clustered_batch(target))
    assert (vq.codebook.codes[1:] @ target > 0.95).all()  # restarted onto inputs of the batch
    assert torch.allclose(vq.codebook.cluster_size[0, 1:], torch.ones(3))
    assert torch.allclose(vq.codebook.codes.norm(dim=-1), torch.ones(4))


def test_dead_code_threshold_zero_disables_restarts() -> None:
    torch.manual_seed(0)
    target = F.normalize(torch.tensor([1.0, 0.6, 0.0, 0.0]), dim=-1)
    vq = identity_quantizer(torch.eye(4), decay=0.5, dead_code_threshold=0.0)
    for _ in range(6):
        vq(clustered_batch(target))
    assert torch.allclose(vq.codebook.codes[1:], torch.eye(4)[1:], atol=1e-6)


def test_eval_quantizer_returns_codes_exactly() -> None:
    torch.manual_seed(0)
    vq = CosineVectorQuantizer(16, 32, 8).eval()
    x = torch.randn(3, 5, 16)
    with torch.no_grad():
        out = vq(x)
        expected = vq.project_out(vq.codebook.embed[0][out.ids])
    assert out.ids.shape == (3, 5)
    assert torch.equal(out.quantized, expected)
    assert 0 < out.usage.item() <= 15 / 32 and 1 <= out.perplexity.item() <= 15


def test_lookup_uses_stored_codes_as_they_are() -> None:
    """Quirk 5: the argmax is over dot products with the stored codes, which are not re-normalised."""
    codes = torch.tensor([[0.5, 0.0], [0.0, 2.0]])  # not unit: only the EMA update makes codes unit
    vq = identity_quantizer(codes, decay=0.8, dead_code_threshold=0.0).eval()
    x = torch.tensor([[0.9, 0.3]])  # closer in angle to code 0, larger dot product with code 1
    with torch.no_grad():
        out = vq(x)
    assert out.ids.tolist() == [1]
    assert torch.equal(out.quantized, codes[1:])


def test_straight_through_reaches_encoder() -> None:
    torch.manual_seed(0)
    config = TokenizerConfig(dim=32, codebook_size=16, codebook_dim=4, image_size=16, patch_size=8,
                             spatial_depth=1, temporal_depth=1, dim_head=8, heads=2, channels=1, num_frames=3)
    model = VideoTokenizer(config).train()
    video = torch.rand(2, 1, 3, 16, 16)
    out = model(video)
    assert out.ids.shape == (2, 2, 2, 2)
    out.recon_loss.backward()  # the reconstruction alone: only the straight-through path reaches the encoder
    for module in (model.patch_embed_first, model.patch_embed, model.enc_spatial, model.enc_temporal,
                   model.vq.project_in):
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), type(module).__name__


# ---- overfit on phantom clips -------------------------------------------------------------------------


@pytest.mark.usefixtures("one_torch_thread")
def test_tiny_tokenizer_overfits_phantom_clips() -> None:
    overfit_phantom_clips()


def overfit_phantom_clips() -> None:
    clips = np.stack([make_phantom(seed=seed, size=32, frames=5).clip for seed in range(3)])
    video = torch.from_numpy(clips).float().div(255).unsqueeze(1)  # (3, 1, 5, 32, 32)
    torch.manual_seed(0)
    config = TokenizerConfig(dim=64, codebook_size=64, codebook_dim=8, image_size=32, patch_size=8,
                             spatial_depth=1, temporal_depth=1, dim_head=16, heads=2, channels=1,
                             num_frames=5, dead_code_threshold=0.5)
    model = VideoTokenizer(config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        out = model(video)
        optimizer.zero_grad()
        (out.recon_loss + out.commit_loss).backward()
        optimizer.step()
        losses.append(out.recon_loss.item())
    model.eval()
    with torch.no_grad():
        final = F.mse_loss(model.decode(model.encode(video)), video).item()
    assert final <= losses[0] / 10, (losses[0], final)
    assert final < 0.25 * video.var().item()  # well below predicting the mean grey level

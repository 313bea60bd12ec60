"""ST-MEM encoder against the official code's numbers (tiny random weights) and the ViT-B checkpoint layout.

The fixtures in ../shared/compat were produced by running the official ST-MEM and ECHOPulse modules; see
their README. Nothing here needs the released weights.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from echopulse.generator.config import STMEMConfig
from echopulse.generator.official_keys import map_official_keys
from echopulse.generator.stmem import STMEMEncoder

COMPAT = Path(__file__).resolve().parents[2] / "shared" / "compat"
TOL = {"atol": 1e-5, "rtol": 1e-5}
INPUTS = {"random": "ecg_random", "echopulse": "ecg_echopulse"}
CONFIG_FIELDS = ("seq_len", "patch_size", "num_leads", "width", "depth", "mlp_dim", "heads", "dim_head",
                 "num_classes")


@pytest.fixture(scope="module")
def compat() -> Path:
    if not COMPAT.is_dir():
        pytest.fail(f"compatibility fixtures missing: {COMPAT} (the suite reads ../shared/compat)")
    return COMPAT


@pytest.fixture(scope="module")
def tiny_config(compat: Path) -> STMEMConfig:
    kwargs = json.loads((compat / "stmem_tiny.config.json").read_text())["constructor_kwargs"]
    return STMEMConfig(**{name: kwargs[name] for name in CONFIG_FIELDS})


@pytest.fixture(scope="module")
def tiny(compat: Path, tiny_config: STMEMConfig) -> STMEMEncoder:
    official = load_file(compat / "stmem_tiny.state_dict.safetensors")
    mapped, dropped, unknown = map_official_keys(official, "stmem")
    assert unknown == [] and dropped == []
    assert len(mapped) == len(official)
    model = STMEMEncoder(tiny_config)
    model.load_state_dict(mapped, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def io(compat: Path) -> dict[str, torch.Tensor]:
    return load_file(compat / "stmem_tiny.io.safetensors")


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    torch.testing.assert_close(actual, expected, **TOL)


def test_tiny_state_dict_key_order_maps_onto_ours(compat: Path, tiny: STMEMEncoder) -> None:
    """Every official key, in checkpoint order, lands on one of our keys with the same shape."""
    with safe_open(compat / "stmem_tiny.state_dict.safetensors", "pt") as f:
        order = json.loads(f.metadata()["key_order"])
    mapped, _, _ = map_official_keys(dict.fromkeys(order), "stmem")
    assert set(mapped) == set(tiny.state_dict())


@pytest.mark.parametrize("name", list(INPUTS))
def test_tiny_matches_official_outputs(tiny: STMEMEncoder, io: dict[str, torch.Tensor], name: str) -> None:
    ecg = io[INPUTS[name]]
    with torch.no_grad():
        tokens = tiny.encode(ecg)
        assert_close(tokens, io[f"{name}__last_block_tokens"])
        assert_close(tiny.pool(tokens, "lead"), io[f"{name}__echopulse_pooled"])
        assert_close(tiny.pool(tokens, "all"), io[f"{name}__orig_pooled"])
        assert_close(tiny.head_logits(ecg), io[f"{name}__orig_head_logits"])
        # forward and context follow config.pooling ("lead", ECHOPulse's) by default.
        assert_close(tiny(ecg), io[f"{name}__echopulse_pooled"])
        assert_close(tiny.context(ecg), io[f"{name}__echopulse_pooled"][:, None])


def test_tiny_float64_input_is_cast(tiny: STMEMEncoder, io: dict[str, torch.Tensor]) -> None:
    ecg = io["ecg_echopulse"].double()
    with torch.no_grad():
        out = tiny(ecg)
    assert_close(out, io["echopulse__echopulse_pooled_from_double"])


def test_the_two_poolings_really_differ(io: dict[str, torch.Tensor]) -> None:
    """Guards the test above: were the two poolings one vector, matching both would prove little."""
    for name in INPUTS:
        gap = (io[f"{name}__echopulse_pooled"] - io[f"{name}__orig_pooled"]).abs().max()
        assert gap > 0.1


def test_pooling_variants_from_one_model(tiny: STMEMEncoder, tiny_config: STMEMConfig,
                                         io: dict[str, torch.Tensor]) -> None:
    ecg = io["ecg_random"]
    with torch.no_grad():
        tokens = tiny.encode(ecg)
        seq = tiny.pool(tokens, "tokens")
        assert seq.shape == (2, 12 * 32, tiny_config.width)
        assert_close(seq, tiny.norm(io["random__last_block_tokens"]))

        as_tokens = STMEMEncoder(
            replace(tiny_config, pooling="tokens")
        ).eval()
        as_tokens.load_state_dict(tiny.state_dict())
        assert_close(as_tokens.context(ecg), seq)

        as_all = STMEMEncoder(replace(tiny_config, pooling="all")).eval()
        as_all.load_state_dict(tiny.state_dict())
        assert_close(as_all(ecg), io["random__orig_pooled"])

        # pooled_lead picks the lead: lead 0 pooling differs from lead 1 and equals a hand-made mean.
        as_lead0 = STMEMEncoder(replace(tiny_config, pooled_lead=0)).eval()
        as_lead0.load_state_dict(tiny.state_dict())
        expected = tiny.norm(io["random__last_block_tokens"][:, 1:31].mean(dim=1))
        assert_close(as_lead0(ecg), expected)


def test_zero_leads_still_shape_the_lead_ii_vector(tiny: STMEMEncoder, io: dict[str, torch.Tensor]) -> None:
    """The 11 zero leads go through attention too: dropping ten of them changes lead II's vector."""
    ecg = io["ecg_echopulse"]
    assert torch.count_nonzero(ecg[:, [0, *range(2, 12)]]) == 0
    with torch.no_grad():
        twelve = tiny(ecg)
        two = tiny(ecg[:, :2])  # lead 0 (zero) and lead II only
    assert (twelve - two).abs().max() > 1e-3


def test_bad_inputs_are_refused(tiny: STMEMEncoder, tiny_config: STMEMConfig) -> None:
    with pytest.raises(ValueError, match="leads"):
        tiny(torch.zeros(1, 13, 2250))
    with pytest.raises(ValueError, match="takes 2250"):
        tiny(torch.zeros(1, 12, 2175))
    with pytest.raises(ValueError, match="batch, leads, samples"):
        tiny(torch.zeros(12, 2250))
    with pytest.raises(ValueError, match="pooled_lead"):
        STMEMEncoder(replace(tiny_config, pooled_lead=12))
    with pytest.raises(RuntimeError, match="no classification head"):
        STMEMEncoder(replace(tiny_config, num_classes=0)).head_logits(
            torch.zeros(1, 12, 2250)
        )


def test_gradients_reach_every_parameter(tiny_config: STMEMConfig) -> None:
    """Trainable from scratch: one backward pass touches every weight (the head through head_logits)."""
    torch.manual_seed(0)
    model = STMEMEncoder(replace(tiny_config, depth=1))
    ecg = torch.randn(2, 12, 2250)
    (model(ecg).square().sum() + model.head_logits(ecg).sum()).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_paper_config_matches_vit_base_manifest(compat: Path) -> None:
    manifest = json.loads((compat / "manifest_stmem_vit_base.json").read_text())
    tensors = manifest["tensors"]
    assert len(tensors) == manifest["num_tensors"] == 168
    with torch.device("meta"):
        model = STMEMEncoder(STMEMConfig(num_classes=manifest["constructor_kwargs"]["num_classes"]))
    ours = {name: tuple(t.shape) for name, t in model.state_dict().items()}

    mapped, dropped, unknown = map_official_keys(tensors, "stmem")
    assert unknown == [] and dropped == []
    assert len(mapped) == len(tensors)  # no two official keys land on one of ours
    assert set(mapped) == set(ours)
    shapes = {name: tuple(entry["shape"]) for name, entry in mapped.items()}
    assert shapes == ours
    assert sum(t.numel() for t in model.state_dict().values()) == manifest["counts"]["all"]["numel"]


def test_paper_config_without_head_matches_released_encoder_keys(compat: Path) -> None:
    """The released st_mem_vit_base.pth has no head; our default config (num_classes=0) has none either."""
    tensors = json.loads((compat / "manifest_stmem_vit_base.json").read_text())["tensors"]
    encoder_only = {k: v for k, v in tensors.items() if not k.startswith("head.")}
    with torch.device("meta"):
        model = STMEMEncoder(STMEMConfig())
    mapped, _, unknown = map_official_keys(encoder_only, "stmem")
    assert unknown == []
    assert set(mapped) == set(model.state_dict())

"""Model files: our checkpoint directories, the released ECHOPulse / ST-MEM layouts, and refusals.

The "official" files are built here from the tiny compat fixtures in ../shared/compat (random weights from
the official code), saved with `torch.save` in the layouts of the released files.
"""

from __future__ import annotations

import argparse
import builtins
import json
import logging
import os
import pickle
from dataclasses import fields, replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from echopulse.cli.convert import add_parser as add_convert_parser
from echopulse.cli.convert import run as run_convert
from echopulse.errors import EchopulseError, ModelError
from echopulse.generator.checkpoints import FORMAT, config_from_dict, load_checkpoint, save_checkpoint
from echopulse.generator.config import (
    GeneratorConfig,
    SamplingConfig,
    STMEMConfig,
    TokenizerConfig,
    TransformerConfig,
    paper_config,
    small_config,
)
from echopulse.generator.official import (
    convert_official,
    fit_official,
    load_official,
    load_official_stage2,
    load_official_stmem,
    load_official_tokenizer,
    split_stage2,
)
from echopulse.generator.official_keys import (
    DROPPED_PREFIXES,
    STAGE2_PREFIXES,
    map_official_keys,
    official_key,
)
from echopulse.generator.parts import build_parts, new_module

COMPAT = Path(__file__).resolve().parents[2] / "shared" / "compat"  # like conftest.SHARED_DATA
PARTS = ("stmem", "tokenizer", "transformer")
OFFICIAL_PART = {"tokenizer": "cvivit_tiny", "transformer": "maskgit_tiny", "stmem": "stmem_tiny"}
STAGE2_PREFIX = {part: prefix for prefix, part in STAGE2_PREFIXES.items()}


# ------------------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def compat() -> Path:
    if not COMPAT.is_dir():
        pytest.fail(f"compat fixtures missing: {COMPAT} (the suite reads ../shared/compat)")
    return COMPAT


def _kwargs(compat: Path, name: str) -> dict:
    return json.loads((compat / f"{name}.config.json").read_text())["constructor_kwargs"]


@pytest.fixture(scope="session")
def tiny(compat: Path) -> GeneratorConfig:
    """The GeneratorConfig of the tiny compat nets (the e2e fixture composes exactly these three)."""
    cvivit = _kwargs(compat, "cvivit_tiny")
    token_fields = {f.name for f in fields(TokenizerConfig)}
    assert set(cvivit) - token_fields == {"use_vgg_and_gan", "wandb_mode"}  # training-only switches
    tokenizer = TokenizerConfig(**{k: v for k, v in cvivit.items() if k in token_fields}, num_frames=5)
    return GeneratorConfig(
        name="tiny",
        stmem=STMEMConfig(**_kwargs(compat, "stmem_tiny")),
        tokenizer=tokenizer,
        transformer=TransformerConfig(**_kwargs(compat, "maskgit_tiny")),
        sampling=SamplingConfig(steps=18, guidance=1.0),
    )


@pytest.fixture(scope="session")
def official(compat: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Official-named tiny state dicts per part, in the official key order."""
    out = {}
    for part, name in OFFICIAL_PART.items():
        path = compat / f"{name}.state_dict.safetensors"
        state = load_file(str(path))
        order = json.loads((compat / f"{name}.config.json").read_text())["state_dict_keys_in_order"]
        assert sorted(order) == sorted(state)
        out[part] = {key: state[key] for key in order}
    return out


def _loss_tensors() -> dict[str, torch.Tensor]:
    """A few stand-ins for the LPIPS / I3D training-loss tensors the released C-ViViT file carries."""
    return {
        "loss_fn_lpips.net.slice1.0.weight": torch.randn(4, 3, 3, 3),
        "loss_fn_lpips.lin0.model.1.weight": torch.randn(1, 4, 1, 1),
        "i3d.Conv3d_1a_7x7.bn.running_mean": torch.randn(4),
        "i3d.Conv3d_1a_7x7.bn.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
    }


@pytest.fixture()
def files(tmp_path: Path, official) -> dict[str, Path]:
    """The three released files in their official layouts, from the tiny fixtures."""
    folder = tmp_path / "Model_weights"
    folder.mkdir()
    cvivit = folder / "CVIVIT_pytorch_model_finetune.bin"
    torch.save({**official["tokenizer"], **_loss_tensors()}, cvivit)
    stmem = folder / "st_mem_vit_base.pth"
    torch.save(
        {"epoch": 799, "model": dict(official["stmem"]), "optimizer": None, "scaler": None,
         "config": {"model_name": "st_mem_vit_base", "seq_len": 2250, "patch_size": 75, "lr": 1.5e-4}},
        stmem,
    )
    stage2 = folder / "model-14.pt"
    torch.save(_stage2_payload(official), stage2)
    return {"tokenizer": cvivit, "stmem": stmem, "stage2": stage2}


def _stage2_payload(official, prefix: str = "") -> dict:
    model = {}
    for part in ("tokenizer", "transformer", "stmem"):
        extra = _loss_tensors() if part == "tokenizer" else {}
        for key, value in {**official[part], **extra}.items():
            model[f"{prefix}{STAGE2_PREFIX[part]}{key}"] = value
    first = next(iter(official["transformer"].values()))
    opt = {
        "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros_like(first),
                      "exp_avg_sq": torch.zeros_like(first)}},
        "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": 0,
                          "amsgrad": False, "params": [0]}],
    }
    return {"step": 14000, "model": model, "opt": opt, "scaler": None}


def _assert_from_fixture(part: str, ours: dict[str, torch.Tensor], fixture: dict[str, torch.Tensor]) -> None:
    """Every tensor of our part equals the official fixture tensor it was mapped from (null_context: zero)."""
    covered = set()
    for key, value in fixture.items():
        name = official_key(key, part)
        assert name is not None, key
        assert torch.equal(ours[name], value), f"{part}: {name} != official {key}"
        assert ours[name].dtype == value.dtype
        covered.add(name)
    rest = set(ours) - covered
    if part == "transformer":
        assert rest == {"null_context"}
        assert not ours["null_context"].any()
    else:
        assert rest == set()


def _state_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert set(a) == set(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key


def _modules(config: GeneratorConfig, parts=PARTS) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {part: new_module(config, part) for part in parts}


# ------------------------------------------------------------------------------------------------------
# Our format
# ------------------------------------------------------------------------------------------------------


def test_round_trip_identical(tmp_path: Path, tiny: GeneratorConfig) -> None:
    modules = _modules(tiny)
    out = save_checkpoint(tmp_path / "model", tiny, modules, metadata={"run": "unit test"})
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]  # no temp files
    loaded = load_checkpoint(out)
    assert loaded.config == tiny
    assert loaded.path == out
    assert loaded.parts == PARTS
    assert loaded.metadata["format"] == "echopulse-generator/1"
    assert loaded.metadata["config_hash"] == tiny.hash
    assert loaded.metadata["parts"] == "stmem,tokenizer,transformer"
    assert loaded.metadata["run"] == "unit test"
    for part in PARTS:
        _state_equal(loaded.state[part], modules[part].state_dict())
    built = loaded.build()
    for part, module in built.items():
        assert not module.training
        assert type(module) is type(modules[part])
        _state_equal(module.state_dict(), modules[part].state_dict())


def test_partial_directory_and_overwrite(tmp_path: Path, tiny: GeneratorConfig) -> None:
    """A tokenizer-only directory (stage-1 training), then saved over with new weights."""
    first = _modules(tiny, ("tokenizer",))["tokenizer"]
    state = {k: v.clone() for k, v in first.state_dict().items()}
    save_checkpoint(tmp_path, tiny, {"tokenizer": state})
    loaded = load_checkpoint(tmp_path)
    assert loaded.parts == ("tokenizer",)
    assert loaded.metadata["parts"] == "tokenizer"
    with pytest.raises(ModelError, match=r"model\.safetensors: no transformer weights"):
        loaded.build(["transformer"])
    # Non-contiguous and shared-storage tensors are written as plain copies.
    key = next(k for k, v in state.items() if v.ndim == 2)
    state[key] = state[key].t().contiguous().t() + 1.0
    assert not state[key].is_contiguous()
    save_checkpoint(tmp_path, tiny, {"tokenizer": state})
    again = load_checkpoint(tmp_path)
    assert torch.equal(again.state["tokenizer"][key], state[key])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


def test_save_refuses_bad_arguments(tmp_path: Path, tiny: GeneratorConfig) -> None:
    with pytest.raises(ValueError, match="parts"):
        save_checkpoint(tmp_path, tiny, {"decoder": {}})
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path, tiny, {"tokenizer": {}}, metadata={"format": "x"})
    assert not (tmp_path / "model.safetensors").exists()


@pytest.fixture()
def saved(tmp_path: Path, tiny: GeneratorConfig) -> Path:
    return save_checkpoint(tmp_path / "model", tiny, _modules(tiny, ("transformer", "stmem")))


def test_missing_directory_config_weights(tmp_path: Path, saved: Path) -> None:
    with pytest.raises(ModelError, match=r"nowhere: not a model directory \(missing\)"):
        load_checkpoint(tmp_path / "nowhere")
    (saved / "model.safetensors").unlink()
    with pytest.raises(ModelError, match=r"model/model\.safetensors: weights file missing"):
        load_checkpoint(saved)
    (saved / "config.json").unlink()
    with pytest.raises(ModelError, match=r"model/config\.json: config file missing"):
        load_checkpoint(saved)


def test_truncated_safetensors(saved: Path) -> None:
    weights = saved / "model.safetensors"
    data = weights.read_bytes()
    for cut in (len(data) // 2, 7, 0):
        weights.write_bytes(data[:cut])
        with pytest.raises(ModelError, match=r"model\.safetensors: not a readable safetensors file"):
            load_checkpoint(saved)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("\xff\xfe garbage", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"name": "x", "stmem": {"widht": 64}}', r"unknown stmem config fields: \['widht'\]"),
        ('{"name": "x", "decoder": {}}', r"unknown config fields: \['decoder'\]"),
        ('{"name": "x", "transformer": {"dim": "wide"}}', "transformer.dim = 'wide' is not a int"),
        ('{"name": "x", "tokenizer": [1]}', "tokenizer must be an object"),
    ],
)
def test_bad_config_json(saved: Path, text: str, problem: str) -> None:
    (saved / "config.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(ModelError, match=r"model/config\.json: .*" + problem):
        load_checkpoint(saved)


def test_hash_mismatch(saved: Path, tiny: GeneratorConfig) -> None:
    other = replace(tiny, transformer=replace(tiny.transformer, depth=3))
    (saved / "config.json").write_text(other.to_json())
    with pytest.raises(ModelError, match=r"model\.safetensors: written for config hash .* do not belong"):
        load_checkpoint(saved)
    # The name and sampling defaults are not architecture: changing them keeps the weights valid.
    renamed = replace(tiny, name="renamed", sampling=SamplingConfig(steps=4))
    (saved / "config.json").write_text(renamed.to_json())
    assert load_checkpoint(saved).config.sampling.steps == 4


def test_foreign_safetensors(saved: Path) -> None:
    weights = saved / "model.safetensors"
    save_file({"transformer.x": torch.zeros(1)}, str(weights), metadata={"format": "pt"})
    with pytest.raises(ModelError, match=r"model\.safetensors: format 'pt'"):
        load_checkpoint(saved)
    config = GeneratorConfig.load(saved / "config.json")
    meta = {"format": FORMAT, "config_hash": config.hash, "parts": "transformer"}
    save_file({"decoder.x": torch.zeros(1)}, str(weights), metadata=meta)
    with pytest.raises(ModelError, match="keys outside the parts"):
        load_checkpoint(saved)
    save_file({"stmem.x": torch.zeros(1)}, str(weights), metadata=meta)
    with pytest.raises(ModelError, match=r"lists parts \['transformer'\], the file holds \['stmem'\]$"):
        load_checkpoint(saved)


def test_wrong_shapes_missing_unexpected_keys(tmp_path: Path, tiny: GeneratorConfig) -> None:
    state = dict(_modules(tiny, ("transformer",))["transformer"].state_dict())
    state["to_logits.weight"] = torch.zeros(7, 48)
    del state["pos_emb.weight"]
    state["extra.weight"] = torch.zeros(1)
    save_checkpoint(tmp_path, tiny, {"transformer": state})
    loaded = load_checkpoint(tmp_path)
    with pytest.raises(ModelError) as info:
        loaded.build()
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'model.safetensors'}: transformer weights do not fit the config")
    assert "missing keys pos_emb.weight (1)" in message
    assert "unexpected keys extra.weight (1)" in message
    assert "to_logits.weight expected [64, 48] found [7, 48]" in message
    assert "\n" not in message


def test_long_key_lists_are_shortened(tiny: GeneratorConfig) -> None:
    with pytest.raises(ModelError, match=r"missing keys .*, \.\.\. \(\d+ in all\)") as info:
        build_parts(tiny, {"stmem": {}}, ["stmem"])
    assert len(str(info.value)) < 600


# ------------------------------------------------------------------------------------------------------
# Official files
# ------------------------------------------------------------------------------------------------------


def test_official_tokenizer(files, official, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="echopulse.generator.official"):
        state = load_official_tokenizer(files["tokenizer"])
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert dropped == [
        "CVIVIT_pytorch_model_finetune.bin: dropped 4 tokenizer tensors of the training losses "
        "(loss_fn_lpips.*, i3d.*)"
    ]
    assert not any(key.startswith(DROPPED_PREFIXES) for key in state)
    _assert_from_fixture("tokenizer", state, official["tokenizer"])


def test_official_stmem_layouts(tmp_path: Path, files, official, caplog) -> None:
    _assert_from_fixture("stmem", load_official_stmem(files["stmem"]), official["stmem"])
    bare = tmp_path / "bare.pth"
    torch.save(dict(official["stmem"]), bare)
    _assert_from_fixture("stmem", load_official_stmem(bare), official["stmem"])
    # ST-MEM's full pre-training checkpoint: the encoder under `encoder.`, plus the MAE decoder.
    full = tmp_path / "st_mem_full.pth"
    decoder = {
        "to_decoder_embedding.weight": torch.zeros(8, 64), "mask_embedding": torch.zeros(1, 1, 8),
        "decoder_pos_embed": torch.zeros(1, 32, 8),
        "decoder_blocks.0.attn.fn.to_qkv.weight": torch.zeros(24, 8),
        "decoder_norm.weight": torch.ones(8), "decoder_head.weight": torch.zeros(75, 8),
    }
    encoder = {f"encoder.{k}": v for k, v in official["stmem"].items()}
    torch.save({"epoch": 1, "model": {**encoder, **decoder}, "optimizer": None, "scaler": None}, full)
    with caplog.at_level(logging.INFO, logger="echopulse.generator.official"):
        state = load_official_stmem(full)
    _assert_from_fixture("stmem", state, official["stmem"])
    assert any("dropped 6 decoder tensors" in r.getMessage() for r in caplog.records)


def test_official_stage2(tmp_path: Path, files, official) -> None:
    split = load_official_stage2(files["stage2"])
    assert sorted(split) == sorted(PARTS)
    for part in PARTS:
        _assert_from_fixture(part, split[part] | ({"null_context": torch.zeros(1)} if part == "transformer"
                                                   else {}), official[part])
    # A DataParallel-wrapped save (`module.` prefixes) reads the same.
    wrapped = tmp_path / "model-ddp.pt"
    torch.save(_stage2_payload(official, prefix="module."), wrapped)
    again = load_official_stage2(wrapped)
    for part in PARTS:
        _state_equal(again[part], split[part])


def test_load_official_builds_identical_modules(files, official, tiny, caplog) -> None:
    with pytest.raises(ModelError, match=r"^no official weights for transformer \(pass --stage2 model-"):
        load_official(tokenizer=files["tokenizer"], stmem=files["stmem"], config=tiny)
    config, state = load_official(tokenizer=files["tokenizer"], stmem=files["stmem"], config=tiny,
                                     parts=("tokenizer", "stmem"))
    assert config == tiny
    assert sorted(state) == ["stmem", "tokenizer"]
    for part in ("tokenizer", "stmem"):
        _assert_from_fixture(part, build_parts(config, state, [part])[part].state_dict(), official[part])
    with caplog.at_level(logging.INFO, logger="echopulse.generator.official"):
        config, state = load_official(stage2=files["stage2"], config=tiny)
    assert any("null_context set to zeros" in r.getMessage() for r in caplog.records)
    modules = build_parts(config, state)
    for part, module in modules.items():
        assert not module.training
        _assert_from_fixture(part, module.state_dict(), official[part])


def test_stage2_overrides_separate_files(tmp_path: Path, files, official, tiny) -> None:
    """Separate files are read first, the stage-2 file's parts replace them (the official order)."""
    shifted = tmp_path / "shifted.bin"
    torch.save({k: v + 1 if v.is_floating_point() else v for k, v in official["tokenizer"].items()}, shifted)
    _, alone = load_official(tokenizer=shifted, config=tiny, parts=("tokenizer",))
    _, both = load_official(tokenizer=shifted, stage2=files["stage2"], config=tiny)
    _assert_from_fixture("tokenizer", both["tokenizer"], official["tokenizer"])
    key = official_key("to_pixels.0.weight", "tokenizer")
    assert torch.equal(alone["tokenizer"][key], both["tokenizer"][key] + 1)


def test_stmem_head(tmp_path: Path, files, official, tiny, caplog) -> None:
    """The released st_mem_vit_base.pth has no head; the stage-2 copy has a random one, never used."""
    headless = tmp_path / "st_mem_vit_base.pth"
    encoder = {k: v for k, v in official["stmem"].items() if not k.startswith("head.")}
    torch.save({"epoch": 1, "model": encoder, "optimizer": None, "scaler": None, "config": {}}, headless)
    no_head = replace(tiny, stmem=replace(tiny.stmem, num_classes=0))
    _, state = load_official(stmem=headless, config=no_head, parts=("stmem",))
    assert not any(k.startswith("head.") for k in state["stmem"])
    with caplog.at_level(logging.INFO, logger="echopulse.generator.official"):
        _, state = load_official(stage2=files["stage2"], config=no_head)
    assert any("model-14.pt: dropped the ST-MEM classification head" in r.getMessage()
               for r in caplog.records)
    build_parts(no_head, state)
    # A config that wants a head cannot take the head-less file.
    with pytest.raises(ModelError, match=r"base\.pth: stmem weights do not fit.*missing keys head"):
        load_official(stmem=headless, config=tiny, parts=("stmem",))


def test_convert_official_round_trip(tmp_path: Path, files, official, tiny) -> None:
    out = convert_official(tmp_path / "converted", stage2=files["stage2"], stmem=files["stmem"],
                              config=tiny)
    loaded = load_checkpoint(out)
    assert loaded.config == tiny
    source = loaded.metadata["source"]
    assert source.startswith("official ECHOPulse/ST-MEM conversion")
    assert "model-14.pt" in source and "st_mem_vit_base.pth" in source
    assert str(files["stage2"].parent) not in source  # names, not paths
    _, direct = load_official(stage2=files["stage2"], stmem=files["stmem"], config=tiny)
    for part in PARTS:
        _state_equal(loaded.state[part], direct[part])
        _assert_from_fixture(part, loaded.state[part], official[part])


def test_official_shape_mismatch_against_config(files, tiny) -> None:
    wider = replace(tiny, transformer=replace(tiny.transformer, dim=64))
    with pytest.raises(ModelError) as info:
        load_official(stage2=files["stage2"], config=wider)
    message = str(info.value)
    assert message.startswith(f"{files['stage2']}: transformer weights do not fit config 'tiny'")
    assert "token_emb.weight expected [65, 64] found [65, 48]" in message
    with pytest.raises(ModelError, match=r"CVIVIT_pytorch_model_finetune\.bin: tokenizer weights do not fit"):
        load_official(tokenizer=files["tokenizer"], parts=("tokenizer",))  # paper config


# ------------------------------------------------------------------------------------------------------
# Manifests of the released files (paper shapes, meta device)
# ------------------------------------------------------------------------------------------------------


def _meta_state(manifest: dict) -> dict[str, torch.Tensor]:
    return {key: torch.empty(t["shape"], dtype=getattr(torch, t["dtype"]), device="meta")
            for key, t in manifest["tensors"].items()}


def _meta_module_shapes(config: GeneratorConfig, part: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        module = new_module(config, part)
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def test_manifest_stage2_split(compat: Path, caplog) -> None:
    manifest = json.loads((compat / "manifest_stage2_model_pt.json").read_text())
    assert manifest["num_tensors"] == 990
    official = _meta_state(manifest)
    # The stage-2 ST-MEM carries its (random) 3-class head; with a head in the config it maps 1:1.
    config = replace(paper_config(), stmem=replace(paper_config().stmem, num_classes=3))
    with caplog.at_level(logging.INFO, logger="echopulse.generator.official"):
        split = split_stage2(official, "model-14.pt")
    assert any("dropped 382 tokenizer tensors" in r.getMessage() for r in caplog.records)
    reverse = {}
    for part in PARTS:
        prefix = STAGE2_PREFIX[part]
        sub = {k[len(prefix):]: v for k, v in official.items() if k.startswith(prefix)}
        _, dropped, unknown = map_official_keys(sub, part)
        assert unknown == []
        expected_dropped = {k[len(prefix):] for k, t in manifest["tensors"].items()
                            if t["group"] in ("cvivit.loss_fn_lpips.", "cvivit.i3d.")}
        assert set(dropped) == (expected_dropped if part == "tokenizer" else set())
        for key in sub:
            if key not in dropped:
                reverse[(part, official_key(key, part))] = prefix + key
        ours = _meta_module_shapes(config, part)
        got = {k: tuple(v.shape) for k, v in split[part].items()}
        # Official → ours: every kept key lands on one of our keys, with its shape.
        assert set(got) <= set(ours), sorted(set(got) - set(ours))[:5]
        for key, shape in got.items():
            assert ours[key] == shape, key
        # Ours → official: only transformer.null_context has no official counterpart.
        only_ours = {f"{part}.{k}" for k in set(ours) - set(got)}
        assert only_ours == ({"transformer.null_context"} if part == "transformer" else set())
    # Key for key: the map is one-to-one (990 = 382 dropped + 608 kept, no two official keys on one of ours).
    assert len(reverse) == 990 - 382
    assert sum(len(v) for v in split.values()) == 608
    counts = manifest["counts"]
    assert len(split["tokenizer"]) == counts["cvivit."]["tensors"]
    assert len(split["transformer"]) == counts["maskgit."]["tensors"]
    assert len(split["stmem"]) == counts["encode_ekg."]["tensors"]
    # And fit_official makes it fit the default paper config exactly (null_context added, head dropped).
    fit_official(paper_config(), split, {part: "model-14.pt" for part in PARTS})
    for part in PARTS:
        ours = _meta_module_shapes(paper_config(), part)
        assert {k: tuple(v.shape) for k, v in split[part].items()} == ours


def test_manifest_maskgit(compat: Path) -> None:
    manifest = json.loads((compat / "manifest_maskgit_paper.json").read_text())
    assert manifest["num_tensors"] == 162
    mapped, dropped, unknown = map_official_keys(_meta_state(manifest), "transformer")
    assert (dropped, unknown) == ([], [])
    assert len(mapped) == 162
    ours = _meta_module_shapes(paper_config(), "transformer")
    assert set(ours) - set(mapped) == {"null_context"}
    assert set(mapped) <= set(ours)
    for key, value in mapped.items():
        assert tuple(value.shape) == ours[key], key
    assert ours["null_context"] == (1, 1, 768)
    assert ours["token_emb.weight"] == (8193, 512)


# ------------------------------------------------------------------------------------------------------
# Bad official files
# ------------------------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this calls `builtins.exec`, which creates the marker file: code execution, visibly."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",))


class _ShellPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_pickle_payloads_are_refused_not_run(tmp_path: Path, official) -> None:
    # The payload is live: a plain unpickle does run it.
    control = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(_Payload(control)))
    assert control.exists()

    marker = tmp_path / "pwned"
    cases = {
        "exec.pt": lambda p: torch.save({"model": {"w": torch.zeros(1), "x": _Payload(marker)}}, p),
        "system.pt": lambda p: torch.save({"step": 1, "model": {}, "opt": _ShellPayload(marker)}, p),
        "raw.bin": lambda p: p.write_bytes(pickle.dumps({"w": _Payload(marker)}, protocol=2)),
    }
    for name, write in cases.items():
        path = tmp_path / name
        write(path)
        for loader in (load_official_tokenizer, load_official_stmem, load_official_stage2):
            with pytest.raises(ModelError) as info:
                loader(path)
            message = str(info.value)
            assert message.startswith(f"{path}: refused"), message
            assert "nothing in it was run" in message
            assert "\n" not in message
            assert not marker.exists()
    with pytest.raises(ModelError, match=r"references (builtins\.exec|posix\.system|os\.system)"):
        load_official_stage2(tmp_path / "system.pt")
    with pytest.raises(ModelError, match="refused"):
        load_official(stage2=tmp_path / "exec.pt")
    assert not marker.exists()


def test_truncated_and_corrupt_files(tmp_path: Path, files) -> None:
    data = files["stage2"].read_bytes()
    cases = {"half.pt": data[: len(data) // 2], "head.pt": data[:100], "empty.pt": b"",
             "text.pt": b"hello " * 50}
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        for loader in (load_official_tokenizer, load_official_stmem, load_official_stage2):
            with pytest.raises(ModelError, match=rf"^{path}: not a readable PyTorch checkpoint") as info:
                loader(path)
            assert "\n" not in str(info.value)
    with pytest.raises(ModelError, match=r"nothing\.bin: file missing"):
        load_official_tokenizer(tmp_path / "nothing.bin")
    with pytest.raises(ModelError, match="not a file"):
        load_official_stmem(tmp_path)


def test_not_a_dict_and_missing_model(tmp_path: Path, official) -> None:
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listed)
    for loader in (load_official_tokenizer, load_official_stmem, load_official_stage2):
        with pytest.raises(ModelError, match=r"list\.pt: holds a list, not a dict of weights"):
            loader(listed)
    no_model = tmp_path / "no_model.pt"
    torch.save({"step": 3, "opt": {}, "scaler": None}, no_model)
    with pytest.raises(ModelError, match=r"no_model\.pt: has no 'model' entry \(top-level keys: opt, scaler"):
        load_official_stage2(no_model)
    with pytest.raises(ModelError, match=r"no_model\.pt: has no 'model' entry"):
        load_official_stmem(no_model)
    with pytest.raises(ModelError, match=r"no_model\.pt: not a state dict: entries that are not tensors"):
        load_official_tokenizer(no_model)
    empty = tmp_path / "empty_model.pt"
    torch.save({"step": 3, "model": {}}, empty)
    with pytest.raises(ModelError, match="holds no weights"):
        load_official_stage2(empty)


def test_unknown_keys(tmp_path: Path, official, tiny) -> None:
    odd = tmp_path / "odd.bin"
    torch.save({**official["tokenizer"], "discr.0.weight": torch.zeros(1), "gan.w": torch.zeros(1)}, odd)
    with pytest.raises(ModelError, match=r"odd\.bin: keys no tokenizer rule knows: discr\.0\.weight, gan\.w"):
        load_official_tokenizer(odd)
    # A key under a known prefix maps, but the config's module has no such tensor.
    extra = tmp_path / "extra.bin"
    torch.save({**official["tokenizer"], "vq._codebook.extra": torch.zeros(1)}, extra)
    with pytest.raises(ModelError, match=r"extra\.bin: tokenizer weights do not fit .*unexpected keys "
                                         r"vq\.codebook\.extra \(1\)$"):
        load_official(tokenizer=extra, config=tiny, parts=("tokenizer",))
    stray = tmp_path / "stray.pt"
    payload = _stage2_payload(official)
    payload["model"]["critic.weight"] = torch.zeros(1)
    torch.save(payload, stray)
    with pytest.raises(ModelError, match=r"stray\.pt: keys outside .*critic\.weight"):
        load_official_stage2(stray)
    pretrain = tmp_path / "pretrain.pth"
    torch.save({"model": {"encoder.norm.weight": torch.zeros(1), "projector.w": torch.zeros(1)}}, pretrain)
    with pytest.raises(ModelError, match=r"pretrain\.pth: keys neither encoder nor decoder"):
        load_official_stmem(pretrain)


def test_missing_parts_say_which_file(files) -> None:
    with pytest.raises(ModelError) as info:
        load_official(tokenizer=files["tokenizer"])
    message = str(info.value)
    assert "stmem (pass --stmem st_mem_vit_base.pth or --stage2 model-*.pt)" in message
    assert "transformer (pass --stage2 model-*.pt)" in message
    assert "tokenizer (pass" not in message


def test_model_error_is_an_echopulse_error() -> None:
    assert issubclass(ModelError, EchopulseError)


# ------------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="echopulse")
    commands = parser.add_subparsers(dest="command", required=True)
    add_convert_parser(commands)
    return parser.parse_args(argv)


def test_run_convert(tmp_path: Path, files, official, tiny, capsys) -> None:
    config_file = tmp_path / "tiny.json"
    config_file.write_text(tiny.to_json())
    out = tmp_path / "out"
    args = _parse([
        "convert-official", "--tokenizer", str(files["tokenizer"]), "--stage2", str(files["stage2"]),
        "--stmem", str(files["stmem"]), "--out", str(out), "--config", str(config_file),
    ])
    assert args.command == "convert-official"
    assert run_convert(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert f"-> {out}" in capsys.readouterr().out
    loaded = load_checkpoint(out)
    assert loaded.config == tiny
    for part in PARTS:
        _assert_from_fixture(part, loaded.state[part], official[part])


def test_run_convert_refusals(tmp_path: Path, files, tiny) -> None:
    config_file = tmp_path / "tiny.json"
    config_file.write_text(tiny.to_json())
    bad = tmp_path / "model-bad.pt"
    bad.write_bytes(files["stage2"].read_bytes()[:1000])
    out = tmp_path / "out"
    args = _parse(["convert-official", "--stage2", str(bad), "--out", str(out), "--config", str(config_file)])
    with pytest.raises(ModelError, match=r"model-bad\.pt: not a readable PyTorch checkpoint"):
        run_convert(args)
    assert not out.exists()
    with pytest.raises(ModelError, match="at least one of --tokenizer, --stage2, --stmem"):
        run_convert(_parse(["convert-official", "--out", str(out)]))
    # The default config is the paper one: the tiny weights do not fit it.
    with pytest.raises(ModelError, match="do not fit config 'paper'"):
        run_convert(_parse(["convert-official", "--stage2", str(files["stage2"]), "--out", str(out)]))
    with pytest.raises(ModelError, match="do not fit config 'small'"):
        run_convert(_parse(["convert-official", "--stage2", str(files["stage2"]), "--out", str(out),
                               "--config", "small"]))
    config_file.write_text('{"name": "x", "stmem": {"depth": "deep"}}')
    with pytest.raises(ModelError, match=r"tiny\.json: config field stmem\.depth"):
        run_convert(_parse(["convert-official", "--stage2", str(files["stage2"]), "--out", str(out),
                               "--config", str(config_file)]))
    assert not out.exists()


def test_small_config_round_trip_through_json() -> None:
    """The configs our files are written with survive config.json (what load_checkpoint checks)."""
    for config in (paper_config(), small_config()):
        assert config_from_dict(json.loads(config.to_json())) == config

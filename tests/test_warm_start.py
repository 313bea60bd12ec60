from dataclasses import replace
from pathlib import Path

import torch

from echopulse.generator.checkpoints import load_checkpoint, save_checkpoint
from echopulse.generator.parts import new_module
from echopulse.generator.training.warm_start import warm_start
from tests.test_cycle_tokenizer import tiny_cycle_config


def test_matching_weights_carry_over_and_the_rest_start_fresh(tmp_path: Path) -> None:
    wide = tiny_cycle_config()
    wide = replace(wide, tokenizer=replace(wide.tokenizer, cycle_dim=3))
    torch.manual_seed(1)
    trained = new_module(wide, "tokenizer").state_dict()
    save_checkpoint(tmp_path / "a", wide, {"tokenizer": trained})
    result = warm_start(tmp_path / "a", tiny_cycle_config(), tmp_path / "b")
    fresh = {"cycle_encoder.2.weight", "cycle_encoder.2.bias", "cycle_in.weight"}
    assert set(result.fresh["tokenizer"]) == fresh
    loaded = load_checkpoint(tmp_path / "b")
    assert loaded.config == tiny_cycle_config()
    state = loaded.state["tokenizer"]
    for name in result.carried["tokenizer"]:
        assert torch.equal(state[name], trained[name]), name
    assert state["cycle_in.weight"].shape[1] == 1 and "vq.codebook" in "".join(result.carried["tokenizer"])
    tokenizer = loaded.build(["tokenizer"], torch.device("cpu"))["tokenizer"]
    assert tokenizer.cycle_code(torch.rand(1, 1, 3, 16, 16)).shape == (1, 3, 1)

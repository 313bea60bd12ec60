"""End to end through `EchoGenerator` in official-compatible mode: ECG → ST-MEM → 18 sampling steps →
decoded video, against the official `Phenaki.sample` trace (Gumbel noise off), loaded from a stage-2
checkpoint in the official layout."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_generator_sampling import COMPAT, tiny_config

from echopulse.generator.echo_generator import EchoGenerator, to_uint8_frames
from echopulse.preprocess.compat import echopulse_ecg_input

ATOL = RTOL = 1e-5


@pytest.fixture(scope="module")
def e2e() -> dict[str, torch.Tensor]:
    return load_file(COMPAT / "e2e_tiny_sample.io.safetensors")


@pytest.fixture(scope="module")
def official_generator(tmp_path_factory) -> EchoGenerator:
    """The tiny official nets saved as the official stage-2 `model-*.pt` and loaded by our loader."""
    model = {}
    parts = (("cvivit.", "cvivit_tiny"), ("maskgit.", "maskgit_tiny"), ("encode_ekg.", "stmem_tiny"))
    for prefix, name in parts:
        for key, value in load_file(COMPAT / f"{name}.state_dict.safetensors").items():
            model[prefix + key] = value
    path = tmp_path_factory.mktemp("official") / "model-14.pt"
    torch.save({"step": 140_000, "model": model, "opt": {}, "scaler": None}, path)
    config = tiny_config()
    # The stage-2 file carries ST-MEM's (never trained) 3-class head; a config with a head keeps it.
    config = replace(config, stmem=replace(config.stmem, num_classes=3))
    return EchoGenerator.from_official(stage2=path, config=config, device="cpu")


def test_official_mode_reproduces_the_sampling_trace(official_generator, e2e) -> None:
    assert official_generator.official_compatible
    video = official_generator.generate_video(e2e["ekg"], noise=False)
    torch.testing.assert_close(video, e2e["greedy__video"], atol=ATOL, rtol=RTOL)


def test_official_mode_with_a_prime_frame_keeps_it_and_reproduces_the_trace(official_generator, e2e) -> None:
    video = official_generator.generate_video(e2e["ekg"], prime=e2e["prime_frames"], noise=False)
    torch.testing.assert_close(video, e2e["greedy_primed__video"], atol=ATOL, rtol=RTOL)


def test_official_mode_ignores_guidance(official_generator, e2e) -> None:
    """The official weights never saw a null context: guidance is forced to 1 and recorded as such."""
    clips = official_generator.generate(e2e["ekg"].numpy(), guidance=3.0, noise=False, seed=1)
    assert all(clip.provenance.guidance == 1.0 for clip in clips)
    expected = to_uint8_frames(e2e["greedy__video"])
    for clip, frames in zip(clips, expected, strict=True):
        assert np.abs(clip.frames.astype(int) - frames.astype(int)).max() <= 1
        assert clip.provenance.synthetic and clip.frames.dtype == np.uint8


def test_our_compat_preprocessing_feeds_the_official_input(e2e) -> None:
    """The e2e ECG input is the official preprocessing of the two example traces; ours gives the same."""
    raw = load_file(COMPAT / "ecg_preproc.io.safetensors")
    for i in range(2):
        ours = echopulse_ecg_input(raw[f"raw_{i}"].numpy())
        np.testing.assert_allclose(ours, e2e["ekg"][i].numpy(), atol=1e-12, rtol=0)

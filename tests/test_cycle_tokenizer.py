"""The anatomy-and-cycle tokenizer and the generator built on it: shapes, what each half carries, training
(tokenizer, then transformer with its cycle head), and generation with and without a prime frame.

A tiny config (16×16 px, 3 frames, 4 anatomy ids) keeps every run to seconds; the same code paths train
the bundled `cycle` config.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from echopulse.echo.shards import PhantomRun, write_shards
from echopulse.generator.checkpoints import load_checkpoint
from echopulse.generator.config import (
    GeneratorConfig,
    SamplingConfig,
    STMEMConfig,
    TokenizerConfig,
    TransformerConfig,
    cycle_config,
    small_config,
)
from echopulse.generator.cycle_tokenizer import CycleTokenizer
from echopulse.generator.echo_generator import EchoGenerator
from echopulse.generator.parts import new_module
from echopulse.generator.training import TrainingError
from echopulse.generator.training.data import open_dataset
from echopulse.generator.training.generator_trainer import cycle_loss, train_generator
from echopulse.generator.training.settings import TrainSettings
from echopulse.generator.training.tokenizer_trainer import train_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_cycle_config() -> GeneratorConfig:
    return GeneratorConfig(
        name="tiny-cycle",
        stmem=STMEMConfig(width=32, depth=1, mlp_dim=64, heads=2, dim_head=16),
        tokenizer=TokenizerConfig(
            dim=32, codebook_size=64, codebook_dim=8, image_size=16, patch_size=8, spatial_depth=1,
            temporal_depth=1, dim_head=16, heads=2, channels=1, num_frames=3, dead_code_threshold=0.5,
            cycle_dim=1,
        ),
        transformer=TransformerConfig(
            num_tokens=64, max_seq_len=4, dim=32, dim_context=32, depth=1, heads=2, dim_head=16,
            cond_drop_prob=0.2, cycle_frames=3, cycle_dim=1,
        ),
        sampling=SamplingConfig(steps=2, guidance=2.0, cycle_temperature=1.0),
    )  # fmt: skip


def settings(steps: int, **kw) -> TrainSettings:
    base = dict(steps=steps, batch_size=4, lr=3e-3, warmup_steps=0, sample_every=10_000, save_every=10_000,
                progress=False, holdout=0)  # fmt: skip
    return TrainSettings(**{**base, **kw})


def log_of(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phantom")
    write_shards(out, PhantomRun(n=8, seed=5, size=16, frames=3, shard_size=8))
    return out


@pytest.fixture(scope="module")
def tokenizer_run(tmp_path_factory: pytest.TempPathFactory, phantom: Path) -> Path:
    out = tmp_path_factory.mktemp("cycle-tokenizer")
    train_tokenizer(tiny_cycle_config(), open_dataset(phantom), out, settings(80))
    return out


@pytest.fixture(scope="module")
def generator_run(tmp_path_factory: pytest.TempPathFactory, phantom: Path, tokenizer_run: Path) -> Path:
    out = tmp_path_factory.mktemp("cycle-generator")
    train_generator(tiny_cycle_config(), open_dataset(phantom), tokenizer_run, out, settings(150, lr=5e-3))
    return out


def test_the_anatomy_is_frame_zero_and_the_motion_is_the_cycle_code() -> None:
    torch.manual_seed(0)
    tokenizer = CycleTokenizer(tiny_cycle_config().tokenizer).eval().requires_grad_(False)
    video = torch.rand(2, 1, 3, 16, 16)
    ids = tokenizer.encode(video)
    assert ids.shape == (2, 1, 2, 2) and tiny_cycle_config().tokenizer.grid == (1, 2, 2)
    # the ids read frame 0 only: later frames change nothing, and one frame alone gives the same ids
    changed = video.clone()
    changed[:, :, 1:] = torch.rand_like(changed[:, :, 1:])
    assert torch.equal(tokenizer.encode(changed), ids) and torch.equal(tokenizer.encode(video[:, :, :1]), ids)
    # the cycle code reads every frame against frame 0, bounded
    code = tokenizer.cycle_code(video)
    assert code.shape == (2, 3, 1) and float(code.abs().max()) < 1
    assert not torch.equal(tokenizer.cycle_code(changed)[:, 1:], code[:, 1:])
    # the decoder: the same ids under another cycle code give other frames
    recon = tokenizer.decode(ids, code)
    assert recon.shape == video.shape and torch.allclose(tokenizer.reconstruct(video), recon, atol=1e-5)
    assert not torch.allclose(tokenizer.decode(ids, -code), recon)
    with pytest.raises(ValueError, match="anatomy ids must be"):
        tokenizer.decode(torch.zeros(2, 5, dtype=torch.long), code)


def test_the_cycle_fields_leave_older_configs_and_their_hashes_alone() -> None:
    small = small_config()
    assert small.tokenizer.cycle_dim == 0 and small.tokenizer.grid == (6, 8, 8)
    # the small model's hash did not move (the previous bundled model, 63b3522, was written with it)
    assert small.hash == "1bd538e9c891"
    cycle = cycle_config()
    assert cycle.tokenizer.grid == (1, 8, 8) and cycle.hash != small.hash
    assert (cycle.transformer.cycle_frames, cycle.transformer.cycle_dim) == (11, cycle.tokenizer.cycle_dim)
    assert isinstance(new_module(cycle, "tokenizer"), CycleTokenizer)


def test_tokenizer_learns_and_the_generator_learns_its_code(
    tokenizer_run: Path, generator_run: Path, phantom: Path
) -> None:
    log = log_of(tokenizer_run)
    first, last = log[0]["mse"], np.mean([e["mse"] for e in log[-5:]])
    assert first / last >= 5, (first, last)
    # the estimator learns the phantom's label (the LV area curve) as the decoder draws from it
    assert np.mean([e["cycle_mse"] for e in log[-5:]]) < np.mean([e["cycle_mse"] for e in log[:3]])
    log = log_of(generator_run)
    assert {"token_loss", "cycle_nll"} <= set(log[0])
    assert np.mean([e["cycle_nll"] for e in log[-10:]]) < np.mean([e["cycle_nll"] for e in log[:3]]) - 0.5
    assert np.mean([e["token_loss"] for e in log[-10:]]) < np.mean([e["token_loss"] for e in log[:3]])
    cache = torch.load(generator_run / "token_cache.pt", weights_only=True)
    assert cache["ids"].shape == (8, 1, 2, 2) and cache["cycle"].shape == (8, 3, 1)
    # the generator's cycle targets are the labels, not the estimator's reading of the clips
    data = open_dataset(phantom)
    labels = data.cycles(range(8), tiny_cycle_config().tokenizer)
    assert torch.allclose(cache["cycle"], labels) and float(labels[:, 0].abs().max()) == 0
    with np.load(phantom / "shard-00000.npz") as z:
        area = z["lv_area_px"][3]
    assert np.allclose(labels[3, :, 0].numpy(), area / area[0] - 1, atol=1e-6)
    checkpoint = load_checkpoint(generator_run)
    assert checkpoint.config == tiny_cycle_config()
    assert set(checkpoint.parts) == {"stmem", "tokenizer", "transformer"}


def test_a_prime_sets_the_heart_and_the_ecg_the_motion(generator_run: Path) -> None:
    generator = EchoGenerator.from_pretrained(generator_run, precision="fp32")
    ecg = np.random.default_rng(0).standard_normal((2, 12, 2250)).astype(np.float32)
    clips = generator.generate(ecg, seed=7)
    assert [c.frames.shape for c in clips] == [(3, 16, 16)] * 2
    again = generator.generate(ecg, seed=7)
    assert all(np.array_equal(a.frames, b.frames) for a, b in zip(clips, again, strict=True))
    prime = clips[0].frames[-1]
    primed = generator.generate(ecg, prime_frame=prime, seed=7)
    assert all(c.provenance.primed for c in primed)
    video = torch.as_tensor(prime).float()[None, None, None] / 255
    ids = generator.tokenizer.encode(video)
    with torch.no_grad():
        context = generator.stmem.context(torch.as_tensor(ecg))
        mean, _ = generator.transformer.predict_cycle(context)
        # at the cycle head's mean both clips are the prime's heart in the ECG's motion, exactly
        expected = generator.tokenizer.decode(ids.expand(2, -1, -1, -1), mean)
    calm = replace(generator.config, sampling=replace(generator.config.sampling, cycle_temperature=0.0))
    still = EchoGenerator(calm, {"stmem": generator.stmem, "tokenizer": generator.tokenizer,
                                 "transformer": generator.transformer}, model_id="t", precision="fp32")
    frames = still.generate(ecg, prime_frame=prime, seed=7)
    want = (expected.clamp(0, 1).mean(dim=1) * 255).round().to(torch.uint8).numpy()
    assert all(np.array_equal(c.frames, w) for c, w in zip(frames, want, strict=True))


def test_a_chain_keeps_one_heart_instead_of_reading_it_again_from_pixels(generator_run: Path) -> None:
    generator = EchoGenerator.from_pretrained(generator_run, precision="fp32")
    ecg = np.random.default_rng(1).standard_normal((4, 12, 2250)).astype(np.float32)
    first = generator.generate(ecg[:1], seed=3)[0]
    assert first.anatomy_ids is not None and first.anatomy_ids.shape == (1, 2, 2)
    chain = [first]
    for i in range(1, 4):
        chain += generator.generate(ecg[i : i + 1], seed=3, after=chain[-1])  # row 0 of each call: seed 3
    assert all(c.provenance.primed for c in chain[1:])
    assert all(np.array_equal(c.anatomy_ids, first.anatomy_ids) for c in chain)
    # each link is the first clip's heart in its own ECG's motion: what an unprimed clip with those ids is
    for i, clip in enumerate(chain[1:], start=1):
        ids = torch.as_tensor(first.anatomy_ids, dtype=torch.long)[None]
        video = generator.generate_video(torch.as_tensor(ecg[i : i + 1]), prime_ids=ids, seeds=[3])
        want = (video.clamp(0, 1).mean(dim=1) * 255).round().to(torch.uint8).numpy()[0]
        assert np.array_equal(clip.frames, want)
    # a clip from another model is continued from its last frame, as a plain prime
    foreign = replace(first, provenance=replace(first.provenance, model_id="another model"))
    by_frame = generator.generate(ecg[1:2], seed=4, prime_frame=first.frames[-1])[0]
    assert np.array_equal(generator.generate(ecg[1:2], seed=4, after=foreign)[0].frames, by_frame.frames)
    with pytest.raises(ValueError, match="not both"):
        generator.generate(ecg[1:2], seed=4, after=first, prime_frame=first.frames[-1])
    # the recording pipeline's chain continues each clip from the one before
    from echopulse.pipeline import ClipOptions, generate_clips

    clips = list(generate_clips(generator, ecg, ClipOptions(seed=3, chain=True)))  # type: ignore[arg-type]
    assert [np.array_equal(c.frames, w.frames) for c, w in zip(clips, chain, strict=True)] == [True] * 4


def test_the_cycle_loss_and_the_refusals() -> None:
    mean, target = torch.zeros(1, 3, 1), torch.ones(1, 3, 1)
    # exactly right at σ = |error| beats both a too-sure and a too-unsure prediction
    right = cycle_loss(mean, torch.zeros_like(mean), target)
    assert right < cycle_loss(mean, torch.full_like(mean, -1.0), target)
    assert right < cycle_loss(mean, torch.full_like(mean, 1.0), target)
    bad = replace(tiny_cycle_config(), transformer=replace(tiny_cycle_config().transformer, cycle_dim=0))
    with pytest.raises(TrainingError, match="cycle head of the same shape"):
        train_generator(bad, None, Path("."), Path("."), settings(1))  # type: ignore[arg-type]


def test_prime_masking_is_refused_for_a_cycle_tokenizer(
    phantom: Path, tokenizer_run: Path, tmp_path: Path
) -> None:
    with pytest.raises(TrainingError, match="prime-prob"):
        train_generator(tiny_cycle_config(), open_dataset(phantom), tokenizer_run, tmp_path, settings(1),
                        prime_prob=0.3)


def test_the_label_is_the_code_only_for_a_one_number_cycle(phantom: Path) -> None:
    data = open_dataset(phantom)
    one = tiny_cycle_config().tokenizer
    assert data.cycles([0, 1], one).shape == (2, 3, 1)
    assert data.cycles([0], replace(one, cycle_dim=2)) is None  # a wider code is learnt, not labelled
    assert data.cycles([0], replace(one, cycle_dim=0)) is None  # a frame-by-frame tokenizer has no cycle

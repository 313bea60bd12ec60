"""Training: the tokenizer and the generator learn, the CLI path end to end, resume, refusals.

A tiny config (16×16 px, 3 frames, 8 tokens per clip, one-layer networks) keeps every run to seconds on
two CPU cores; the same code paths train the small and paper configs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from echopulse.cli.train import add_parser as add_train_parser
from echopulse.cli.train import run as run_train
from echopulse.echo.shards import PhantomRun, write_shards
from echopulse.errors import EchopulseError, ModelError
from echopulse.generator.checkpoints import load_checkpoint
from echopulse.generator.config import (
    GeneratorConfig,
    SamplingConfig,
    STMEMConfig,
    TokenizerConfig,
    TransformerConfig,
)
from echopulse.generator.parts import build_parts
from echopulse.generator.training import TrainingError
from echopulse.generator.training.common import STATE_FILE
from echopulse.generator.training.data import open_dataset, parse_leads, prepare_clip
from echopulse.generator.training.generator_trainer import mask_tokens, train_generator
from echopulse.generator.training.losses import ssim
from echopulse.generator.training.settings import TrainSettings
from echopulse.generator.training.tokenizer_trainer import train_tokenizer
from echopulse.preprocess.beats import Beat
from echopulse.preprocess.windows import stmem_windows


def tiny_config(cond_drop_prob: float = 0.0) -> GeneratorConfig:
    return GeneratorConfig(
        name="tiny",
        stmem=STMEMConfig(width=32, depth=1, mlp_dim=64, heads=2, dim_head=16),
        tokenizer=TokenizerConfig(
            dim=32, codebook_size=64, codebook_dim=8, image_size=16, patch_size=8, spatial_depth=1,
            temporal_depth=1, dim_head=16, heads=2, channels=1, num_frames=3, dead_code_threshold=0.5,
        ),
        transformer=TransformerConfig(
            num_tokens=64, max_seq_len=8, dim=32, dim_context=32, depth=1, heads=2, dim_head=16,
            cond_drop_prob=cond_drop_prob,
        ),
        sampling=SamplingConfig(steps=4, guidance=1.0),
    )  # fmt: skip


def settings(steps: int, **kw) -> TrainSettings:
    base = dict(steps=steps, batch_size=4, lr=3e-3, warmup_steps=0, sample_every=10_000, save_every=10_000,
                progress=False, holdout=0)  # fmt: skip
    return TrainSettings(**{**base, **kw})


def log_of(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "train_log.jsonl").read_text().splitlines()]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phantom")
    write_shards(out, PhantomRun(n=4, seed=3, size=16, frames=3, shard_size=4))
    return out


@pytest.fixture(scope="module")
def tokenizer_run(tmp_path_factory: pytest.TempPathFactory, phantom: Path) -> Path:
    out = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(tiny_config(), open_dataset(phantom), out, settings(60))
    return out


def test_tokenizer_overfits_a_handful_of_clips(tokenizer_run: Path, phantom: Path) -> None:
    log = log_of(tokenizer_run)
    assert [e["step"] for e in log] == list(range(1, 61))
    first, last = log[0]["mse"], np.mean([e["mse"] for e in log[-5:]])
    assert first / last >= 10, (first, last)
    assert all(0 < e["codebook_usage"] <= 1 and e["lr"] > 0 for e in log)
    # The checkpoint holds the EMA weights; they reconstruct the clips too (eval mode, exact codes).
    checkpoint = load_checkpoint(tokenizer_run)
    assert checkpoint.parts == ("tokenizer",) and checkpoint.config == tiny_config()
    tokenizer = checkpoint.build()["tokenizer"]
    data = open_dataset(phantom)
    video = data.clips(range(len(data)), tiny_config().tokenizer)
    with torch.no_grad():
        recon = tokenizer.decode(tokenizer.encode(video))
    assert float(((recon - video) ** 2).mean()) < first / 5


def test_generator_masked_token_loss_falls(tokenizer_run: Path, phantom: Path, tmp_path: Path) -> None:
    data = open_dataset(phantom)
    result = train_generator(tiny_config(), data, tokenizer_run, tmp_path, settings(200, lr=5e-3))
    losses = [e["loss"] for e in log_of(tmp_path)]
    first, last = np.mean(losses[:3]), np.mean(losses[-10:])
    assert first / last >= 10, (first, last)
    assert result.steps == 200 and abs(result.first_loss - losses[0]) < 1e-5
    assert (tmp_path / "token_cache.pt").is_file()


def test_masking_follows_the_official_objective() -> None:
    torch.manual_seed(0)
    ids = torch.randint(0, 64, (2000, 40))
    inputs, mask = mask_tokens(ids, steps=4, mask_id=64)
    counts = mask.sum(dim=1)
    allowed = {max(1, round(np.cos(np.pi / 2 * s / 4) * 40)) for s in range(4)}  # {40, 37, 28, 15}
    assert set(counts.tolist()) == allowed
    assert torch.equal(inputs[mask], torch.full_like(inputs[mask], 64))
    assert torch.equal(inputs[~mask], ids[~mask])


def test_ecg_windows_are_the_inference_windows(phantom: Path) -> None:
    data = open_dataset(phantom)
    source = data.ecgs[1]
    beat = Beat(index=0, r_peak=2500, r_peak_s=10.0, rr_s=None, hr_bpm=None, quality=None, accepted=True)
    # what inference computes for a watch record holding lead I of the same ECG
    (expected,) = stmem_windows(source.signal[:1], 250.0, ["I"], [beat])
    got = data.windows([1], parse_leads("I"), np.random.default_rng(0))[0].numpy()
    assert np.array_equal(got, expected.signal) and np.all(got[1:] == 0) and got[0].std() > 0.5
    every = data.windows([1], "all", np.random.default_rng(0))[0].numpy()
    assert np.all(every.std(axis=1) > 0)
    drawn = [data.windows([1], "random", np.random.default_rng(s))[0].numpy() for s in range(20)]
    subsets = {tuple(np.flatnonzero(w.std(axis=1))) for w in drawn}
    assert len(subsets) > 5 and all(len(s) >= 1 for s in subsets)
    assert parse_leads("i, V2") == ("I", "V2")
    with pytest.raises(TrainingError, match="not one of the 12"):
        parse_leads("I,X7")


def test_clips_are_resampled_to_the_config() -> None:
    clip = np.zeros((4, 32, 32), np.uint8)
    clip[1] = 255
    x = prepare_clip(clip, TokenizerConfig(image_size=16, num_frames=8, channels=3), periodic=True)
    assert x.shape == (3, 8, 16, 16) and x.dtype == torch.float32
    # frame k at k·4/8 of the cycle: 0, 0.5, 1, 1.5, ... → values 0, .5, 1, .5, 0, 0, 0, 0
    assert np.allclose(x[0, :, 8, 8].numpy(), [0, 0.5, 1, 0.5, 0, 0, 0, 0], atol=1e-6)
    assert float(ssim(x[None], x[None])) == pytest.approx(1.0, abs=1e-5)


def test_folder_of_gif_clips_with_csv_ecgs(tmp_path: Path) -> None:
    import imageio.v3 as iio

    from echopulse.echo.phantom import make_phantom
    from echopulse.ingest import read_record
    from echopulse.preprocess.offline import preprocess_record

    samples = [make_phantom(20 + i, size=32, frames=5) for i in range(2)]
    for i, sample in enumerate(samples):
        t = np.arange(sample.ecg.shape[1]) / 250.0
        table = np.column_stack([t, sample.ecg[0], sample.ecg[1]])
        np.savetxt(tmp_path / f"c{i}.csv", table, delimiter=",", header="time,I,II", comments="", fmt="%.5f")
        iio.imwrite(tmp_path / f"c{i}.gif", sample.clip, extension=".gif", duration=50, loop=0)
    data = open_dataset(tmp_path)
    assert data.names == ["c0.gif", "c1.gif"] and data.ecgs[0].leads == ("I", "II")
    # the closing beat is the one inference detects near the clip's end (the phantom's R-peak at 10.0 s)
    for i, source in enumerate(data.ecgs):
        beats = preprocess_record(read_record(tmp_path / f"c{i}.csv")).beats
        assert source.r_peak == max(b.r_peak for b in beats if b.r_peak_s <= 11.0 - 0.9)
        assert abs(source.r_peak - 2500) <= 60
    assert np.array_equal(data.raw_clips[1], samples[1].clip)
    result = train_tokenizer(tiny_config(), data, tmp_path / "tok", settings(2, batch_size=2))
    assert result.steps == 2 and (tmp_path / "tok" / "model.safetensors").is_file()
    with pytest.raises(TrainingError, match="2 samples have none of --leads V1"):  # the CSVs hold I and II
        train_generator(tiny_config(), data, tmp_path / "tok", tmp_path / "gen", settings(1, leads="V1"))
    (tmp_path / "c2.gif").write_bytes((tmp_path / "c0.gif").read_bytes())
    with pytest.raises(TrainingError, match=r"c2\.gif: no ECG file"):
        open_dataset(tmp_path)


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="echopulse")
    add_train_parser(parser.add_subparsers(dest="command", required=True))
    return run_train(parser.parse_args(argv))


def test_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, tok, gen = tmp_path / "phantom", tmp_path / "tok", tmp_path / "gen"
    # 32 px, 5 frames: resampled to the config's 16 px, 3 frames
    write_shards(data, PhantomRun(n=6, seed=1, size=32, frames=5, shard_size=4))
    config = tmp_path / "tiny.json"
    config.write_text(tiny_config(cond_drop_prob=0.2).to_json())
    common = ["--config", str(config), "--data", str(data), "--batch-size", "2", "--no-progress"]
    tok_args = ["--out", str(tok), "--steps", "6", "--sample-every", "3"]
    assert run_cli(["train", "tokenizer", *common, *tok_args]) == 0
    gen_args = ["--tokenizer", str(tok), "--out", str(gen), "--steps", "4", "--leads", "random"]
    gen_args += ["--holdout", "1"]
    assert run_cli(["train", "generator", *common, *gen_args]) == 0
    assert "train generator: 4 steps" in capsys.readouterr().out

    checkpoint = load_checkpoint(gen)
    assert checkpoint.parts == ("stmem", "tokenizer", "transformer")
    parts = build_parts(checkpoint.config, checkpoint.state)
    assert set(parts) == {"stmem", "tokenizer", "transformer"}
    # the generator's tokenizer is the stage-1 EMA tokenizer, unchanged
    stage1 = load_checkpoint(tok).state["tokenizer"]
    assert all(torch.equal(v, checkpoint.state["tokenizer"][k]) for k, v in stage1.items())
    for run, steps, names in ((tok, 6, ("step-0000003", "step-0000006")), (gen, 4, ("step-0000004",))):
        assert [e["step"] for e in log_of(run)] == list(range(1, steps + 1))
        assert (run / STATE_FILE).is_file()
        for name in names:
            png = Image.open(run / "samples" / f"{name}.png")
            gif = Image.open(run / "samples" / f"{name}.gif")
            assert png.size[0] > 3 * 16 and gif.n_frames == 3
    assert set(log_of(tok)[0]) >= {"step", "loss", "mse", "lr", "codebook_usage"}

    # --stmem DIR --freeze-stmem: the encoder comes from the given checkpoint and stays as it was
    frozen = tmp_path / "frozen"
    argv = ["train", "generator", *common, "--tokenizer", str(tok), "--out", str(frozen), "--steps", "2"]
    assert run_cli([*argv, "--stmem", str(gen), "--freeze-stmem", "--holdout", "0"]) == 0
    given, kept = checkpoint.state["stmem"], load_checkpoint(frozen).state
    assert all(torch.equal(v, kept["stmem"][k]) for k, v in given.items())
    moved = checkpoint.state["transformer"]
    assert not all(torch.equal(v, kept["transformer"][k]) for k, v in moved.items())


def test_resume_gives_the_uninterrupted_result(tokenizer_run: Path, phantom: Path, tmp_path: Path) -> None:
    data, config = open_dataset(phantom), tiny_config(cond_drop_prob=0.3)

    def train(stage: str, out: Path, resume: Path | None = None, **kw) -> None:
        s = settings(8, save_every=3, warmup_steps=20, leads="random", **kw)
        if stage == "tokenizer":
            train_tokenizer(config, data, out, s, resume=resume)
        else:
            train_generator(config, data, tokenizer_run, out, s, resume=resume)

    for stage in ("tokenizer", "generator"):
        whole, part = tmp_path / f"{stage}-whole", tmp_path / f"{stage}-part"
        train(stage, whole)
        train(stage, part, until=5)
        assert [e["step"] for e in log_of(part)] == [1, 2, 3, 4, 5]
        train(stage, part, resume=part)
        a = torch.load(whole / STATE_FILE, weights_only=True)
        b = torch.load(part / STATE_FILE, weights_only=True)
        assert int(a["step"]) == int(b["step"]) == 8
        for key in ("model",):
            for name, value in a[key].items():
                assert torch.allclose(value.float(), b[key][name].float(), atol=1e-6), (stage, name)
        for name, value in a["ema"]["model"].items():
            assert torch.allclose(value.float(), b["ema"]["model"][name].float(), atol=1e-6), (stage, name)
        la, lb = log_of(whole), log_of(part)
        assert [e["step"] for e in lb] == list(range(1, 9))
        assert np.allclose([e["loss"] for e in la], [e["loss"] for e in lb], atol=1e-5)


def test_bad_arguments_are_one_line_refusals(tmp_path: Path, phantom: Path, tokenizer_run: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    not_a_checkpoint = tmp_path / "notckpt"
    not_a_checkpoint.mkdir()
    (not_a_checkpoint / "notes.txt").write_text("hello")
    base = ["--config", "small", "--out", str(tmp_path / "out"), "--no-progress"]
    cases = [
        (["train", "tokenizer", "--data", str(tmp_path / "missing"), *base], TrainingError, "not found"),
        (["train", "tokenizer", "--data", str(empty), *base], TrainingError, "no training data"),
        (["train", "generator", "--data", str(phantom), "--tokenizer", str(not_a_checkpoint), *base],
         ModelError, "config file missing"),
        (["train", "generator", "--data", str(phantom), "--tokenizer", str(tokenizer_run), *base],
         TrainingError, "tokenizer config differs"),
        (["train", "generator", "--data", str(phantom), "--tokenizer", str(tokenizer_run), "--leads", "I,Q",
          *base], TrainingError, "--leads"),
        (["train", "tokenizer", "--data", str(phantom), "--resume", str(empty), *base], TrainingError,
         "nothing to resume"),
        (["train", "tokenizer", "--data", str(phantom), "--steps", "0", *base], TrainingError, "--steps"),
        (["train", "tokenizer", "--data", str(phantom), "--config", "nope", *base[2:]], TrainingError,
         "--config"),
        (["train", "tokenizer", "--data", str(phantom), "--resume", str(tokenizer_run), *base], TrainingError,
         "config hash"),
    ]  # fmt: skip
    for argv, kind, words in cases:
        with pytest.raises(kind) as caught:
            run_cli(argv)
        assert isinstance(caught.value, EchopulseError)
        message = str(caught.value)
        assert words in message and "\n" not in message, (argv, message)
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_tokenizer_init_starts_from_a_trained_tokenizer(
    tokenizer_run: Path, phantom: Path, tmp_path: Path
) -> None:
    fresh_first = log_of(tokenizer_run)[0]["mse"]
    trained_last = np.mean([e["mse"] for e in log_of(tokenizer_run)[-5:]])
    train_tokenizer(tiny_config(), open_dataset(phantom), tmp_path, settings(3, lr=1e-5), init=tokenizer_run)
    first = log_of(tmp_path)[0]["mse"]
    assert first < fresh_first / 5 and first < 3 * trained_last, (first, fresh_first, trained_last)
    with pytest.raises(TrainingError, match="exclude"):
        train_tokenizer(tiny_config(), open_dataset(phantom), tmp_path / "x", settings(3), resume=tmp_path,
                        init=tokenizer_run)  # fmt: skip


def test_cycle_targets_describe_the_phantom_clip() -> None:
    """The encoder's timing targets are the phantom's own: end-systole lands on the labelled ES frame."""
    from echopulse.echo.ecg_phantom import simulate_ecg
    from echopulse.echo.phantom import make_phantom, seed_stream
    from echopulse.generator.training.ecg_trainer import TARGETS, cycle_targets

    names = [name for name, _, _ in TARGETS]
    for seed in range(8):
        sample = make_phantom(seed, size=32, frames=11)
        # make_phantom's first draws are its ECG: the same seed sequence gives the same ECG
        ecg = simulate_ecg(seed_stream(seed))
        np.testing.assert_array_equal(ecg.signal, sample.ecg)
        values = dict(zip(names, cycle_targets(ecg), strict=True))
        assert abs(values["end_systole"] * 11 - sample.labels.es_frame) <= 1.0, (seed, values)
        assert abs(values["hr_bpm"] - sample.labels.hr_bpm) < 0.5
        assert abs(values["ecg_ef"] - sample.labels.ef) < 12  # the rule's noise (σ 3) and the frames differ


def test_ecg_encoder_learns_and_the_generator_builds_on_it_frozen(
    tokenizer_run: Path, phantom: Path, tmp_path: Path
) -> None:
    from echopulse.generator.training.ecg_trainer import train_ecg_encoder

    config = tiny_config()
    config = GeneratorConfig(
        name="tiny-mv", stmem=STMEMConfig(width=32, depth=1, mlp_dim=64, heads=2, dim_head=16,
                                          pooling="all", window_layout="mv"),
        tokenizer=config.tokenizer, transformer=config.transformer, sampling=config.sampling,
    )  # fmt: skip
    ecg_dir = tmp_path / "ecg"
    run = settings(80, batch_size=16, lr=3e-3, save_every=40)
    result = train_ecg_encoder(config, ecg_dir, run, holdout=64)
    log = log_of(ecg_dir)
    first, last = np.mean([e["loss"] for e in log[:5]]), np.mean([e["loss"] for e in log[-10:]])
    assert first / last > 1.3, (first, last)
    assert result.steps == 80 and log[-1]["r2_hr_bpm"] > log[39]["r2_hr_bpm"] - 0.05
    checkpoint = load_checkpoint(ecg_dir)
    assert checkpoint.parts == ("stmem",) and "r2_ecg_ef" in checkpoint.metadata
    encoder = checkpoint.state["stmem"]

    gen_dir = tmp_path / "gen"
    train_generator(config, open_dataset(phantom), tokenizer_run, gen_dir, settings(5), stmem_dir=ecg_dir,
                    freeze_stmem=True)  # fmt: skip
    after = load_checkpoint(gen_dir).state["stmem"]
    assert all(torch.equal(encoder[key], after[key]) for key in encoder)


def test_decoder_only_training_keeps_every_token_id(
    tokenizer_run: Path, phantom: Path, tmp_path: Path
) -> None:
    """A generator trained on the first tokenizer's ids stays valid: the ids do not move, the pixels do."""
    data = open_dataset(phantom)
    video = data.clips(range(len(data)), tiny_config().tokenizer)
    before = load_checkpoint(tokenizer_run).build()["tokenizer"]
    run = settings(30, lr=3e-3)
    train_tokenizer(tiny_config(), data, tmp_path, run, init=tokenizer_run, decoder_only=True)
    after = load_checkpoint(tmp_path).build()["tokenizer"]
    with torch.no_grad():
        ids = before.encode(video)
        assert torch.equal(after.encode(video), ids)
        assert torch.equal(after.vq.codebook.embed, before.vq.codebook.embed)
        old, new = (float(((m.decode(ids) - video) ** 2).mean()) for m in (before, after))
    assert new < old, (old, new)
    with pytest.raises(TrainingError, match="--init"):
        train_tokenizer(tiny_config(), data, tmp_path / "x", settings(2), decoder_only=True)


def test_prime_masking_keeps_the_first_frame_and_is_the_official_mask_without_it() -> None:
    ids = torch.randint(0, 64, (400, 40), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(3)
    _, plain = mask_tokens(ids, steps=4, mask_id=64)
    torch.manual_seed(3)
    _, unprimed = mask_tokens(ids, steps=4, mask_id=64, prime_prob=0.0, prime_n=8)
    assert torch.equal(plain, unprimed)  # no prime: exactly the official draws
    torch.manual_seed(3)
    inputs, mask = mask_tokens(ids, steps=4, mask_id=64, prime_prob=0.5, prime_n=8)
    whole = {max(1, round(np.cos(np.pi / 2 * s / 4) * 40)) for s in range(4)}  # {40, 37, 28, 15}
    rest = {max(1, round(np.cos(np.pi / 2 * s / 4) * 32)) for s in range(4)}  # {32, 30, 23, 12}: the other 32
    counts = mask.sum(dim=1)
    assert set(counts.tolist()) <= whole | rest
    primed = torch.tensor([c in rest for c in counts.tolist()])
    assert 150 < int(primed.sum()) < 250  # about half the rows
    assert not mask[primed, :8].any()  # the first frame's ids are given...
    assert torch.equal(inputs[primed, :8], ids[primed, :8])
    assert mask[~primed, :8].any()  # ... and only in primed rows is it never masked


def test_a_generator_fine_tunes_from_a_checkpoint_with_primed_samples(
    tokenizer_run: Path, phantom: Path, tmp_path: Path
) -> None:
    config, data = tiny_config(), open_dataset(phantom)
    train_generator(config, data, tokenizer_run, tmp_path / "base", settings(30, lr=5e-3))
    base = load_checkpoint(tmp_path / "base").state["transformer"]
    first_step = settings(1, lr=1e-12)  # a step that barely moves: the weights must be the base's
    train_generator(config, data, tokenizer_run, tmp_path / "tuned", first_step, init=tmp_path / "base",
                    prime_prob=0.5)  # fmt: skip
    tuned = load_checkpoint(tmp_path / "tuned").state["transformer"]
    assert all(torch.allclose(base[key], tuned[key], atol=1e-6) for key in base)
    with pytest.raises(TrainingError, match="prime-prob"):
        train_generator(config, data, tokenizer_run, tmp_path / "x", first_step, prime_prob=1.5)
    with pytest.raises(TrainingError, match="exclude each other"):
        train_generator(config, data, tokenizer_run, tmp_path / "x", first_step, init=tmp_path / "base",
                        resume=tmp_path / "base")  # fmt: skip

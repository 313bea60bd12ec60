"""`EchoGenerator` on real windows: one synthetic clip per beat, timed by the beat, fixed by a seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from random_model import save_random_model, thin_small_config

from echopulse.errors import ModelError
from echopulse.generator.clip import Provenance
from echopulse.generator.echo_generator import EchoGenerator
from echopulse.ingest import read_record
from echopulse.preprocess.offline import preprocess_record
from echopulse.sample import SAMPLE_ECG_FS, sample_ecg_path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("model")
    save_random_model(directory, thin_small_config(), {"model_id": "random-test"})
    return directory


@pytest.fixture(scope="module")
def generator(model_dir: Path) -> EchoGenerator:
    return EchoGenerator.from_pretrained(model_dir, device="cpu")


@pytest.fixture(scope="module")
def windows(generator: EchoGenerator):
    record = read_record(sample_ecg_path(), fs=SAMPLE_ECG_FS)
    result = preprocess_record(record, layout=generator.window_layout)
    accepted = [w for w in result.windows if w.accepted and w.rr_s]
    assert len(accepted) >= 10
    return accepted[:5]


def test_windows_in_another_layout_are_refused(generator: EchoGenerator) -> None:
    z_scored = preprocess_record(read_record(sample_ecg_path(), fs=SAMPLE_ECG_FS), layout="stmem").windows
    assert generator.window_layout == "mv"
    with pytest.raises(ValueError, match="'mv' layout, got 'stmem'"):
        generator.generate(z_scored[-1:], steps=1)


def test_one_clip_per_window_timed_by_its_beat(generator, windows) -> None:
    clips = generator.generate(windows, seed=7, steps=3, batch_size=2)
    assert len(clips) == len(windows)
    for clip, window in zip(clips, windows, strict=True):
        assert clip.frames.shape == (11, 64, 64) and clip.frames.dtype == np.uint8
        assert clip.rr_s == pytest.approx(window.rr_s)
        assert clip.fps == pytest.approx(11 / window.rr_s)
        assert clip.end_s == pytest.approx(window.end_s)
        assert clip.frame_times_s[0] == pytest.approx(window.end_s - window.rr_s)
        assert np.diff(clip.frame_times_s) == pytest.approx(np.full(10, window.rr_s / 11))
        assert clip.beat_index == window.beat_index
        meta = clip.metadata()
        assert meta["provenance"]["model_id"] == "random-test"
        assert meta["provenance"]["config_hash"] == generator.config.hash
    assert [c.provenance.seed for c in clips] == [7 + w.beat_index for w in windows]
    with pytest.raises(TypeError):  # nobody can make a clip that says it is not synthetic
        Provenance(model_id="x", config_hash="y", seed=0, steps=1, guidance=1.0, primed=False, device="cpu",
                    synthetic=False)


def test_a_seed_fixes_every_clip_whatever_the_batching(generator, windows) -> None:
    first = generator.generate(windows, seed=3, steps=3, batch_size=5)
    again = generator.generate(windows, seed=3, steps=3, batch_size=2)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.frames, b.frames)
    # A window's clip depends on the run seed and its beat, not on the other windows of the call.
    shuffled = generator.generate([windows[4], windows[2], windows[0]], seed=3, steps=3, batch_size=2)
    for clip, k in zip(shuffled, (4, 2, 0), strict=True):
        np.testing.assert_array_equal(clip.frames, first[k].frames)
        assert clip.provenance.seed == 3 + windows[k].beat_index
    other = generator.generate(windows[2:3], seed=4, steps=3)
    assert not np.array_equal(other[0].frames, first[2].frames)
    # Bare arrays have no beat: row i uses seed + i.
    rows = np.stack([w.signal for w in windows])
    assert [c.provenance.seed for c in generator.generate(rows[:2], seed=3, steps=1)] == [3, 4]


def test_two_threads_sharing_a_generator_get_the_clips_of_serial_calls(generator, windows) -> None:
    from concurrent.futures import ThreadPoolExecutor

    prime = np.full((64, 64), 90, np.uint8)
    calls = [dict(seed=11, steps=3), dict(seed=12, steps=3, prime_frame=prime), dict(seed=13, steps=2)] * 2
    serial = [generator.generate(windows, **kw) for kw in calls]
    with ThreadPoolExecutor(max_workers=2) as pool:
        together = list(pool.map(lambda kw: generator.generate(windows, **kw), calls))
    for one, other in zip(serial, together, strict=True):
        for a, b in zip(one, other, strict=True):
            np.testing.assert_array_equal(a.frames, b.frames)


def test_a_pickled_generator_is_the_same_model_on_the_same_settings(model_dir: Path, windows) -> None:
    """The service sends its generator to the model's worker process by pickling it: the copy must draw
    the same clips, at the same precision, with the same identity."""
    import pickle

    for precision in ("fp32", "bf16"):
        original = EchoGenerator.from_pretrained(model_dir, device="cpu", precision=precision)
        copy = pickle.loads(pickle.dumps(original))
        assert copy is not original and copy.transformer is not original.transformer
        assert (copy.model_id, copy.precision) == (original.model_id, precision)
        assert copy.metadata == original.metadata and copy.config == original.config
        made_clips, remade_clips = original.generate(windows, seed=5), copy.generate(windows, seed=5)
        for made, remade in zip(made_clips, remade_clips, strict=True):
            np.testing.assert_array_equal(made.frames, remade.frames)
            assert made.provenance == remade.provenance


def test_a_prime_frame_fixes_the_first_token_frame(generator, windows, monkeypatch) -> None:
    """The prime frame's token ids are the clip's first token frame; the rest are sampled after them."""
    prime = np.zeros((64, 64), np.uint8)
    prime[16:48, 16:48] = 200
    decoded_ids = []
    decode = generator.tokenizer.decode
    monkeypatch.setattr(generator.tokenizer, "decode", lambda ids: decoded_ids.append(ids) or decode(ids))
    clips = generator.generate(windows[:2], prime_frame=prime, seed=1, steps=3)
    assert all(c.provenance.primed for c in clips) and len(clips) == 2
    with torch.no_grad():
        prime_video = torch.tensor(prime / 255.0, dtype=torch.float32)[None, None, None]
        prime_ids = generator.tokenizer.encode(prime_video)
    (ids,) = decoded_ids
    assert ids.shape == (2, 6 * 8 * 8)
    assert torch.equal(ids[:, :64], prime_ids.flatten(1).expand(2, -1))
    unprimed = generator.generate(windows[:2], seed=1, steps=3)
    assert not np.array_equal(unprimed[0].frames, clips[0].frames)


def test_bad_windows_and_prime_frames_are_refused(generator, windows) -> None:
    with pytest.raises(ValueError, match="windows must be"):
        generator.generate(np.zeros((2, 12, 1000)))
    with pytest.raises(ValueError, match="prime frame"):
        generator.generate(windows[:1], prime_frame=np.zeros((32, 32)))


def test_a_missing_or_corrupt_model_directory_is_a_model_error(tmp_path) -> None:
    with pytest.raises(ModelError, match=str(tmp_path / "nope")):
        EchoGenerator.from_pretrained(tmp_path / "nope")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{")
    (tmp_path / "broken" / "model.safetensors").write_bytes(b"\0" * 10)
    with pytest.raises(ModelError):
        EchoGenerator.from_pretrained(tmp_path / "broken")


def test_bf16_on_the_cpu_is_deterministic_and_close_to_fp32(generator, windows) -> None:
    fp32_model, bf16_model = generator.with_precision("fp32"), generator.with_precision("bf16")
    assert (fp32_model.precision, bf16_model.precision) == ("fp32", "bf16")
    first = bf16_model.generate(windows[:2], seed=4, steps=3)
    again = bf16_model.generate(windows[:2], seed=4, steps=3)
    fp32 = fp32_model.generate(windows[:2], seed=4, steps=3)
    for a, b, c in zip(first, again, fp32, strict=True):
        np.testing.assert_array_equal(a.frames, b.frames)
        assert a.frames.shape == c.frames.shape and a.frames.dtype == np.uint8
        assert a.provenance.precision == "bf16" and c.provenance.precision == "fp32"
    # The bf16 copy samples the same model: over a few seeds its clips are far nearer the fp32 ones than
    # another seed's (one seed alone is a noisy yardstick with random weights: 0.2-0.6 of the distance).
    near, far = [], []
    for seed in range(4):
        runs = (("bf16", bf16_model, seed), ("fp32", fp32_model, seed), ("other", fp32_model, seed + 100))
        frames = {name: np.stack([c.frames for c in model.generate(windows[:2], seed=s, steps=3)])
                  for name, model, s in runs}
        frames = {name: f.astype(float) for name, f in frames.items()}
        near.append(np.abs(frames["bf16"] - frames["fp32"]).mean())
        far.append(np.abs(frames["other"] - frames["fp32"]).mean())
    assert 0 < np.mean(near) < 0.6 * np.mean(far)  # really sampled in bf16, and of the same model
    with pytest.raises(ModelError, match="precision"):
        generator.with_precision("fp8")


def test_precision_is_chosen_at_load(tmp_path) -> None:
    directory = save_random_model(tmp_path / "m", thin_small_config(), {"model_id": "random-test"})
    assert EchoGenerator.from_pretrained(directory, device="cpu", precision="fp32").precision == "fp32"
    assert EchoGenerator.from_pretrained(directory, device="cpu", precision="bf16").precision == "bf16"
    loaded = EchoGenerator.from_pretrained(directory, device="cpu")
    assert loaded.metadata["model_id"] == "random-test"
    with pytest.raises(AttributeError):
        loaded.precision = "fp32"  # fixed at load: a shared generator cannot change under another caller


def test_auto_precision_is_bf16_only_where_the_cpu_does_it_natively(generator, windows, monkeypatch) -> None:
    import echopulse.generator.echo_generator as module

    parts = {"stmem": generator.stmem, "tokenizer": generator.tokenizer, "transformer": generator.transformer}
    cpu = "cpu"
    for native in (True, False):
        monkeypatch.setattr(module, "cpu_has_bf16", lambda native=native: native)
        auto = EchoGenerator(generator.config, parts, model_id="x", device="cpu")
        assert auto.precision == ("bf16" if native else "fp32")
        official = EchoGenerator(generator.config, parts, model_id="x", device=cpu, official_compatible=True)
        assert official.precision == "fp32"  # the compat checks compare float32 traces
        (clip,) = auto.generate(windows[:1], seed=4, steps=2)
        assert clip.metadata()["provenance"]["precision"] == auto.precision


def test_a_window_without_rr_gets_no_clip_of_a_made_up_length(generator) -> None:
    record = read_record(sample_ecg_path(), fs=SAMPLE_ECG_FS)
    first = preprocess_record(record, layout=generator.window_layout).windows[0]
    assert first.rr_s is None
    with pytest.raises(ValueError, match=f"beat {first.beat_index} has no RR interval"):
        generator.generate([first], steps=1)

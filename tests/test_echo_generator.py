"""`EchoGenerator` on real windows: one synthetic clip per beat, timed by the beat, fixed by a seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from random_model import save_random_model, thin_small_config

from echopulse.errors import ModelError
from echopulse.generator.echo_generator import EchoGenerator, cpu_has_bf16
from echopulse.ingest import read_record
from echopulse.preprocess.offline import preprocess_record
from echopulse.sample import SAMPLE_ECG_FS, sample_ecg_path


@pytest.fixture(scope="module")
def generator(tmp_path_factory) -> EchoGenerator:
    directory = tmp_path_factory.mktemp("model")
    save_random_model(directory, thin_small_config(), {"model_id": "random-test"})
    return EchoGenerator.from_pretrained(directory, device="cpu")


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
        assert meta["synthetic"] is True and meta["provenance"]["synthetic"] is True
        assert meta["provenance"]["model_id"] == "random-test"
        assert meta["provenance"]["config_hash"] == generator.config.hash
    assert [c.provenance.seed for c in clips] == [7, 8, 9, 10, 11]


def test_a_seed_fixes_every_clip_whatever_the_batching(generator, windows) -> None:
    first = generator.generate(windows, seed=3, steps=3, batch_size=5)
    again = generator.generate(windows, seed=3, steps=3, batch_size=2)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.frames, b.frames)
    # Clip 2 of a seed-3 call is clip 0 of a seed-5 call.
    alone = generator.generate(windows[2:3], seed=5, steps=3)
    np.testing.assert_array_equal(alone[0].frames, first[2].frames)
    other = generator.generate(windows[2:3], seed=6, steps=3)
    assert not np.array_equal(other[0].frames, first[2].frames)


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
    before = generator.precision
    try:
        generator.precision = "fp32"
        fp32 = generator.generate(windows[:2], seed=4, steps=3)
        other_seed = generator.generate(windows[:2], seed=5, steps=3)
        generator.precision = "bf16"
        first = generator.generate(windows[:2], seed=4, steps=3)
        again = generator.generate(windows[:2], seed=4, steps=3)
    finally:
        generator.precision = before
    for a, b, c in zip(first, again, fp32, strict=True):
        np.testing.assert_array_equal(a.frames, b.frames)
        assert a.frames.shape == c.frames.shape and a.frames.dtype == np.uint8
        assert a.provenance.precision == "bf16" and c.provenance.precision == "fp32"
    # The bf16 copy samples the same model: its clips are far nearer the fp32 ones than another seed's.
    bf16_frames, fp32_frames, other = (np.stack([c.frames for c in clips]).astype(float)
                                       for clips in (first, fp32, other_seed))
    assert np.abs(bf16_frames - fp32_frames).mean() < 0.5 * np.abs(other - fp32_frames).mean()
    with pytest.raises(ValueError, match="precision"):
        EchoGenerator(generator.config, {"stmem": generator.stmem, "tokenizer": generator.tokenizer,
                                         "transformer": generator.transformer}, model_id="x", precision="fp8")


def test_auto_precision_is_bf16_only_where_the_cpu_does_bf16_natively(generator, windows) -> None:
    parts = {"stmem": generator.stmem, "tokenizer": generator.tokenizer, "transformer": generator.transformer}
    auto = EchoGenerator(generator.config, parts, model_id="x", device="cpu")
    assert auto.precision == ("bf16" if cpu_has_bf16() else "fp32")
    official = EchoGenerator(generator.config, parts, model_id="x", device="cpu", official_compatible=True)
    assert official.precision == "fp32"  # the compat checks compare float32 traces
    (clip,) = auto.generate(windows[:1], seed=4, steps=2)
    assert clip.metadata()["provenance"]["precision"] == auto.precision


def test_the_bf16_copy_follows_the_transformers_weights(generator, windows) -> None:
    before, weight = generator.precision, generator.transformer.to_logits.weight
    saved = weight.detach().clone()
    generator.precision = "bf16"
    try:
        first = generator.generate(windows[:1], seed=4, steps=2)[0].frames
        with torch.no_grad():
            weight.mul_(-1)  # in place: the same tensor, new values
        flipped = generator.generate(windows[:1], seed=4, steps=2)[0].frames
    finally:
        with torch.no_grad():
            weight.copy_(saved)
        generator.precision = before
    assert not np.array_equal(first, flipped)

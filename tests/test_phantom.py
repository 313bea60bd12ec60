"""The paired ECG–echo phantom: determinism, labels, timing, the EF coupling rule, errors, CLI, realism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageSequence

from echopulse.cli import main
from echopulse.echo.apical4c import MAX_HALF_ANGLE_DEG, draw_anatomy, lv_angle_needed_deg
from echopulse.echo.ecg_phantom import CLOSING_R_S, LEADS
from echopulse.echo.phantom import PhantomError, area_length_ml, make_phantom
from echopulse.echo.shards import PhantomRun, write_shards


@pytest.fixture(scope="module")
def samples() -> list:
    return [make_phantom(seed, size=64, frames=11) for seed in range(12)]


def test_same_seed_gives_the_same_sample_and_seeds_differ() -> None:
    a, b, c = make_phantom(7, size=32), make_phantom(7, size=32), make_phantom(8, size=32)
    assert np.array_equal(a.clip, b.clip) and np.array_equal(a.ecg, b.ecg)
    assert np.array_equal(a.labels.lv_mask, b.labels.lv_mask) and a.labels.ef == b.labels.ef
    assert not np.array_equal(a.clip, c.clip)


def test_a_heart_draw_keeps_the_ecg_and_draws_what_it_does_not_decide() -> None:
    """Draw k ≥ 1 is another heart for the seed's ECG: same ECG and timing, another anatomy and EF, as
    reproducible as draw 0, which is the seed's own sample. The EF differs from draw 0's by the rule's
    random part twice over (σ 3 each, so σ ≈ 4.2 for the difference) and not by a bias."""
    own, again = make_phantom(7, size=32), make_phantom(7, size=32, heart_draw=0)
    assert np.array_equal(own.clip, again.clip) and own.labels.ef == again.labels.ef
    first, same = make_phantom(7, size=32, heart_draw=1), make_phantom(7, size=32, heart_draw=1)
    second = make_phantom(7, size=32, heart_draw=2)
    assert np.array_equal(first.clip, same.clip)
    for other in (first, second):
        assert np.array_equal(other.ecg, own.ecg)
        assert other.labels.rr_s == own.labels.rr_s and other.labels.ed_frame == own.labels.ed_frame
        assert not np.array_equal(other.clip, own.clip)
    assert not np.array_equal(first.clip, second.clip)
    differences = np.array(
        [make_phantom(s, size=32, heart_draw=1).labels.ef - make_phantom(s, size=32).labels.ef
         for s in range(40)]
    )  # fmt: skip
    print("EF, draw 1 − draw 0: mean", differences.mean().round(2), "SD", differences.std().round(2))
    assert 2.5 < differences.std() < 6.5 and abs(differences.mean()) < 2.0
    with pytest.raises(PhantomError, match="heart_draw"):
        make_phantom(7, size=32, heart_draw=-1)


def test_without_the_rules_random_part_the_ecg_decides_the_ef() -> None:
    """`ef_noise_sd=0`: the labelled EF is the rule's ECG part (up to where the frames fall), whatever the
    heart draw; the default draw is untouched by the knob's existence."""
    from echopulse.echo.ecg_phantom import simulate_ecg
    from echopulse.echo.heart_cycle import EF_RANGE, ecg_ef
    from echopulse.echo.phantom import seed_stream

    gaps = []
    for seed in range(10):
        rule = np.clip(ecg_ef(simulate_ecg(seed_stream(seed)).morphology), *EF_RANGE)
        for draw in (1, 2):
            gaps.append(make_phantom(seed, size=32, heart_draw=draw, ef_noise_sd=0.0).labels.ef - rule)
    print("label − rule without noise: mean |gap|", np.abs(gaps).mean().round(2))
    assert np.abs(gaps).mean() < 1.5 and np.abs(gaps).max() < 4.0
    default, explicit = make_phantom(4, size=32), make_phantom(4, size=32, ef_noise_sd=3.0)
    assert np.array_equal(default.clip, explicit.clip)
    for bad in (-1.0, 50.0, "3"):
        with pytest.raises(PhantomError, match="ef_noise_sd"):
            make_phantom(4, size=32, ef_noise_sd=bad)


def test_shards_are_byte_identical_for_a_seed_whatever_the_workers(tmp_path: Path) -> None:
    one = write_shards(tmp_path / "a", PhantomRun(n=7, seed=5, size=32, frames=5, shard_size=3, workers=1))
    two = write_shards(tmp_path / "b", PhantomRun(n=7, seed=5, size=32, frames=5, shard_size=3, workers=2))
    assert [p.name for p in one] == [p.name for p in two] == [f"shard-0000{k}.npz" for k in range(3)]
    for name in [p.name for p in one] + ["manifest.jsonl", "phantom.json"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    other = write_shards(tmp_path / "c", PhantomRun(n=7, seed=6, size=32, frames=5, shard_size=3))
    assert other[0].read_bytes() != one[0].read_bytes()


def test_sample_shapes_and_ecg(samples: list) -> None:
    s = samples[0]
    assert s.ecg.dtype == np.float32 and s.ecg.shape == (12, 2750) and s.ecg_fs == 250.0
    assert s.clip.dtype == np.uint8 and s.clip.shape == (11, 64, 64)
    assert s.labels.lv_mask.shape == (11, 64, 64) and s.labels.lv_mask.dtype == bool
    for s in samples:
        f = s.labels.fiducials_s
        assert np.any(np.isclose(f["r_peak"], CLOSING_R_S))
        assert f["r_peak"][0] < 10.0 - 9.0 + 1.5  # at least 9 s of ECG before the closing R-peak
        assert np.all(f["p_onset"] < f["r_peak"]) and np.all(f["r_peak"] < f["qrs_end"])
        assert np.all(f["qrs_end"] < f["t_end"]) and np.all(f["t_end"][:-1] < f["p_onset"][1:])
        # the R-peak is where the heart vector (leads I, aVF, V2 ~ x, y, z) is largest, within ±40 ms
        i = round(CLOSING_R_S * 250)
        xyz = s.ecg[[0, 5, 7]] - np.median(s.ecg[[0, 5, 7], i - 60 : i - 30], axis=1, keepdims=True)
        magnitude = np.linalg.norm(xyz[:, i - 10 : i + 11], axis=0)
        assert abs(int(np.argmax(magnitude)) - 10) <= 2
        # each row is the lead LEADS names: over the QRS the limb leads obey Einthoven's and Goldberger's
        # laws, up to the noise each lead has of its own
        qrs = s.ecg[:, i - 10 : i + 11] - np.median(s.ecg[:, i - 60 : i - 30], axis=1, keepdims=True)
        lead = dict(zip(LEADS, qrs, strict=True))
        laws = {"III": lead["II"] - lead["I"], "aVR": -(lead["I"] + lead["II"]) / 2,
                "aVL": lead["I"] - lead["II"] / 2, "aVF": lead["II"] - lead["I"] / 2}  # fmt: skip
        for name, expected in laws.items():
            assert np.abs(lead[name] - expected).max() < 0.3 * np.abs(qrs[:6]).max(), name


def test_labels_are_consistent(samples: list) -> None:
    for s in samples:
        lab = s.labels
        area = lab.lv_mask.reshape(11, -1).sum(axis=1)
        assert np.array_equal(area, lab.lv_area_px)
        assert lab.ed_frame == int(np.argmax(area)) == 0  # cycle layout: end-diastole at the R-peak
        assert lab.es_frame == int(np.argmin(area))
        assert lab.ef == pytest.approx(100 * (lab.edv_ml - lab.esv_ml) / lab.edv_ml)
        assert 10 < lab.ef < 80 and 20 < lab.edv_ml < 250 and lab.esv_ml < lab.edv_ml
        assert lab.hr_bpm == pytest.approx(60 / lab.rr_s) and lab.fps == pytest.approx(11 / lab.rr_s)
        # end-systole sits at the T end of the opening beat: within one frame interval
        r = lab.fiducials_s["r_peak"]
        k = int(np.flatnonzero(np.isclose(r, CLOSING_R_S))[0])
        t_es = lab.fiducials_s["t_end"][k - 1] - r[k - 1]
        assert abs(lab.es_frame * lab.rr_s / 11 - t_es) <= lab.rr_s / 11 + 1e-9
        # the volume formula: EDV from the ED mask with a length between the mask's extent and the depth
        area_cm2 = area[lab.ed_frame] / lab.px_per_cm**2
        rows = np.flatnonzero(lab.lv_mask[lab.ed_frame].any(axis=1))
        extent_cm = (rows[-1] - rows[0] + 1) / lab.px_per_cm
        assert (
            area_length_ml(area_cm2, extent_cm * 1.3) < lab.edv_ml < area_length_ml(area_cm2, extent_cm * 0.8)
        )


def test_the_labelled_lv_is_imaged_in_every_frame(samples: list) -> None:
    """The label describes what is imaged: no labelled LV pixel lies outside the sector, in any frame, and
    the LV keeps its wall margin inside the fan (the anatomy is fitted to the sector when drawn)."""
    for s in samples + [make_phantom(seed, size=128, frames=11) for seed in range(300, 306)]:
        imaged = s.clip.max(axis=0) > 0
        assert not (s.labels.lv_mask & ~imaged[None]).any(), s.seed
    rng = np.random.default_rng(3)
    for _ in range(200):
        anatomy = draw_anatomy(rng, float(rng.uniform(15, 75)))
        assert lv_angle_needed_deg(anatomy) <= anatomy.half_angle_deg <= MAX_HALF_ANGLE_DEG


def test_fps_layout_and_fixed_heart_rate() -> None:
    s = make_phantom(3, size=32, frames=11, layout="fps", fps=30.0, hr_bpm=60.0)
    assert s.clip.shape == (11, 32, 32) and s.labels.fps == 30.0
    assert s.labels.ed_frame == 0 and 50 < s.labels.hr_bpm < 70
    fast = make_phantom(3, size=32, frames=8, hr_bpm=150.0)
    assert 125 < fast.labels.hr_bpm < 180 and fast.clip.shape == (8, 32, 32)


def test_coupling_wide_qrs_lowers_ef() -> None:
    ef, qrs = [], []
    for seed in range(40):
        s = make_phantom(seed, size=32, frames=11)
        f = s.labels.fiducials_s
        qrs.append(float(np.median(f["qrs_end"] - f["r_peak"])) / 0.55 * 1000)
        ef.append(s.labels.ef)
    ef, qrs = np.asarray(ef), np.asarray(qrs)
    wide = qrs >= 120
    assert 5 <= wide.sum() <= 35
    assert ef[wide].mean() < ef[~wide].mean() - 5
    assert np.corrcoef(qrs, ef)[0, 1] < -0.3


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"frames": 0}, "frames"),
        ({"size": 60}, "multiple of the tokenizer patch (8)"),
        ({"size": 0}, "multiple"),
        ({"hr_bpm": 0.0}, "heart rate"),
        ({"hr_bpm": 400.0}, "heart rate"),
        ({"layout": "film"}, "layout"),
        ({"fps": 0.0}, "fps"),
    ],
)
def test_bad_arguments_are_refused_clearly(kwargs: dict, words: str) -> None:
    with pytest.raises(PhantomError, match="phantom: ") as info:
        make_phantom(1, **kwargs)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_cli_writes_shards_and_manifest(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "ph"
    code = main(["phantom", "--n", "3", "--out", str(out), "--seed", "4", "--size", "32", "--frames", "6"])
    assert code == 0
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert [json.loads(x)["index"] for x in lines] == [0, 1, 2]
    meta = json.loads((out / "phantom.json").read_text())
    assert meta["shards"] == ["shard-00000.npz"] and meta["size"] == 32
    with np.load(out / "shard-00000.npz") as z:
        assert z["clip"].shape == (3, 6, 32, 32) and z["ecg"].shape == (3, 12, 2750)
        assert z["lv_mask"].shape == (3, 6, 32, 32) and z["ef"].shape == (3,)
        assert np.all(z["ed_frame"] == 0) and z["r_peak"].shape[0] == 3
        assert json.loads(lines[1])["ef"] == pytest.approx(z["ef"][1], abs=1e-5)
    capsys.readouterr()


@pytest.mark.parametrize(
    "bad", [["--frames", "0"], ["--size", "60"], ["--hr", "400"], ["--hr", "0"], ["--n", "0"]]
)
def test_cli_bad_arguments_exit_2_with_one_line(tmp_path: Path, capsys, bad: list[str]) -> None:
    code = main(["phantom", "--n", "2", "--out", str(tmp_path / "x"), *bad])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("echopulse: error: phantom:")
    assert not (tmp_path / "x").exists()


def _real_frames(shared_data: Path) -> list[np.ndarray]:
    folder = shared_data / "echopulse"
    frames = []
    with Image.open(folder / "sample_applewatch_11_25.gif") as im:
        for k, frame in enumerate(ImageSequence.Iterator(im)):
            if k % 10 == 0:
                frames.append(np.asarray(frame.convert("L"), float))
    for path in sorted(folder.glob("A4C*.mp4.gif")):
        with Image.open(path) as im:
            for frame in ImageSequence.Iterator(im):
                rgb = frame.convert("L").crop((148, 120, 672, 644)).resize((128, 128), Image.BILINEAR)
                frames.append(np.asarray(rgb, float))
    return frames


def _stats(frame: np.ndarray) -> dict[str, float]:
    corners = np.concatenate([frame[:20, :20].ravel(), frame[:20, -20:].ravel()])
    return {
        "corner_black": float((corners < 20).mean()),
        "dark": float((frame < 10).mean()),
        "mean": float(frame.mean()),
        "p99": float(np.percentile(frame, 99)),
    }


def test_phantom_frames_look_like_the_real_apical_frames(shared_data: Path, samples: list) -> None:
    real = [_stats(f) for f in _real_frames(shared_data)]
    ours = [_stats(make_phantom(s, size=128).clip[k].astype(float)) for s in range(4) for k in (0, 5)]
    for name, low, high in (
        ("corner_black", 0.9, 1.0),
        ("dark", 0.35, 0.9),
        ("mean", 8, 40),
        ("p99", 100, 256),
    ):
        for stats in (real, ours):
            value = float(np.median([x[name] for x in stats]))
            assert low <= value <= high, (name, value)
    # bright myocardium, dark blood: the LV cavity is far darker than the brightest tissue
    for s in samples[:4]:
        frame, mask = s.clip[0].astype(float), s.labels.lv_mask[0]
        assert frame[mask].mean() < 0.25 * np.percentile(frame[~mask & (frame > 0)], 95)

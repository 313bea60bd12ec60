"""`echopulse eval`: the metrics, the measurement machinery validated on the phantom's own clips, the real
echo panels, and the whole command on a tiny random-weight model."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from random_model import save_random_model, thin_small_config

from echopulse.cli.evaluate import add_parser as add_eval_parser
from echopulse.cli.evaluate import run as run_eval
from echopulse.errors import EchopulseError, ModelError
from echopulse.evaluation.generation_eval import (
    GeneratorClips,
    IdealGeneratorClips,
    TrueClips,
    evaluate_generation,
)
from echopulse.evaluation.heldout import EvalError, eval_leads, heldout_set
from echopulse.evaluation.metrics import cyclic_distance, derangement
from echopulse.evaluation.pipeline import IDEAL_DRAWS, evaluate
from echopulse.evaluation.report import REQUIRED_KEYS
from echopulse.evaluation.tokenizer_eval import panel_box, read_echo_panel, real_echo_gifs
from echopulse.generator.config import small_config
from echopulse.generator.echo_generator import EchoGenerator
from echopulse.generator.training.data import prepare_clip
from echopulse.generator.training.scores import mae, r2, rmse

HELDOUT_SEED = 900_000


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["eval", *argv])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """The small config, thinner, random weights: quick to load and sample from."""
    metadata = {"model_id": "random-test", "leads": "random"}
    return save_random_model(tmp_path_factory.mktemp("model"), thin_small_config(), metadata)


# ---- metrics ---------------------------------------------------------------------------------------------


def test_metrics_on_known_inputs() -> None:
    y = np.array([30.0, 45.0, 55.0, 60.0, 70.0])
    assert r2(y, y) == 1.0 and mae(y, y) == 0.0 and rmse(y, y) == 0.0
    assert r2(y, np.full_like(y, y.mean())) == pytest.approx(0.0)
    assert r2(y, np.full_like(y, 40.0)) < 0.0  # a constant off the mean is worse than the mean
    assert mae(y, y + 2.0) == pytest.approx(2.0) and rmse(y, y - 3.0) == pytest.approx(3.0)
    # 1 − SS_res/SS_tot, by hand
    pred = np.array([32.0, 44.0, 50.0, 63.0, 71.0])
    expected = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    assert r2(y, pred) == pytest.approx(expected)
    assert np.isnan(r2([50.0, 50.0], [40.0, 60.0]))  # no spread in the labels: undefined, not 1 or 0
    assert cyclic_distance([0, 10, 5], [0, 0, 0], 11).tolist() == [0, 1, 5]


@pytest.mark.parametrize("n", [2, 3, 7, 200])
def test_the_shuffle_is_a_fixed_derangement(n: int) -> None:
    perm = derangement(n, HELDOUT_SEED)
    assert sorted(perm.tolist()) == list(range(n))
    assert not np.any(perm == np.arange(n))
    np.testing.assert_array_equal(perm, derangement(n, HELDOUT_SEED))
    if n > 3:
        assert not np.array_equal(perm, derangement(n, HELDOUT_SEED + 1))
    with pytest.raises(ValueError):
        derangement(1, 0)


def test_model_lead_sets_map_to_evaluated_leads() -> None:
    assert eval_leads("I")[:2] == (("I",), "I")
    assert eval_leads("all")[:2] == (None, "all")
    keep, name, note = eval_leads("random")
    assert keep == ("I",) and name == "I" and "random" in note
    assert eval_leads("II,I")[:2] == (("I", "II"), "I,II")
    with pytest.raises(EvalError, match="not a lead set"):
        eval_leads("lead 13")


# ---- the measurement machinery on the phantom itself -------------------------------------------------------


def test_true_clips_follow_their_ecg_and_the_shuffle_breaks_them() -> None:
    """The phantom's own clips as an oracle generator: EF error is the measurement's own, R² high; the same
    clips paired with other beats' labels (the shuffled control) lose R²; a generator that ignores the ECG
    (one clip for every beat) has no R² in either run."""
    samples = heldout_set(16, HELDOUT_SEED, 64, 11, ("I",))
    assert [s.seed for s in samples] == list(range(HELDOUT_SEED, HELDOUT_SEED + 16))
    assert samples[0].window.shape == (12, 2250) and samples[0].clip.shape == (11, 64, 64)
    assert np.all(samples[0].window[1:] == 0)  # lead I only
    result = evaluate_generation(samples, TrueClips(), HELDOUT_SEED, default_guidance=2.0)
    m, shuffled = result.metrics["default"], result.metrics["shuffled"]
    print("true-clip validation:", {k: m[k] for k in ("ef_mae", "ef_r2")}, "shuffled R²", shuffled["ef_r2"])
    assert m["measure_failures"] == 0 and m["measured"] == 16
    assert m["ef_mae"] < 5.0 and m["ef_r2"] > 0.7
    assert m["ed_frame_within_1"] == 1.0 and m["es_frame_within_1"] >= 0.9
    assert shuffled["ef_r2"] <= 0.2 and shuffled["ef_mae"] > m["ef_mae"]
    # clip i of the shuffled run is the clip of the beat whose ECG it was given
    for i, j in enumerate(result.permutation):
        assert result.runs["shuffled"].clips[i] is samples[int(j)].clip

    def ignores_ecg(batch, guidance, seed):
        return [samples[0].clip for _ in batch]

    blind = evaluate_generation(samples, ignores_ecg, HELDOUT_SEED, default_guidance=2.0)
    assert blind.metrics["default"]["ef_r2"] <= 0.0 and blind.metrics["shuffled"]["ef_r2"] <= 0.0


def test_the_ideal_generator_follows_the_ecg_but_scores_below_the_beats_own_clips() -> None:
    """The phantom drawing another heart for each ECG: it follows the ECG (R² well above the shuffled
    control) yet scores clearly below the beat's own clip, whose EF carries the rule's random part that no
    ECG shows. That gap is what any generator sampling the right distribution loses on one clip."""
    samples = heldout_set(48, HELDOUT_SEED, 64, 11, ("I",))
    ideal = evaluate_generation(samples, IdealGeneratorClips(64, 11), HELDOUT_SEED, default_guidance=2.0)
    own = evaluate_generation(samples, TrueClips(), HELDOUT_SEED, default_guidance=2.0, runs=("default",))
    m, shuffled, oracle = ideal.metrics["default"], ideal.metrics["shuffled"], own.metrics["default"]
    true_ef = np.array([s.ef for s in samples])
    follows = np.corrcoef(true_ef, ideal.runs["default"].ef)[0, 1]
    print("ideal generator:", {k: m[k] for k in ("ef_mae", "ef_r2")}, "r", follows, "own:", oracle["ef_r2"])
    assert m["measure_failures"] == 0 and m["es_frame_within_1"] >= 0.9
    assert follows > 0.6 and shuffled["ef_r2"] <= 0.2 < m["ef_r2"]
    assert m["ef_r2"] < oracle["ef_r2"] - 0.2 and m["ef_mae"] > oracle["ef_mae"] + 1.0
    for clip, sample in zip(ideal.runs["default"].clips, samples, strict=True):
        assert clip.shape == sample.clip.shape and not np.array_equal(clip, sample.clip)


def test_a_clip_the_measure_refuses_is_counted_not_scored() -> None:
    samples = heldout_set(4, HELDOUT_SEED, 64, 11)

    def some_blank(batch, guidance, seed):
        return [np.zeros_like(s.clip) if k % 2 else s.clip for k, s in enumerate(batch)]

    result = evaluate_generation(samples, some_blank, HELDOUT_SEED, default_guidance=1.0)
    m = result.metrics["default"]
    assert m["measure_failures"] == 2 and m["measured"] == 2
    assert np.isnan(result.runs["default"].ef[1]) and np.isfinite(result.runs["default"].ef[0])
    assert "guidance1" in result.runs and any("guidance is 1" in note for note in result.notes)


# ---- real echo ----------------------------------------------------------------------------------------


def test_the_echo_panel_is_found_in_the_visualization_gifs(shared_data: Path) -> None:
    gifs = real_echo_gifs(shared_data / "echopulse")
    assert len(gifs) >= 4 and not any("pred" in p.name for p in gifs)
    config = small_config().tokenizer
    for path in gifs:
        panel = read_echo_panel(path)
        frames, h, w = panel.shape
        assert frames == 11
        assert abs(h - w) <= 2  # square: a 128×128 echo frame drawn ≈ 4.1× larger in the figure
        assert 128 * 3.8 <= h <= 128 * 4.4
        assert panel.mean() < 100  # mostly the black background around the sector, not the white figure
        clip = prepare_clip(panel, config, periodic=False)
        assert tuple(clip.shape) == (config.channels, 11, 64, 64)
    white = np.full((200, 200, 3), 255, np.uint8)
    with pytest.raises(EvalError, match="no black echo panel"):
        panel_box(white)
    white[10:190, 90:110] = 0  # a dark bar, not a square panel
    with pytest.raises(EvalError, match="not a square"):
        panel_box(white)


# ---- the command --------------------------------------------------------------------------------------


def test_eval_writes_every_key_plots_and_per_sample_rows(
    model_dir: Path, tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command end to end. A random-weight model makes noise, which the measurement refuses, so each
    clip the model made is swapped for the clip of the beat whose ECG it was made from (a model that
    follows its ECG): every metric must then be a number, and the one such clips earn."""
    generate = GeneratorClips.__call__
    made: list[int] = []

    def follows_its_ecg(self, samples, guidance, seed):
        clips = generate(self, samples, guidance, seed)
        assert [clip.shape for clip in clips] == [s.clip.shape for s in samples]
        made.append(len(clips))
        return [s.clip for s in samples]

    monkeypatch.setattr(GeneratorClips, "__call__", follows_its_ecg)
    out = tmp_path / "eval"
    args = parse(
        [
            "--n",
            "6",
            "--steps",
            "2",
            "--model",
            str(model_dir),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--batch-size",
            "4",
            "--no-progress",
        ]
    )
    assert run_eval(args) == 0
    report = json.loads((out / "eval.json").read_text())
    assert set(REQUIRED_KEYS) <= set(report)
    floats = [
        "tokenizer_mse",
        "tokenizer_mae",
        "tokenizer_ssim",
        "real_echo_tokenizer_mse",
        "real_echo_tokenizer_ssim",
        "guidance",
        "seconds",
    ]
    for key in floats:
        assert isinstance(report[key], float), key
    assert 0 < report["tokenizer_mse"] < 1 and -1 <= report["tokenizer_ssim"] <= 1
    assert made == [6] * 7  # default, shuffled, guidance 1, three more draws, the primed (chained) run
    for run in ("", "_shuffled", "_guidance1"):
        for key in ("ef_mae", "ef_rmse", "ef_r2", "es_frame_within_1", "ed_frame_within_1", "hr_mae"):
            assert isinstance(report[key + run], float), key + run
        assert 0.0 <= report["ef_mae" + run] <= report["ef_rmse" + run] < 30.0, run
        assert report["ef_r2" + run] <= 1.0, run
        for key in ("es_frame_within_1", "ed_frame_within_1"):
            assert 0.0 <= report[key + run] <= 1.0, key + run
        assert report["n_measured" + run] == 6 and report["measure_failures" + run] == 0, run
    # clips that follow their ECG: the measurement's own error, lost when the ECGs are shuffled
    assert report["ef_mae"] < 5.0 and report["ef_r2"] > 0.5
    assert report["hr_mae"] == pytest.approx(0.0, abs=1e-9)  # each clip played at its own ECG's rate
    assert report["ef_mae_shuffled"] > report["ef_mae"] and report["ef_r2_shuffled"] < report["ef_r2"]
    assert report["ef_mae"] == report["ef_mae_true_clips"] and report["ef_r2"] == report["ef_r2_true_clips"]
    for key in ("ef_mae", "ef_r2", "ef_r", "es_frame_within_1"):
        assert isinstance(report[f"{key}_ideal_generator"], float), key
    # four clips per beat (here four times the beat's own clip): their mean is that clip's EF
    assert report["clips_per_beat"] == 4
    assert report["ef_r_mean4"] == pytest.approx(report["ef_r"]) and report["ef_r"] > 0.7
    assert report["ef_mae_mean4"] == pytest.approx(report["ef_mae"])
    assert isinstance(report["ef_r_mean4_ideal_generator"], float)
    # the primed run (chained clips, same seeds) moved no EF, since the clips are the beats' own
    assert report["ef_primed_minus_unprimed"] == 0.0 and report["n_primed_measured"] == 6
    assert report["n"] == 6 and report["seed"] == HELDOUT_SEED and report["steps"] == 2
    assert report["guidance"] == 2.0  # the small config's default
    assert report["model"]["id"] == "random-test" and len(report["model"]["config_hash"]) == 12
    assert report["leads"] == "I" and report["model_leads"] == "random"
    assert any("random" in note for note in report["notes"])
    assert len(report["real_echo_clips"]) >= 4
    pictures = ["ef_scatter.png", "frames_best_worst.png", "tokenizer_phantom.png", "tokenizer_real_echo.png"]
    for name in pictures:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < len(data) < 5_000_000, name
    with (out / "per_sample.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6
    assert [int(r["seed"]) for r in rows] == list(range(HELDOUT_SEED, HELDOUT_SEED + 6))
    assert all(r["shuffled_ecg_seed"] != r["seed"] for r in rows)
    assert all(20.0 <= float(r["ef_true"]) <= 80.0 for r in rows)


def test_the_pipeline_on_true_clips_and_without_real_echo(model_dir: Path, tmp_path: Path) -> None:
    """The whole pipeline with the phantom's own clips as the clip source (so every metric is a number)
    and no real echo folder (those keys null, with a note)."""
    generator = EchoGenerator.from_pretrained(model_dir, device="cpu")
    out = tmp_path / "eval"
    generator.metadata = {**generator.metadata, "leads": "all"}  # as if trained on every lead
    report = evaluate(
        generator,
        out,
        n=4,
        seed=HELDOUT_SEED,
        steps=1,
        real_echo_dir=tmp_path / "absent",
        clip_source=TrueClips(),
        progress=False,
    )
    assert json.loads((out / "eval.json").read_text()) == report
    assert report["real_echo_tokenizer_mse"] is None and report["real_echo_tokenizer_ssim"] is None
    assert any("real echo GIFs not found" in note for note in report["notes"])
    assert not (out / "tokenizer_real_echo.png").exists()
    assert report["clip_source"] == "TrueClips" and report["leads"] == "all"
    for key in [
        "ef_mae",
        "ef_rmse",
        "ef_r2",
        "ef_mae_shuffled",
        "ef_r2_shuffled",
        "ef_r2_guidance1",
        "ef_mae_guidance1",
        "ed_frame_within_1",
        "es_frame_within_1",
        "hr_mae",
    ]:
        assert isinstance(report[key], float), key
    assert report["measure_failures"] == 0 and report["ef_mae"] < 5.0
    assert report["ef_mae_shuffled"] > report["ef_mae"]
    # the tokenizer's ceiling is measured on its own reconstructions (a random tokenizer's are noise)
    for key in ["ef_mae_reconstructed", "ef_r2_reconstructed", "es_frame_within_1_reconstructed"]:
        assert key in report and (report[key] is None or isinstance(report[key], float)), key
    assert report["ef_mae_reconstructed"] != report["ef_mae"]
    # the references: the beats' own clips (here also the clip source, so they agree) and the ideal generator
    for key in ["ef_mae", "ef_rmse", "ef_r2", "es_frame_within_1", "ed_frame_within_1"]:
        assert isinstance(report[f"{key}_true_clips"], float), key
        assert isinstance(report[f"{key}_ideal_generator"], float), key
        assert report[f"{key}_true_clips"] == report[key], key
    assert report["ef_mae_ideal_generator"] != report["ef_mae"]
    draws = report["ef_r2_ideal_generator_draws"]
    assert len(draws) == IDEAL_DRAWS and len(set(draws)) == IDEAL_DRAWS  # each draw is another heart
    assert report["ef_r2_ideal_generator"] == pytest.approx(np.mean(draws))
    assert (out / "ef_scatter.png").stat().st_size > 10_000
    assert report["ed_frame_within_1"] == 1.0 and report["hr_mae"] == pytest.approx(0.0, abs=1e-9)
    with (out / "per_sample.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and all(r["ef_default"] and r["ed_default"] for r in rows)
    assert abs(float(rows[0]["ef_default"]) - float(rows[0]["ef_true"])) < 10


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--n", "0"], "--n must be"),
        (["--n", "1"], "--n must be"),
        (["--seed", "-3"], "--seed must be"),
        (["--batch-size", "0"], "--batch-size"),
        (["--steps", "0"], "--steps"),
    ],
)
def test_bad_arguments_are_one_clear_error(argv: list[str], match: str, tmp_path: Path) -> None:
    with pytest.raises(EvalError, match=match) as caught:
        run_eval(parse([*argv, "--out", str(tmp_path / "o")]))
    assert isinstance(caught.value, EchopulseError)
    assert not (tmp_path / "o").exists()


def test_a_missing_or_corrupt_model_is_a_model_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{")
    (broken / "model.safetensors").write_bytes(b"\0" * 10)
    for model in (broken, tmp_path / "nope"):
        with pytest.raises(ModelError, match=str(model)):
            run_eval(parse(["--n", "4", "--model", str(model), "--out", str(tmp_path / "o")]))
    assert not (tmp_path / "o").exists()


def test_the_ef_ceiling_benchmark_prints_its_generators_as_json() -> None:
    """benchmarks/ef_ceiling.py: the references the eval's EF targets are judged against, in one JSON."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "ef_ceiling.py"
    done = subprocess.run(
        [sys.executable, str(script), "--n", "24", "--draws", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    generators = report["generators"]
    assert set(generators) == {"own_clips", "ideal_generator", "ecg_mean_generator", "rule_without_clip"}
    assert generators["own_clips"]["draws"] == 1 and generators["ideal_generator"]["draws"] == 2
    ideal = generators["ideal_generator"]["ef_mae"]
    assert ideal["min"] <= ideal["mean"] <= ideal["max"]
    # the beat's own clip knows the rule's random part; another heart for the same ECG does not
    assert generators["own_clips"]["ef_mae"]["mean"] < ideal["mean"]


def test_the_mean_of_several_clips_and_the_primed_shift_on_known_inputs() -> None:
    from echopulse.evaluation.generation_eval import RunResult, mean_clip_agreement, primed_shift

    rng = np.random.default_rng(0)
    truth = rng.uniform(35, 70, 200)
    samples = [SimpleNamespace(ef=float(ef)) for ef in truth]

    def run(ef: np.ndarray) -> RunResult:
        n = len(ef)
        return RunResult("x", None, np.arange(n), [], ef, np.zeros(n, int), np.zeros(n, int), np.zeros(n))

    draws = [run(truth + rng.normal(0, 8, truth.size)) for _ in range(4)]
    one = mean_clip_agreement(samples, draws[:1])
    four = mean_clip_agreement(samples, draws)
    assert four["ef_r"] > one["ef_r"] and four["ef_mae"] < one["ef_mae"]  # averaging removes sampling noise
    assert four["ef_r"] == pytest.approx(np.corrcoef(truth, np.mean([d.ef for d in draws], axis=0))[0, 1])
    refused = truth.copy()
    refused[:10] = np.nan  # a beat none of whose clips measured is left out, not scored
    assert mean_clip_agreement(samples, [run(refused)])["measured"] == 190

    primed = run(truth - 3.0)
    primed.ef[0] = np.nan
    shift = primed_shift(run(truth), primed)
    assert shift["ef_primed_minus_unprimed"] == pytest.approx(-3.0) and shift["n_primed_measured"] == 199


def test_the_sampling_benchmark_scores_settings_on_development_seeds_only() -> None:
    """benchmarks/sampling.py: the bundled model's sampling settings, each scored on development beats."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "sampling.py"
    command = [sys.executable, str(script), "--n", "6", "--clips", "2", "--temperatures", "0.9", "0.3",
               "--guidance", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["dev_seed"] == 800_000 and report["n"] == 6 and report["clips_per_beat"] == 2
    assert [s["starting_temperature"] for s in report["settings"]] == [0.9, 0.3]
    for setting in report["settings"]:
        assert setting["ef_sd"] is None or setting["ef_sd"] >= 0
        expected = {"ef_mae", "ef_r2", "ef_r", "ef_r_mean2", "ef_r2_shuffled", "es_frame_within_1"}
        assert expected <= set(setting)
    refused = subprocess.run([sys.executable, str(script), "--seed", "900000"], capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode == 2 and "held-out seeds" in refused.stderr

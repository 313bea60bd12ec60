"""`echopulse generate` on real ECGs with a tiny random-weight model: files per beat, the long video, the
contact sheet, the manifest, the SYNTHETIC mark, determinism and the one-line refusals."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image
from random_model import micro_config, save_random_model

from echopulse.cli import main
from echopulse.cli.generate import add_parser as add_generate_parser
from echopulse.errors import PreprocessError
from echopulse.generator.echo_generator import cpu_has_bf16
from echopulse.ingest import read_record
from echopulse.pipeline import clip_windows
from echopulse.sample import SAMPLE_ECG_FS, sample_ecg_path

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_random_model(tmp_path_factory.mktemp("model"), micro_config(), {"model_id": "random-micro"})


def generate(*argv: object) -> int:
    """`echopulse generate ARGV`, as the command line runs it."""
    return main(["generate", *(str(a) for a in argv)])


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def gif_frames(path: Path) -> tuple[list[np.ndarray], list[int], bytes]:
    frames, durations = [], []
    with Image.open(path) as image:
        for k in range(image.n_frames):
            image.seek(k)
            frames.append(np.asarray(image.convert("L")))
            durations.append(image.info["duration"])
        comment = image.info.get("comment", b"")
    return frames, durations, comment


@pytest.fixture(scope="module")
def sample_out(model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    assert generate(sample_ecg_path(), "--fs", SAMPLE_ECG_FS, "--out", out, "--model", model_dir) == 0
    return out


@pytest.fixture()
def short_sample(tmp_path) -> Path:
    """The first 12 s of the bundled sample (a real trace, MIT), for runs that are repeated."""
    lines = sample_ecg_path().read_text().splitlines()[: int(12 * SAMPLE_ECG_FS)]
    path = tmp_path / "short.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_one_mp4_and_one_gif_per_generated_beat_each_beating_at_its_rr(sample_out) -> None:
    doc = manifest(sample_out)
    made = [b for b in doc["beats"] if b["generated"]]
    assert len(made) >= 15 and doc["clips"] == len(made)
    names = {p.name for p in sample_out.glob("beat_*")}
    assert names == {f"beat_{b['index']:04d}.{ext}" for b in made for ext in ("mp4", "gif")}
    for beat in made[:3]:
        fps = 11 / beat["rr_s"]
        assert beat["fps"] == pytest.approx(fps)
        reader = imageio.get_reader(sample_out / beat["files"]["mp4"], format="FFMPEG")
        meta = reader.get_meta_data()
        frames = [f for f in reader]
        reader.close()
        assert len(frames) == 11
        assert meta["fps"] == pytest.approx(fps, abs=0.01)
        assert frames[0].shape[0] >= 256 and frames[0].shape[0] % 2 == 0 == frames[0].shape[1] % 2
        gif, durations, comment = gif_frames(sample_out / beat["files"]["gif"])
        assert len(gif) == 11 and gif[0].shape == (256, 256)  # 32 px × 8
        assert all(abs(d - 1000 / fps) <= 10 for d in durations)
        assert sum(durations) == pytest.approx(beat["rr_s"] * 1000, abs=10)
        assert b"SYNTHETIC" in comment


def test_the_manifest_says_synthetic_and_what_made_each_clip(sample_out, model_dir) -> None:
    doc = manifest(sample_out)
    assert doc["synthetic"] is True and doc["source"] == "sample_ecg.csv"
    assert doc["model"]["id"] == "random-micro"
    assert doc["model"]["config_hash"] == micro_config().hash
    assert doc["steps"] == 2 and doc["seed"] == 0 and doc["guidance"] == 1.0
    assert doc["precision"] == ("bf16" if cpu_has_bf16() else "fp32")  # what --precision auto chose here
    assert doc["echopulse_version"] and doc["files"]["contact_sheet"] == "contact_sheet.png"
    for beat in doc["beats"]:
        assert {"index", "r_peak_s", "rr_s", "hr_bpm", "quality", "accepted", "reason"} <= set(beat)
        if beat["generated"]:
            assert beat["seed"] == beat["index"] and beat["accepted"] and beat["rr_s"] > 0
            assert beat["hr_bpm"] == pytest.approx(60 / beat["rr_s"])
    skipped = [b for b in doc["beats"] if not b["generated"]]
    assert skipped and [r["index"] for r in doc["refused"]] == [b["index"] for b in skipped]
    assert all(r["reason"] for r in doc["refused"])
    assert "Name" not in json.dumps(doc) and "Birth" not in json.dumps(doc)
    with Image.open(sample_out / "contact_sheet.png") as sheet:
        assert sheet.width > 600 and sheet.height > 500


def test_the_long_video_follows_the_ecg_and_a_refused_input_writes_nothing(
    model_dir, apple_watch_csvs, tmp_path, capsys
) -> None:
    ecg = apple_watch_csvs[0]
    flat = tmp_path / "flat.csv"
    np.savetxt(flat, np.zeros((20 * 512, 1)), fmt="%.1f")
    out = tmp_path / "out"
    code = generate(ecg, flat, "--fs", 512, "--out", out, "--model", model_dir, "--video", "--video-fps", 10,
                    "--format", "none")
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["echopulse: error: flat.csv: no usable beat (0 beats found)"]
    assert not (out / "flat").exists()
    folder = out / ecg.stem
    duration = read_record(ecg).duration_s
    doc = manifest(folder)
    assert not list(folder.glob("beat_*"))
    reader = imageio.get_reader(folder / "video.mp4", format="FFMPEG")
    meta = reader.get_meta_data()
    n_frames = sum(1 for _ in reader)
    reader.close()
    assert meta["fps"] == pytest.approx(10)
    assert n_frames == round(duration * 10) == doc["video"]["frames"]
    assert meta["duration"] == pytest.approx(duration, abs=0.15)
    made = [b for b in doc["beats"] if b["generated"]]
    assert len(made) >= 10
    assert not made[0]["primed"] and all(b["primed"] for b in made[1:])  # each after the previous clip


def test_same_seed_same_clips_and_the_mark_only_touches_a_corner(model_dir, short_sample, tmp_path) -> None:
    prime = tmp_path / "prime.png"
    Image.fromarray(np.tile(np.arange(0, 250, 5, dtype=np.uint8), (40, 1))).save(prime)
    common = (short_sample, "--fs", SAMPLE_ECG_FS, "--model", model_dir, "--format", "gif", "--prime", prime)
    runs = {}
    for name, extra in (("a", ()), ("b", ()), ("plain", ("--no-mark",)), ("fp32", ("--precision", "fp32"))):
        assert generate(*common, "--out", tmp_path / name, *extra) == 0
        runs[name] = manifest(tmp_path / name)
    assert runs["a"] == runs["b"]
    assert runs["a"]["prime"]["file"] == "prime.png"
    assert runs["plain"]["mark"] is False
    assert runs["fp32"]["precision"] == "fp32"
    made = [b for b in runs["a"]["beats"] if b["generated"]]
    assert len(made) >= 5 and all(b["primed"] for b in made)
    for beat in made[:3]:
        name = beat["files"]["gif"]
        marked, _, _ = gif_frames(tmp_path / "a" / name)
        again, _, _ = gif_frames(tmp_path / "b" / name)
        plain, _, _ = gif_frames(tmp_path / "plain" / name)
        for m, a, p in zip(marked, again, plain, strict=True):
            np.testing.assert_array_equal(m, a)
            diff = m != p
            assert diff[:32, :96].sum() > 100  # the mark, top left
            diff[:32, :96] = False
            assert not diff.any()  # and nothing else


def test_a_corrupt_model_is_one_line_and_nothing_written(short_sample, tmp_path, capsys) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{")
    (broken / "model.safetensors").write_bytes(b"\0" * 10)
    out = tmp_path / "out"
    assert generate(short_sample, "--fs", SAMPLE_ECG_FS, "--out", out, "--model", broken) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("echopulse: error: ") and "broken" in err[0]
    assert not out.exists()


def test_a_bad_prime_image_is_one_line_and_nothing_written(model_dir, short_sample, tmp_path, capsys) -> None:
    prime = tmp_path / "prime.png"
    prime.write_text("not a picture")
    out = tmp_path / "out"
    code = generate(short_sample, "--fs", SAMPLE_ECG_FS, "--out", out, "--model", model_dir, "--prime", prime)
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "prime.png: not a usable --prime image" in err[0]
    assert not out.exists()


def test_no_usable_beat_lists_why_the_beats_were_refused() -> None:
    def window(index: int, accepted: bool, reason: str | None, rr_s: float | None) -> SimpleNamespace:
        return SimpleNamespace(beat_index=index, accepted=accepted, reason=reason, rr_s=rr_s)

    windows = [window(0, False, "quality 0.2 < 0.6", 1.0), window(1, False, "quality 0.2 < 0.6", 1.0),
               window(2, True, None, None)]
    result = SimpleNamespace(beats=[SimpleNamespace(index=i) for i in range(3)], windows=windows)
    with pytest.raises(PreprocessError) as caught:
        clip_windows(result, "x.csv")  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith("x.csv: no usable beat (3 beats found, all refused: quality 0.2 < 0.6 ×2, ")
    assert "no RR interval" in message


def test_format_option() -> None:
    parser = argparse.ArgumentParser()
    add_generate_parser(parser.add_subparsers(dest="command"))
    parse = lambda *a: parser.parse_args(["generate", "x.csv", "--out", "o", *a])  # noqa: E731
    assert parse().formats == ("mp4", "gif") and parse().seed == 0
    assert parse("--format", "gif,mp4").formats == ("mp4", "gif")
    assert parse("--format", "none").formats == ()
    with pytest.raises(SystemExit):
        parse("--format", "avi")


def test_the_summary_line_says_why_beats_got_no_clip(model_dir, short_sample, tmp_path, capsys) -> None:
    assert generate(short_sample, "--fs", SAMPLE_ECG_FS, "--out", tmp_path / "o", "--model", model_dir,
                    "--format", "none") == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("short.csv:")]
    skipped = [b for b in manifest(tmp_path / "o")["beats"] if not b["generated"]]
    assert skipped and skipped[0]["skipped"].startswith("no RR interval")
    assert f"({len(skipped)} beat" in line and "without a clip: no RR interval" in line


def test_a_rerun_replaces_the_previous_runs_files(model_dir, short_sample, tmp_path) -> None:
    out = tmp_path / "out"
    shorter = tmp_path / "shorter.csv"  # the first 8 s: fewer beats than the first run's 12 s
    shorter.write_text("\n".join(short_sample.read_text().splitlines()[: int(8 * SAMPLE_ECG_FS)]) + "\n")
    assert generate(short_sample, "--fs", SAMPLE_ECG_FS, "--out", out, "--model", model_dir,
                    "--format", "gif") == 0
    first = {p.name for p in out.glob("beat_*")}
    (out / "notes.txt").write_text("mine")  # not ours: stays
    assert generate(shorter, "--fs", SAMPLE_ECG_FS, "--out", out, "--model", model_dir,
                    "--format", "gif") == 0
    made = {b["files"]["gif"] for b in manifest(out)["beats"] if b["generated"]}
    assert made < first  # the second run made fewer clips …
    assert {p.name for p in out.glob("beat_*")} == made  # … and none of the first run's others is left
    assert (out / "notes.txt").read_text() == "mine"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".generate-")]


def test_a_prime_that_is_no_echo_frame_is_used_with_a_warning(model_dir, short_sample, tmp_path, capsys,
                                                              shared_data) -> None:
    ecg_plot = shared_data / "echopulse" / "ecg_page_2.png"
    common = (short_sample, "--fs", SAMPLE_ECG_FS, "--model", model_dir, "--format", "none")
    assert generate(*common, "--out", tmp_path / "a", "--prime", ecg_plot) == 0
    warnings = [x for x in capsys.readouterr().err.splitlines() if "warning" in x]
    assert len(warnings) == 1 and "ecg_page_2.png: --prime does not look like an echo frame" in warnings[0]
    from echopulse.echo.phantom import make_phantom

    echo = tmp_path / "echo.png"
    Image.fromarray(make_phantom(3, size=64).clip[0]).save(echo)
    assert generate(*common, "--out", tmp_path / "b", "--prime", echo) == 0
    assert "warning" not in capsys.readouterr().err


def test_generate_shows_progress_on_a_terminal(model_dir, short_sample, tmp_path) -> None:
    """Run as a person would, on a pseudo-terminal: status lines and a clip bar, not a silent wait."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))  # a terminal has a size
    argv = [sys.executable, "-m", "echopulse", "generate", str(short_sample), "--fs", str(SAMPLE_ECG_FS),
            "--out", str(tmp_path / "o"), "--model", str(model_dir), "--format", "none"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the program ended
            break
        if not chunk:
            break
        shown += chunk
    assert process.wait(timeout=300) == 0
    text = shown.decode(errors="replace")
    assert "loading the model" in text and "finding beats" in text
    assert "clip/s" in text or "s/clip" in text  # tqdm's bar over the clips
    assert "short.csv: " in text and " clips " in text

"""The `echopulse` command on real files: what `info` says and what `ingest` writes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from echopulse.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "echopulse", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_help_explains_every_command(capsys) -> None:
    """In-process (one interpreter, not ten): `--help` and each command's own help."""
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    listed = [line.split()[0] for line in lines if line.startswith("    ") and not line.startswith("     ")]
    commands = ("info", "ingest", "generate", "demo", "batch", "serve", "stream", "record", "eval", "phantom",
                "train", "convert-official")
    assert sorted(listed) == sorted(commands)  # each with its one-line help, and nothing unlisted
    for command in commands:
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        out = capsys.readouterr().out
        assert done.value.code == 0 and f"usage: echopulse {command}" in out
        assert len(out) > 300  # a description and its options, not a bare usage line
    assert run_cli("--version").stdout.startswith("echopulse ")  # and the real entry point answers


def test_ctrl_c_exits_130_with_one_line(monkeypatch, capsys, shared_data: Path, tmp_path: Path) -> None:
    import echopulse.preprocess.offline as offline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(offline.StreamingPreprocessor, "push", interrupted)
    path = shared_data / "apple_watch" / "ecg_2021-12-17.csv"
    assert main(["ingest", str(path), "--out", str(tmp_path / "out")]) == 130
    assert capsys.readouterr().err.strip() == "echopulse: error: interrupted"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["ingest", "generate", "phantom"])
def test_an_unusable_out_is_one_line_and_exit_2_before_any_work(command, tmp_path, capsys) -> None:
    """The input does not even exist: the --out line coming alone shows the check ran before any work."""
    a_file = tmp_path / "taken.txt"
    a_file.write_text("x")
    inputs = {"phantom": ["--n", "2"]}.get(command, [str(tmp_path / "ecg.csv")])
    for out, says in ((a_file, "exists and is not a folder"), (a_file / "sub", "is a file")):
        assert main([command, *inputs, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("echopulse: error: --out ") and says in err[0]
    assert a_file.read_text() == "x"


def test_info_describes_an_apple_watch_export_without_the_person(tmp_path: Path, shared_data: Path) -> None:
    source = (shared_data / "apple_watch" / "ecg_2021-12-17.csv").read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    lines[0], lines[1] = "Name,Erika Mustermann\n", "Date of Birth,1970-01-01\n"
    export = tmp_path / "ecg_2021-12-17.csv"
    export.write_text("".join(lines), encoding="utf-8")
    result = run_cli("info", str(export), "--json")
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["format"] == "apple_watch_csv"
    assert facts["fs"] == 513.625
    assert facts["leads"] == ["I"]
    assert facts["duration_s"] == pytest.approx(15409 / 513.625, abs=1e-3)
    assert facts["classification"] == "Sinus Rhythm"
    assert 60 <= facts["hr_bpm"] <= 90
    text = run_cli("info", str(export))
    assert text.returncode == 0
    for output in (result.stdout + result.stderr, text.stdout + text.stderr):
        assert "Mustermann" not in output and "1970" not in output


def test_ingest_writes_windows_beats_and_plot(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "out"
    code = main(["ingest", str(shared_data / "apple_watch" / "ecg_2023-09-26.csv"), "--out", str(out)])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["beats.json", "ecg.png", "windows.npz"]
    beats = json.loads((out / "beats.json").read_text())
    assert beats["source"] == "ecg_2023-09-26.csv"
    assert beats["fs"] == 512.508
    assert beats["duration_s"] == pytest.approx(13360 / 512.508)
    assert 55 <= beats["hr_bpm"] <= 90
    assert beats["r_peaks_s"] == [b["r_peak_s"] for b in beats["beats"]]
    assert len(beats["beats"]) >= 25
    for key in ("index", "r_peak_s", "rr_s", "hr_bpm", "quality", "accepted", "reason"):
        assert all(key in beat for beat in beats["beats"])
    with np.load(out / "windows.npz") as windows:
        assert windows["signal"].shape == (len(beats["beats"]), 12, 2250)
        assert windows["signal"].dtype == np.float32
        assert windows["lead_mask"][:, 0].all() and not windows["lead_mask"][:, 1:].any()
        np.testing.assert_allclose(windows["end_s"], beats["r_peaks_s"])
        assert windows["padded"][0] and not windows["padded"][-1]
        offsets = windows["r_peaks_offsets"]
        last = windows["r_peaks_s"][offsets[-2] : offsets[-1]]
        assert last[-1] == pytest.approx(beats["r_peaks_s"][-1])
    assert (out / "ecg.png").read_bytes().startswith(b"\x89PNG")


def test_several_inputs_get_one_folder_each(tmp_path: Path, shared_data: Path) -> None:
    first = shared_data / "apple_watch" / "ecg_2021-12-17.csv"
    copy_dir = tmp_path / "other"
    copy_dir.mkdir()
    second = shutil.copy(first, copy_dir / first.name)  # same stem: folders must not collide
    out = tmp_path / "out"
    assert main(["ingest", str(first), str(second), "--out", str(out)]) == 0
    folders = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert folders == ["ecg_2021-12-17", "ecg_2021-12-17-2"]
    for folder in folders:
        assert (out / folder / "beats.json").is_file() and (out / folder / "windows.npz").is_file()


def test_ingest_of_a_long_record_shows_progress_and_a_usable_plot(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "100"
    result = run_cli("ingest", str(shared_data / "wfdb" / "100.hea"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "beats:" in result.stderr and "/1806 [" in result.stderr  # tqdm's bar over 1806 s of ECG
    beats = json.loads((out / "beats.json").read_text())
    assert beats["detection_lead"] == "II"
    assert 2260 <= len(beats["beats"]) <= 2280
    assert (out / "ecg.png").stat().st_size > 50_000


def test_compat_layout_from_the_command_line(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "compat"
    path = shared_data / "apple_watch" / "ecg_2021-12-17.csv"
    assert main(["ingest", str(path), "--out", str(out), "--layout", "compat"]) == 0
    with np.load(out / "windows.npz") as windows:
        assert str(windows["layout"]) == "compat"
        assert windows["lead_mask"][:, 1].all() and windows["lead_mask"].sum() == len(windows["lead_mask"])
        assert not np.delete(windows["signal"], 1, axis=1).any()


def test_demo_runs_on_the_bundled_sample(tmp_path: Path) -> None:
    """The first quick-start command: the bundled model on the bundled sample, no download, no GPU."""
    result = run_cli("demo", "--out", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "demo"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"] == "sample_ecg.csv"
    assert manifest["clips"] >= 20
    assert len(list(out.glob("beat_*.mp4"))) == len(list(out.glob("beat_*.gif"))) == manifest["clips"]
    assert (out / "contact_sheet.png").stat().st_size > 10_000
    assert (out / "video.mp4").stat().st_size > 10_000

"""`echopulse batch`: the Beam pipeline over an archive of the real files plus ten bad ones, run in one
process, in two, and twice, against what `echopulse ingest` and `echopulse generate` make of the same files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from bad_archives import write_health_export
from bad_inputs import FAKE_BIRTH_DATE, FAKE_NAME, build_bad_corpus
from random_model import micro_config, save_random_model

from echopulse.batch import BatchSettings, run_batch
from echopulse.batch.windows_table import read_windows, window_arrays
from echopulse.cli import main
from echopulse.ingest import iter_recordings

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BAD_CASES = (
    "aw_no_sample_rate", "aw_nan_sample", "aw_invalid_utf8", "aw_unit_furlongs", "wfdb_truncated_dat",
    "edf_truncated_header", "npy_object_dtype", "pickle_os_system", "empty_file", "random_bytes",
)
"""Ten kinds of refusal from the ingest corpus, each readable without --fs, across the readers."""


def copy_files(source: Path, names: list[str], target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(source / name, target / name)


@pytest.fixture(scope="module")
def archive(tmp_path_factory, shared_data) -> dict:
    """The real files (a WFDB record with its annotations, a PTB record with its .xyz signal file, both
    watch CSVs, an export.zip holding the same two ECGs, the strip image, an EDF) and ten bad files."""
    root = tmp_path_factory.mktemp("archive")
    good = root / "good"
    copy_files(shared_data / "wfdb", ["100.hea", "100.dat", "100.atr", "s0010_re.hea", "s0010_re.dat",
                                      "s0010_re.xyz"], good / "wfdb")
    copy_files(shared_data / "apple_watch", ["ecg_2021-12-17.csv", "ecg_2023-09-26.csv"], good / "watch")
    write_health_export(good / "watch" / "export.zip", shared_data)
    copy_files(shared_data / "echopulse", ["ecg_page_2.png"], good / "images")
    copy_files(shared_data / "edf", ["test_generator_2.edf"], good / "edf")

    corpus = build_bad_corpus(root / "corpus", shared_data)
    bad = root / "bad"
    bad.mkdir()
    cases = {case.name: case for case in corpus}
    expected_errors, markers = {}, []
    for name in BAD_CASES:
        case = cases[name]
        assert case.fs is None or name.startswith("pickle")  # a hostile pickle is refused before fs matters
        if case.path.parent.name == name:  # a WFDB case: its own folder, as WFDB finds files by name
            shutil.copytree(case.path.parent, bad / name)
            expected_errors[str(bad / name / case.path.name)] = case.expect
        else:
            shutil.copy(case.path, bad / case.path.name)
            expected_errors[str(bad / case.path.name)] = case.expect
        markers += [case.marker] if case.marker else []
    for item in (root / "corpus").iterdir():
        if item.name.split(".")[0] not in BAD_CASES:
            shutil.rmtree(item) if item.is_dir() else item.unlink()

    keys: dict[str, list[str]] = {}
    for path in sorted(p for p in good.rglob("*") if p.suffix in {".hea", ".csv", ".zip", ".png", ".edf"}):
        for recording in iter_recordings(path):
            assert recording.record is not None, recording.error
            keys.setdefault(recording.record.content_hash(), []).append(f"{path.name}:{recording.label}")
    return {"root": root, "good": good, "bad": bad, "keys": keys, "errors": expected_errors,
            "markers": markers}


def settings(archive: dict, output: Path, **more) -> BatchSettings:
    return BatchSettings(inputs=(str(archive["good"]), str(archive["bad"])), output=str(output), **more)


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def runs(archive, tmp_path_factory) -> dict:
    """One process, the same again into a new folder, then two processes."""
    out = tmp_path_factory.mktemp("runs")
    reports = {
        "one": run_batch(settings(archive, out / "one")),
        "again": run_batch(settings(archive, out / "again")),
        "two": run_batch(settings(archive, out / "two"), workers=2),
    }
    return {"out": out, "reports": reports}


def test_every_good_record_is_in_the_manifest_exactly_once(archive, runs) -> None:
    rows = jsonl(runs["out"] / "one" / "manifest.jsonl")
    listed = [row["record"] for row in rows]
    assert sorted(listed) == sorted(archive["keys"]) and len(set(listed)) == len(listed)
    assert listed == sorted(listed)
    by_key = {row["record"]: row for row in rows}
    for key, inputs in archive["keys"].items():
        assert by_key[key]["inputs"] == len(inputs)  # a watch CSV and its copy in export.zip: one record
    assert sum(len(v) == 2 for v in archive["keys"].values()) == 2
    for row in rows:
        assert (runs["out"] / "one" / row["files"]["windows"]).is_file()
        assert row["beats"] == row["windows"] >= 1
    counters = runs["reports"]["one"].counters
    assert counters["records"] == len(archive["keys"]) and counters["duplicates"] == 2
    assert counters["beats"] == sum(row["beats"] for row in rows)
    assert counters["refusals"] == sum(len(row["refused_beats"]) for row in rows)


def test_every_bad_file_is_in_the_errors_with_its_reason(archive, runs) -> None:
    errors = jsonl(runs["out"] / "one" / "errors.jsonl")
    assert [e["input"] for e in errors] == sorted(archive["errors"])
    for error in errors:
        assert error["stage"] == "read"
        assert re.search(archive["errors"][error["input"]], error["error"]), error
    assert runs["reports"]["one"].counters["errors"] == len(BAD_CASES)
    assert archive["markers"] and not any(m.exists() for m in archive["markers"])  # no payload ever ran


def test_the_same_bytes_from_a_rerun_and_from_two_processes(runs) -> None:
    one = tree(runs["out"] / "one")
    assert tree(runs["out"] / "again") == one
    assert tree(runs["out"] / "two") == one
    assert runs["reports"]["two"].runner == "FnApiRunner (2 processes)"
    assert runs["reports"]["two"].counters == runs["reports"]["one"].counters


def test_nothing_written_names_the_person_or_the_files(archive, runs) -> None:
    files = tree(runs["out"] / "one")
    for name, data in files.items():
        assert FAKE_NAME.encode() not in data and FAKE_BIRTH_DATE.encode() not in data, name
    for name in ("manifest.jsonl", "batch.json"):
        text = files[name].decode()
        assert str(archive["root"]) not in text and "ecg_2021-12-17" not in text and "export.zip" not in text


def test_windows_equal_those_of_echopulse_ingest(archive, runs, tmp_path) -> None:
    rows = {row["record"]: row for row in jsonl(runs["out"] / "one" / "manifest.jsonl")}
    for path in (archive["good"] / "watch" / "ecg_2023-09-26.csv", archive["good"] / "wfdb" / "s0010_re.hea",
                 archive["good"] / "images" / "ecg_page_2.png"):
        out = tmp_path / path.stem
        assert main(["ingest", str(path), "--out", str(out)]) == 0
        key = next(iter_recordings(path)).record.content_hash()
        table = read_windows(runs["out"] / "one" / rows[key]["files"]["windows"])
        npz = np.load(out / "windows.npz")
        beats = json.loads((out / "beats.json").read_text())
        assert table.column("record").to_pylist() == [key] * len(beats["beats"])
        assert table.column("beat_index").to_pylist() == [b["index"] for b in beats["beats"]]
        assert table.column("r_peak_s").to_pylist() == beats["r_peaks_s"]
        assert table.column("quality").to_pylist() == [b["quality"] for b in beats["beats"]]
        assert np.array_equal(window_arrays(table), npz["signal"])
        assert np.array_equal(np.array(table.column("lead_mask").to_pylist()), npz["lead_mask"])


@pytest.fixture(scope="module")
def micro_model(tmp_path_factory) -> Path:
    return save_random_model(tmp_path_factory.mktemp("model"), micro_config(), {"model_id": "random-micro"})


def test_clips_equal_those_of_echopulse_generate(micro_model, shared_data, tmp_path) -> None:
    lines = (shared_data / "apple_watch" / "ecg_2021-12-17.csv").read_text(encoding="utf-8").splitlines()
    short = tmp_path / "in" / "short.csv"
    short.parent.mkdir()
    short.write_text("\n".join(lines[: 13 + 512 * 12]) + "\n", encoding="utf-8")  # header, then 12 s
    out = tmp_path / "batch"
    argv = ["batch", str(short.parent), "--output", str(out), "--generate", "--model", str(micro_model),
            "--precision", "fp32", "--max-batch", "3", "--seed", "5"]
    assert main(argv) == 0
    [row] = jsonl(out / "manifest.jsonl")
    assert row["clips"] == len(row["files"]["clips"]) >= 5 and row["synthetic"] is True
    assert row["clips"] + len(row["refused_beats"]) == row["beats"]
    generated = tmp_path / "generate"
    assert main(["generate", str(short), "--out", str(generated), "--model", str(micro_model), "--format",
                 "mp4", "--precision", "fp32", "--seed", str(row["seed"])]) == 0
    made = sorted(p.name for p in generated.glob("beat_*.mp4"))
    assert made == [Path(name).name for name in row["files"]["clips"]]
    for name in row["files"]["clips"]:
        assert (out / name).read_bytes() == (generated / Path(name).name).read_bytes()
    summary = json.loads((out / "batch.json").read_text())
    assert summary["clips"]["synthetic"] is True and summary["clips"]["model"]["id"] == "random-micro"


def test_a_hanging_and_a_raising_reader_end_in_the_errors(archive, monkeypatch, tmp_path) -> None:
    import echopulse.batch.inputs as inputs

    real_read = inputs._read
    release = __import__("threading").Event()

    def faulty(path: str, fs):
        if path.endswith("ecg_2023-09-26.csv"):
            release.wait(60)  # hangs until the test ends
        if path.endswith("test_generator_2.edf"):
            raise RuntimeError("a reader bug")
        return real_read(path, fs)

    monkeypatch.setattr(inputs, "_read", faulty)
    try:
        report = run_batch(BatchSettings(inputs=(str(archive["good"]),), output=str(tmp_path / "out"),
                                         read_timeout_s=3))
    finally:
        release.set()
    errors = {Path(e["input"]).name: e["error"] for e in jsonl(tmp_path / "out" / "errors.jsonl")}
    assert "reading took longer than 3 s, given up" in errors.pop("ecg_2023-09-26.csv")
    assert "reader failed (RuntimeError: a reader bug)" in errors.pop("test_generator_2.edf")
    assert errors == {}
    rows = jsonl(tmp_path / "out" / "manifest.jsonl")
    # the hung CSV's record still arrives through export.zip; only the EDF's record is missing
    assert len(rows) == len(archive["keys"]) - 1
    assert report.counters["errors"] == 2 and report.counters["records"] == len(rows)


KILL_ONCE = textwrap.dedent(
    """
    import os, signal
    os.environ.setdefault("ECHOPULSE_TEST_MAIN_PID", str(os.getpid()))  # the command; its workers inherit
    worker = os.environ["ECHOPULSE_TEST_MAIN_PID"] != str(os.getpid())
    if os.environ.get("ECHOPULSE_TEST_KILL_MARK") and worker:
        import logging
        quiet = logging.StreamHandler()
        quiet.setLevel(logging.ERROR)
        logging.getLogger().addHandler(quiet)  # as echopulse.batch.worker does, before Beam is imported
        import echopulse.batch.inputs as inputs
        real_read = inputs._read
        def read(path, fs):
            mark = os.environ["ECHOPULSE_TEST_KILL_MARK"]
            if path.endswith("ecg_page_2.png") and not os.path.exists(mark):
                open(mark, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)  # a worker dies in the middle of its bundle
            return real_read(path, fs)
        inputs._read = read
    """
)


def test_a_worker_killed_mid_bundle_ends_in_a_rerun_that_loses_and_doubles_nothing(archive, runs,
                                                                                     tmp_path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(KILL_ONCE)
    mark = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "ECHOPULSE_TEST_KILL_MARK": str(mark)}
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "echopulse", "batch", str(archive["good"]), str(archive["bad"]), "--output",
         str(out), "--workers", "2"], env=env, capture_output=True, text=True, timeout=600,
    )
    assert mark.exists()  # a worker was killed
    assert "running it again (attempt 2 of 2)" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert done.returncode == 2  # the ten bad files, nothing else
    counts = done.stdout.strip().splitlines()[-1]
    assert counts.startswith(f"{len(archive['keys'])} records (2 duplicates)") and "(attempt 2)" in counts
    assert tree(out) == tree(runs["out"] / "one")  # every record once, the same bytes as a clean run


def test_the_portable_runner_with_an_external_worker_pool_writes_the_same_bytes(archive, runs,
                                                                                 tmp_path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    pool = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        beam_args = ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=EXTERNAL",
                     f"--environment_config=localhost:{port}"]
        report = run_batch(settings(archive, tmp_path / "out"), beam_args)
    finally:
        pool.terminate()
        pool.wait(30)
    assert report.runner == "PortableRunner"
    assert tree(tmp_path / "out") == tree(runs["out"] / "one")


def test_a_rerun_into_the_same_folder_removes_what_the_inputs_no_longer_give(archive, tmp_path) -> None:
    out = tmp_path / "out"
    run_batch(BatchSettings(inputs=(str(archive["good"] / "watch"),), output=str(out)))
    before = set(tree(out))
    report = run_batch(BatchSettings(inputs=(str(archive["good"] / "edf"),), output=str(out)))
    after = tree(out)
    [row] = jsonl(out / "manifest.jsonl")
    assert {name for name in after if name.startswith("windows/")} == {row["files"]["windows"]}
    assert report.stale_removed == len([n for n in before if n.startswith("windows/")])
    assert not (out / ".incomplete").exists()


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["--runner", "DaskRunner"], "--runner DaskRunner: not offered (Beam's Dask runner computes only"),
        (["--runner=PrismRunner"], "--runner PrismRunner: not offered (Prism is a binary Beam downloads"),
        (["--generate", "--model", "/nonexistent/model"], "/nonexistent/model"),
    ],
)
def test_refusals_are_one_line_before_any_work(argv, expect, archive, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["batch", str(archive["good"] / "edf"), "--output", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expect in err and "Traceback" not in err
    assert not (out / "manifest.jsonl").exists()


def test_a_pattern_that_matches_nothing_is_an_error_row_and_the_rest_completes(archive, tmp_path,
                                                                                capsys) -> None:
    out = tmp_path / "out"
    missing = str(tmp_path / "nowhere" / "*.csv")
    assert main(["batch", str(archive["good"] / "edf"), missing, "--output", str(out)]) == 2
    [error] = jsonl(out / "errors.jsonl")
    assert error == {"input": missing, "stage": "match", "error": f"{missing}: no file matches"}
    assert len(jsonl(out / "manifest.jsonl")) == 1
    assert "1 record (0 duplicates), 600 beats, 600 windows" in capsys.readouterr().out


def test_other_commands_still_refuse_unknown_options(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["info", "ecg.csv", "--runner=DataflowRunner"])
    assert exit_info.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_an_output_folder_inside_the_input_folder_is_not_read_back(archive, tmp_path) -> None:
    inputs = tmp_path / "archive"
    shutil.copytree(archive["good"] / "watch", inputs)
    out = inputs / "out"
    first = run_batch(BatchSettings(inputs=(str(inputs),), output=str(out)))
    again = run_batch(BatchSettings(inputs=(str(inputs),), output=str(out)))
    assert first.counters == again.counters and again.counters["errors"] == 0
    assert again.counters["inputs"] == 3  # two CSVs and export.zip, not the Parquet or JSONL files

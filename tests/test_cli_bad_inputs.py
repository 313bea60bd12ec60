"""`echopulse ingest` on bad files, run as a user runs it: a separate process, exit code and stderr only.

The CLI promises exit code 2 and one line on stderr per refused input, never a traceback, no partial output
for the refused input, and complete outputs for the good inputs beside it. A handful of representative
cases from the bad-input corpus (one per reader family) keeps this fast; test_bad_inputs.py covers them all
in process.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bad_inputs import EXIT_REFUSED, BadCase, assert_cli_refuses, build_bad_corpus, error_lines, run_ingest

CLI_CASES = (
    "aw_text_in_sample",
    "wfdb_ten_hours",
    "edf_truncated_data",
    "pickle_os_system",
    "npy_three_dimensional",
    "random_bytes",
)
OUTPUT_FILES = ("windows.npz", "beats.json")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, BadCase]:
    cases = build_bad_corpus(tmp_path_factory.mktemp("cli-bad-inputs"), shared_data)
    return {case.name: case for case in cases}


@pytest.mark.parametrize("name", CLI_CASES)
def test_refused_file_exits_2_with_one_line_and_writes_nothing(
    name: str, bad_corpus: dict[str, BadCase], tmp_path: Path
) -> None:
    case = bad_corpus[name]
    assert_cli_refuses(case, tmp_path)
    if case.marker is not None:
        assert not case.marker.exists(), "the pickle's payload ran"


def test_good_files_complete_beside_a_refused_one(
    apple_watch_csvs: list[Path], bad_corpus: dict[str, BadCase], tmp_path: Path
) -> None:
    """One bad input among good ones fails the run (exit 2) but costs the good ones nothing."""
    bad = bad_corpus["aw_rate_zero"]
    out = tmp_path / "out"
    result = run_ingest([apple_watch_csvs[0], bad.path, apple_watch_csvs[1]], out, cwd=tmp_path)
    assert result.returncode == EXIT_REFUSED, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and bad.path.name in errors[0], result.stderr
    expected = {path.stem for path in apple_watch_csvs[:2]}
    assert {item.name for item in out.iterdir()} == expected, "refused input or leftovers in the output"
    for path in apple_watch_csvs[:2]:
        _assert_complete_outputs(out / path.stem, path.name)


def _assert_complete_outputs(folder: Path, source: str) -> None:
    """windows.npz with at least one 12×2250 window, a beats.json that names its source, and a PNG plot."""
    for name in OUTPUT_FILES:
        assert (folder / name).is_file(), f"{folder / name} missing"
    with np.load(folder / "windows.npz") as windows:
        assert windows["signal"].ndim == 3 and windows["signal"].shape[0] > 0
        assert windows["signal"].shape[1:] == (12, 2250)
    document = json.loads((folder / "beats.json").read_text(encoding="utf-8"))
    assert document["source"] == source and document["beats"]
    plots = list(folder.glob("*.png"))
    assert plots and all(plot.read_bytes().startswith(PNG_MAGIC) for plot in plots)

"""Broken and hostile `export.zip` archives: each refused with an `IngestError` that names the zip (or
`<zip>:<member>`) and the problem, in process and through the CLI (exit 2, one line, nothing written)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from bad_archives import REAL_ECGS, archive_case_names, build_bad_archive_cases
from bad_inputs import (
    EXIT_REFUSED,
    FAKE_BIRTH_DATE,
    FAKE_NAME,
    BadCase,
    assert_cli_refuses,
    error_lines,
    run_ingest,
)

from echopulse.errors import IngestError
from echopulse.ingest import read_records

MIN_CASES = 8
CLI_CASES = ("zip_bomb", "traversal_name", "truncated", "twenty_thousand_members")
FOLDER_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{6}_[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def bad_archives(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, BadCase]:
    cases = build_bad_archive_cases(tmp_path_factory.mktemp("bad-archives"), shared_data)
    return {case.name: case for case in cases}


def _refusal(case: BadCase) -> IngestError:
    """The error reading every record of `case` raises; any other exception, or none, fails the test."""
    try:
        records = list(read_records(case.path))
    except IngestError as error:
        return error
    except Exception as error:
        pytest.fail(f"{case.name}: {type(error).__name__} escaped instead of IngestError: {error}")
    pytest.fail(f"{case.name}: accepted, {len(records)} records")


def test_corpus_is_large_enough(bad_archives: dict[str, BadCase]) -> None:
    assert len(bad_archives) >= MIN_CASES
    assert sorted(bad_archives) == sorted(archive_case_names())


@pytest.mark.parametrize("name", archive_case_names())
def test_bad_archive_is_refused_with_a_specific_message(name: str, bad_archives: dict[str, BadCase]) -> None:
    case = bad_archives[name]
    message = str(_refusal(case))
    assert case.path.name in message, message
    assert re.search(case.expect, message), f"{message!r} does not match {case.expect!r}"
    assert "\n" not in message and "Traceback" not in message
    assert FAKE_NAME not in message and FAKE_BIRTH_DATE not in message


def test_broken_archives_are_refused_before_any_record(bad_archives: dict[str, BadCase]) -> None:
    """Directory-level faults raise on the first `next()`: a hostile archive never hands out a record."""
    for name in ("zip_bomb", "traversal_name", "encrypted_member", "overlapping_members", "duplicate_names"):
        records = read_records(bad_archives[name].path)
        with pytest.raises(IngestError):
            next(records)


def test_a_broken_member_ends_read_records_after_the_sound_ones(bad_archives: dict[str, BadCase]) -> None:
    """`read_records` is a plain generator: the member before the broken one was already yielded."""
    seen = []
    with pytest.raises(IngestError, match=r"ecg_2022-06-30\.csv"):
        for record in read_records(bad_archives["bad_member"].path):
            seen.append(record.meta["archive_member"])
    assert seen == [REAL_ECGS[0]]


@pytest.mark.parametrize("name", archive_case_names())
def test_bytes_of_a_bad_archive_are_refused_the_same_way(name: str, bad_archives: dict[str, BadCase]) -> None:
    """An uploaded export gets the path's refusal word for word, its name in place of the path."""
    case = bad_archives[name]
    expected = str(_refusal(case)).replace(str(case.path), case.path.name)
    with pytest.raises(IngestError) as refused:
        list(read_records(case.path.read_bytes(), name=case.path.name))
    assert str(refused.value) == expected


# ------------------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_refuses_a_broken_archive_with_one_line_and_writes_nothing(
    name: str, bad_archives: dict[str, BadCase], tmp_path: Path
) -> None:
    assert_cli_refuses(bad_archives[name], tmp_path)


def test_cli_writes_the_sound_members_beside_a_broken_one(
    bad_archives: dict[str, BadCase], tmp_path: Path
) -> None:
    case = bad_archives["bad_member"]
    out = tmp_path / "out"
    result = run_ingest([case.path], out, cwd=tmp_path)
    assert result.returncode == EXIT_REFUSED, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and f"{case.path.name}:ecg_2022-06-30.csv" in errors[0], result.stderr
    folders = sorted(out.iterdir())
    assert len(folders) == len(REAL_ECGS), "the broken member or leftovers in the output"
    sources = set()
    for folder in folders:
        assert FOLDER_NAME.match(folder.name), folder.name
        assert sorted(p.name for p in folder.iterdir()) == ["beats.json", "ecg.png", "windows.npz"]
        sources.add(json.loads((folder / "beats.json").read_text(encoding="utf-8"))["source"])
    assert sources == {f"{case.path.name}:{name}" for name in REAL_ECGS}
    assert not any(folder.name.startswith("2022-06-30") for folder in folders)

"""Every file of the bad-input corpus is refused with an `IngestError` that says what is wrong and where.

A refusal is the reader's contract with the CLI and the service: one line they can show as is. So the
message must name the file, state the specific problem, never carry a traceback, and never repeat the
name or birth date an Apple Watch export holds on its first two lines.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bad_inputs import FAKE_BIRTH_DATE, FAKE_NAME, BadCase, build_bad_corpus, case_names

from echopulse.errors import IngestError
from echopulse.ingest import read_record

MIN_CASES = 30
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "', "line <module>", "\n")


@pytest.fixture(scope="session")
def bad_corpus(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, BadCase]:
    """The corpus, built once for the session."""
    cases = build_bad_corpus(tmp_path_factory.mktemp("bad-inputs"), shared_data)
    return {case.name: case for case in cases}


def _refusal(case: BadCase) -> IngestError:
    """The error `read_record` raises for `case`; any other exception, or none, fails the test."""
    try:
        record = read_record(case.path, fs=case.fs)
    except IngestError as error:
        return error
    except Exception as error:  # the point of the corpus: no other exception may escape a reader
        pytest.fail(f"{case.name}: {type(error).__name__} escaped instead of IngestError: {error}")
    pytest.fail(
        f"{case.name}: accepted as {record.source_format}, {record.n_samples} samples at {record.fs} Hz"
    )


def test_corpus_is_large_enough(bad_corpus: dict[str, BadCase]) -> None:
    assert len(bad_corpus) >= MIN_CASES
    assert sorted(bad_corpus) == sorted(case_names())


@pytest.mark.parametrize("name", case_names())
def test_bad_input_is_refused_with_a_specific_message(name: str, bad_corpus: dict[str, BadCase]) -> None:
    case = bad_corpus[name]
    message = str(_refusal(case))
    assert case.path.name in message, message
    assert re.search(case.expect, message), f"{message!r} does not match {case.expect!r}"
    for marker in TRACEBACK_MARKERS:
        assert marker not in message, f"traceback-like {marker!r} in {message!r}"


@pytest.mark.parametrize("name", case_names(with_marker=True))
def test_hostile_pickle_runs_nothing(name: str, bad_corpus: dict[str, BadCase]) -> None:
    case = bad_corpus[name]
    assert case.marker is not None
    _refusal(case)
    assert not case.marker.exists(), f"{case.name}: loading the file ran its payload"


def test_refusals_never_repeat_the_name_or_birth_date(bad_corpus: dict[str, BadCase]) -> None:
    """Checked over all the Apple Watch cases at once, so a leak shows in one place."""
    identity_cases = [case for case in bad_corpus.values() if case.identity]
    assert len(identity_cases) >= 10
    leaks = []
    for case in identity_cases:
        message = str(_refusal(case))
        if FAKE_NAME in message or FAKE_BIRTH_DATE in message or "Mustermann" in message:
            leaks.append(f"{case.name}: {message}")
    assert not leaks, "\n".join(leaks)


BYTES_TOO_LARGE_TO_LOAD = 64 * 2**20
"""Cases whose file is larger (the sparse 600 MiB one) are left out of the bytes test: loading them to
memory is not the point, and a stream's own size check is tested in test_read_sources.py."""


def _bytes_cases() -> list[str]:
    """Every case that is one file of bytes: not a directory or a missing path, not a WFDB record (bytes
    of its header are refused for lack of the .dat, see test_read_sources.py)."""
    not_bytes = {"a_directory", "missing_path", "over_size_limit"}  # no bytes to send, or too many to load
    return [name for name in case_names() if not name.startswith("wfdb_") and name not in not_bytes]


@pytest.mark.parametrize("name", _bytes_cases())
def test_bytes_of_a_bad_input_are_refused_the_same_way(name: str, bad_corpus: dict[str, BadCase]) -> None:
    """An upload of the same bytes gets the path's refusal, word for word, with its name for the path."""
    case = bad_corpus[name]
    assert case.path.is_file() and case.path.stat().st_size <= BYTES_TOO_LARGE_TO_LOAD
    expected = str(_refusal(case)).replace(str(case.path), case.path.name)
    with pytest.raises(IngestError) as refused:
        read_record(case.path.read_bytes(), fs=case.fs, name=case.path.name)
    assert str(refused.value) == expected
    assert case.marker is None or not case.marker.exists(), "loading the bytes ran their payload"

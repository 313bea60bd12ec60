"""Every bad strip image is refused with an `IngestError` that names the file and says what is wrong.

In process for all cases, and through `python -m echopulse ingest` for two of them (a header claiming a
50,000-px image, and noise): exit code 2, one line on stderr, no traceback, nothing written.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bad_images import build_bad_image_cases, image_case_names
from bad_inputs import BadCase, assert_cli_refuses

from echopulse.errors import IngestError
from echopulse.ingest import read_record

MIN_CASES = 8
CLI_CASES = ("png_50000_px_wide", "pure_noise")


@pytest.fixture(scope="module")
def bad_images(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, BadCase]:
    cases = build_bad_image_cases(tmp_path_factory.mktemp("bad-images"), shared_data)
    return {case.name: case for case in cases}


def test_corpus_is_large_enough(bad_images: dict[str, BadCase]) -> None:
    assert len(bad_images) >= MIN_CASES
    assert sorted(bad_images) == sorted(image_case_names())


@pytest.mark.parametrize("name", image_case_names())
def test_bad_image_is_refused_with_a_specific_message(name: str, bad_images: dict[str, BadCase]) -> None:
    case = bad_images[name]
    try:
        record = read_record(case.path)
    except IngestError as error:
        message = str(error)
    except Exception as error:  # no other exception may escape the reader
        pytest.fail(f"{name}: {type(error).__name__} escaped instead of IngestError: {error}")
    else:
        pytest.fail(f"{name}: accepted, {record.n_samples} samples, meta {record.meta}")
    assert case.path.name in message, message
    assert re.search(case.expect, message), f"{message!r} does not match {case.expect!r}"
    assert "\n" not in message and "Traceback" not in message


def test_oversized_header_is_refused_before_decoding(bad_images: dict[str, BadCase]) -> None:
    """The 50,000-px file is a few dozen bytes: refusing it from the header is the only way to be fast."""
    case = bad_images["png_50000_px_wide"]
    assert case.path.stat().st_size < 200
    with pytest.raises(IngestError, match="side limit"):
        read_record(case.path)


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_refuses_with_exit_2_and_one_line(
    name: str, bad_images: dict[str, BadCase], tmp_path: Path
) -> None:
    assert_cli_refuses(bad_images[name], tmp_path)

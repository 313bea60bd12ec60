"""Broken PDFs are refused with one `IngestError` naming the file and the problem, in process and from the
CLI (exit 2, one stderr line, no traceback, nothing written), and never with the name or birth date."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from apple_pdf import printed_birth_date
from bad_documents import PDF_CASE_NAMES, build_bad_pdf_cases
from bad_inputs import FAKE_BIRTH_DATE, FAKE_NAME, BadCase, assert_cli_refuses

from echopulse.errors import IngestError
from echopulse.ingest import read_record

CLI_CASES = ("encrypted", "no_trace")
IDENTITY = (FAKE_NAME, *FAKE_NAME.split(), FAKE_BIRTH_DATE, printed_birth_date(FAKE_BIRTH_DATE))


@pytest.fixture(scope="module")
def bad_pdfs(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, BadCase]:
    cases = build_bad_pdf_cases(tmp_path_factory.mktemp("bad-pdfs"), shared_data)
    return {case.name: case for case in cases}


def test_corpus_has_every_named_case(bad_pdfs: dict[str, BadCase]) -> None:
    assert tuple(bad_pdfs) == PDF_CASE_NAMES
    assert len(PDF_CASE_NAMES) >= 7


@pytest.mark.parametrize("name", PDF_CASE_NAMES)
def test_bad_pdf_is_refused_naming_file_and_problem(name: str, bad_pdfs: dict[str, BadCase]) -> None:
    case = bad_pdfs[name]
    with pytest.raises(IngestError) as caught:
        read_record(case.path, fs=case.fs)
    message = str(caught.value)
    assert case.path.name in message
    assert re.search(case.expect, message), message
    assert "\n" not in message
    for text in IDENTITY:
        assert text not in message


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_refuses_bad_pdf_with_one_line_and_writes_nothing(
    name: str, bad_pdfs: dict[str, BadCase], tmp_path: Path
) -> None:
    assert_cli_refuses(bad_pdfs[name], tmp_path)

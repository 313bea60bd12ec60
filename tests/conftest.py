"""Shared fixtures: the real files in ../shared/data, read in place (their licences forbid copying)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test data missing: {SHARED_DATA} (the suite reads ../shared/data)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def apple_watch_csvs(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "apple_watch").glob("ecg_*.csv"))

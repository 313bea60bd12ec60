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


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks gain nothing from intra-op threads, and on a busy 2-core machine two threads spin
    against each other (measured: 1.8 s with one thread, 52 s with two). Torch is imported here, not at
    the top, so tests that never touch it do not pay for it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

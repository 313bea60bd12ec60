"""What flows between the steps of the batch pipeline: plain dataclasses, pickled by Beam between stages.

A record is known by `key`, the SHA-256 of its rate, leads and samples (`ECGRecord.content_hash`), never by
a file name or path: names of exported files can hold a person's name. Only `InputFailure` names the input,
because a user has to find the file that failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from echopulse.ecg import ECGRecord
from echopulse.pipeline import BeatPlan
from echopulse.preprocess.windows import STMEMWindow


@dataclass(frozen=True)
class InputFailure:
    """An input (or one recording inside an archive, or one record's clips) that produced nothing, and why.

    `input` is the matched path; `recording` the member of an archive; `record` the key of a record whose
    generation failed. `stage` says which step refused it: match, read, preprocess or generate."""

    input: str
    error: str
    stage: str = "read"
    recording: str | None = None
    record: str | None = None

    def row(self) -> dict[str, Any]:
        row = {"input": self.input, "stage": self.stage, "error": self.error}
        if self.recording is not None:
            row["recording"] = self.recording
        if self.record is not None:
            row["record"] = self.record
        return row


def error_order(row: dict[str, Any]) -> tuple[str, str, str, str]:
    """How errors.jsonl is sorted: by input, then member, record and message."""
    return (row["input"], row.get("recording", ""), row.get("record", ""), row["error"])


@dataclass(frozen=True)
class ReadRecord:
    """A record read from an input. `origin` (the input and member it came from) decides only which of
    several identical records is kept, so that the choice does not depend on the order of arrival."""

    key: str
    record: ECGRecord
    origin: tuple[str, str]


@dataclass
class RecordBeats:
    """A record once preprocessed: the facts its manifest row gives, and with clips to draw its `plans`
    (each beat with its window, or why it gets no clip) and `seed`. The samples stay where they were read.
    `inputs` counts the inputs that held these same samples (an ECG exported on its own and inside an
    export.zip is one record)."""

    key: str
    origin: tuple[str, str]
    facts: dict[str, Any]
    plans: list[BeatPlan] = field(default_factory=list)
    seed: int | None = None
    inputs: int = 1


@dataclass(frozen=True)
class ClipRequest:
    """One window to draw a clip for, with the seed its clip is drawn with."""

    key: str
    window: STMEMWindow
    seed: int
    origin: tuple[str, str] = ("", "")


@dataclass(frozen=True)
class ModelChoice:
    """Which model, where and how: what `load_generator` takes, plus the sampling settings every clip uses
    (resolved once by the launcher, so every worker draws with the same ones)."""

    paths: tuple[str, ...] = ()
    device: str = "auto"
    precision: str = "auto"
    steps: int | None = None
    guidance: float | None = None
    torch_threads: int | None = None

"""Error types a user can act on.

Every refusal names the file (or stream) and what is wrong with it, so the CLI can print one line and the
service can answer with a problem body, without either of them ever showing a traceback.
"""

from __future__ import annotations

from pathlib import Path


class EchopulseError(Exception):
    """Base class of the errors echopulse raises on purpose."""


class IngestError(EchopulseError):
    """An input could not be read as an ECG record.

    `source` is the file path (or a stream label), `problem` says what is wrong and `where` points into
    the file (``"line 14"``, ``"field Sample Rate"``, ``"signal 3"``) when that is known.
    """

    def __init__(self, source: str | Path, problem: str, where: str | None = None) -> None:
        self.source = str(source)
        self.problem = problem
        self.where = where
        location = f" ({where})" if where else ""
        super().__init__(f"{self.source}: {problem}{location}")


class PreprocessError(EchopulseError):
    """A record was read but cannot be turned into beats or windows (too short, no lead usable, ...)."""


class ModelError(EchopulseError):
    """A model file or directory cannot be used; the message names the file and the problem."""


def one_line(error: BaseException | str, limit: int | None = None) -> str:
    """An error as one line (whitespace folded; the type's name when it says nothing), as every refusal is
    shown: a multi-line library message would break the CLI's one-line contract and the service's logs.

    `limit` cuts a longer text to that many characters, ending in "...": some library messages (torch's
    unpickler) run to paragraphs, and a refusal quotes them only as a hint.
    """
    text = " ".join(str(error).split())
    if not text and isinstance(error, BaseException):
        return type(error).__name__
    if limit is not None and len(text) > limit:
        return text[: limit - 3] + "..."
    return text

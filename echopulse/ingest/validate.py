"""The checks every reader runs on what it parsed, so all formats refuse bad values the same way."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from echopulse.ecg import ECGRecord
from echopulse.errors import IngestError
from echopulse.ingest import limits


def check_sample_rate(source: str | Path, fs: float, where: str | None = None) -> float:
    """Refuse a sample rate outside the limits (zero, negative, NaN, absurd)."""
    if not np.isfinite(fs) or fs <= 0:
        raise IngestError(source, f"sample rate {fs!r} Hz is not a positive number", where)
    if not limits.MIN_FS <= fs <= limits.MAX_FS:
        raise IngestError(
            source, f"sample rate {fs:g} Hz is outside {limits.MIN_FS:g}–{limits.MAX_FS:g} Hz", where
        )
    return float(fs)


def check_duration(source: str | Path, n_samples: int, fs: float) -> None:
    """Refuse recordings too short to hold a beat or longer than the duration limit."""
    duration = n_samples / fs
    if duration > limits.MAX_DURATION_S:
        raise IngestError(
            source,
            f"recording lasts {duration / 3600:.1f} h, over the {limits.MAX_DURATION_S / 3600:g} h limit",
        )
    if duration < limits.MIN_DURATION_S:
        raise IngestError(
            source, f"recording lasts {duration:.2f} s, shorter than {limits.MIN_DURATION_S:g} s"
        )


def check_file_size(source: str | Path, limit: int | None = None) -> Path:
    """Refuse a missing path, a directory, or a file over `limit` bytes (default `limits.MAX_FILE_BYTES`,
    read at call time), before anything reads it."""
    path = Path(source)
    if not path.exists():
        raise IngestError(path, "no such file")
    if path.is_dir():
        raise IngestError(path, "is a directory, not an ECG file")
    check_size(path, path.stat().st_size, limits.MAX_FILE_BYTES if limit is None else limit)
    return path


def check_size(source: str | Path, size: int, limit: int, *, more: bool = False) -> None:
    """Refuse an empty input or one over `limit` bytes; `more` says that `size` bytes were read from a
    stream and more were left, so its true size is unknown."""
    if size == 0:
        raise IngestError(source, "file is empty")
    if size > limit:
        shown = "" if more else f" {_size(size)},"
        raise IngestError(source, f"file is{shown} over the {_size(limit)} limit")


def _size(n_bytes: int) -> str:
    """`600 MiB`, `12 KiB` or `1000 bytes`: limits lowered for tests must still read sensibly."""
    if n_bytes >= 2**20:
        return f"{n_bytes / 2**20:.0f} MiB"
    if n_bytes >= 2**10:
        return f"{n_bytes / 2**10:.0f} KiB"
    return f"{n_bytes} bytes"


def check_record(source: str | Path, record: ECGRecord) -> ECGRecord:
    """Final gate for every reader: rate, duration, lead count, finite samples, plausible millivolts."""
    check_sample_rate(source, record.fs)
    if not 1 <= len(record.leads) <= limits.MAX_LEADS:
        raise IngestError(source, f"{len(record.leads)} leads, expected 1–{limits.MAX_LEADS}")
    check_duration(source, record.n_samples, record.fs)
    finite = np.isfinite(record.signal)
    if not finite.all():
        lead, sample = np.argwhere(~finite)[0]
        raise IngestError(
            source, "signal holds NaN or infinite values", f"lead {record.leads[lead]}, sample {sample}"
        )
    amplitude = float(np.percentile(np.abs(record.signal), 99.9))
    if amplitude > limits.MAX_ABS_MV:
        raise IngestError(
            source,
            f"amplitudes reach {amplitude:.4g} mV, implausible for an ECG (wrong units?)",
        )
    return record

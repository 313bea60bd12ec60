"""WFDB records (PhysioNet): a `.hea` header, one or more signal files and, maybe, a reference `.atr`.

The header is read and checked on its own first (rate, duration, lead count, signal files present, beside it
and long enough), so that a header that claims ten hours, or points at a file elsewhere on the disk, is
refused before a single sample is read. Header comments are never kept: in PhysioNet data they hold age,
sex, medication and diagnoses.
"""

from __future__ import annotations

import math
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from echopulse.ecg import BeatAnnotations, ECGRecord, canonical_lead, lead_names
from echopulse.errors import IngestError
from echopulse.ingest import limits
from echopulse.ingest.units import millivolts_per_unit
from echopulse.ingest.validate import check_duration, check_sample_rate

_BYTES_PER_SAMPLE = {
    "8": 1.0, "16": 2.0, "24": 3.0, "32": 4.0, "61": 2.0, "80": 1.0, "160": 2.0,
    "212": 1.5, "310": 4 / 3, "311": 4 / 3,
}  # fmt: skip
"""Bytes per sample of the uncompressed WFDB formats; FLAC formats (508/516/524) cannot be sized ahead."""


def beat_symbols() -> frozenset[str]:
    """The annotation symbols WFDB counts as QRS complexes (its `isqrs` table), so rhythm changes ('+'),
    noise marks ('~') and comments never become beats."""
    from wfdb.io.annotation import ann_labels, is_qrs

    return frozenset(
        label.symbol for label in ann_labels if label.label_store < len(is_qrs) and is_qrs[label.label_store]
    )


def read_wfdb(path: str | Path) -> ECGRecord:
    """Read a WFDB record given its `.hea`, one of its signal files, or its base name."""
    source = Path(path)
    header_path = _header_path(source)
    if header_path.suffix == ".hea":
        return _read_record(source, header_path.with_suffix(""))
    with tempfile.TemporaryDirectory(prefix="echopulse-wfdb-") as staging:
        return _read_record(source, _staged_base(source, header_path, Path(staging)))


def _header_path(source: Path) -> Path:
    """The header that describes `source`: itself when it is a header, else `<base>.hea` beside it."""
    if source.suffix.lower() == ".hea":
        if not source.is_file():
            raise IngestError(source, "no such header file")
        return source
    beside = source.with_suffix(".hea")
    for candidate in (beside, source.with_name(source.name + ".hea")):
        if candidate.is_file():
            return candidate
    if source.is_file() and _looks_like_header(source):
        return source
    raise IngestError(source, f"no WFDB header found ({beside.name} is missing)")


def _looks_like_header(path: Path) -> bool:
    """A small text file whose first non-comment line is a WFDB record line."""
    if path.stat().st_size > 1024 * 1024:
        return False
    try:
        text = path.read_text(encoding="ascii")
    except (UnicodeDecodeError, OSError):
        return False
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            fields = line.split()
            return len(fields) >= 2 and fields[1].isdigit()
    return False


def _staged_base(source: Path, header_path: Path, staging: Path) -> Path:
    """A base name `wfdb` can open for a header renamed away from `<record>.hea` (sniffing accepts it).

    `wfdb` finds everything by name, so the header is linked into a scratch directory under its proper
    name, next to links to the files beside it that share the record name.
    """
    record_name = _record_line_name(source, header_path)
    (staging / f"{record_name}.hea").symlink_to(header_path.resolve())
    for item in header_path.parent.iterdir():
        if item.name.startswith(record_name) and item != header_path and item.suffix != ".hea":
            (staging / item.name).symlink_to(item.resolve())
    return staging / record_name


def _record_line_name(source: Path, header_path: Path) -> str:
    for line in header_path.read_text(encoding="ascii", errors="replace").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name = line.split()[0].split("/")[0]
            _check_plain_name(source, name, "record name")
            return name
    raise IngestError(source, "WFDB header has no record line")


def _read_record(source: Path, base: Path) -> ECGRecord:
    header = _read_header(source, base)
    fs = check_sample_rate(source, float(header.fs), "header, sampling frequency")
    n_sig = int(header.n_sig or 0)
    if not 1 <= n_sig <= limits.MAX_LEADS:
        raise IngestError(source, f"header declares {n_sig} signals, expected 1–{limits.MAX_LEADS}", "header")
    _check_signal_specs(source, header)
    sig_len = _signal_length(source, header, base.parent)
    check_duration(source, sig_len, fs)
    _check_signal_files(source, header, base.parent, sig_len)
    keep, dropped = _voltage_channels(source, header)
    signal = _read_samples(source, base, keep, header)
    annotations = _read_annotations(source, base, fs, sig_len)
    labels = [str(header.sig_name[i]) for i in keep]
    units = [str(header.units[i] or "mV") for i in keep]
    meta: dict[str, Any] = {
        "record_name": str(header.record_name),
        "original_leads": labels,
        "n_sig": n_sig,
        "units": units,
    }
    if dropped:
        meta["dropped_signals"] = dropped
    if header.base_time is not None and header.base_date is None:
        meta["start_time_of_day"] = header.base_time.isoformat()
    return ECGRecord(
        signal=signal,
        fs=fs,
        leads=lead_names(labels),
        start=_start(header),
        source_format="wfdb",
        meta=meta,
        annotations=annotations,
    )


def _read_header(source: Path, base: Path) -> Any:
    import wfdb

    try:
        header = wfdb.rdheader(str(base))
    except FileNotFoundError as error:
        raise IngestError(source, f"WFDB header missing: {Path(error.filename or base).name}") from error
    except Exception as error:  # wfdb raises its own HeaderSyntaxError, ValueError, IndexError, ...
        raise IngestError(source, f"broken WFDB header: {error}", "header") from error
    if isinstance(header, wfdb.MultiRecord) or getattr(header, "seg_name", None) is not None:
        raise IngestError(source, "multi-segment WFDB records are not supported", "header")
    return header


def _check_plain_name(source: Path, name: str, what: str) -> None:
    """Refuse names that would make `wfdb` open a file outside the record's directory."""
    if not name or "/" in name or "\\" in name or name in {".", ".."} or name.startswith("~"):
        raise IngestError(source, f"{what} {name!r} is not a plain file name beside the header", "header")


def _check_signal_specs(source: Path, header: Any) -> None:
    """Every declared signal needs a line with a file name and a format (wfdb lets missing ones pass)."""
    for field in ("file_name", "fmt", "sig_name"):
        values = getattr(header, field, None)
        if values is None or len(values) != header.n_sig or any(value is None for value in values):
            raise IngestError(
                source, f"header declares {header.n_sig} signals but does not describe them all", "header"
            )
    for index, name in enumerate(header.file_name):
        _check_plain_name(source, str(name), f"signal {index} file")


def _signal_length(source: Path, header: Any, directory: Path) -> int:
    """Samples per signal from the header, or estimated from the signal file size when it is omitted."""
    if header.sig_len is not None:
        return int(header.sig_len)
    lengths = []
    for file_name, (fmt, frame) in _files(header).items():
        per_sample = _BYTES_PER_SAMPLE.get(fmt)
        path = directory / file_name
        if per_sample is None or not path.is_file():
            raise IngestError(source, "header does not state the number of samples", "header")
        lengths.append(int(path.stat().st_size / (per_sample * frame)))
    return min(lengths)


def _files(header: Any) -> dict[str, tuple[str, int]]:
    """Signal file name -> (format, samples per frame over all its signals)."""
    files: dict[str, tuple[str, int]] = {}
    spf = header.samps_per_frame or [1] * header.n_sig
    for name, fmt, per_frame in zip(header.file_name, header.fmt, spf, strict=True):
        previous = files.get(name, (str(fmt), 0))
        files[name] = (previous[0], previous[1] + int(per_frame or 1))
    return files


def _check_signal_files(source: Path, header: Any, directory: Path, sig_len: int) -> None:
    """Each signal file must exist beside the header and hold at least the samples the header promises."""
    offsets = dict(zip(header.file_name, header.byte_offset or [None] * header.n_sig, strict=True))
    for file_name, (fmt, frame) in _files(header).items():
        path = directory / file_name
        if not path.is_file():
            raise IngestError(source, f"signal file {file_name} missing", "header")
        size = path.stat().st_size
        if size > limits.MAX_FILE_BYTES:
            raise IngestError(source, f"signal file {file_name} is over the size limit")
        per_sample = _BYTES_PER_SAMPLE.get(fmt)
        if per_sample is None:
            continue
        needed = int(offsets.get(file_name) or 0) + math.floor(sig_len * frame * per_sample)
        if size < needed:
            raise IngestError(
                source, f"signal file {file_name} is truncated: {size} bytes, the header needs {needed}"
            )


def _voltage_channels(source: Path, header: Any) -> tuple[list[int], list[str]]:
    """Indices of the signals in electrical units; other signals (ABP in mmHg, respiration) are dropped.

    An ECG-named signal in an unknown unit is an error rather than a silent drop, since the user chose the
    file for that signal.
    """
    keep: list[int] = []
    dropped: list[str] = []
    for index, (name, unit) in enumerate(zip(header.sig_name, header.units, strict=True)):
        if millivolts_per_unit(str(unit or "mV")) is not None:
            keep.append(index)
            continue
        if canonical_lead(str(name)) is not None or _ecg_named(str(name)):
            raise IngestError(
                source, f"signal {name!r} is in unknown units {unit!r}", f"signal {index} ({name})"
            )
        dropped.append(f"{name} [{unit}]")
    if not keep:
        raise IngestError(source, "no signal in electrical units (mV, uV, V): " + ", ".join(dropped))
    return keep, dropped


def _ecg_named(name: str) -> bool:
    upper = name.upper()
    return "ECG" in upper or "EKG" in upper


def _read_samples(source: Path, base: Path, keep: list[int], header: Any) -> np.ndarray:
    """Physical samples (leads × samples) in mV, float32 from the start to halve the peak memory."""
    import wfdb

    try:
        record = wfdb.rdrecord(str(base), channels=keep, physical=True, return_res=32)
    except FileNotFoundError as error:
        raise IngestError(source, f"signal file {Path(error.filename or '').name} missing") from error
    except Exception as error:
        raise IngestError(source, f"unreadable WFDB signal file: {error}") from error
    signal = np.asarray(record.p_signal, dtype=np.float32).T.copy()
    for row, index in enumerate(keep):
        scale = millivolts_per_unit(str(header.units[index] or "mV"))
        if scale != 1.0:
            signal[row] *= np.float32(scale)
    return signal


def _read_annotations(source: Path, base: Path, fs: float, sig_len: int) -> BeatAnnotations | None:
    """Reference beats from `<base>.atr` when present; rhythm and other non-beat labels are left out."""
    if not base.with_suffix(".atr").is_file():
        return None
    import wfdb

    try:
        annotation = wfdb.rdann(str(base), "atr")
    except Exception as error:
        raise IngestError(source, f"unreadable annotation file: {error}", base.name + ".atr") from error
    samples = np.asarray(annotation.sample, dtype=np.int64)
    if annotation.fs and float(annotation.fs) != fs:
        samples = np.round(samples * fs / float(annotation.fs)).astype(np.int64)
    beats = beat_symbols()
    chosen = [
        i for i, symbol in enumerate(annotation.symbol) if symbol in beats and 0 <= samples[i] < sig_len
    ]
    return BeatAnnotations(sample=samples[chosen], symbol=tuple(str(annotation.symbol[i]) for i in chosen))


def _start(header: Any) -> datetime | None:
    if header.base_date is None or header.base_time is None:
        return None
    return datetime.combine(header.base_date, header.base_time)

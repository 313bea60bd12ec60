"""EDF, EDF+ and BDF files: the ECG channels among whatever else the recorder stored.

`pyedflib` reads compliant files. It refuses a whole file for a single non-ASCII byte in a header text field
(a "°" as the unit of some sine channel), even when the ECG channel is intact, so for exactly that case a
small reader of our own parses the fixed-width header leniently (Latin-1 text) and decodes the records
with NumPy; everything else it checks as strictly as pyedflib does (header size, file size, ranges).

The patient field (name, birth date, sex) and the recording field's admin code and technician are never
read: neither reader asks for them and nothing from them reaches the record.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from echopulse.ecg import ECGRecord, canonical_lead, lead_names
from echopulse.errors import IngestError
from echopulse.ingest import limits
from echopulse.ingest.units import millivolts_per_unit
from echopulse.ingest.validate import check_duration, check_file_size, check_sample_rate

_MAIN_HEADER_BYTES = 256
_MAX_SIGNALS = 1024
_SIGNAL_FIELDS = (
    ("label", 16), ("transducer", 80), ("dimension", 8), ("physical_min", 8), ("physical_max", 8),
    ("digital_min", 8), ("digital_max", 8), ("prefilter", 80), ("samples_per_record", 8), ("reserved", 32),
)  # fmt: skip
_ANNOTATION_LABELS = {"EDF Annotations", "BDF Annotations"}
_ECG_PREFIX = re.compile(r"^\s*(ecg|ekg)[\s_\-:]*", re.IGNORECASE)


@dataclass(frozen=True)
class _Channel:
    """One signal as the header describes it; `offset` is its first sample within a data record."""

    index: int
    label: str
    dimension: str
    fs: float
    n_samples: int
    physical_min: float = 0.0
    physical_max: float = 0.0
    digital_min: int = 0
    digital_max: int = 0
    offset: int = 0
    per_record: int = 0


@dataclass(frozen=True)
class _Header:
    """The parts of an EDF/BDF header we use; deliberately no patient or recording identification."""

    bdf: bool
    header_bytes: int
    n_records: int
    record_duration: float
    channels: tuple[_Channel, ...]
    start: datetime | None
    equipment: str | None

    @property
    def record_samples(self) -> int:
        return sum(channel.per_record for channel in self.channels)


def read_edf(path: str | Path) -> ECGRecord:
    """Read the ECG channels of an EDF/EDF+/BDF/BDF+ file in mV."""
    source = check_file_size(Path(path))
    kind = _file_kind(source)
    if kind.endswith("+D"):
        raise IngestError(source, f"{kind} (discontinuous) recordings are not supported: samples have gaps")
    import pyedflib

    try:
        reader = pyedflib.EdfReader(str(source), annotations_mode=pyedflib.DO_NOT_READ_ANNOTATIONS)
    except OSError as error:
        if not _has_non_ascii_header(source):
            raise IngestError(source, f"not a readable EDF/BDF file: {_reason(error)}") from error
        return _read_lenient(source, kind, _reason(error))
    try:
        return _read_with_pyedflib(source, reader, kind)
    finally:
        reader.close()


def _reason(error: OSError) -> str:
    return str(error).split(": ", 1)[-1]


def _file_kind(source: Path) -> str:
    """The kind ("EDF", "EDF+C", "EDF+D", "BDF", ...) from the version and reserved fields."""
    with source.open("rb") as handle:
        head = handle.read(_MAIN_HEADER_BYTES)
    if len(head) < _MAIN_HEADER_BYTES:
        raise IngestError(source, f"EDF header truncated: {len(head)} of {_MAIN_HEADER_BYTES} bytes")
    if head[:8] == b"\xffBIOSEMI":
        family = "BDF"
    elif head[:8] == b"0       ":
        family = "EDF"
    else:
        raise IngestError(source, "not an EDF or BDF file (bad version field)", "byte 0")
    reserved = head[192:236].decode("latin-1").strip()
    for variant in ("+C", "+D"):
        if reserved.startswith(("EDF" + variant, "BDF" + variant)):
            return family + variant
    return family


def _has_non_ascii_header(source: Path) -> bool:
    """Whether the header holds a byte outside printable ASCII, the one thing the lenient reader forgives.

    Only byte values are looked at; no field is decoded here.
    """
    with source.open("rb") as handle:
        head = handle.read(_MAIN_HEADER_BYTES)
        try:
            header_bytes = int(head[184:192].decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            return False
        header = head + handle.read(max(0, min(header_bytes, 256 * (_MAX_SIGNALS + 1)) - len(head)))
    return any(byte < 0x20 or byte > 0x7E for byte in header[8:])


# ---------------------------------------------------------------------------------------------- pyedflib


def _read_with_pyedflib(source: Path, reader: Any, kind: str) -> ECGRecord:
    channels = [
        _Channel(
            index=i,
            label=reader.getLabel(i).strip(),
            dimension=reader.getPhysicalDimension(i).strip(),
            fs=float(reader.getSampleFrequency(i)),
            n_samples=int(reader.samples_in_file(i)),
        )
        for i in range(reader.signals_in_file)
    ]
    chosen, meta = _select_ecg(source, channels)
    fs = _check_limits(source, chosen)
    rows = [np.asarray(reader.readSignal(channel.index), dtype=np.float64) for channel in chosen]
    equipment = reader.getEquipment().strip() or None
    return _record(source, kind, chosen, rows, fs, meta, reader.getStartdatetime(), equipment)


# ----------------------------------------------------------------------------------------------- lenient


def _read_lenient(source: Path, kind: str, refusal: str) -> ECGRecord:
    """Our own reader for files pyedflib refuses only because of non-ASCII header text."""
    header = _parse_header(source)
    _check_file_length(source, header)
    channels = [c for c in header.channels if c.label not in _ANNOTATION_LABELS]
    chosen, meta = _select_ecg(source, channels)
    fs = _check_limits(source, chosen)
    rows = [_physical(channel, _digital(source, header, channel)) for channel in chosen]
    meta["lenient_header"] = f"pyedflib refused the file ({refusal}); header read as Latin-1 text"
    return _record(source, kind, chosen, rows, fs, meta, header.start, header.equipment)


def _parse_header(source: Path) -> _Header:
    with source.open("rb") as handle:
        main = handle.read(_MAIN_HEADER_BYTES)
        n_signals = _int_field(source, main, 252, 256, "number of signals")
        if not 1 <= n_signals <= _MAX_SIGNALS:
            raise IngestError(source, f"header declares {n_signals} signals", "field number of signals")
        header_bytes = _int_field(source, main, 184, 192, "header bytes")
        if header_bytes != _MAIN_HEADER_BYTES * (n_signals + 1):
            raise IngestError(
                source, f"header size {header_bytes} does not fit {n_signals} signals", "field header bytes"
            )
        signal_part = handle.read(header_bytes - _MAIN_HEADER_BYTES)
    if len(signal_part) != header_bytes - _MAIN_HEADER_BYTES:
        raise IngestError(source, "file ends inside the signal header")
    n_records = _int_field(source, main, 236, 244, "number of data records")
    if n_records < 1:
        raise IngestError(source, f"number of data records is {n_records}", "field number of data records")
    duration = _float_field(source, main, 244, 252, "duration of a data record")
    if not duration > 0:
        raise IngestError(source, f"data record duration {duration} s", "field duration of a data record")
    fields = _signal_fields(signal_part, n_signals)
    channels = _channels(source, fields, n_records, duration)
    return _Header(
        bdf=main[:8] == b"\xffBIOSEMI",
        header_bytes=header_bytes,
        n_records=n_records,
        record_duration=duration,
        channels=channels,
        start=_start(main),
        equipment=_equipment(main),
    )


def _signal_fields(signal_part: bytes, n_signals: int) -> dict[str, list[str]]:
    """The per-signal header fields, which EDF stores field by field (all labels, then all units, ...)."""
    fields: dict[str, list[str]] = {}
    position = 0
    for name, width in _SIGNAL_FIELDS:
        fields[name] = [
            signal_part[position + i * width : position + (i + 1) * width].decode("latin-1").strip()
            for i in range(n_signals)
        ]
        position += width * n_signals
    return fields


def _channels(
    source: Path, fields: dict[str, list[str]], n_records: int, duration: float
) -> tuple[_Channel, ...]:
    channels = []
    offset = 0
    for i, label in enumerate(fields["label"]):
        where = f"signal {i} ({label})"
        try:
            per_record = int(fields["samples_per_record"][i])
            physical = float(fields["physical_min"][i]), float(fields["physical_max"][i])
            digital = int(fields["digital_min"][i]), int(fields["digital_max"][i])
        except ValueError as error:
            raise IngestError(source, f"unreadable number in signal header: {error}", where) from error
        if per_record < 1:
            raise IngestError(source, f"{per_record} samples per data record", where)
        if digital[1] <= digital[0] or physical[1] == physical[0]:
            raise IngestError(source, "empty digital or physical range", where)
        channels.append(
            _Channel(
                index=i,
                label=label,
                dimension=fields["dimension"][i],
                fs=per_record / duration,
                n_samples=per_record * n_records,
                physical_min=physical[0],
                physical_max=physical[1],
                digital_min=digital[0],
                digital_max=digital[1],
                offset=offset,
                per_record=per_record,
            )
        )
        offset += per_record
    return tuple(channels)


def _int_field(source: Path, main: bytes, start: int, end: int, name: str) -> int:
    try:
        return int(main[start:end].decode("ascii").strip())
    except (UnicodeDecodeError, ValueError) as error:
        raise IngestError(source, f"unreadable {name} {main[start:end]!r}", f"field {name}") from error


def _float_field(source: Path, main: bytes, start: int, end: int, name: str) -> float:
    try:
        return float(main[start:end].decode("ascii").strip())
    except (UnicodeDecodeError, ValueError) as error:
        raise IngestError(source, f"unreadable {name} {main[start:end]!r}", f"field {name}") from error


def _start(main: bytes) -> datetime | None:
    """Start date and time (dd.mm.yy hh.mm.ss; years 85–99 are 19xx, as the EDF spec says)."""
    text = main[168:184].decode("latin-1")
    match = re.fullmatch(r"(\d\d)\.(\d\d)\.(\d\d)(\d\d)\.(\d\d)\.(\d\d)", text)
    if match is None:
        return None
    day, month, year, hour, minute, second = (int(group) for group in match.groups())
    year += 1900 if year >= 85 else 2000
    try:
        return datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None


def _equipment(main: bytes) -> str | None:
    """EDF+ recording field `Startdate <date> <admin code> <technician> <equipment>`: the equipment only."""
    parts = main[88:168].decode("latin-1").split()
    if len(parts) >= 5 and parts[0] == "Startdate" and parts[4] != "X":
        return parts[4].replace("_", " ")
    return None


def _check_file_length(source: Path, header: _Header) -> None:
    sample_bytes = 3 if header.bdf else 2
    needed = header.header_bytes + header.n_records * header.record_samples * sample_bytes
    size = source.stat().st_size
    if size < needed:
        raise IngestError(source, f"file truncated: {size} bytes, the header needs {needed}")


def _digital(source: Path, header: _Header, channel: _Channel) -> np.ndarray:
    """One channel's digital samples, sliced out of the data records through a memory map."""
    sample_bytes = 3 if header.bdf else 2
    records = np.memmap(
        source,
        dtype=np.uint8,
        mode="r",
        offset=header.header_bytes,
        shape=(header.n_records, header.record_samples * sample_bytes),
    )
    start = channel.offset * sample_bytes
    raw = np.ascontiguousarray(records[:, start : start + channel.per_record * sample_bytes])
    del records
    if not header.bdf:
        return raw.view("<i2").reshape(-1).astype(np.int32)
    triplets = raw.reshape(-1, 3).astype(np.int32)
    values = triplets[:, 0] | (triplets[:, 1] << 8) | (triplets[:, 2] << 16)
    return np.where(values >= 1 << 23, values - (1 << 24), values)


def _physical(channel: _Channel, digital: np.ndarray) -> np.ndarray:
    gain = (channel.physical_max - channel.physical_min) / (channel.digital_max - channel.digital_min)
    return (digital - channel.digital_min) * gain + channel.physical_min


# ------------------------------------------------------------------------------------------------ shared


def _is_ecg_label(label: str) -> bool:
    upper = label.upper()
    return "ECG" in upper or "EKG" in upper or _standard_lead(label) is not None


def _standard_lead(label: str) -> str | None:
    """ST-MEM name of labels such as "II", "ECG II", "EKG V1-REF"; None for "ECG" alone or "sine 1 Hz"."""
    stripped = _ECG_PREFIX.sub("", label)
    stripped = re.sub(r"[\s_\-]*(ref|gnd)$", "", stripped, flags=re.IGNORECASE)
    return canonical_lead(stripped) if stripped else None


def _select_ecg(source: Path, channels: list[_Channel]) -> tuple[list[_Channel], dict[str, Any]]:
    """ECG channels in voltage units, all at one rate (the most common one when they differ)."""
    ecg = [channel for channel in channels if _is_ecg_label(channel.label)]
    if not ecg:
        labels = ", ".join(repr(channel.label) for channel in channels) or "(no signals)"
        raise IngestError(source, f"no ECG channel among: {labels}")
    meta: dict[str, Any] = {"channels_in_file": [channel.label for channel in channels]}
    usable, unusable = _voltage_channels(source, ecg)
    if unusable:
        meta["dropped_channels"] = unusable
    rates = Counter(channel.fs for channel in usable)
    rate = max(rates, key=lambda fs: (rates[fs], fs))
    chosen = [channel for channel in usable if channel.fs == rate]
    if len(chosen) < len(usable):
        others = [f"{channel.label} ({channel.fs:g} Hz)" for channel in usable if channel.fs != rate]
        meta.setdefault("dropped_channels", []).extend(others)
        meta["rate_note"] = f"ECG channels have different rates; kept those at {rate:g} Hz"
    return chosen, meta


def _voltage_channels(source: Path, ecg: list[_Channel]) -> tuple[list[_Channel], list[str]]:
    """Split off ECG-labelled channels that are not voltages (a derived heart rate in bpm, say).

    A standard lead in a non-voltage unit means a broken header and is refused; so is a file where no
    ECG channel is left.
    """
    usable: list[_Channel] = []
    unusable: list[str] = []
    for channel in ecg:
        if millivolts_per_unit(channel.dimension) is not None:
            usable.append(channel)
            continue
        if _standard_lead(channel.label) is not None:
            raise IngestError(
                source,
                f"ECG lead {channel.label!r} has physical dimension {channel.dimension!r}, not a voltage",
                f"signal {channel.index} ({channel.label})",
            )
        unusable.append(f"{channel.label} [{channel.dimension}]")
    if not usable:
        raise IngestError(source, "no ECG channel in voltage units: " + ", ".join(unusable))
    return usable, unusable


def _check_limits(source: Path, chosen: list[_Channel]) -> float:
    if len(chosen) > limits.MAX_LEADS:
        raise IngestError(source, f"{len(chosen)} ECG channels, more than {limits.MAX_LEADS}")
    fs = check_sample_rate(source, chosen[0].fs, f"signal {chosen[0].index} ({chosen[0].label})")
    check_duration(source, chosen[0].n_samples, fs)
    return fs


def _record(
    source: Path,
    kind: str,
    chosen: list[_Channel],
    rows: list[np.ndarray],
    fs: float,
    meta: dict[str, Any],
    start: datetime | None,
    equipment: str | None,
) -> ECGRecord:
    length = min(len(row) for row in rows)
    signal = np.empty((len(rows), length), dtype=np.float32)
    for i, (channel, row) in enumerate(zip(chosen, rows, strict=True)):
        scale = millivolts_per_unit(channel.dimension)
        assert scale is not None  # _voltage_channels kept voltages only
        signal[i] = row[:length] * scale
    labels = [channel.label for channel in chosen]
    meta.update(
        {
            "file_type": kind,
            "original_leads": labels,
            "n_sig": len(meta["channels_in_file"]),
            "units": [channel.dimension for channel in chosen],
        }
    )
    return ECGRecord(
        signal=signal,
        fs=fs,
        leads=lead_names([_standard_lead(label) or label for label in labels]),
        start=start,
        device=equipment,
        source_format="bdf" if kind.startswith("BDF") else "edf",
        meta=meta,
    )

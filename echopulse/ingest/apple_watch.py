"""Apple Health ECG exports (`apple_health_export/electrocardiograms/ecg_*.csv`) → `ECGRecord`.

The Health app writes a short `key,value` header and then one Lead I sample per line in µV::

    Name,…                       ← dropped by position, never parsed
    Date of Birth,…              ← dropped by position, never parsed
    Recorded Date,2021-12-17 12:58:58 +0800
    Classification,Sinus Rhythm
    Symptoms,
    Software Version,1.90
    Device,"Watch5,1"
    Sample Rate,513.625 hertz    ← the declared rate is used as is: it is not always 512
    Lead,Lead I
    Unit,µV
    27.648

Header words and numbers are localised (German `Messrate,"512,508 Hertz"` and samples `"-265,868"`,
Japanese `サンプルレート,512ヘルツ`), so a field is recognised by what its value looks like (a number with a
frequency unit, a voltage unit, a device model id, a date) and where it sits; the header words of several
languages are only a first guess. Lines 1–2 hold the person's name and birth date: they are skipped unread,
so their values can never reach a record, a log or an error message.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from echopulse.ecg import ECGRecord, canonical_lead
from echopulse.errors import IngestError
from echopulse.ingest.recorded_date import parse_recorded_date
from echopulse.ingest.text_decoding import read_text
from echopulse.ingest.units import millivolts_per_unit, to_millivolts
from echopulse.ingest.validate import check_file_size, check_sample_rate

SOURCE_FORMAT = "apple_watch_csv"

_IDENTITY_LINES = 2
"""Name and date of birth: the first two lines of every export, in every locale."""

_SNIFF_LINES = 64
_SNIFF_MIN_KNOWN_WORDS = 3

_NUMBER = r"[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)"
_SAMPLE_LINE = re.compile(rf'^\s*"?\s*{_NUMBER}(?:[eE][+-]?\d+)?\s*"?\s*$')
_RATE_VALUE = re.compile(rf"^\s*(?P<number>{_NUMBER})\s*(?P<unit>[^\W\d_][^\d]*?)?\s*$")
_DEVICE_VALUE = re.compile(r"^[A-Za-z]+\d+,\d+$")
_VERSION_VALUE = re.compile(r"^\d+(?:[.,]\d+)+$")

_HERTZ_PER_UNIT = {
    "hz": 1.0, "hertz": 1.0, "herz": 1.0, "hercio": 1.0, "hercios": 1.0, "herc": 1.0, "ヘルツ": 1.0,
    "赫兹": 1.0, "赫茲": 1.0, "헤르츠": 1.0, "гц": 1.0, "герц": 1.0, "khz": 1e3, "kilohertz": 1e3,
}  # fmt: skip

_HEADER_WORDS: dict[str, tuple[str, ...]] = {
    "identity": (
        "Name", "Date of Birth", "Birth Date", "Geburtsdatum", "Nom", "Date de naissance", "Nome",
        "Data de nascimento", "Data di nascita", "Nombre", "Fecha de nacimiento", "Naam", "Geboortedatum",
        "名前", "氏名", "生年月日", "姓名", "出生日期", "이름", "생년월일", "Имя", "Дата рождения",
    ),
    "recorded_date": (
        "Recorded Date", "Aufnahmedatum", "Aufzeichnungsdatum", "Date d'enregistrement",
        "Date de l'enregistrement", "Data de registo", "Data de registro", "Data da gravação",
        "Fecha de registro", "Fecha de grabación", "Data di registrazione", "Opnamedatum", "記録日",
        "記録日時", "记录日期", "記錄日期", "기록 날짜", "Дата записи",
    ),
    "classification": (
        "Classification", "Klassifizierung", "Klassifikation", "Classificação", "Clasificación",
        "Classificazione", "Classificatie", "分類", "分类", "분류", "Классификация",
    ),
    "symptoms": (
        "Symptoms", "Symptome", "Symptômes", "Sintomas", "Sintomi", "Symptomen", "症状", "症狀", "증상",
        "Симптомы",
    ),
    "software_version": (
        "Software Version", "Softwareversion", "Version du logiciel", "Version logicielle",
        "Versão do software", "Versão de software", "Versión de software", "Versión del software",
        "Versione software", "Versione del software", "Softwareversie", "ソフトウェアバージョン", "软件版本",
        "軟體版本", "소프트웨어 버전", "Версия ПО",
    ),
    "device": ("Device", "Gerät", "Appareil", "Dispositivo", "Apparaat", "デバイス", "设备", "裝置", "기기",
               "Устройство"),
    "sample_rate": (
        "Sample Rate", "Sampling Rate", "Messrate", "Abtastrate", "Fréquence d'échantillonnage",
        "Taux d'échantillonnage", "Taxa de amostragem", "Frecuencia de muestreo", "Tasa de muestreo",
        "Frequenza di campionamento", "Samplefrequentie", "サンプルレート", "サンプリングレート", "采样率",
        "取樣率", "샘플링 속도", "Частота дискретизации",
    ),
    "lead": ("Lead", "Ableitung", "Dérivation", "Derivação", "Derivación", "Derivazione", "Afleiding", "誘導",
             "导联", "導程", "유도", "Отведение"),
    "unit": ("Unit", "Einheit", "Unité", "Unidade", "Unidad", "Unità", "Eenheid", "単位", "单位", "單位",
             "단위", "Единица", "Единицы"),
    "average_heart_rate": (
        "Average Heart Rate", "Durchschnittliche Herzfrequenz", "Fréquence cardiaque moyenne",
        "Frequência cardíaca média", "Frecuencia cardíaca media", "Frequenza cardiaca media", "平均心拍数",
    ),
}  # fmt: skip

_APPLE_ORDER = ("recorded_date", "classification", "symptoms", "software_version", "device")
"""Order of the free-text fields before the sample rate; fills what neither words nor values identify."""


def _normalise_key(key: str) -> str:
    """Header word without case, accents, spaces or punctuation, so `Gerät`/`gerat`/`GERÄT:` compare equal."""
    decomposed = unicodedata.normalize("NFKD", key)
    kept = (ch for ch in decomposed if ch.isalnum() and not unicodedata.combining(ch))
    return "".join(kept).casefold()


_FIELD_OF_KEY = {_normalise_key(word): field for field, words in _HEADER_WORDS.items() for word in words}


@dataclass(frozen=True)
class _Entry:
    """One `key,value` header line; `number` is 1-based as an editor shows it."""

    number: int
    key: str
    value: str


def looks_like_apple_watch_csv(text: str) -> bool:
    """Whether `text` (the head of a file) is a Health ECG export, in any language.

    True when the header before the first sample holds a sample rate (a number with a frequency unit, or a
    known rate word) and an amplitude unit (µV/mV, or a known unit word): the structure every locale shares.
    Also true for at least three known header words, so that a header cut short or missing its rate still
    goes to this reader and gets an error about the header rather than about a table.
    """
    lines = text.splitlines()[:_SNIFF_LINES]
    first_sample = _first_sample_line(lines)
    header = lines[:first_sample] if first_sample is not None else lines
    entries = _parse_entries(header, start=_kept_identity_lines(header))
    has_rate = any(_is_rate_entry(entry) for entry in entries)
    has_unit = any(_is_unit_entry(entry) for entry in entries)
    known = {_FIELD_OF_KEY.get(_normalise_key(entry.key)) for entry in entries} - {None}
    return (has_rate and has_unit) or len(known) >= _SNIFF_MIN_KNOWN_WORDS


def read_apple_watch_csv(path: str | Path) -> ECGRecord:
    """Read one Health ECG export into a single-lead record in mV at the declared (non-integer) rate.

    >>> record = read_apple_watch_csv("ecg_2021-12-17.csv")  # doctest: +SKIP
    >>> record.fs, record.leads, record.signal.shape
    (513.625, ('I',), (1, 15409))
    """
    source = check_file_size(Path(path))
    return parse_apple_watch_csv(read_text(source), source)


def parse_apple_watch_csv(text: str, source: str | Path) -> ECGRecord:
    """Parse the decoded text of one Health ECG export; `source` names it in errors.

    The text entry point exists for exports that never touch the disk as files: the members of an
    `export.zip`, read from the archive (decode their bytes with `text_decoding.decode_text`, as files are).
    """
    lines = text.splitlines()
    first_sample = _first_sample_line(lines)
    header_end = first_sample if first_sample is not None else len(lines)
    fields, extra = _assign_fields(_parse_entries(lines[:header_end], start=_kept_identity_lines(lines)))
    unit_entry = _require_unit(source, fields, lines, first_sample)
    _refuse_text_after_unit(source, lines, unit_entry.number, header_end)
    fs, declared = _sample_rate(source, fields.get("sample_rate"))
    unit = unit_entry.value
    if first_sample is None:
        raise IngestError(source, "no samples after the header", f"line {len(lines)}")
    microvolts = _parse_samples(source, lines, first_sample)
    lead, lead_assumed = _lead(fields.get("lead"))
    meta = _meta(fields, extra, declared, unit)
    meta["lead_assumed"] = lead_assumed
    recorded = fields.get("recorded_date")
    return ECGRecord(
        signal=to_millivolts(microvolts, unit)[np.newaxis, :],
        fs=fs,
        leads=(lead,),
        start=parse_recorded_date(recorded.value) if recorded else None,
        device=meta["device"] or None,
        source_format=SOURCE_FORMAT,
        meta=meta,
    )


def _first_sample_line(lines: list[str]) -> int | None:
    """Index of the first bare number after the identity lines, where the sample block starts."""
    for index in range(_IDENTITY_LINES, len(lines)):
        if _SAMPLE_LINE.match(lines[index]):
            return index
    return None


def _kept_identity_lines(lines: list[str]) -> int:
    """Index from which header lines are read: the name and birth-date lines are skipped unread.

    An export whose first line is already a known non-identifying field (the person's lines were removed)
    keeps it; anything else on lines 1–2 is assumed to identify the person and is never looked at again.
    """
    for index in range(min(_IDENTITY_LINES, len(lines))):
        field = _FIELD_OF_KEY.get(_normalise_key(lines[index].split(",", 1)[0]))
        if field is not None and field != "identity":
            return index
    return min(_IDENTITY_LINES, len(lines))


def _parse_entries(lines: list[str], start: int) -> list[_Entry]:
    """The `key,value` lines from `start` on; a quoted value may hold commas (`"Watch5,1"`, `"512,5 Hz"`)."""
    entries = []
    for index in range(start, len(lines)):
        if not lines[index].strip():
            continue
        try:
            fields = next(csv.reader([lines[index]]))
        except csv.Error:  # a line over csv's field size limit: certainly not a header field
            fields = lines[index].split(",")
        key = fields[0].strip() if fields else ""
        value = ",".join(fields[1:]).strip()
        if _FIELD_OF_KEY.get(_normalise_key(key)) == "identity":
            continue
        entries.append(_Entry(index + 1, key, value))
    return entries


def _is_rate_entry(entry: _Entry) -> bool:
    """A rate by its word, or by its value: a number and a frequency unit (`512ヘルツ`, `512,508 Hz`)."""
    if _FIELD_OF_KEY.get(_normalise_key(entry.key)) == "sample_rate":
        return True
    match = _RATE_VALUE.match(entry.value)
    return bool(match and match["unit"] and _normalise_key(match["unit"]) in _HERTZ_PER_UNIT)


def _is_unit_entry(entry: _Entry) -> bool:
    return _FIELD_OF_KEY.get(_normalise_key(entry.key)) == "unit" or (
        bool(entry.value) and millivolts_per_unit(entry.value) is not None
    )


def _assign_fields(entries: list[_Entry]) -> tuple[dict[str, _Entry], list[_Entry]]:
    """Which line is which field: header words first, then value shapes, then Apple's line order."""
    fields: dict[str, _Entry] = {}
    rest = []
    for entry in entries:
        field = _FIELD_OF_KEY.get(_normalise_key(entry.key))
        if field is not None and field not in fields:
            fields[field] = entry
        else:
            rest.append(entry)
    rest = [entry for entry in rest if not _assign_by_value(entry, fields)]
    if "lead" not in fields and "unit" in fields:
        before_unit = [entry for entry in rest if entry.number < fields["unit"].number]
        if before_unit:
            fields["lead"] = before_unit[-1]
            rest.remove(before_unit[-1])
    return fields, _assign_by_order(rest, fields)


def _assign_by_value(entry: _Entry, fields: dict[str, _Entry]) -> bool:
    """Give `entry` the field its value's shape says it is, if that field is still open."""
    value = entry.value
    candidates = (
        ("sample_rate", _is_rate_entry(entry)),
        ("unit", _is_unit_entry(entry)),
        ("device", bool(_DEVICE_VALUE.match(value))),
        ("software_version", bool(_VERSION_VALUE.match(value))),
        ("recorded_date", parse_recorded_date(value) is not None),
    )
    for field, matches in candidates:
        if matches and field not in fields:
            fields[field] = entry
            return True
    return False


def _assign_by_order(rest: list[_Entry], fields: dict[str, _Entry]) -> list[_Entry]:
    """Lines before the sample rate fill the still-open fields in Apple's order; the others are extras."""
    rate_line = fields["sample_rate"].number if "sample_rate" in fields else float("inf")
    open_fields = [field for field in _APPLE_ORDER if field not in fields]
    extra = []
    for entry in rest:
        if entry.number < rate_line and open_fields:
            fields[open_fields.pop(0)] = entry
        else:
            extra.append(entry)
    return extra


def _require_unit(
    source: str | Path, fields: dict[str, _Entry], lines: list[str], first_sample: int | None
) -> _Entry:
    """The unit line, known to convert to mV; a header without one was cut short or is not an export."""
    entry = fields.get("unit")
    if entry is None:
        if first_sample is None:
            raise IngestError(source, "header cut short: no Unit line and no samples", f"line {len(lines)}")
        raise IngestError(source, "no Unit line (µV or mV) before the samples", "field Unit")
    if millivolts_per_unit(entry.value) is None:
        raise IngestError(
            source,
            f"unknown amplitude unit {entry.value!r} (expected µV or mV)",
            f"line {entry.number}, field Unit",
        )
    return entry


def _refuse_text_after_unit(source: str | Path, lines: list[str], unit_line: int, header_end: int) -> None:
    """After the Unit line only samples follow, so text there is a broken sample, not more header.

    A line that starts with a known header word is still header (a locale that puts Lead after Unit).
    """
    for index in range(unit_line, header_end):
        line = lines[index]
        if line.strip() and _normalise_key(line.split(",", 1)[0]) not in _FIELD_OF_KEY:
            raise IngestError(source, _not_a_number(line), f"line {index + 1}")


def _sample_rate(source: str | Path, entry: _Entry | None) -> tuple[float, str]:
    """The declared rate in Hz (`513.625 hertz`, `512,508 Hz`, `512ヘルツ`) and the text it was read from."""
    if entry is None:
        raise IngestError(source, "no sample rate in the header", "field Sample Rate")
    where = f"line {entry.number}, field Sample Rate"
    match = _RATE_VALUE.match(entry.value)
    scale = _HERTZ_PER_UNIT.get(_normalise_key(match["unit"] or "hz")) if match else None
    if match is None or scale is None:
        raise IngestError(source, f"sample rate {entry.value!r} is not a rate such as '512 Hz'", where)
    fs = float(match["number"].replace(",", ".")) * scale
    return check_sample_rate(source, fs, where), entry.value


def _parse_samples(source: str | Path, lines: list[str], first: int) -> np.ndarray:
    """The sample block as float64, converted in one NumPy call; decimal commas cost one more pass."""
    block = lines[first:]
    while block and not block[-1].strip():
        block.pop()
    try:
        values = np.array(block, dtype=np.float64)
    except ValueError:
        values = _parse_localised_samples(source, block, first)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        line = _line_of_value(block, int(bad[0])) + first + 1
        raise IngestError(source, "sample is NaN or infinite", f"line {line}")
    return values


def _parse_localised_samples(source: str | Path, block: list[str], first: int) -> np.ndarray:
    """Samples written `"-265,868"` or `-265,868` (one per line, so a comma can only be the decimal mark)."""
    cleaned = "\n".join(block).replace('"', "").replace(",", ".").split("\n")
    try:
        return np.array([value for value in cleaned if value.strip()], dtype=np.float64)
    except ValueError:
        pass
    for offset, value in enumerate(cleaned):
        if value.strip() and not _is_float(value):
            raise IngestError(source, _not_a_number(block[offset]), f"line {first + offset + 1}")
    raise IngestError(source, "samples are not numbers")  # unreachable unless NumPy and float() disagree


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _line_of_value(block: list[str], value_index: int) -> int:
    """Offset in `block` of the `value_index`-th non-blank line (blank lines are skipped when parsing)."""
    non_blank = [offset for offset, line in enumerate(block) if line.strip()]
    return non_blank[value_index]


def _lead(entry: _Entry | None) -> tuple[str, bool]:
    """ST-MEM name of the label (`Lead I`, `Ableitung I`, `第I誘導`, `Derivação I`); Lead I when unknown."""
    if entry is not None:
        label = entry.value
        lead = canonical_lead(label)
        if lead is None:
            match = re.search(r"(?<![A-Za-z])(III|II|I|aVR|aVL|aVF|V[1-6])(?![A-Za-z0-9])", label)
            lead = canonical_lead(match[1]) if match else None
        if lead is not None:
            return lead, False
    return "I", True  # the Watch's crown-to-wrist lead


def _meta(fields: dict[str, _Entry], extra: list[_Entry], declared: str, unit: str) -> dict[str, object]:
    """What the export says about the recording; identity lines never got this far."""

    def value(field: str) -> str | None:
        entry = fields.get(field)
        return entry.value if entry is not None else None

    meta: dict[str, object] = {
        "recorded_date": value("recorded_date"),
        "classification": value("classification"),
        "symptoms": value("symptoms"),
        "software_version": value("software_version"),
        "device": value("device"),
        "sample_rate_declared": declared,
        "lead_label": value("lead"),
        "unit": unit,
    }
    if "average_heart_rate" in fields:
        meta["average_heart_rate"] = value("average_heart_rate")
    if extra:
        meta["header_extra"] = {entry.key: entry.value for entry in extra}
    return meta


def _not_a_number(line: str, limit: int = 24) -> str:
    """Error text for a broken sample line, quoting at most `limit` characters of it."""
    text = line.strip()
    shown = text if len(text) <= limit else text[: limit - 1] + "…"
    return f"text in a sample line: {shown!r} is not a number"

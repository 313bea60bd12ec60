"""Generic delimited text (CSV, TSV, `;` with decimal commas, whitespace columns) → `ECGRecord`.

One column per lead, with optional extras that real exports carry:

- a header row of lead names (`MLII`, `V5`, `Lead I`, `ECG 1`), mapped to ST-MEM names when possible and
  kept as written otherwise; units may sit in the name (`MLII (mV)`, `ECG [µV]`) or in a second header row
  (PhysioNet's `'Elapsed time','MLII','V5'` then `'hh:mm:ss.mmm','mV','mV'`);
- a time column (`time`, `t`, `seconds`, `Elapsed time`; seconds unless its unit says `ms`, `µs`, `ns`, or a
  clock `m:ss.mmm`), which gives the sample rate; a sample-index column (`sample`, `index`, `point`), which
  is dropped. Without a header, a first column that strictly increases is taken as one of the two.

Amplitude units the file does not state are guessed from the amplitude: an ECG in mV swings a few mV, one in
µV hundreds, so a robust amplitude (99th percentile of |x − median|) above 20 means µV. The guess is recorded
in `meta["units_assumed"]` (`"µV (from amplitude)"` or `"mV"`). A single unnamed column is the wearable case
(an Apple Watch trace with its header removed) and becomes Lead I, with `meta["lead_assumed"] = True`.

The sample rate comes from `fs` or from the time column; a file with neither is refused, never defaulted.
An Apple Health export that arrives here anyway (`fmt="csv"`, or UTF-16 text that sniffing takes for
binary) is handed to its own reader. Errors name columns by number and never quote lines 1–2.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import numpy as np

from echopulse.ecg import ECGRecord, canonical_lead
from echopulse.errors import IngestError
from echopulse.ingest import limits
from echopulse.ingest.text_decoding import read_text
from echopulse.ingest.units import millivolts_per_unit, to_millivolts
from echopulse.ingest.validate import check_file_size, check_sample_rate

if TYPE_CHECKING:
    import pandas as pd

SOURCE_FORMAT = "csv"

MICROVOLT_AMPLITUDE = 20.0
"""Robust amplitude above which unlabelled values are taken as µV: no ECG in mV swings ±20 mV."""

_PROBE_ROWS = 20
_MAX_HEADER_ROWS = 2

_TIME_NAMES = {
    "time", "t", "seconds", "second", "sec", "secs", "s", "elapsed", "elapsed time", "timestamp",
    "time stamp", "ms", "msec", "milliseconds", "zeit", "temps", "tempo", "tiempo", "tijd", "czas", "時間",
    "时间",
}  # fmt: skip
_INDEX_NAMES = {
    "sample", "samples", "sample #", "#", "sample number", "sample no", "sample nr", "sample index", "index",
    "idx", "point", "points", "n", "no", "nr",
}  # fmt: skip
_GENERIC_SIGNAL_NAMES = {
    "ecg", "ekg", "value", "values", "signal", "voltage", "amplitude", "data", "y", "lead", "mv", "uv", "µv",
    "ecg signal", "ecg value",
}  # fmt: skip
_SECONDS_PER_TIME_UNIT = {
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3, "msec": 1e-3,
    "milliseconds": 1e-3, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ns": 1e-9,
}  # fmt: skip
_CLOCK = re.compile(r"^\d+(?::\d{1,2})+(?:[.,]\d+)?$")
_NAME_WITH_UNIT = re.compile(r"^(?P<name>.*?)\s*[\(\[]\s*(?P<unit>[^()\[\]]+?)\s*[\)\]]\s*$")


def read_csv(path: str | Path, fs: float | None = None) -> ECGRecord:
    """Read a delimited table of leads into a record in mV; `fs` is needed when the file has no time column.

    >>> record = read_csv("heartphase_ecg-sample.csv", fs=512)  # doctest: +SKIP
    >>> record.leads, record.meta["units_assumed"]
    (('I',), 'µV (from amplitude)')
    """
    source = check_file_size(Path(path))
    text = read_text(source)
    _refuse_json(source, text)
    if _is_apple_export(text):
        from echopulse.ingest.apple_watch import read_apple_watch_csv

        return read_apple_watch_csv(source)
    lines = text.splitlines()
    layout = _layout(source, lines)
    values, clock_text, rows = _read_values(source, lines, layout)
    roles = _column_roles(layout, values)
    signal_columns = [column for column, role in enumerate(roles) if role == "signal"]
    if not signal_columns:
        raise IngestError(source, "no signal columns, only time or sample-index columns")
    meta: dict[str, object] = {"columns": tuple(layout.names) if layout.names else None}
    fs = _sample_rate(source, fs, layout, roles, values, clock_text, rows, meta)
    signal, units_meta = _millivolts(source, layout, values, signal_columns)
    meta.update(units_meta)
    leads, lead_assumed = _lead_names(layout, signal_columns)
    meta["lead_assumed"] = lead_assumed
    return ECGRecord(signal=signal, fs=fs, leads=leads, source_format=SOURCE_FORMAT, meta=meta)


def _refuse_json(source: Path, text: str) -> None:
    """A JSON document is text too, and sniffing sends it here; say what it is instead of a table error."""
    if text.lstrip()[:1] in ("{", "["):
        raise IngestError(source, "looks like JSON, not a CSV table: not a supported ECG format", "line 1")


def _is_apple_export(text: str) -> bool:
    """An Apple Health export that reached this reader (sniffing sends UTF-16 text or text with a NUL byte
    here). Its own reader drops the name and birth date; read as a table, line 1 would become lead names.
    """
    from echopulse.ingest.apple_watch import looks_like_apple_watch_csv

    return looks_like_apple_watch_csv(text[:8192])


@dataclass(frozen=True)
class _Layout:
    """How the table is written: what separates fields, the decimal mark, and the header rows' content."""

    delimiter: str | None  # None: one column per line; " ": runs of whitespace
    decimal: str
    quote: str
    n_columns: int
    names: list[str] | None
    units: list[str | None]
    data_start: int  # index into the file's lines
    time_columns: frozenset[int]  # named as time columns
    clock_columns: frozenset[int]  # time columns written as clock times ('0:00.003'), read as text


@dataclass(frozen=True)
class _Rows:
    """The data lines as read, to turn a row number back into the file line an error should name."""

    lines: list[str]
    first_line: int  # 1-based number of lines[0] in the file

    def where(self, row: int) -> str:
        non_blank = [offset for offset, line in enumerate(self.lines) if line.strip()]
        return f"line {self.first_line + non_blank[min(row, len(non_blank) - 1)]}"


def _layout(source: Path, lines: list[str]) -> _Layout:
    """Delimiter, decimal mark, header and units rows, from the first rows of the file."""
    start = next(
        (i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")), None
    )
    if start is None:
        raise IngestError(source, "no samples: the file holds no table")
    probe_index = [i for i in range(start, min(len(lines), start + 4 * _PROBE_ROWS)) if lines[i].strip()]
    probe = [lines[i] for i in probe_index[:_PROBE_ROWS]]
    delimiter = _detect_delimiter(probe)
    quote = "'" if any("'" in line for line in probe) else '"'
    rows = [_split_fields(line, delimiter, quote) for line in probe]
    decimal_candidate = "," if delimiter != "," else "."
    n_header = _count_header_rows(rows, decimal_candidate)
    data_rows = rows[n_header:]
    decimal = "," if decimal_candidate == "," and any("," in f for row in data_rows for f in row) else "."
    names = [_unquote(field) for field in rows[0]] if n_header >= 1 else None
    n_columns = len(rows[min(n_header, len(rows) - 1)])
    units = _column_units(names, rows[1] if n_header == 2 else None, n_columns)
    names = [_split_name_unit(name)[0] for name in names] if names else None
    time_columns = frozenset(
        c for c in range(n_columns) if names and c < len(names) and _is_time_name(names[c])
    )
    clock_columns = frozenset(
        c for c in time_columns if data_rows and c < len(data_rows[0]) and ":" in data_rows[0][c]
    )
    data_start = probe_index[n_header] if n_header < len(probe_index) else len(lines)
    return _Layout(
        delimiter, decimal, quote, n_columns, names, units, data_start, time_columns, clock_columns
    )


def _detect_delimiter(probe: list[str]) -> str | None:
    """Tab, `;` or `,` if half the probed rows hold it outside quotes; else whitespace, else one column."""
    bare = [re.sub(r"\"[^\"]*\"|'[^']*'", "", line) for line in probe]
    for delimiter in ("\t", ";", ","):
        if sum(delimiter in line for line in bare) * 2 >= len(bare):
            return delimiter
    if sum(len(line.split()) > 1 for line in bare) * 2 >= len(bare):
        return " "
    return None


def _split_fields(line: str, delimiter: str | None, quote: str) -> list[str]:
    if delimiter is None:
        return [line.strip()]
    if delimiter == " ":
        return line.split()
    try:
        fields = next(csv.reader([line], delimiter=delimiter, quotechar=quote))
    except csv.Error:  # a field over csv's size limit: not a table row, let the checks say so
        fields = line.split(delimiter)
    return [field.strip() for field in fields]


def _unquote(field: str) -> str:
    return field.strip().strip("'\"").strip()


def _number(field: str, decimal: str) -> float | None:
    """`field` as a float with the file's decimal mark, or None when it is text."""
    text = _unquote(field)
    if decimal == ",":
        text = text.replace(",", ".")
    try:
        return float(text)
    except ValueError:
        return None


def _is_data_row(fields: list[str], decimal: str) -> bool:
    """A row of numbers (a clock time such as `0:00.003` counts as one): not a header."""
    return all(_number(f, decimal) is not None or _CLOCK.match(_unquote(f)) for f in fields if _unquote(f))


def _count_header_rows(rows: list[list[str]], decimal: str) -> int:
    """0–2: a names row, then possibly a units row (see `_is_units_row`)."""
    if not rows or _is_data_row(rows[0], decimal):
        return 0
    if len(rows) > 1 and _is_units_row(rows[1], rows[2] if len(rows) > 2 else None, decimal):
        return 2
    return 1


def _is_units_row(fields: list[str], next_row: list[str] | None, decimal: str) -> bool:
    """Short digit-free words (`mV`, `seconds`, `hh:mm:ss.mmm`, `adu`) with a known unit or data right after.

    An unknown unit (WFDB's raw `adu`) is still a units row, so that it is refused as a unit rather than
    reported as a broken sample; a row with digits is always data.
    """
    words = [_unquote(field) for field in fields if _unquote(field)]
    if not words or any(re.search(r"\d", word) or len(word) > 16 for word in words):
        return False
    if any(millivolts_per_unit(word) is not None or _time_scale(word) is not None for word in words):
        return True
    return next_row is not None and _is_data_row(next_row, decimal)


def _split_name_unit(name: str) -> tuple[str, str | None]:
    """`MLII (mV)` → (`MLII`, `mV`); a bracket that holds no unit (`ECG (chest)`) stays in the name."""
    match = _NAME_WITH_UNIT.match(name)
    if match and (millivolts_per_unit(match["unit"]) is not None or _time_scale(match["unit"]) is not None):
        return match["name"], match["unit"]
    return name, None


def _column_units(names: list[str] | None, units_row: list[str] | None, n_columns: int) -> list[str | None]:
    """Each column's unit from its units-row cell or its name, None when the file does not say."""
    units: list[str | None] = [None] * n_columns
    for column in range(n_columns):
        if units_row is not None and column < len(units_row) and _unquote(units_row[column]):
            units[column] = _unquote(units_row[column])
        elif names is not None and column < len(names):
            units[column] = _split_name_unit(names[column])[1]
    return units


def _normalise_name(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower()).strip()


def _is_time_name(name: str) -> bool:
    key = _normalise_name(name)
    return key in _TIME_NAMES or key.startswith(("time ", "elapsed "))


def _time_scale(unit: str) -> float | None:
    """Seconds per unit of a time column; 0 marks a clock format (`hh:mm:ss.mmm`)."""
    key = _normalise_name(unit)
    if re.fullmatch(r"[hms]+(?::[ms]+)+(?:\.m+)?", key):
        return 0.0
    return _SECONDS_PER_TIME_UNIT.get(key)


def _read_values(
    source: Path, lines: list[str], layout: _Layout
) -> tuple[np.ndarray, dict[int, pd.Series], _Rows]:
    """Data rows as a float64 (columns × rows) array, plus the text of clock-time columns.

    Parsed in bulk (NumPy for one column, pandas' C parser for several); only when that fails is the file
    walked line by line, to name the first bad line.
    """
    block = lines[layout.data_start :]
    while block and not block[-1].strip():
        block.pop()
    if not block:
        raise IngestError(source, "no samples after the header", f"line {len(lines)}")
    rows = _Rows(block, layout.data_start + 1)
    if layout.n_columns == 1:
        return _read_one_column(source, block, layout)[np.newaxis, :], {}, rows
    return (*_read_columns(source, block, layout), rows)


def _read_one_column(source: Path, block: list[str], layout: _Layout) -> np.ndarray:
    try:
        values = np.array(block, dtype=np.float64)
    except ValueError:
        cleaned = "\n".join(block).replace('"', "").replace("'", "")
        if layout.decimal == ",":
            cleaned = cleaned.replace(",", ".")
        try:
            values = np.array([value for value in cleaned.split("\n") if value.strip()], dtype=np.float64)
        except ValueError:
            _raise_at_bad_line(source, block, layout)
    if not np.isfinite(values).all():
        _raise_at_bad_line(source, block, layout)
    return values


def _read_columns(source: Path, block: list[str], layout: _Layout) -> tuple[np.ndarray, dict[int, pd.Series]]:
    import pandas as pd  # imported here: sniffing and the Apple reader must not pay for pandas

    dtypes = {c: (object if c in layout.clock_columns else np.float64) for c in range(layout.n_columns)}
    try:
        frame = pd.read_csv(
            io.StringIO("\n".join(block)),
            sep=r"\s+" if layout.delimiter == " " else layout.delimiter,
            header=None,
            decimal=layout.decimal,
            quotechar=layout.quote,
            dtype=dtypes,
            skipinitialspace=True,
            engine="c",
        )
    except (ValueError, pd.errors.ParserError):
        _raise_at_bad_line(source, block, layout)
    numeric = [c for c in range(layout.n_columns) if c not in layout.clock_columns]
    if frame.shape[1] != layout.n_columns or not np.isfinite(frame[numeric].to_numpy(np.float64)).all():
        _raise_at_bad_line(source, block, layout)
    values = np.full((layout.n_columns, len(frame)), np.nan)
    values[numeric] = frame[numeric].to_numpy(np.float64).T
    return values, {column: frame[column] for column in layout.clock_columns}


def _raise_at_bad_line(source: Path, block: list[str], layout: _Layout) -> NoReturn:
    """Walk the data rows to name the first ragged, textual or non-finite one; the slow path, errors only."""
    first_line = layout.data_start + 1
    for offset, line in enumerate(block):
        if not line.strip():
            continue
        where = f"line {first_line + offset}"
        fields = _split_fields(line, layout.delimiter, layout.quote)
        if len(fields) != layout.n_columns:
            raise IngestError(source, f"ragged row: {len(fields)} fields, expected {layout.n_columns}", where)
        for column, field in enumerate(fields):
            if column in layout.clock_columns:
                continue
            value = _number(field, layout.decimal)
            if value is None:
                raise IngestError(source, _not_a_number(field, column, first_line + offset), where)
            if not np.isfinite(value):
                raise IngestError(source, "sample is NaN or infinite", where)
    raise IngestError(source, "table could not be parsed as numbers")


def _not_a_number(field: str, column: int, line: int) -> str:
    """Error text for a bad cell; lines 1–2 are never quoted (they may be a misrouted export's name lines)."""
    if line <= 2:
        return f"text in a sample line: column {column + 1} is not a number"
    text = _unquote(field)
    shown = text if len(text) <= 24 else text[:23] + "…"
    return f"text in a sample line: column {column + 1}: {shown!r} is not a number"


def _column_roles(layout: _Layout, values: np.ndarray) -> list[str]:
    """`time`, `index` or `signal` per column: by header name, else a strictly increasing first column."""
    roles = ["signal"] * layout.n_columns
    if layout.names is not None:
        for column, name in enumerate(layout.names[: layout.n_columns]):
            if column in layout.time_columns:
                roles[column] = "time"
            elif _normalise_name(name) in _INDEX_NAMES:
                roles[column] = "index"
    elif layout.n_columns >= 2 and values.shape[1] >= 3:
        steps = np.diff(values[0])
        if (steps > 0).all():
            is_index = np.array_equal(steps, np.ones_like(steps)) and np.all(values[0] == np.round(values[0]))
            roles[0] = "index" if is_index else "time"
    return roles


def _sample_rate(
    source: Path,
    fs: float | None,
    layout: _Layout,
    roles: list[str],
    values: np.ndarray,
    clock_text: dict[int, pd.Series],
    rows: _Rows,
    meta: dict[str, object],
) -> float:
    """`fs` when given (the caller knows best); else the rate the time column implies; else refuse."""
    time_column = roles.index("time") if "time" in roles else None
    index_column = roles.index("index") if "index" in roles else None
    meta["time_column"] = _column_label(layout, time_column) if time_column is not None else None
    meta["index_column"] = _column_label(layout, index_column) if index_column is not None else None
    from_time = None
    if time_column is not None:
        label = f"column {time_column + 1}"
        if time_column in clock_text:
            seconds = _clock_to_seconds(source, clock_text[time_column], layout.decimal, rows, label)
        else:
            unit = layout.units[time_column]
            seconds = values[time_column] * ((_time_scale(unit) if unit else None) or 1.0)
        from_time = _fs_from_time(source, seconds, rows, label)
    if fs is not None:
        meta["fs_source"] = "argument"
        if from_time is not None:
            meta["fs_from_time_column"] = from_time
        return check_sample_rate(source, fs, "argument fs")
    if from_time is None:
        raise IngestError(source, "sample rate unknown: pass fs (--fs); the file has no time column")
    meta["fs_source"] = "time column"
    return from_time


def _column_label(layout: _Layout, column: int) -> str:
    if layout.names is not None and column < len(layout.names):
        return layout.names[column]
    return f"column {column + 1}"


def _clock_to_seconds(source: Path, text: pd.Series, decimal: str, rows: _Rows, label: str) -> np.ndarray:
    """`[h:]m:ss.mmm` → seconds: the column re-read by pandas with `:` as separator, fields right-aligned."""
    import pandas as pd

    values = text.astype(str).str.strip()
    try:
        parts = pd.read_csv(
            io.StringIO("\n".join(values)),
            sep=":",
            header=None,
            names=range(4),
            decimal=decimal,
            dtype=np.float64,
        ).to_numpy()
    except (ValueError, pd.errors.ParserError):
        parts = None
    if parts is not None and len(parts) == len(values):
        present = ~np.isnan(parts)
        count = present.sum(axis=1)
        if (count >= 2).all() and (np.minimum.accumulate(present, axis=1).sum(axis=1) == count).all():
            power = count[:, np.newaxis] - 1 - np.arange(parts.shape[1])[np.newaxis, :]
            return np.where(present, np.nan_to_num(parts) * 60.0 ** np.clip(power, 0, None), 0.0).sum(axis=1)
    bad = next((row for row, value in enumerate(values) if not _CLOCK.match(value)), 0)
    raise IngestError(source, f"time {label} holds text", rows.where(bad))


def _fs_from_time(source: Path, seconds: np.ndarray, rows: _Rows, label: str) -> float:
    """Rate from the time column's whole span, not its median step.

    Times rounded to the millisecond (PhysioNet's `hh:mm:ss.mmm`) make a 360 Hz record's steps 2 or 3 ms,
    whose median says 333 Hz; the span over all samples is exact to a rounding step. A result within 0.01 %
    of a whole number is taken as that number.
    """
    steps = np.diff(seconds)
    if seconds.size < 2 or not (steps > 0).all():
        row = int(np.flatnonzero(steps <= 0)[0]) + 1 if seconds.size >= 2 else 0
        raise IngestError(source, f"time {label} does not increase", rows.where(row))
    fs = (seconds.size - 1) / float(seconds[-1] - seconds[0])
    fs = float(round(fs)) if abs(fs - round(fs)) <= 1e-4 * fs else round(fs, 6)
    if not limits.MIN_FS <= fs <= limits.MAX_FS:
        raise IngestError(
            source,
            f"time {label} gives {fs:g} Hz, outside {limits.MIN_FS:g}–{limits.MAX_FS:g} Hz; "
            "if it is not in seconds, state its unit (e.g. 'time (ms)') or pass fs (--fs)",
            label,
        )
    return check_sample_rate(source, fs, label)


def _millivolts(
    source: Path, layout: _Layout, values: np.ndarray, columns: list[int]
) -> tuple[np.ndarray, dict[str, object]]:
    """Signal columns in mV: stated units converted, unstated ones guessed once for the whole file."""
    stated = {c: layout.units[c] for c in columns if layout.units[c] is not None}
    for column, unit in stated.items():
        if millivolts_per_unit(unit) is None:
            raise IngestError(
                source,
                f"unknown amplitude unit {unit!r} for column {column + 1} (expected µV, mV or V)",
                "header",
            )
    unstated = [c for c in columns if c not in stated]
    guessed = _guess_unit(values[unstated]) if unstated else None
    units = [stated.get(c) or guessed or "mV" for c in columns]
    signal = np.stack([to_millivolts(values[c], unit) for c, unit in zip(columns, units, strict=True)])
    meta: dict[str, object] = {"units": tuple(units)}
    if guessed is not None:
        meta["units_assumed"] = "µV (from amplitude)" if guessed == "µV" else "mV"
    return signal, meta


def _guess_unit(signal: np.ndarray) -> str:
    """µV when the robust amplitude is over `MICROVOLT_AMPLITUDE`, else mV (see the module docstring)."""
    deviation = np.abs(signal - np.median(signal, axis=1, keepdims=True))
    amplitude = float(np.percentile(deviation, 99, axis=1).max())
    return "µV" if amplitude > MICROVOLT_AMPLITUDE else "mV"


def _lead_names(layout: _Layout, columns: list[int]) -> tuple[tuple[str, ...], bool]:
    """ST-MEM names where a header gives one, else the header's text; one unnamed column is Lead I."""
    labels = [_column_label(layout, c) if layout.names is not None else None for c in columns]
    if len(columns) == 1 and (labels[0] is None or _normalise_name(labels[0]) in _GENERIC_SIGNAL_NAMES):
        return ("I",), True
    names = [
        canonical_lead(label) or label if label else f"column {c + 1}"
        for label, c in zip(labels, columns, strict=True)
    ]
    return _deduplicate(names, labels), False


def _deduplicate(names: list[str], labels: list[str | None]) -> tuple[str, ...]:
    """Two columns mapping to one ST-MEM lead (`MLII` and `II`) keep their own labels instead."""
    result = []
    for index, name in enumerate(names):
        if names.count(name) > 1:
            name = labels[index] or name
        if name in result:
            name = f"{name} ({index + 1})"
        result.append(name)
    return tuple(result)

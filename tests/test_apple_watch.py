"""Apple Health ECG exports: the real English files, and localised variants the tests build from them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from echopulse.errors import IngestError
from echopulse.ingest import read_record, sniff_format
from echopulse.ingest.apple_watch import (
    looks_like_apple_watch_csv,
    parse_recorded_date,
    read_apple_watch_csv,
)

PLUS_8 = timezone(timedelta(hours=8))
REAL = {
    "ecg_2021-12-17.csv": (513.625, 15409, datetime(2021, 12, 17, 12, 58, 58, tzinfo=PLUS_8)),
    "ecg_2023-09-26.csv": (512.508, 13360, datetime(2023, 9, 26, 18, 54, 4, tzinfo=PLUS_8)),
}
FAKE_NAME = "Quintessa Zwolinski"
FAKE_BIRTH = "1931-07-04"


def _samples(path: Path) -> list[str]:
    """The sample lines of a real export, as written (they follow the Unit line and one blank line)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    unit = next(i for i, line in enumerate(lines) if line.startswith("Unit,"))
    return [line for line in lines[unit + 1 :] if line]


def _microvolts(path: Path) -> np.ndarray:
    return np.array([float(value) for value in _samples(path)])


@pytest.fixture(params=sorted(REAL))
def real_export(request: pytest.FixtureRequest, shared_data: Path) -> Path:
    return shared_data / "apple_watch" / request.param


# --- localised variants, built from a real file --------------------------------------------------------


def _comma(value: str) -> str:
    return value.replace(".", ",")


def _german(start: datetime, rate: str) -> list[str]:
    return [
        f"Name,{FAKE_NAME}",
        f"Geburtsdatum,{FAKE_BIRTH}",
        f'Aufnahmedatum,"{start:%d.%m.%Y, %H:%M:%S %z}"',
        "Klassifizierung,Sinusrhythmus",
        "Symptome,",
        "Softwareversion,1.90",
        'Gerät,"Watch5,1"',
        f'Messrate,"{_comma(rate)} Hertz"',
        "",
        "",
        "Ableitung,Ableitung I",
        "Einheit,µV",
        "",
    ]


def _japanese(start: datetime, rate: str) -> list[str]:
    return [
        f"名前,{FAKE_NAME}",
        f"生年月日,{FAKE_BIRTH}",
        f"記録日,{start:%Y/%m/%d %H:%M:%S %z}",
        "分類,洞調律",
        "症状,",
        "ソフトウェアバージョン,1.90",
        'デバイス,"Watch5,1"',
        f"サンプルレート,{rate}ヘルツ",
        "",
        "",
        "誘導,第I誘導",
        "単位,µV",
        "",
    ]


def _french(start: datetime, rate: str) -> list[str]:
    return [
        f"Nom,{FAKE_NAME}",
        f"Date de naissance,{FAKE_BIRTH}",
        f"Date d'enregistrement,{start:%d/%m/%Y %H:%M:%S %z}",
        "Classification,Rythme sinusal",
        "Symptômes,",
        "Version du logiciel,1.90",
        'Appareil,"Watch5,1"',
        f'Fréquence d\'échantillonnage,"{_comma(rate)} Hz"',
        "",
        "",
        "Dérivation,Dérivation I",
        "Unité,µV",
        "",
    ]


def _portuguese(start: datetime, rate: str) -> list[str]:
    return [
        f"Nome,{FAKE_NAME}",
        f"Data de nascimento,{FAKE_BIRTH}",
        f"Data de registo,{start:%d/%m/%Y %H:%M:%S %z}",
        "Classificação,Ritmo sinusal",
        "Sintomas,",
        "Versão do software,1.90",
        'Dispositivo,"Watch5,1"',
        f"Taxa de amostragem,{_comma(rate)} Hz",
        "",
        "",
        "Derivação,Derivação I",
        "Unidade,µV",
        "",
    ]


def _spanish(start: datetime, rate: str) -> list[str]:
    """The decimal comma of the rate left unquoted in the header: the value is everything after the key."""
    return [
        f"Nombre,{FAKE_NAME}",
        f"Fecha de nacimiento,{FAKE_BIRTH}",
        f'Fecha de registro,"{start:%d/%m/%Y, %H:%M:%S %z}"',
        "Clasificación,Ritmo sinusal",
        "Síntomas,",
        "Versión de software,1.90",
        'Dispositivo,"Watch5,1"',
        f"Frecuencia de muestreo,{_comma(rate)} Hz",
        "",
        "",
        "Derivación,Derivación I",
        "Unidad,µV",
        "",
    ]


def _unlisted_language(start: datetime, rate: str) -> list[str]:
    """Polish-like header words that no table in the reader knows: only the structure can identify them."""
    return [
        f"Imię i nazwisko,{FAKE_NAME}",
        f"Data urodzenia,{FAKE_BIRTH}",
        f"Data nagrania,{start:%Y-%m-%d %H:%M:%S %z}",
        "Klasyfikacja,Rytm zatokowy",
        "Objawy,",
        "Wersja oprogramowania,1.90",
        'Urządzenie,"Watch5,1"',
        f"Częstotliwość próbkowania,{rate} Hz",
        "",
        "",
        "Odprowadzenie,Odprowadzenie I",
        "Jednostka,µV",
        "",
    ]


# (header builder, how each sample is written)
LOCALES = {
    "de": (_german, lambda v: f'"{_comma(v)}"'),
    "ja": (_japanese, lambda v: v),
    "fr": (_french, lambda v: f'"{_comma(v)}"'),
    "pt": (_portuguese, _comma),  # unquoted: one sample per line, so the comma can only be decimal
    "es": (_spanish, lambda v: f'"{_comma(v)}"'),
    "unlisted": (_unlisted_language, lambda v: v),
}


def _write_variant(tmp_path: Path, real: Path, locale: str, name: str | None = None) -> Path:
    english = read_apple_watch_csv(real)
    header, write_sample = LOCALES[locale]
    rate = english.meta["sample_rate_declared"].split()[0]
    lines = header(english.start, rate) + [write_sample(value) for value in _samples(real)]
    path = tmp_path / (name or f"{real.stem}_{locale}.csv")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _with_fake_identity(real: Path) -> list[str]:
    lines = real.read_text(encoding="utf-8").splitlines()
    return [f"Name,{FAKE_NAME}", f"Date of Birth,{FAKE_BIRTH}", *lines[2:]]


def _write(tmp_path: Path, lines: list[str], name: str = "export.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _assert_no_identity(text: str) -> None:
    for secret in (FAKE_NAME, "Quintessa", "Zwolinski", FAKE_BIRTH, "1931", "Redacted"):
        assert secret not in text


# --- the real files ------------------------------------------------------------------------------------


def test_real_export_uses_declared_rate_count_and_start(real_export: Path) -> None:
    fs, n_samples, start = REAL[real_export.name]
    record = read_apple_watch_csv(real_export)
    assert record.fs == fs
    assert record.n_samples == n_samples
    assert record.signal.shape == (1, n_samples)
    assert record.signal.dtype == np.float32
    assert record.leads == ("I",)
    assert record.start == start
    assert record.start.utcoffset() == timedelta(hours=8)
    assert record.device == "Watch5,1"
    assert record.source_format == "apple_watch_csv"


def test_real_export_converts_microvolts_to_millivolts(real_export: Path) -> None:
    record = read_apple_watch_csv(real_export)
    microvolts = _microvolts(real_export)
    np.testing.assert_allclose(record.signal[0, :20], microvolts[:20] / 1000, rtol=1e-6)
    np.testing.assert_allclose(record.signal[0], microvolts / 1000, rtol=1e-6, atol=1e-9)


def test_real_export_meta(real_export: Path) -> None:
    meta = read_apple_watch_csv(real_export).meta
    fs, _, _ = REAL[real_export.name]
    assert meta["classification"] == "Sinus Rhythm"
    assert meta["symptoms"] == ""
    assert meta["software_version"] == "1.90"
    assert meta["device"] == "Watch5,1"
    assert meta["sample_rate_declared"] == f"{fs:g} hertz"
    assert meta["unit"] == "µV"
    assert meta["lead_label"] == "Lead I"
    assert meta["recorded_date"] == f"{REAL[real_export.name][2]:%Y-%m-%d %H:%M:%S %z}"
    assert meta["lead_assumed"] is False


def test_real_export_keeps_no_name_or_birth_date(real_export: Path) -> None:
    record = read_apple_watch_csv(real_export)
    text = repr(record) + repr(record.meta)
    _assert_no_identity(text)
    assert not any("name" in key.lower() or "birth" in key.lower() for key in record.meta)


def test_dispatcher_reads_real_export(real_export: Path) -> None:
    record = read_record(real_export)
    assert record.source_format == "apple_watch_csv"
    assert record.fs == REAL[real_export.name][0]


# --- localised variants --------------------------------------------------------------------------------


@pytest.mark.parametrize("locale", sorted(LOCALES))
def test_localised_variant_reads_like_the_english_original(
    locale: str, real_export: Path, tmp_path: Path
) -> None:
    english = read_apple_watch_csv(real_export)
    variant = read_apple_watch_csv(_write_variant(tmp_path, real_export, locale))
    assert variant.fs == english.fs
    assert variant.n_samples == english.n_samples
    np.testing.assert_allclose(variant.signal, english.signal)
    assert variant.leads == ("I",)
    assert variant.meta["lead_assumed"] is False
    assert variant.start == english.start
    assert variant.device == "Watch5,1"
    assert variant.meta["software_version"] == "1.90"
    assert variant.meta["symptoms"] == ""
    _assert_no_identity(repr(variant) + repr(variant.meta))


def test_german_variant_meta_keeps_localised_text(real_export: Path, tmp_path: Path) -> None:
    meta = read_apple_watch_csv(_write_variant(tmp_path, real_export, "de")).meta
    fs = REAL[real_export.name][0]
    assert meta["classification"] == "Sinusrhythmus"
    assert meta["sample_rate_declared"] == f"{fs:g} Hertz".replace(".", ",")
    assert meta["lead_label"] == "Ableitung I"
    assert meta["recorded_date"].startswith(f"{REAL[real_export.name][2]:%d.%m.%Y}, ")


def test_japanese_variant_meta(real_export: Path, tmp_path: Path) -> None:
    meta = read_apple_watch_csv(_write_variant(tmp_path, real_export, "ja")).meta
    assert meta["classification"] == "洞調律"
    assert meta["lead_label"] == "第I誘導"
    assert meta["sample_rate_declared"].endswith("ヘルツ")


@pytest.mark.parametrize("locale", sorted(LOCALES))
def test_dispatcher_sniffs_variant_renamed_to_txt(locale: str, real_export: Path, tmp_path: Path) -> None:
    path = _write_variant(tmp_path, real_export, locale, name=f"export_{locale}.txt")
    assert sniff_format(path) == "apple_watch_csv"
    record = read_record(path)
    assert record.source_format == "apple_watch_csv"
    assert record.fs == REAL[real_export.name][0]


def test_rate_without_space_and_integer(tmp_path: Path, real_export: Path) -> None:
    lines = _with_fake_identity(real_export)
    rate = next(i for i, line in enumerate(lines) if line.startswith("Sample Rate,"))
    lines[rate] = "Sample Rate,512Hz"
    assert read_apple_watch_csv(_write(tmp_path, lines)).fs == 512.0


# --- sniffing -------------------------------------------------------------------------------------------


def test_sniff_rejects_values_only_and_generic_tables(shared_data: Path) -> None:
    values_only = (shared_data / "apple_watch" / "heartphase_ecg-sample.csv").read_text()[:8192]
    assert not looks_like_apple_watch_csv(values_only)
    assert not looks_like_apple_watch_csv("time,MLII,V5\n0.000,-0.145,-0.065\n0.003,-0.145,-0.065\n")
    assert not looks_like_apple_watch_csv("Name,Someone\nDate of Birth,\nhello,world\n1.0\n2.0\n")


def test_sniff_accepts_head_cut_in_the_middle_of_the_samples(real_export: Path) -> None:
    head = real_export.read_bytes()[:300].decode("utf-8", errors="ignore")
    assert looks_like_apple_watch_csv(head)


# --- name and birth date never leave the parser ----------------------------------------------------------


def test_name_and_birth_date_never_reach_the_record(real_export: Path, tmp_path: Path) -> None:
    record = read_apple_watch_csv(_write(tmp_path, _with_fake_identity(real_export)))
    assert record.fs == REAL[real_export.name][0]
    _assert_no_identity(repr(record) + repr(record.meta) + str(record.start))


@pytest.mark.parametrize(
    ("breakage", "where"),
    [
        ("bad_sample", "line 20"),
        ("nan_sample", "line 20"),
        ("bad_rate", "Sample Rate"),
        ("bad_unit", "Unit"),
        ("cut_short", "line 5"),
    ],
)
def test_errors_never_quote_name_or_birth_date(
    breakage: str, where: str, real_export: Path, tmp_path: Path
) -> None:
    lines = _with_fake_identity(real_export)
    rate = next(i for i, line in enumerate(lines) if line.startswith("Sample Rate,"))
    unit = next(i for i, line in enumerate(lines) if line.startswith("Unit,"))
    if breakage == "bad_sample":
        lines[19] = "12.5 mV oops"
    elif breakage == "nan_sample":
        lines[19] = "nan"
    elif breakage == "bad_rate":
        lines[rate] = "Sample Rate,fast"
    elif breakage == "bad_unit":
        lines[unit] = "Unit,furlongs"
    else:
        lines = lines[:5]
    path = _write(tmp_path, lines)
    with pytest.raises(IngestError) as caught:
        read_apple_watch_csv(path)
    error = caught.value
    assert str(path) in str(error)
    assert where in (error.where or "")
    _assert_no_identity(str(error) + repr(error.args))
    with pytest.raises(IngestError) as via_dispatcher:
        read_record(path)
    _assert_no_identity(str(via_dispatcher.value))


def test_non_utf8_name_is_refused_without_quoting_it(real_export: Path, tmp_path: Path) -> None:
    lines = _with_fake_identity(real_export)
    raw = "\n".join(lines).encode("utf-8").replace(b"Quintessa", b"Quint\xe9ssa")
    path = tmp_path / "latin1.csv"
    path.write_bytes(raw)
    with pytest.raises(IngestError, match="not UTF-8 text") as caught:
        read_apple_watch_csv(path)
    assert caught.value.where == "line 1"
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    _assert_no_identity(str(caught.value))


def test_export_misrouted_to_the_csv_reader_is_still_read_as_an_export(
    real_export: Path, tmp_path: Path
) -> None:
    """Sniffing takes UTF-16 for binary and sends it to the CSV reader, as does `fmt="csv"`: that reader
    hands an export to its own reader, so line 1 never becomes lead names and errors stay clean."""
    text = "\n".join(_with_fake_identity(real_export)) + "\n"
    utf16 = tmp_path / "utf16.csv"
    utf16.write_text(text, encoding="utf-16")
    utf8 = _write(tmp_path, _with_fake_identity(real_export))
    for path in (utf16, utf8):
        record = read_record(path, fmt="csv")
        assert record.source_format == "apple_watch_csv"
        assert record.fs == REAL[real_export.name][0]
        _assert_no_identity(repr(record) + repr(record.meta))
    broken = _with_fake_identity(real_export)
    broken[30] = "oops"
    with pytest.raises(IngestError, match="line 31") as caught:
        read_record(_write(tmp_path, broken), fmt="csv")
    _assert_no_identity(str(caught.value))


# --- other refusals -----------------------------------------------------------------------------------


def test_text_in_sample_line_names_the_line(real_export: Path, tmp_path: Path) -> None:
    lines = real_export.read_text(encoding="utf-8").splitlines()
    lines[99] = "-12.3x"
    with pytest.raises(IngestError, match="text in a sample line") as caught:
        read_apple_watch_csv(_write(tmp_path, lines))
    assert caught.value.where == "line 100"


def test_broken_first_sample_is_reported_as_a_sample(real_export: Path, tmp_path: Path) -> None:
    lines = real_export.read_text(encoding="utf-8").splitlines()
    first = len(lines) - len(_samples(real_export))
    lines[first] = "twenty"
    with pytest.raises(IngestError, match="text in a sample line") as caught:
        read_apple_watch_csv(_write(tmp_path, lines))
    assert caught.value.where == f"line {first + 1}"


def test_header_without_samples_is_refused(real_export: Path, tmp_path: Path) -> None:
    lines = real_export.read_text(encoding="utf-8").splitlines()
    header = lines[: len(lines) - len(_samples(real_export))]
    with pytest.raises(IngestError, match="no samples"):
        read_apple_watch_csv(_write(tmp_path, header))


def test_zero_sample_rate_is_refused(real_export: Path, tmp_path: Path) -> None:
    lines = real_export.read_text(encoding="utf-8").splitlines()
    rate = next(i for i, line in enumerate(lines) if line.startswith("Sample Rate,"))
    lines[rate] = "Sample Rate,0 hertz"
    with pytest.raises(IngestError, match="sample rate") as caught:
        read_apple_watch_csv(_write(tmp_path, lines))
    assert caught.value.where == f"line {rate + 1}, field Sample Rate"


def test_missing_sample_rate_is_refused(real_export: Path, tmp_path: Path) -> None:
    lines = [
        line for line in real_export.read_text(encoding="utf-8").splitlines() if "Sample Rate" not in line
    ]
    with pytest.raises(IngestError, match="no sample rate"):
        read_apple_watch_csv(_write(tmp_path, lines))


def test_unparseable_date_gives_no_start_but_keeps_the_text(real_export: Path, tmp_path: Path) -> None:
    lines = real_export.read_text(encoding="utf-8").splitlines()
    lines[2] = "Recorded Date,sometime last winter"
    record = read_apple_watch_csv(_write(tmp_path, lines))
    assert record.start is None
    assert record.meta["recorded_date"] == "sometime last winter"


# --- dates ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021-12-17 12:58:58 +0800", datetime(2021, 12, 17, 12, 58, 58, tzinfo=PLUS_8)),
        (
            "17.12.2021, 12:58:58 +0100",
            datetime(2021, 12, 17, 12, 58, 58, tzinfo=timezone(timedelta(hours=1))),
        ),
        (
            "2021/12/17 12:58:58 +0900",
            datetime(2021, 12, 17, 12, 58, 58, tzinfo=timezone(timedelta(hours=9))),
        ),
        (
            "17/12/2021 12:58:58 -0330",
            datetime(2021, 12, 17, 12, 58, 58, tzinfo=timezone(-timedelta(hours=3, minutes=30))),
        ),
        ("2021-12-17T12:58:58+08:00", datetime(2021, 12, 17, 12, 58, 58, tzinfo=PLUS_8)),
        ("12/17/2021 1:05:00 PM +0800", datetime(2021, 12, 17, 13, 5, 0, tzinfo=PLUS_8)),
        ("2021年12月17日 12:58:58 +0800", datetime(2021, 12, 17, 12, 58, 58, tzinfo=PLUS_8)),
        ("2021-12-17 12:58:58", datetime(2021, 12, 17, 12, 58, 58)),
        ("03/04/2021 12:58:58 +0100", None),  # day and month cannot be told apart
        ("Sinus Rhythm", None),
        ("2021-13-45 12:58:58 +0800", None),
    ],
)
def test_parse_recorded_date(text: str, expected: datetime | None) -> None:
    parsed = parse_recorded_date(text)
    assert parsed == expected
    if expected is not None:
        assert parsed.tzinfo == expected.tzinfo

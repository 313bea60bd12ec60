"""The Health app's `export.zip`: every ECG read from the archive without unpacking it, outputs named by date
and content hash, the person's name and birth date (in export.xml and on each CSV's first lines) nowhere.

The export is built from all real Health-format CSVs in ../shared/data/apple_watch. The values-only
heartphase trace goes in too, outside `electrocardiograms/`: it has no header, so had it been taken for an
ECG the read would fail. The memory test measures peak RSS of a fresh process per case (`VmHWM`, see
`_MEASURE`).
"""

from __future__ import annotations

import builtins
import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from bad_archives import (
    ECG_DIR,
    LYING_SIZE,
    REAL_ECGS,
    health_csv,
    lie_about_size,
    with_zip64_end_record,
    write_health_export,
    write_zip_bomb,
)
from bad_inputs import FAKE_BIRTH_DATE, FAKE_NAME

from echopulse.cli import main
from echopulse.ecg import ECGRecord
from echopulse.errors import IngestError
from echopulse.ingest import read_record, read_records

FOLDER_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{6}_[0-9a-f]{12}$")
OUTPUT_FILES = ["beats.json", "ecg.png", "windows.npz"]
PEAK_RSS_LIMIT_MB = 200
CLI_BOMB_EXTRA_MB = 50
IDENTITY = (FAKE_NAME, "Mustermann", FAKE_BIRTH_DATE, "1970")
"""What must never appear in a record or a text output; binary outputs are searched for the longer ones."""


@pytest.fixture(scope="module")
def export_zip(
    tmp_path_factory: pytest.TempPathFactory, shared_data: Path, apple_watch_csvs: list[Path]
) -> Path:
    assert sorted(path.name for path in apple_watch_csvs) == sorted(REAL_ECGS), "new real exports: add them"
    return write_health_export(tmp_path_factory.mktemp("health-export") / "export.zip", shared_data)


def _declared_rate(csv: Path) -> float:
    """The `Sample Rate,513.625 hertz` line's number, read here without the reader under test."""
    line = next(
        line for line in csv.read_text(encoding="utf-8").splitlines() if line.startswith("Sample Rate,")
    )
    return float(line.split(",", 1)[1].split()[0])


def _expected_folder(record: ECGRecord) -> str:
    assert record.start is not None
    return f"{record.start:%Y-%m-%d_%H%M%S}_{record.content_hash()[:12]}"


def test_every_ecg_in_the_export_is_read(export_zip: Path, apple_watch_csvs: list[Path]) -> None:
    records = {record.meta["archive_member"]: record for record in read_records(export_zip)}
    assert sorted(records) == [path.name for path in apple_watch_csvs]
    for csv in apple_watch_csvs:
        record, direct = records[csv.name], read_record(csv)
        assert record.fs == _declared_rate(csv) == direct.fs
        assert record.signal.dtype == direct.signal.dtype and (record.signal == direct.signal).all()
        assert record.leads == direct.leads == ("I",)
        assert record.start == direct.start
        assert record.source_format == "apple_watch_csv"
        assert record.content_hash() == direct.content_hash()


def test_reading_unpacks_nothing_and_opens_only_the_ecgs(
    export_zip: Path,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Watched three ways: no file opened for writing, no extraction, no new or changed file on disk; and the
    only members opened are the ECGs (export.xml, with the birth date, is never read)."""
    list(read_records(export_zip))  # imports done (they may write bytecode caches) before watching
    opened: list[tuple[str, str]] = []
    zip_open = zipfile.ZipFile.open

    def watched_zip_open(
        self: zipfile.ZipFile, name: str | zipfile.ZipInfo, mode: str = "r", *args: Any
    ) -> Any:
        opened.append((name.filename if isinstance(name, zipfile.ZipInfo) else name, mode))
        return zip_open(self, name, mode, *args)

    def no_extraction(*args: object, **kwargs: object) -> None:
        raise AssertionError("an archive member was extracted")

    file_open = builtins.open

    def read_only_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(flag in mode for flag in "wax+"):
            raise AssertionError(f"{file} opened for writing ({mode})")
        return file_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", watched_zip_open)
    monkeypatch.setattr(zipfile.ZipFile, "extract", no_extraction)
    monkeypatch.setattr(zipfile.ZipFile, "extractall", no_extraction)
    monkeypatch.setattr(builtins, "open", read_only_open)
    monkeypatch.setattr(io, "open", read_only_open)
    monkeypatch.chdir(tmp_path)
    base = tmp_path_factory.getbasetemp()
    before = _listing(base)
    records = list(read_records(export_zip))
    monkeypatch.undo()
    assert _listing(base) == before
    assert len(records) == len(REAL_ECGS)
    assert sorted(opened) == sorted((f"{ECG_DIR}/{name}", "r") for name in REAL_ECGS)


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in root.rglob("*")
    }


def test_no_identity_reaches_a_record(export_zip: Path) -> None:
    for record in read_records(export_zip):
        shown = json.dumps(
            {"meta": record.meta, "start": str(record.start), "device": record.device, "leads": record.leads},
            default=str,
            ensure_ascii=False,
        )
        assert record.meta["archive_member"] in REAL_ECGS
        for text in IDENTITY:
            assert text not in shown, text


def test_a_zip64_end_record_is_read(export_zip: Path, tmp_path: Path) -> None:
    """Writers end an archive with a ZIP64 record past 65,535 members or 4 GiB: its counts are used."""
    patched = tmp_path / "export64.zip"
    patched.write_bytes(with_zip64_end_record(bytearray(export_zip.read_bytes())))
    assert [r.meta["archive_member"] for r in read_records(patched)] == list(REAL_ECGS)


def test_members_are_decoded_like_files(tmp_path: Path, shared_data: Path) -> None:
    """UTF-8 with a BOM and UTF-16 (as Excel saves a CSV) read as the plain UTF-8 member does; other bytes
    are refused naming the member, as `read_text` refuses a file."""
    text = health_csv(shared_data, REAL_ECGS[0]).decode("utf-8")
    ecgs = {
        "ecg_2021-12-17.csv": text.encode("utf-8"),
        "ecg_2021-12-17_1.csv": text.encode("utf-8-sig"),
        "ecg_2021-12-17_2.csv": text.encode("utf-16"),
    }
    records = list(read_records(write_health_export(tmp_path / "export.zip", shared_data, ecgs)))
    assert len({record.content_hash() for record in records}) == 1 and len(records) == 3
    broken = {"ecg_2021-12-17.csv": text.encode("utf-8").replace(b"27.648", b"27.\xff48")}
    with pytest.raises(IngestError, match=r"broken\.zip:ecg_2021-12-17\.csv: not UTF-8 text \(line 14\)"):
        list(read_records(write_health_export(tmp_path / "broken.zip", shared_data, broken)))


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_ingest_writes_one_folder_per_ecg_named_by_date_and_hash(
    export_zip: Path, tmp_path: Path, apple_watch_csvs: list[Path]
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    result = subprocess.run(
        [sys.executable, "-m", "echopulse", "ingest", str(export_zip), "--out", str(first)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert main(["ingest", str(export_zip), "--out", str(second)]) == 0
    expected = {_expected_folder(read_record(csv)): csv.name for csv in apple_watch_csvs}
    for out in (first, second):
        assert sorted(p.name for p in out.iterdir()) == sorted(expected), "names not stable across runs"
    for folder, member in expected.items():
        assert FOLDER_NAME.match(folder)
        assert sorted(p.name for p in (first / folder).iterdir()) == OUTPUT_FILES
        beats = json.loads((first / folder / "beats.json").read_text(encoding="utf-8"))
        assert beats["source"] == f"export.zip:{member}"
        assert beats["meta"]["archive_member"] == member
        assert f"export.zip:{member}" in result.stdout
    for stream in (result.stdout, result.stderr):
        assert not any(text in stream for text in IDENTITY)
    _assert_no_identity_in_files(first)


def _assert_no_identity_in_files(out: Path) -> None:
    """Grep every output's bytes; `1970` alone only in text (4 bytes can occur by chance in binary data)."""
    for path in out.rglob("*"):
        assert not any(text in path.name for text in IDENTITY)
        if path.is_file():
            data = path.read_bytes()
            texts = IDENTITY if path.suffix == ".json" else IDENTITY[:3]
            assert not any(text.encode("utf-8") in data for text in texts), path


def test_cli_info_lists_every_ecg(export_zip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(export_zip), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert [f["file"] for f in facts] == [f"export.zip:{name}" for name in REAL_ECGS]
    assert [f["fs"] for f in facts] == [513.625, 512.508]
    assert main(["info", str(export_zip)]) == 0
    text = capsys.readouterr().out
    assert len(re.findall(r"^file\s+export\.zip:ecg_", text, re.MULTILINE)) == len(REAL_ECGS)
    assert not any(word in text for word in IDENTITY)


def test_several_inputs_nest_each_archive_under_its_stem(
    export_zip: Path, tmp_path: Path, apple_watch_csvs: list[Path]
) -> None:
    out = tmp_path / "out"
    assert main(["ingest", str(export_zip), str(apple_watch_csvs[0]), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(["export", apple_watch_csvs[0].stem])
    expected = sorted(_expected_folder(read_record(csv)) for csv in apple_watch_csvs)
    assert sorted(p.name for p in (out / "export").iterdir()) == expected
    assert (out / apple_watch_csvs[0].stem / "beats.json").is_file()


def test_the_same_ecg_twice_and_an_undated_one_get_their_own_folders(
    tmp_path: Path, shared_data: Path
) -> None:
    """Same-day exports are `ecg_<date>_1.csv`, `_2`; identical content gets `-2`, no date gets `undated`."""
    text = health_csv(shared_data, REAL_ECGS[0])
    undated = b"\n".join(line for line in text.split(b"\n") if not line.startswith(b"Recorded Date,"))
    ecgs = {REAL_ECGS[0]: text, "ecg_2021-12-17_1.csv": text, "ecg_undated.csv": undated}
    archive = write_health_export(tmp_path / "export.zip", shared_data, ecgs)
    out = tmp_path / "out"
    assert main(["ingest", str(archive), "--out", str(out)]) == 0
    name = _expected_folder(read_record(shared_data / "apple_watch" / REAL_ECGS[0]))
    digest = name.rsplit("_", 1)[1]
    assert sorted(p.name for p in out.iterdir()) == sorted([name, f"{name}-2", f"undated_{digest}"])


# ---------------------------------------------------------------------------------------------- memory

_MEASURE = r"""
import json, re, sys

def peak_mb():
    # VmHWM, not getrusage: on Linux a child's ru_maxrss starts at its parent's peak (fork, then exec keeps
    # it), so under pytest every child would report the test runner's size.
    try:
        with open("/proc/self/status") as status:
            return int(re.search(r"VmHWM:\s+(\d+) kB", status.read())[1]) / 1024
    except OSError:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024

mode, path = sys.argv[1], sys.argv[2]
outcome = {}
if mode == "read":
    from echopulse.errors import IngestError
    from echopulse.ingest import read_records
    try:
        outcome["records"] = len(list(read_records(path)))
    except IngestError as error:
        outcome["error"] = str(error)
else:
    from echopulse.cli import main
    outcome["code"] = main(["ingest", path, "--out", sys.argv[3]])
outcome["peak_mb"] = peak_mb()
print(json.dumps(outcome))
"""


def _measure(script: Path, *args: str) -> dict[str, object]:
    """Run one read (or CLI ingest) in a fresh process; its outcome and peak RSS in MB."""
    result = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_zip_bombs_are_refused_in_bounded_memory(
    tmp_path: Path, apple_watch_csvs: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A 1 GiB member (deflated ~1000:1) and the same with headers claiming 100 kB: both refused, each in a
    process whose peak RSS stays under 200 MB; a normal CSV read is the baseline. The CLI refusing the
    bomb stays under 200 MB too, and adds little to its own baseline (a missing file).
    """
    bomb = write_zip_bomb(tmp_path / "bomb.zip")
    lying = tmp_path / "lying_bomb.zip"
    lying.write_bytes(lie_about_size(bytearray(bomb.read_bytes()), "ecg_bomb.csv", LYING_SIZE))
    script = tmp_path / "measure.py"
    script.write_text(_MEASURE, encoding="utf-8")

    baseline = _measure(script, "read", str(apple_watch_csvs[0]))
    declared = _measure(script, "read", str(bomb))
    lied = _measure(script, "read", str(lying))
    cli_baseline = _measure(script, "cli", str(tmp_path / "missing.csv"), str(tmp_path / "out"))
    cli = _measure(script, "cli", str(bomb), str(tmp_path / "out"))
    with capsys.disabled():
        print(
            f"\npeak RSS (MB): read_records: CSV baseline {baseline['peak_mb']:.0f}, "
            f"zip bomb {declared['peak_mb']:.0f}, lying zip bomb {lied['peak_mb']:.0f}; "
            f"CLI ingest: baseline {cli_baseline['peak_mb']:.0f}, zip bomb {cli['peak_mb']:.0f}"
        )
    assert baseline["records"] == 1
    assert "a zip bomb" in str(declared["error"]) and "bomb.zip" in str(declared["error"])
    assert "lying_bomb.zip:ecg_bomb.csv" in str(lied["error"])
    assert cli_baseline["code"] == cli["code"] == 2 and not (tmp_path / "out").exists()
    for outcome in (declared, lied, cli):
        assert _peak(outcome) < PEAK_RSS_LIMIT_MB, outcome
    assert _peak(cli) < _peak(cli_baseline) + CLI_BOMB_EXTRA_MB, (cli, cli_baseline)


def _peak(outcome: dict[str, object]) -> float:
    return float(str(outcome["peak_mb"]))

"""Health app `export.zip` archives, a realistic one and a corpus of broken and hostile ones.

Every archive is built in a scratch directory from the real Health ECG exports in ../shared/data, with a
fake name and birth date planted where the Health app writes the real ones (lines 1–2 of each ECG CSV, and
`export.xml`), so a test can show that neither ever leaves the archive. Hostile layouts that `zipfile` will
not write (an encrypted flag, overlapping members, a lying size, a ZIP64 end record) are made by patching
the bytes of a sound archive, which keeps each case a single fault.

Archives are read with `read_records`, not `read_record` (which refuses archives), so `BadCase.expect` is
searched in the `IngestError` that `list(read_records(case.path))` raises.
"""

from __future__ import annotations

import shutil
import struct
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bad_inputs import FAKE_BIRTH_DATE, FAKE_NAME, BadCase, CaseBook

ECG_DIR = "apple_health_export/electrocardiograms"
REAL_ECGS = ("ecg_2021-12-17.csv", "ecg_2023-09-26.csv")
"""The Health-format exports in ../shared/data/apple_watch (`heartphase_ecg-sample.csv` has no header)."""

BOMB_BYTES = 2**30
LYING_SIZE = 100_000
"""What the lying bomb's header claims: small enough to pass every size check, honest-looking ratio."""

EXPORT_XML = f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE HealthData [
<!ELEMENT HealthData (ExportDate,Me,(Record|Workout|ActivitySummary|ClinicalRecord)*)>
<!ATTLIST Me HKCharacteristicTypeIdentifierDateOfBirth CDATA #REQUIRED>
]>
<HealthData locale="en_US">
 <ExportDate value="2023-10-01 09:12:44 +0800"/>
 <Me HKCharacteristicTypeIdentifierDateOfBirth="{FAKE_BIRTH_DATE}"
     HKCharacteristicTypeIdentifierBiologicalSex="HKBiologicalSexFemale"
     HKCharacteristicTypeIdentifierBloodType="HKBloodTypeNotSet"
     HKCharacteristicTypeIdentifierFitzpatrickSkinType="HKFitzpatrickSkinTypeNotSet"
     HKCharacteristicTypeIdentifierCardioFitnessMedicationsUse="None"/>
 <Record type="HKQuantityTypeIdentifierHeartRate" sourceName="{FAKE_NAME}’s Apple Watch"
     sourceVersion="10.0" device="&lt;&lt;HKDevice: 0x2830&gt;, name:Apple Watch, model:Watch&gt;"
     unit="count/min" creationDate="2021-12-17 13:01:02 +0800" startDate="2021-12-17 12:58:58 +0800"
     endDate="2021-12-17 12:58:58 +0800" value="74"/>
 <Record type="HKQuantityTypeIdentifierStepCount" sourceName="{FAKE_NAME}’s iPhone" unit="count"
     creationDate="2023-09-26 19:10:00 +0800" startDate="2023-09-26 18:00:00 +0800"
     endDate="2023-09-26 19:00:00 +0800" value="1204"/>
 <Workout workoutActivityType="HKWorkoutActivityTypeRunning" duration="31.2" durationUnit="min"
     sourceName="{FAKE_NAME}’s Apple Watch" startDate="2023-09-26 18:12:00 +0800"
     endDate="2023-09-26 18:43:12 +0800">
  <WorkoutRoute sourceName="{FAKE_NAME}’s Apple Watch">
   <FileReference path="/workout-routes/route_2023-09-26_6.12pm.gpx"/>
  </WorkoutRoute>
 </Workout>
</HealthData>
"""

ROUTE_GPX = """<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="Apple Health Export" xmlns="http://www.topografix.com/GPX/1/1">
 <trk><name>Route 2023-09-26 6:12pm</name><trkseg>
  <trkpt lon="114.169" lat="22.319"><ele>12.1</ele><time>2023-09-26T10:12:00Z</time></trkpt>
  <trkpt lon="114.170" lat="22.320"><ele>12.4</ele><time>2023-09-26T10:12:05Z</time></trkpt>
 </trkseg></trk>
</gpx>
"""


# ------------------------------------------------------------------------------------ building exports


def health_csv(shared: Path, name: str, *, sample_line: tuple[int, str] | None = None) -> bytes:
    """A real export's bytes with the fake name and birth date on lines 1–2, as the Health app writes them;
    `sample_line` replaces one more (1-based) line to break the file."""
    lines = (shared / "apple_watch" / name).read_text(encoding="utf-8").split("\n")
    if not (lines[0].startswith("Name,") and lines[1].startswith("Date of Birth,")):
        raise RuntimeError(f"{name}: lines 1–2 are no longer the name and birth date")
    lines[0], lines[1] = f"Name,{FAKE_NAME}", f"Date of Birth,{FAKE_BIRTH_DATE}"
    if sample_line is not None:
        lines[sample_line[0] - 1] = sample_line[1]
    return "\n".join(lines).encode("utf-8")


def write_health_export(
    path: Path,
    shared: Path,
    ecgs: dict[str, bytes] | None = None,
    *,
    extra: dict[str, bytes] | None = None,
    compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """An `export.zip` laid out as the Health app writes it: export.xml, export_cda.xml, the ECG CSVs (every
    real one unless `ecgs` says otherwise), a workout route, and the values-only heartphase trace outside
    `electrocardiograms/` (it has no header: were it taken for an ECG, reading would fail)."""
    if ecgs is None:
        ecgs = {name: health_csv(shared, name) for name in REAL_ECGS}
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        archive.writestr("apple_health_export/", b"")
        archive.writestr("apple_health_export/export.xml", EXPORT_XML.encode("utf-8"))
        archive.writestr("apple_health_export/export_cda.xml", EXPORT_XML.replace("HealthData", "CDA"))
        archive.writestr(f"{ECG_DIR}/", b"")
        for name, data in ecgs.items():
            archive.writestr(name if "/" in name else f"{ECG_DIR}/{name}", data)
        archive.writestr("apple_health_export/workout-routes/route_2023-09-26_6.12pm.gpx", ROUTE_GPX)
        archive.write(shared / "apple_watch" / "heartphase_ecg-sample.csv", "heartphase/ecg-sample.csv")
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return path


def write_zip_bomb(path: Path, size: int = BOMB_BYTES) -> Path:
    """An export whose `ecg_bomb.csv` is `size` bytes of `0\\n`, deflated to ~1/1000, written in blocks so
    that building it costs no memory. Classic (not ZIP64) fields: 1 GiB fits them, and the lying variant
    patches them."""
    block = b"0\n" * 2**19
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("apple_health_export/export.xml", EXPORT_XML.encode("utf-8"))
        with archive.open(f"{ECG_DIR}/ecg_bomb.csv", "w") as member:
            for _ in range(size // len(block)):
                member.write(block)
    return path


# ----------------------------------------------------------------------------- patching archive bytes

_END_RECORD = struct.Struct("<4s4H2LH")
_CD_ENTRY = struct.Struct("<4s6H3L5H2L")
_ZIP64_END_RECORD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")


@dataclass(frozen=True)
class _Entry:
    """A central-directory entry: where it sits, its full length, its name and its local header's offset."""

    at: int
    length: int
    name: str
    local_at: int


def _end_record_at(raw: bytes | bytearray) -> int:
    return raw.rfind(b"PK\x05\x06")


def _central_entries(raw: bytes | bytearray) -> list[_Entry]:
    fields = _END_RECORD.unpack_from(raw, _end_record_at(raw))
    count, offset = fields[4], fields[6]
    entries = []
    for _ in range(count):
        entry = _CD_ENTRY.unpack_from(raw, offset)
        name_length, extra_length, comment_length, local_at = entry[10], entry[11], entry[12], entry[16]
        name = bytes(raw[offset + 46 : offset + 46 + name_length]).decode("utf-8")
        length = 46 + name_length + extra_length + comment_length
        entries.append(_Entry(offset, length, name, local_at))
        offset += length
    return entries


def _entry(raw: bytes | bytearray, name_ending: str) -> _Entry:
    return next(entry for entry in _central_entries(raw) if entry.name.endswith(name_ending))


def _patch_archive(source: Path, target: Path, patch: Callable[[bytearray], bytes | bytearray]) -> Path:
    target.write_bytes(patch(bytearray(source.read_bytes())))
    return target


def lie_about_size(raw: bytearray, member: str, size: int) -> bytearray:
    """Claim `size` uncompressed bytes for `member` in both its headers (CRC and data left as they are)."""
    entry = _entry(raw, member)
    struct.pack_into("<L", raw, entry.at + 24, size)
    struct.pack_into("<L", raw, entry.local_at + 22, size)
    return raw


def _flag_encrypted(raw: bytearray, member: str) -> bytearray:
    entry = _entry(raw, member)
    for at in (entry.at + 8, entry.local_at + 6):
        (flags,) = struct.unpack_from("<H", raw, at)
        struct.pack_into("<H", raw, at, flags | 0x1)
    return raw


def _add_overlapping_entry(raw: bytearray, member: str, alias: str) -> bytearray:
    """A second directory entry named `alias` (same length as the member's name) for the same data."""
    entry = _entry(raw, member)
    copy = bytearray(raw[entry.at : entry.at + entry.length])
    old = entry.name.encode("utf-8")
    new = old[: len(old) - len(alias)] + alias.encode("utf-8")
    copy[46 : 46 + len(old)] = new
    end = _end_record_at(raw)
    fields = list(_END_RECORD.unpack_from(raw, end))
    fields[3] += 1
    fields[4] += 1
    fields[5] += len(copy)
    return raw[:end] + copy + _END_RECORD.pack(*fields)


def _claim_directory_size(raw: bytearray, size: int) -> bytearray:
    struct.pack_into("<L", raw, _end_record_at(raw) + 12, size)
    return raw


def with_zip64_end_record(raw: bytearray, entries: int | None = None) -> bytearray:
    """The archive ended by a ZIP64 end record (and its locator), as writers do past 65,535 members or
    4 GiB; `entries` overrides the member count it declares. The classic end record then holds only the
    "see ZIP64" sentinels."""
    end = _end_record_at(raw)
    fields = _END_RECORD.unpack_from(raw, end)
    count, directory_size, directory_at = fields[4], fields[5], fields[6]
    declared = count if entries is None else entries
    record = _ZIP64_END_RECORD.pack(
        b"PK\x06\x06", _ZIP64_END_RECORD.size - 12, 45, 45, 0, 0, declared, declared, directory_size,
        directory_at,
    )  # fmt: skip
    locator = _ZIP64_LOCATOR.pack(b"PK\x06\x07", 0, end, 1)
    classic = _END_RECORD.pack(b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return raw[:end] + record + locator + classic


# ---------------------------------------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class _Spot:
    out: Path
    shared: Path
    name: str

    @property
    def path(self) -> Path:
        return self.out / f"export_{self.name}.zip"

    def sound_export(self) -> Path:
        """The realistic export, built once per corpus, as the base of the patched cases."""
        base = self.out / "sound_export.zip"
        if not base.exists():
            write_health_export(base, self.shared)
        return base


_BOOK: CaseBook[_Spot] = CaseBook(_Spot)


def _case(
    expect: str, *, identity: bool = True
) -> Callable[[Callable[[_Spot], Path]], Callable[[_Spot], Path]]:
    """Archive cases carry the fake identity by default: their ECG members are the planted exports."""
    return _BOOK.case(expect, identity=identity)


def build_bad_archive_cases(directory: Path, shared_data: Path) -> list[BadCase]:
    """Write every bad archive into `directory` (created if needed); the cases in a stable order."""
    return _BOOK.build(directory, shared_data)


def archive_case_names() -> list[str]:
    return _BOOK.names()


@_case(r"member '.*ecg_bomb\.csv' unpacks 10\d\d:1 to 1024 MiB: a zip bomb")
def zip_bomb(spot: _Spot) -> Path:
    return write_zip_bomb(spot.path)


@_case(r"export_zip_bomb_lying_header\.zip:ecg_bomb\.csv: corrupt archive member: Bad CRC-32")
def zip_bomb_lying_header(spot: _Spot) -> Path:
    """The bomb with headers claiming 100 kB: every check of the directory passes, so only the capped read
    stands between the 1 GiB and memory (zipfile stops at the claimed size, then the CRC disagrees)."""
    bomb = spot.out / "export_zip_bomb.zip"
    if not bomb.exists():
        write_zip_bomb(bomb)
    return _patch_archive(bomb, spot.path, lambda raw: lie_about_size(raw, "ecg_bomb.csv", LYING_SIZE))


@_case(r"member '\.\./\.\./evil/ecg_x\.csv' climbs out of the archive with '\.\.'")
def traversal_name(spot: _Spot) -> Path:
    return write_health_export(
        spot.path, spot.shared, {"../../evil/ecg_x.csv": health_csv(spot.shared, REAL_ECGS[0])}
    )


@_case(r"member '/etc/ecg_x\.csv' has an absolute path")
def absolute_name(spot: _Spot) -> Path:
    return write_health_export(
        spot.path, spot.shared, {"/etc/ecg_x.csv": health_csv(spot.shared, REAL_ECGS[0])}
    )


@_case(r"member 'C:/Users/Public/ecg_x\.csv' has an absolute path")
def drive_letter_name(spot: _Spot) -> Path:
    ecgs = {"C:/Users/Public/ecg_x.csv": health_csv(spot.shared, REAL_ECGS[0])}
    return write_health_export(spot.path, spot.shared, ecgs)


@_case(r"empty archive: no members at all", identity=False)
def empty_zip(spot: _Spot) -> Path:
    zipfile.ZipFile(spot.path, "w").close()
    return spot.path


@_case(r"no ECG recordings \(electrocardiograms/ecg_\*\.csv\) in the archive")
def no_ecgs(spot: _Spot) -> Path:
    """export.xml, a route and a CSV outside `electrocardiograms/`: nothing to read, and that is said."""
    return write_health_export(spot.path, spot.shared, {})


@_case(r"20000 members, over the 10000 limit", identity=False)
def twenty_thousand_members(spot: _Spot) -> Path:
    with zipfile.ZipFile(spot.path, "w") as archive:
        archive.writestr(f"{ECG_DIR}/ecg_2021-12-17.csv", b"")
        for index in range(19_999):
            archive.writestr(f"apple_health_export/workout-routes/route_{index}.gpx", b"")
    return spot.path


@_case(r"not a complete zip archive: its directory is missing \(truncated\?\)")
def truncated(spot: _Spot) -> Path:
    """The realistic export cut in half, as an interrupted download or copy leaves it."""
    raw = spot.sound_export().read_bytes()
    spot.path.write_bytes(raw[: len(raw) // 2])
    return spot.path


@_case(
    r"export_bad_member\.zip:ecg_2022-06-30\.csv: text in a sample line: 'hello' is not a number \(line 20\)"
)
def bad_member(spot: _Spot) -> Path:
    """One broken ECG between two sound ones: only it is refused; the CLI still writes the others."""
    ecgs = {
        REAL_ECGS[0]: health_csv(spot.shared, REAL_ECGS[0]),
        "ecg_2022-06-30.csv": health_csv(spot.shared, REAL_ECGS[0], sample_line=(20, "hello")),
        REAL_ECGS[1]: health_csv(spot.shared, REAL_ECGS[1]),
    }
    return write_health_export(spot.path, spot.shared, ecgs)


@_case(r"member '.*ecg_2021-12-17\.csv' is encrypted")
def encrypted_member(spot: _Spot) -> Path:
    """zipfile cannot encrypt, so the flag bit is set by hand: the directory check must refuse it."""
    return _patch_archive(spot.sound_export(), spot.path, lambda raw: _flag_encrypted(raw, REAL_ECGS[0]))


@_case(r"member '.*ecg_2021-12-17\.csv' uses compression method 12 \(only stored or deflate\)")
def bzip2_member(spot: _Spot) -> Path:
    """bzip2 cannot be decompressed in bounded steps through zipfile: a small chunk may expand to GBs."""
    return write_health_export(spot.path, spot.shared, compression=zipfile.ZIP_BZIP2)


@_case(r"members '.*ecg_2021-12-17\.csv' and '.*ecg_2021-12-18\.csv' overlap \(a crafted archive\)")
def overlapping_members(spot: _Spot) -> Path:
    """Two directory entries for one compressed stream: the "overlapping files" bomb in miniature."""
    return _patch_archive(
        spot.sound_export(),
        spot.path,
        lambda raw: _add_overlapping_entry(raw, REAL_ECGS[0], "ecg_2021-12-18.csv"),
    )


@_case(r"member '.*ecg_2021-12-17\.csv' appears twice")
def duplicate_names(spot: _Spot) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns "Duplicate name", and writes it anyway
        extra = {f"{ECG_DIR}/{REAL_ECGS[0]}": health_csv(spot.shared, REAL_ECGS[1])}
        return write_health_export(spot.path, spot.shared, extra=extra)


@_case(r"member '.*ecg_2024-01-01\.csv' unpacks to 9 MiB, over the 8 MiB limit for an ECG export")
def ecg_member_too_large(spot: _Spot) -> Path:
    """An honest 9 MiB CSV (ratio ~2, no bomb) that is still far larger than any ECG export."""
    rng = np.random.default_rng(0)
    header = health_csv(spot.shared, REAL_ECGS[0]).split(b"\n27.648")[0]
    samples = "\n".join(f"{value:.3f}" for value in rng.normal(0, 300, 9 * 2**20 // 8)).encode()
    data = (header + b"\n" + samples)[: 9 * 2**20 + 1]
    return write_health_export(spot.path, spot.shared, {"ecg_2024-01-01.csv": data})


@_case(r"central directory of 64\.0 MiB, over the 4 MiB limit")
def directory_too_large(spot: _Spot) -> Path:
    """An end record claiming a 64 MiB directory: refused before zipfile would read and parse it."""
    return _patch_archive(spot.sound_export(), spot.path, lambda raw: _claim_directory_size(raw, 64 * 2**20))


@_case(r"100000 members, over the 10000 limit")
def zip64_many_members(spot: _Spot) -> Path:
    """A ZIP64 end record declaring 100,000 members: the count is read from it, not from the sentinels."""
    return _patch_archive(spot.sound_export(), spot.path, lambda raw: with_zip64_end_record(raw, 100_000))


@_case(r"export_corrupt_member\.zip:ecg_2021-12-17\.csv: corrupt archive member")
def corrupt_member(spot: _Spot) -> Path:
    """Deflate data damaged in the middle (a bad sector, a broken copy): zlib or the CRC must say so."""

    def damage(raw: bytearray) -> bytearray:
        entry = _entry(raw, REAL_ECGS[0])
        name_length, extra_length = struct.unpack_from("<2H", raw, entry.local_at + 26)
        data_at = entry.local_at + 30 + name_length + extra_length
        raw[data_at + 5000 : data_at + 5064] = bytes(range(64))
        return raw

    return _patch_archive(spot.sound_export(), spot.path, damage)


def copy_case(case: BadCase, directory: Path) -> Path:
    """A copy of a case's archive under its own name (CLI tests run on copies so names stay distinct)."""
    target = directory / case.path.name
    shutil.copyfile(case.path, target)
    return target

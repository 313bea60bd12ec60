"""Writing the batch outputs through Beam's `FileSystems` (local disk, `gs://`, `s3://`), all or nothing.

Every file is written under a temporary name in `<output>/.incomplete/` and renamed into place when it is
complete, so a worker killed mid-write leaves no half file under a real name, and a retried bundle rewrites
the same name with the same bytes. Names are fixed by content (record key, beat index): a
re-run, or a run with more workers, writes the same files.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

INCOMPLETE = ".incomplete"
WINDOWS_DIR, CLIPS_DIR = "windows", "clips"
MANIFEST, ERRORS, SUMMARY = "manifest.jsonl", "errors.jsonl", "batch.json"


def output_path(output: str, *parts: str) -> str:
    return FileSystems.join(output, *parts)


def windows_name(key: str) -> str:
    """`windows/<record key>.parquet`, relative to the output folder, as the manifest names it."""
    return f"{WINDOWS_DIR}/{key}.parquet"


def clip_name(key: str, beat_index: int) -> str:
    return f"{CLIPS_DIR}/{key}/beat_{beat_index:04d}.mp4"


def write_file(output: str, relative: str, data: bytes) -> str:
    """Write `data` to `<output>/<relative>` by way of a temporary name; returns `relative`."""
    final = output_path(output, *relative.split("/"))
    temporary = output_path(output, INCOMPLETE, f"{uuid.uuid4().hex}-{relative.replace('/', '_')}")
    with FileSystems.create(temporary, compression_type=CompressionTypes.UNCOMPRESSED) as channel:
        channel.write(data)
    _make_parent(final)
    FileSystems.rename([temporary], [final])
    return relative


def jsonl_bytes(rows: Iterable[dict[str, Any]]) -> bytes:
    """One JSON object per line, keys sorted, so equal rows are equal bytes."""
    return "".join(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n" for row in rows).encode()


def read_jsonl(output: str, name: str) -> list[dict[str, Any]]:
    with FileSystems.open(output_path(output, name), compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return [json.loads(line) for line in f.read().decode().splitlines() if line.strip()]


def remove_incomplete(output: str) -> None:
    """Drop what a killed or failed attempt left under temporary names, and the folder (object stores have
    no folders to drop)."""
    remove_except(output, INCOMPLETE, keep=())
    folder = output_path(output, INCOMPLETE)
    if FileSystems.get_scheme(folder) is None:
        shutil.rmtree(folder, ignore_errors=True)


def remove_except(output: str, folder: str, keep: Sequence[str]) -> int:
    """Delete the files below `<output>/<folder>` whose relative names are not in `keep` (what an earlier
    run wrote and this one did not: records no longer among the inputs). Returns how many."""
    root = output_path(output, folder)
    try:
        found = FileSystems.match([FileSystems.join(root, "**")])[0].metadata_list
    except Exception:  # nothing there yet
        return 0
    prefix = output_path(output, "")
    kept = set(keep)
    stale = [m.path for m in found if m.path[len(prefix):].replace("\\", "/") not in kept]
    if stale:
        FileSystems.delete(stale)
    return len(stale)


def _make_parent(path: str) -> None:
    """Local folders must exist before a rename into them; object stores have no folders."""
    if FileSystems.get_scheme(path) is None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)

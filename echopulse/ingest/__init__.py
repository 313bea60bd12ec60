"""Readers that turn ECG inputs (paths, bytes, binary file objects) into `ECGRecord`s.

`read_record(source)` picks the reader by content (`sniff_format`) and returns a validated record in mV,
or raises `IngestError` naming the input and the problem. `iter_recordings(source)` also opens archives
that hold many recordings (the Health app's `export.zip`) and yields each as a `Recording`, read or
refused, going on past a broken one; `read_records(source)` is its strict form.

This module only gathers the public names: the code lives in submodules, which import from each other and
never from here.
"""

from __future__ import annotations

from echopulse.ecg import BeatAnnotations, ECGRecord
from echopulse.errors import IngestError
from echopulse.ingest import limits
from echopulse.ingest.read import ARCHIVE_FORMATS, read_record
from echopulse.ingest.recordings import Recording, iter_recordings, read_records
from echopulse.ingest.sniff import sniff_format

__all__ = [
    "ARCHIVE_FORMATS",
    "BeatAnnotations",
    "ECGRecord",
    "IngestError",
    "Recording",
    "iter_recordings",
    "limits",
    "read_record",
    "read_records",
    "sniff_format",
]

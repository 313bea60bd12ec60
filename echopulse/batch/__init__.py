"""The batch front end: an Apache Beam pipeline over archives of ECG files (`echopulse batch`).

Match → read, and beats and windows where read (the pipeline core's `preprocess_record`, as `echopulse
ingest`) → one record per distinct samples → optionally RunInference with `EchoModelHandler` → files:

    <output>/windows/<record>.parquet       one row per beat, with its (12, 2250) ST-MEM window
    <output>/clips/<record>/beat_NNNN.mp4   with --generate: one synthetic clip per usable beat
    <output>/manifest.jsonl                 one row per record, keyed by the SHA-256 of its samples
    <output>/errors.jsonl                   every input (or step) that failed, with the reason
    <output>/batch.json                     the settings every row was made with

>>> from echopulse.batch import BatchSettings, run_batch              # doctest: +SKIP
>>> report = run_batch(BatchSettings(inputs=("archive/",), output="out"), workers=2)
>>> report.counters["records"], report.counters["errors"]
(212, 3)

Names are imported on first use: Beam is heavy, and the worker processes (`echopulse.batch.worker`) must
set up their logging before Beam is imported. Front ends never import each other: this package uses the
pipeline core, the readers and the sinks only.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from echopulse.batch.pipeline import BatchSettings, ClipSettings, build_pipeline, record_seed
    from echopulse.batch.run import BatchError, BatchReport, run_batch

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
"""Set before Beam imports gRPC, here and in every worker process (they inherit it): with gRPC's fork
support on, starting ffmpeg for a clip from a worker that holds gRPC channels broke the pipe to ffmpeg and
closed gRPC's own descriptors (seen here: 'Broken pipe' writing frames, 'epoll_wait error: Bad file
descriptor'). Beam's own tests switch it off for the same reason."""

_LAZY = {
    "BatchSettings": "echopulse.batch.pipeline",
    "ClipSettings": "echopulse.batch.pipeline",
    "build_pipeline": "echopulse.batch.pipeline",
    "record_seed": "echopulse.batch.pipeline",
    "BatchError": "echopulse.batch.run",
    "BatchReport": "echopulse.batch.run",
    "run_batch": "echopulse.batch.run",
}

__all__ = ["BatchError", "BatchReport", "BatchSettings", "ClipSettings", "build_pipeline", "record_seed",
           "run_batch"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'echopulse.batch' has no attribute {name!r}")

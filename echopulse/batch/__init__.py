"""The batch front end: an Apache Beam pipeline over archives of ECG files (`echopulse batch`).

Match → read → one record per distinct samples → beats and windows (the pipeline core's
`preprocess_record`, as `echopulse ingest`) → optionally RunInference with `EchoModelHandler` → files:

    <output>/windows/<record>.parquet       one row per beat, with its (12, 2250) ST-MEM window
    <output>/clips/<record>/beat_NNNN.mp4   with --generate: one synthetic clip per usable beat
    <output>/manifest.jsonl                 one row per record, keyed by the SHA-256 of its samples
    <output>/errors.jsonl                   every input (or step) that failed, with the reason
    <output>/batch.json                     the settings every row was made with

>>> from echopulse.batch import BatchSettings, run_batch              # doctest: +SKIP
>>> report = run_batch(BatchSettings(inputs=("archive/",), output="out"), workers=2)
>>> report.counters["records"], report.counters["errors"]
(212, 3)

Front ends never import each other: this package uses the pipeline core, the readers and the sinks only.
"""

from __future__ import annotations

from echopulse.batch.pipeline import BatchSettings, ClipSettings, build_pipeline, record_seed
from echopulse.batch.run import BatchError, BatchReport, run_batch

__all__ = ["BatchError", "BatchReport", "BatchSettings", "ClipSettings", "build_pipeline", "record_seed",
           "run_batch"]

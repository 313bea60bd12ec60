"""Beats and ST-MEM windows as Parquet rows: one row per beat, the (12, 2250) window as a fixed-shape tensor.

The columns are those of `echopulse ingest`'s beats.json and windows.npz, keyed by the record's content hash,
so the files of many records read as one table (`pyarrow.dataset`) that never holds a file name. Rows are
in beat order and the file is written with fixed settings, so a record gives the same bytes whichever
worker wrote it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from echopulse.ecg import STMEM_LEADS, WINDOW_SAMPLES
from echopulse.pipeline import BeatPlan

WINDOW_SHAPE = (len(STMEM_LEADS), WINDOW_SAMPLES)
WINDOW_TYPE = pa.fixed_shape_tensor(pa.float32(), WINDOW_SHAPE)

SCHEMA = pa.schema(
    [
        ("record", pa.string()),
        ("beat_index", pa.int64()),
        ("r_peak_s", pa.float64()),
        ("rr_s", pa.float64()),
        ("hr_bpm", pa.float64()),
        ("quality", pa.float64()),
        ("accepted", pa.bool_()),
        ("reason", pa.string()),
        ("clip_reason", pa.string()),
        ("window_end_s", pa.float64()),
        ("padded", pa.bool_()),
        ("pad_samples", pa.int64()),
        ("lead_mask", pa.list_(pa.bool_(), len(STMEM_LEADS))),
        ("window", WINDOW_TYPE),
    ],
    metadata={
        b"echopulse.window": b"ST-MEM input at 250 Hz, leads I II III aVR aVL aVF V1-V6; null: no window",
        b"echopulse.clip_reason": b"why the beat gets no clip; null when it gets one",
    },
)


def windows_table(key: str, plans: Sequence[BeatPlan]) -> pa.Table:
    """One record's beats as a table, in beat order (a beat without a window has nulls there)."""
    columns: dict[str, list] = {name: [] for name in SCHEMA.names}
    for plan in plans:
        beat, window = plan.beat, plan.window
        values = {
            "record": key, "beat_index": beat.index, "r_peak_s": beat.r_peak_s, "rr_s": beat.rr_s,
            "hr_bpm": beat.hr_bpm, "quality": beat.quality, "accepted": beat.accepted, "reason": beat.reason,
            "clip_reason": plan.reason,
            "window_end_s": None if window is None else window.end_s,
            "padded": None if window is None else window.padded,
            "pad_samples": None if window is None else window.pad_samples,
            "lead_mask": None if window is None else [bool(v) for v in window.lead_mask],
            "window": None if window is None else np.asarray(window.signal, dtype=np.float32),
        }
        for name, value in values.items():
            columns[name].append(value)
    arrays = [
        _window_array(columns[name]) if name == "window"
        else pa.array(columns[name], type=SCHEMA.field(name).type)
        for name in SCHEMA.names
    ]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def parquet_bytes(table: pa.Table) -> bytes:
    """The table as a Parquet file. zstd, and no dictionary or statistics for the window floats (building a
    dictionary of 27,000 distinct floats per row cost 7× the write and made the file larger); no page
    index or write time, so equal tables are equal files."""
    buffer = io.BytesIO()
    labels = ["record", "reason", "clip_reason"]
    pq.write_table(
        table, buffer, compression="zstd", row_group_size=1024, write_page_index=False, use_dictionary=labels,
        write_statistics=[name for name in SCHEMA.names if name not in ("window", "lead_mask")],
    )
    return buffer.getvalue()


def read_windows(path_or_file) -> pa.Table:
    """A windows file back as a table (what tests and users call)."""
    return pq.read_table(path_or_file)


def window_arrays(table: pa.Table) -> np.ndarray:
    """The `window` column as a (rows, 12, 2250) float32 array; rows without a window are NaN."""
    column = table.column("window").combine_chunks()
    out = np.full((len(column), *WINDOW_SHAPE), np.nan, dtype=np.float32)
    valid = np.asarray(column.is_valid())
    if valid.any():
        out[valid] = column.filter(column.is_valid()).to_numpy_ndarray()
    return out


def _window_array(windows: list[np.ndarray | None]) -> pa.ExtensionArray:
    flat_size = int(np.prod(WINDOW_SHAPE))
    valid = np.array([w is not None for w in windows], dtype=bool)
    values = np.zeros((len(windows), flat_size), dtype=np.float32)
    for row, window in enumerate(windows):
        if window is not None:
            values[row] = window.reshape(-1)
    storage = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), flat_size,
                                                mask=pa.array(~valid))
    return pa.ExtensionArray.from_storage(WINDOW_TYPE, storage)

"""What `echopulse ingest` writes per input: `windows.npz`, `beats.json` and `ecg.png`.

`beats.json` is a stable interface other tools read; its keys only ever grow. Files are written into a
temporary folder and moved into place at the end, so a refused or interrupted input leaves nothing.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from echopulse.ecg import STMEM_LEADS, WINDOW_SAMPLES, ECGRecord
from echopulse.plot import plot_beats
from echopulse.preprocess.offline import Preprocessed
from echopulse.version import __version__

BEATS_SCHEMA_VERSION = 1


def beats_document(record: ECGRecord, result: Preprocessed, source: str) -> dict[str, Any]:
    """The `beats.json` content. `source` is the input's file name, never a path that may name a person."""
    return {
        "schema_version": BEATS_SCHEMA_VERSION,
        "echopulse_version": __version__,
        "source": source,
        "source_format": record.source_format,
        "fs": record.fs,
        "leads": list(record.leads),
        "detection_lead": result.detection_lead,
        "method": result.method,
        "duration_s": record.duration_s,
        "hr_bpm": result.hr_bpm,
        "start": record.start.isoformat() if record.start else None,
        "device": record.device,
        "meta": scalar_meta(record),
        "r_peaks_s": [b.r_peak_s for b in result.beats],
        "beats": [
            {
                "index": b.index,
                "r_peak_s": b.r_peak_s,
                "rr_s": b.rr_s,
                "hr_bpm": b.hr_bpm,
                "quality": b.quality,
                "accepted": b.accepted,
                "reason": b.reason,
            }
            for b in result.beats
        ],
    }


def windows_arrays(result: Preprocessed) -> dict[str, np.ndarray]:
    """The `windows.npz` arrays: one row per window; R-peaks inside windows as flat values plus offsets."""
    windows = result.windows
    r_peaks = [w.r_peaks_s for w in windows]
    slots = len(STMEM_LEADS)
    return {
        "signal": np.stack([w.signal for w in windows]) if windows
        else np.zeros((0, slots, WINDOW_SAMPLES), np.float32),
        "lead_mask": np.stack([w.lead_mask for w in windows]) if windows else np.zeros((0, slots), bool),
        "beat_index": np.array([w.beat_index for w in windows], dtype=np.int64),
        "end_s": np.array([w.end_s for w in windows], dtype=np.float64),
        "rr_s": np.array([np.nan if w.rr_s is None else w.rr_s for w in windows]),
        "quality": np.array([np.nan if w.quality is None else w.quality for w in windows]),
        "accepted": np.array([w.accepted for w in windows], dtype=bool),
        "padded": np.array([w.padded for w in windows], dtype=bool),
        "pad_samples": np.array([w.pad_samples for w in windows], dtype=np.int64),
        "r_peaks_s": np.concatenate(r_peaks) if r_peaks else np.zeros(0),
        "r_peaks_offsets": np.cumsum([0] + [len(r) for r in r_peaks]).astype(np.int64),
        "fs": np.array(250.0),
        "layout": np.array(result.layout),
    }


def write_ingest_outputs(record: ECGRecord, result: Preprocessed, out_dir: Path, source: str) -> Path:
    """Write the three files for one input into `out_dir`, all or nothing."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".ingest-", dir=out_dir.parent))
    try:
        np.savez_compressed(staging / "windows.npz", **windows_arrays(result))
        document = beats_document(record, result, source)
        (staging / "beats.json").write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        plot_beats(record, result, staging / "ecg.png", title=source)
        out_dir.mkdir(parents=True, exist_ok=True)
        for item in staging.iterdir():
            item.replace(out_dir / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def scalar_meta(record: ECGRecord) -> dict[str, Any]:
    """The record's meta that JSON holds as is (classification, software version, …): what outputs state."""
    return {k: v for k, v in record.meta.items() if v is None or isinstance(v, str | int | float | bool)}

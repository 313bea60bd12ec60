"""`manifest.json`: what `echopulse generate` made for one input, beat by beat, and with what.

Nothing in it names a person: `source` is the input's file name (or `<zip>:<member>`), and the record
facts are the ones `beats.json` already carries. `synthetic` is always true. The document holds no
wall-clock time, so the same input, model and seed give the same manifest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from echopulse.generator.clip import EchoClip
from echopulse.pipeline import BeatPlan
from echopulse.version import __version__

MANIFEST_SCHEMA_VERSION = 1


def beat_entry(plan: BeatPlan, clip: EchoClip | None, files: Mapping[str, str]) -> dict[str, Any]:
    beat, window = plan.beat, plan.window
    entry: dict[str, Any] = {
        "index": beat.index,
        "r_peak_s": beat.r_peak_s,
        "rr_s": beat.rr_s,
        "hr_bpm": beat.hr_bpm,
        "quality": beat.quality,
        "window_quality": None if window is None else window.quality,
        "accepted": bool(window.accepted) if window is not None else beat.accepted,
        "reason": window.reason if window is not None else beat.reason,
        "generated": clip is not None,
    }
    if clip is not None:
        entry.update(
            seed=clip.provenance.seed,
            frames=int(clip.frames.shape[0]),
            fps=float(clip.fps),
            start_s=clip.start_s,
            end_s=clip.end_s,
            primed=clip.provenance.primed,
            files=dict(files),
        )
    else:
        entry["skipped"] = plan.reason
        entry["files"] = {}
    return entry


def manifest_document(
    *,
    source: str,
    record_facts: Mapping[str, Any],
    model: Mapping[str, Any],
    settings: Mapping[str, Any],
    entries: Sequence[dict[str, Any]],
    files: Mapping[str, Any],
) -> dict[str, Any]:
    refused = [
        {"index": e["index"], "r_peak_s": e["r_peak_s"], "reason": e["skipped"]}
        for e in entries
        if not e["generated"]
    ]
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "synthetic": True,
        "note": "synthetic echocardiogram clips generated from an ECG; not recordings of a heart, "
        "not for diagnosis",
        "echopulse_version": __version__,
        "source": source,
        **dict(record_facts),
        "model": dict(model),
        **dict(settings),
        "files": dict(files),
        "clips": sum(e["generated"] for e in entries),
        "beats": list(entries),
        "refused": refused,
    }

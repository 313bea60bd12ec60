"""echopulse: wearable ECG in, synthetic echocardiogram clips out, one per heartbeat.

The public API, imported on first use so that `import echopulse` stays cheap and torch loads only when a
generator is asked for:

>>> from echopulse import read_record, preprocess_record, EchoGenerator  # doctest: +SKIP
>>> generator = EchoGenerator.from_pretrained()                          # the bundled model
>>> result = preprocess_record(read_record("ecg.csv"), layout=generator.window_layout)
>>> clips = generator.generate(clip_windows(result, "ecg.csv"), seed=0)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from echopulse.errors import EchopulseError, IngestError, ModelError, PreprocessError
from echopulse.version import __version__

if TYPE_CHECKING:
    from echopulse.ecg import ECGRecord
    from echopulse.generator.clip import EchoClip
    from echopulse.generator.echo_generator import EchoGenerator
    from echopulse.ingest import Recording, iter_recordings, read_record, read_records
    from echopulse.pipeline import ClipOptions, clip_windows, generate_clips, plan_clips, preprocess_record
    from echopulse.preprocess.streaming import StreamingPreprocessor

_LAZY = {
    "ECGRecord": "echopulse.ecg",
    "read_record": "echopulse.ingest",
    "read_records": "echopulse.ingest",
    "iter_recordings": "echopulse.ingest",
    "Recording": "echopulse.ingest",
    "preprocess_record": "echopulse.pipeline",
    "plan_clips": "echopulse.pipeline",
    "clip_windows": "echopulse.pipeline",
    "generate_clips": "echopulse.pipeline",
    "ClipOptions": "echopulse.pipeline",
    "StreamingPreprocessor": "echopulse.preprocess.streaming",
    "EchoGenerator": "echopulse.generator.echo_generator",
    "EchoClip": "echopulse.generator.clip",
}

__all__ = [
    "ClipOptions",
    "ECGRecord",
    "EchoClip",
    "EchoGenerator",
    "EchopulseError",
    "IngestError",
    "ModelError",
    "PreprocessError",
    "Recording",
    "StreamingPreprocessor",
    "__version__",
    "clip_windows",
    "generate_clips",
    "iter_recordings",
    "plan_clips",
    "preprocess_record",
    "read_record",
    "read_records",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # imported once
        return value
    raise AttributeError(f"module 'echopulse' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

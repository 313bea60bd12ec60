"""The batch pipeline: match → read and preprocess → one record per distinct samples → (clips) → files.

The steps are the pipeline core's (`echopulse.pipeline`, the same `preprocess_record` as `echopulse
ingest`), wrapped as Beam transforms. Every output is keyed and sorted by the record's content hash, so
the same inputs give the same bytes whatever runner, worker count or bundle split did the work. A bad
input becomes a row of errors.jsonl and never stops the job.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from echopulse.batch import files
from echopulse.batch.elements import (
    ClipRequest,
    InputFailure,
    ModelChoice,
    ReadRecord,
    RecordBeats,
    error_order,
)
from echopulse.batch.inputs import (
    DEFAULT_READ_TIMEOUT_S,
    input_patterns,
    is_read_elsewhere,
    match_pattern,
    read_input,
)
from echopulse.errors import EchopulseError, one_line
from echopulse.preprocess.beats import DEFAULT_METHOD

NAMESPACE = "echopulse"
COUNTERS = ("inputs", "records", "duplicates", "beats", "windows", "clips", "refusals", "errors")
"""What the run counts: files read, distinct records, records met again in another input, beats, windows
(one per beat that has one), clips, beats without a clip, and failed inputs or steps."""

FAILURES = "failures"


@dataclass(frozen=True)
class ClipSettings:
    """How clips are drawn and written; `None` in `BatchSettings.clips` means no generation."""

    model: ModelChoice = field(default_factory=ModelChoice)
    seed: int = 0
    min_batch: int = 1
    max_batch: int = 8
    scale: int = 4
    mark: bool = True


@dataclass(frozen=True)
class BatchSettings:
    """One batch run. `layout` is the window layout (with clips: the model's)."""

    inputs: tuple[str, ...]
    output: str
    fs: float | None = None
    method: str = DEFAULT_METHOD
    layout: str = "stmem"
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    clips: ClipSettings | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def record_seed(key: str, seed: int) -> int:
    """The seed a record's clips are drawn with: beat b uses this + b, as `echopulse generate --seed` does,
    so `generate --seed <the manifest's seed>` gives the same clips. Fixed by the samples and `seed`."""
    return (int(key[:8], 16) + seed) % 2**31


def build_pipeline(pipeline: beam.Pipeline, settings: BatchSettings) -> None:
    """Add every step of the batch job to `pipeline`."""
    output = settings.output
    matched = (
        pipeline
        | "Inputs" >> beam.Create(input_patterns(settings.inputs))
        | "Match" >> beam.FlatMap(_match, output).with_outputs(FAILURES, main="paths")
    )
    prepared = (
        matched.paths
        | "Skip companions" >> beam.Filter(lambda path: not is_read_elsewhere(path))
        | "Once each" >> beam.Distinct()
        | "Spread" >> beam.Reshuffle()
        | "Read and preprocess" >> beam.FlatMap(_read_and_preprocess, settings).with_outputs(FAILURES,
                                                                                            main="records")
    )
    kept = (
        prepared.records
        | "Same samples" >> beam.GroupByKey()
        | "Keep one" >> beam.FlatMap(_keep_one).with_outputs(FAILURES, main="records")
    )
    records = kept.records
    failures = [matched[FAILURES], prepared[FAILURES], kept[FAILURES]]

    facts = records | "Facts" >> beam.Map(lambda item: (item.key, item.facts))
    joined: dict[str, Any] = {"facts": facts}
    if settings.clips is not None:
        clips, clip_failures = _clips(records, settings.clips, output)
        joined["clips"] = clips
        failures.append(clip_failures)
    _ = (
        joined
        | "Join" >> beam.CoGroupByKey()
        | "Manifest rows" >> beam.Map(_manifest_row)
        | "All rows" >> beam.combiners.ToList()
        | "Manifest" >> beam.Map(_write_sorted, output, files.MANIFEST, lambda row: row["record"])
    )
    _ = (
        failures
        | "Failures" >> beam.Flatten()
        | "Error rows" >> beam.Map(_error_row)
        | "All failures" >> beam.combiners.ToList()
        | "Errors" >> beam.Map(_write_sorted, output, files.ERRORS, error_order)
    )


def _clips(records: Any, clip_settings: ClipSettings, output: str) -> tuple[Any, Any]:
    """RunInference over every window that gets a clip; each clip to an MP4; per record its clip files.
    Beam's ML package is imported here only: it takes 2 s, which a run without clips need not pay."""
    from apache_beam.ml.inference.base import RunInference

    from echopulse.batch.inference import EchoModelHandler

    handler = EchoModelHandler(clip_settings.model, clip_settings.min_batch, clip_settings.max_batch)
    requests = records | "Clip requests" >> beam.FlatMap(_clip_requests)
    inferred, failed = requests | "Generate" >> RunInference(handler).with_exception_handling()
    write = beam.Map(_write_clip, output, clip_settings.scale, clip_settings.mark)
    written = inferred | "Clip files" >> write
    per_record = written | "Clips by record" >> beam.GroupByKey()
    failures = failed.failed_inferences | "Generation failures" >> beam.FlatMap(_generation_failures)
    return per_record, failures


def _match(pattern: str, output: str) -> Iterator[Any]:
    for element in match_pattern(pattern, skip_below=output):
        yield TaggedOutput(FAILURES, element) if isinstance(element, InputFailure) else element


def _read_and_preprocess(path: str, settings: BatchSettings) -> Iterator[Any]:
    """Each record of the input, preprocessed where it was read, keyed by its samples. Reading and
    preprocessing are one step so that samples never travel between workers (only the record's facts, and
    with clips its windows, do); an ECG that two inputs hold is preprocessed twice, to the same bytes."""
    Metrics.counter(NAMESPACE, "inputs").inc()
    for item in read_input(path, settings.fs, settings.read_timeout_s):
        if isinstance(item, InputFailure):
            yield TaggedOutput(FAILURES, item)
        else:
            yield item.key, _preprocess(item, settings)


def _keep_one(grouped: tuple[str, Iterable[RecordBeats | InputFailure]]) -> Iterator[Any]:
    """The same samples from several inputs are one record: the one from the first input by name is kept,
    so the choice does not depend on which arrived first. Records are counted here, once each."""
    _, outcomes = grouped
    ordered = sorted(outcomes, key=_origin)
    Metrics.counter(NAMESPACE, "duplicates").inc(len(ordered) - 1)
    first = ordered[0]
    if isinstance(first, InputFailure):
        yield TaggedOutput(FAILURES, first)
        return
    first.inputs = first.facts["inputs"] = len(ordered)
    Metrics.counter(NAMESPACE, "records").inc()
    Metrics.counter(NAMESPACE, "beats").inc(first.facts["beats"])
    Metrics.counter(NAMESPACE, "windows").inc(first.facts["windows"])
    Metrics.counter(NAMESPACE, "refusals").inc(len(first.facts["refused_beats"]))
    yield first


def _origin(outcome: RecordBeats | InputFailure) -> tuple[str, str]:
    if isinstance(outcome, InputFailure):
        return outcome.input, outcome.recording or ""
    return outcome.origin


def _preprocess(item: ReadRecord, settings: BatchSettings) -> RecordBeats | InputFailure:
    """Beats and windows of one record, its windows file written, and what its manifest row says. The
    windows themselves are kept only when clips are to be drawn from them."""
    from echopulse.pipeline import plan_clips, preprocess_record

    try:
        result = preprocess_record(item.record, method=settings.method, layout=settings.layout)
    except EchopulseError as error:
        return _record_failure(item, one_line(error), "preprocess")
    except Exception as error:  # a bug of ours on one record must not stop the archive
        message = f"preprocessing failed ({type(error).__name__}: {one_line(error)})"
        return _record_failure(item, message, "preprocess")
    plans = plan_clips(result)
    _write_windows(item.key, plans, settings.output)
    seed = None if settings.clips is None else record_seed(item.key, settings.clips.seed)
    facts = _record_facts(item, result, plans, seed)
    return RecordBeats(item.key, item.origin, facts, plans if settings.clips is not None else [], seed)


def _record_failure(item: ReadRecord, message: str, stage: str) -> InputFailure:
    path, member = item.origin
    return InputFailure(path, message, stage, recording=member or None, record=item.key)


def _record_facts(item: ReadRecord, result: Any, plans: list[Any], seed: int | None) -> dict[str, Any]:
    """The record's manifest row without its clips: what was recorded and found, never who or where from.
    `inputs` is filled in once the record's copies have met."""
    from echopulse.outputs import scalar_meta

    record = item.record
    facts: dict[str, Any] = {
        "record": item.key,
        "source_format": record.source_format,
        "fs": record.fs,
        "leads": list(record.leads),
        "duration_s": record.duration_s,
        "device": record.device,
        "meta": scalar_meta(record),
        "detection_lead": result.detection_lead,
        "method": result.method,
        "layout": result.layout,
        "hr_bpm": result.hr_bpm,
        "beats": len(result.beats),
        "windows": len(result.windows),
        "accepted_windows": sum(w.accepted for w in result.windows),
        "refused_beats": [{"beat": p.beat.index, "reason": p.reason} for p in plans if not p.gets_clip],
        "inputs": 1,
        "files": {"windows": files.windows_name(item.key)},
    }
    if seed is not None:
        facts["seed"] = seed
        facts["seeds"] = "beat b uses seed + b"
    return facts


def _write_windows(key: str, plans: list[Any], output: str) -> str:
    """The record's beats and windows as its own Parquet file, written where they were computed: windows
    are the bulk of the data (108 kB each), so they never travel between workers."""
    from echopulse.batch.windows_table import parquet_bytes, windows_table

    return files.write_file(output, files.windows_name(key), parquet_bytes(windows_table(key, plans)))


def _clip_requests(item: RecordBeats) -> Iterator[ClipRequest]:
    assert item.seed is not None
    for plan in item.plans:
        if plan.gets_clip and plan.window is not None:
            yield ClipRequest(item.key, plan.window, item.seed + plan.window.beat_index, item.origin)


def _write_clip(prediction: Any, output: str, scale: int, mark: bool) -> tuple[str, tuple[int, str]]:
    from echopulse.video.clip_files import encode_clip

    request, clip = prediction.example, prediction.inference
    data = encode_clip(clip, "mp4", scale, mark)
    name = files.write_file(output, files.clip_name(request.key, clip.beat_index), data)
    Metrics.counter(NAMESPACE, "clips").inc()
    return request.key, (clip.beat_index, name)


def _generation_failures(failed: tuple[Any, Exception]) -> Iterator[InputFailure]:
    batch, error = failed
    for request in batch:
        message = f"generation failed for beat {request.window.beat_index} ({type(error).__name__}: " \
                  f"{one_line(error, limit=300)})"
        yield InputFailure(request.origin[0], message, "generate", recording=request.origin[1] or None,
                           record=request.key)


def _manifest_row(joined: tuple[str, dict[str, list]]) -> dict[str, Any]:
    _, parts = joined
    row = dict(parts["facts"][0])
    if "clips" in parts:
        made = sorted(pair for group in parts["clips"] for pair in group)
        row["files"] = {**row["files"], "clips": [name for _, name in made]}
        row["clips"] = len(made)
        row["synthetic"] = True
    return row


def _error_row(failure: InputFailure) -> dict[str, Any]:
    Metrics.counter(NAMESPACE, "errors").inc()
    return failure.row()


def _write_sorted(rows: list[dict[str, Any]], output: str, name: str, order: Any) -> str:
    """One JSONL file of all rows, sorted by `order`, so any runner's arrival order writes the same bytes."""
    return files.write_file(output, name, files.jsonl_bytes(sorted(rows, key=order)))

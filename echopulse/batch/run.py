"""`run_batch`: choose the runner, run the job (again, if a worker died), clean up, and read the counters.

Here the runner is Beam's FnApiRunner, named explicitly: Beam's default first tries to download its Prism
runner, which a machine without internet cannot. `workers` > 1 runs it in that many processes. Any other
runner (`--runner PortableRunner`, `DataflowRunner`, `FlinkRunner`, `SparkRunner`) is handed to Beam with
the pipeline options given. Because every output name and byte is fixed by the inputs, running the whole
job again after a failure (a worker killed mid-bundle, say) gives exactly the files a clean run gives.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineState

from echopulse.batch import files
from echopulse.batch.pipeline import COUNTERS, NAMESPACE, BatchSettings, build_pipeline
from echopulse.errors import EchopulseError, one_line
from echopulse.version import __version__

LOCAL_RUNNERS = {"direct", "directrunner", "fnapirunner", "bundlebasedrunner"}
REFUSED_RUNNERS = {
    "daskrunner": "Beam's Dask runner computes only the last transform and drops what a step emits at the "
    "end of a bundle (RunInference's last batch, unsharded files) while reporting success",
    "prismrunner": "Prism is a binary Beam downloads at run time; use the FnApiRunner (the default) here",
    "prism": "Prism is a binary Beam downloads at run time; use the FnApiRunner (the default) here",
    "dask": "Beam's Dask runner drops outputs while reporting success",
}


class BatchError(EchopulseError):
    """The job cannot start (bad options, unusable output) or failed on every attempt."""


@dataclass
class BatchReport:
    """What a run did: its counters, the runner, and the attempts it took (failures of earlier ones)."""

    counters: dict[str, int]
    runner: str
    attempts: int
    failed_attempts: list[str] = field(default_factory=list)
    stale_removed: int = 0


def pipeline_options(beam_args: Sequence[str], workers: int) -> tuple[PipelineOptions, object, str]:
    """Beam's options from the user's, and the runner: an FnApiRunner object unless another is named."""
    options = PipelineOptions(list(beam_args))
    name = options.view_as(StandardOptions).runner
    key = (name or "direct").lower()
    if key in REFUSED_RUNNERS:
        raise BatchError(f"--runner {name}: not offered ({REFUSED_RUNNERS[key]})")
    if key in LOCAL_RUNNERS:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner
        from apache_beam.transforms.environments import SubprocessSDKEnvironment

        options = PipelineOptions([*beam_args, "--direct_num_workers", str(workers),
                                   "--default_sdk_harness_log_level", "ERROR"])
        if workers == 1:
            return options, FnApiRunner(), "FnApiRunner (in this process)"
        # Beam's multi_processing mode, with our quiet wrapper of its worker as the command
        # `exec`: Beam runs the command through a shell, which would print "Killed" for a worker that dies
        command = f"exec {shlex.quote(sys.executable)} -m echopulse.batch.worker"
        environment = SubprocessSDKEnvironment.from_command_string(command)
        return options, FnApiRunner(default_environment=environment), f"FnApiRunner ({workers} processes)"
    return options, name, name


def run_batch(
    settings: BatchSettings,
    beam_args: Sequence[str] = (),
    workers: int = 1,
    attempts: int = 2,
    on_retry: Callable[[int, str], None] | None = None,
) -> BatchReport:
    """Run the job; a failed attempt is run again from the start, up to `attempts` in all."""
    options, runner, runner_name = pipeline_options(beam_args, workers)
    quiet_beam_logs()
    failed: list[str] = []
    with quiet_thread_exits() as worker_exits:
        for attempt in range(1, attempts + 1):
            files.remove_incomplete(settings.output)
            try:
                pipeline = beam.Pipeline(runner=runner, options=options)
                build_pipeline(pipeline, settings)
                result = pipeline.run()
                state = result.wait_until_finish()
                if state not in (PipelineState.DONE, None):
                    raise BatchError(f"the job ended in state {state}")
            except Exception as error:  # the runner's own errors: a dead worker, a lost connection
                why = runner_failure(error)
                if worker_exits:
                    why += f" ({'; '.join(dict.fromkeys(worker_exits))})"
                    worker_exits.clear()
                failed.append(why)
                if attempt == attempts:
                    raise BatchError(f"the batch job failed {attempts} times; last: {why}") from None
                if on_retry is not None:
                    on_retry(attempt + 1, why)
                continue
            stale = finish_outputs(settings)
            return BatchReport(read_counters(result), runner_name, attempt, failed, stale)
    raise AssertionError("unreachable")


def runner_failure(error: BaseException) -> str:
    """What a failed run died of, in one line: runners wrap a worker's traceback in their message, whose
    last line (`AttributeError: …`) is what a user can act on."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    final = [line for line in lines if re.match(r"[A-Za-z_.]*(Error|Exception|Exit)\b", line)]
    text = final[-1] if final else (lines[-1] if lines else type(error).__name__)
    return one_line(text, limit=300)


def finish_outputs(settings: BatchSettings) -> int:
    """After a good run: the summary file, and what earlier runs into this folder left that this one did
    not write (records no longer among the inputs)."""
    output = settings.output
    summary = {"echopulse_version": __version__, "method": settings.method, "layout": settings.layout,
               "generate": settings.clips is not None, "fs": settings.fs, **settings.summary}
    files.write_file(output, files.SUMMARY, (json.dumps(summary, indent=1, sort_keys=True) + "\n").encode())
    manifest = files.read_jsonl(output, files.MANIFEST)
    windows = [row["files"]["windows"] for row in manifest]
    clips = [name for row in manifest for name in row["files"].get("clips", [])]
    stale = files.remove_except(output, files.WINDOWS_DIR, windows)
    stale += files.remove_except(output, files.CLIPS_DIR, clips)
    files.remove_incomplete(output)
    return stale


def read_counters(result: object) -> dict[str, int]:
    counts = dict.fromkeys(COUNTERS, 0)
    try:
        found = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]  # type: ignore[attr-defined]
    except Exception:  # a runner without metrics still ran the job; the files say what it did
        return counts
    for counter in found:
        value = counter.committed if counter.committed is not None else counter.attempted
        counts[counter.key.metric.name] = counts.get(counter.key.metric.name, 0) + int(value or 0)
    return counts


@contextmanager
def quiet_thread_exits() -> Iterator[list[str]]:
    """While the job runs, the threads that watch a worker that died end with tracebacks of their own; the
    command says it in one line instead. Yields the list the workers' exit messages are gathered in."""
    from echopulse.batch.worker import quiet_thread_exit

    exits: list[str] = []

    def hook(args: threading.ExceptHookArgs) -> None:
        if isinstance(args.exc_value, RuntimeError) and "Worker subprocess exited" in str(args.exc_value):
            exits.append(one_line(args.exc_value).replace("Worker subprocess", "a worker process"))
            return
        quiet_thread_exit(args)

    before = threading.excepthook
    threading.excepthook = hook
    try:
        yield exits
    finally:
        threading.excepthook = before


def quiet_beam_logs() -> None:
    """Beam logs its plumbing (missing cloud clients, worker start-up, and with tracebacks the channels of a
    worker that died); the command says what happened itself, in one line, and every failed input is in
    errors.jsonl."""
    logging.getLogger("apache_beam").setLevel(logging.CRITICAL)
    logging.getLogger().setLevel(logging.ERROR)
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

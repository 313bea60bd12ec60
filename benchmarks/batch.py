"""`echopulse batch` against `echopulse ingest` / `generate` over the same files in a loop, in one run.

Builds an archive of ≥ 200 records: the real files in ../shared/data (both Apple Watch exports, MIT-BIH 100
with its annotations, the PTB record, the EDF, the strip image) and phantom 12-lead ECGs written as CSV.
Then times, on the same files:

- `ingest_loop`: `echopulse ingest FILE` for each file in turn (what a user would script without Beam),
- `core_loop`: read + `preprocess_record` for each file, writing nothing (the floor any front end pays),
- `pipeline_1`: `echopulse batch` on the FnApiRunner in this process,
- `pipeline_2`: the same with two worker processes,

and, with the bundled model on a smaller archive, `generate_loop` (`echopulse generate --format mp4` per
file) against `pipeline_generate_1` and `_2`. Prints JSON; ratios are within this run, so they hold on a
noisy machine where absolute rates do not.

    python benchmarks/batch.py [--phantoms 2000] [--generate-records 6] [--no-generate]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from echopulse.batch import BatchSettings, ClipSettings, run_batch
from echopulse.batch.elements import ModelChoice
from echopulse.cli import main as cli
from echopulse.ecg import STMEM_LEADS
from echopulse.echo.ecg_phantom import simulate_ecg
from echopulse.ingest import iter_recordings
from echopulse.pipeline import preprocess_record

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL_FILES = [
    "apple_watch/ecg_2021-12-17.csv", "apple_watch/ecg_2023-09-26.csv", "wfdb/100.hea", "wfdb/100.dat",
    "wfdb/100.atr", "wfdb/s0010_re.hea", "wfdb/s0010_re.dat", "wfdb/s0010_re.xyz", "edf/test_generator_2.edf",
    "echopulse/ecg_page_2.png",
]
INPUT_SUFFIXES = {".csv", ".hea", ".edf", ".png"}


def write_phantom_csv(path: Path, seed: int) -> None:
    """A phantom 12-lead ECG (11 s at 250 Hz, mV) as a CSV with a time column, as a lab export would be."""
    ecg = simulate_ecg(np.random.default_rng(seed))
    t = np.arange(ecg.signal.shape[1]) / ecg.fs
    table = np.column_stack([t, ecg.signal.T.astype(np.float64)])
    header = ",".join(["time_s", *STMEM_LEADS])
    np.savetxt(path, table, delimiter=",", header=header, comments="", fmt="%.6g")


def build_archive(folder: Path, phantoms: int, real: bool = True) -> list[Path]:
    """The archive's files; returns the inputs one would name on a command line (a .hea, not its .dat)."""
    folder.mkdir(parents=True)
    if real:
        for name in REAL_FILES:
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(SHARED / name, target)
    (folder / "phantom").mkdir()
    for k in range(phantoms):
        write_phantom_csv(folder / "phantom" / f"phantom_{k:04d}.csv", seed=k)
    return sorted(p for p in folder.rglob("*") if p.suffix in INPUT_SUFFIXES)


def timed(work) -> tuple[float, object]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def quietly(work):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return work()


def rates(seconds: float, records: int, beats: int, **more) -> dict:
    return {"seconds": round(seconds, 2), "records": records, "beats": beats,
            "records_per_s": round(records / seconds, 2), "beats_per_s": round(beats / seconds, 1), **more}


def core_loop(inputs: list[Path]) -> tuple[int, int]:
    records = beats = 0
    for path in inputs:
        for recording in iter_recordings(path):
            if recording.record is not None:
                records += 1
                beats += len(preprocess_record(recording.record).beats)
    return records, beats


def cli_loop(command: str, inputs: list[Path], out: Path, *extra: str) -> None:
    for k, path in enumerate(inputs):
        quietly(lambda path=path, k=k: cli([command, str(path), "--out", str(out / f"{k:04d}"), *extra]))


def pipeline(archive: Path, out: Path, workers: int, clips: ClipSettings | None = None,
             layout: str = "stmem"):
    settings = BatchSettings(inputs=(str(archive),), output=str(out), clips=clips, layout=layout)
    return quietly(lambda: run_batch(settings, workers=workers))


def preprocessing_figures(scratch: Path, phantoms: int) -> dict:
    archive = scratch / "archive"
    inputs = build_archive(archive, phantoms)
    loop_s, _ = timed(lambda: cli_loop("ingest", inputs, scratch / "ingest"))
    core_s, (records, beats) = timed(lambda: core_loop(inputs))
    one_s, one = timed(lambda: pipeline(archive, scratch / "one", 1))
    two_s, two = timed(lambda: pipeline(archive, scratch / "two", 2))
    assert one.counters["records"] == records and two.counters == one.counters
    tiny = scratch / "tiny"
    build_archive(tiny, 1, real=False)
    start_1, _ = timed(lambda: pipeline(tiny, scratch / "tiny1", 1))
    start_2, _ = timed(lambda: pipeline(tiny, scratch / "tiny2", 2))
    return {
        "archive": {"files": len(inputs), "records": records, "beats": beats, "phantoms": phantoms},
        "ingest_loop": rates(loop_s, records, beats),
        "core_loop": rates(core_s, records, beats),
        "pipeline_1": rates(one_s, records, beats),
        "pipeline_2": rates(two_s, records, beats),
        "two_processes_vs_one": round(one_s / two_s, 2),
        "fixed_cost_s": {"pipeline_1": round(start_1, 2), "pipeline_2": round(start_2, 2),
                         "what": "a one-record run: runner set-up, worker start-up, the summary files"},
        "two_processes_vs_one_past_fixed_cost": round((one_s - start_1) / (two_s - start_2), 2),
        "pipeline_1_vs_ingest_loop": round(loop_s / one_s, 2),
        "pipeline_1_vs_core_loop": round(core_s / one_s, 2),
    }


def generation_figures(scratch: Path, n_records: int) -> dict:
    from echopulse.generator.echo_generator import EchoGenerator

    archive = scratch / "gen_archive"
    inputs = build_archive(archive, n_records, real=False)
    generator = EchoGenerator.from_pretrained()
    steps, guidance = generator.sampling_settings()
    loop_s, _ = timed(lambda: cli_loop("generate", inputs, scratch / "generate", "--format", "mp4"))
    figures = {"archive": {"records": len(inputs)}, "model": generator.model_id,
               "precision": generator.precision}
    clips = None
    for workers in (1, 2):
        choice = ModelChoice(precision=generator.precision, steps=steps, guidance=guidance,
                             torch_threads=max(1, 2 // workers))
        settings = ClipSettings(model=choice, max_batch=8)
        seconds, report = timed(lambda s=settings, w=workers: pipeline(archive, scratch / f"g{w}", w, s,
                                                                       generator.window_layout))
        clips = report.counters["clips"]
        figures[f"pipeline_generate_{workers}"] = rates(seconds, len(inputs), report.counters["beats"],
                                                        clips=clips, clips_per_s=round(clips / seconds, 2))
    beats = figures["pipeline_generate_1"]["beats"]
    figures["generate_loop"] = rates(loop_s, len(inputs), beats, clips=clips,
                                     clips_per_s=round(clips / loop_s, 2))
    one, two = (figures[f"pipeline_generate_{w}"]["seconds"] for w in (1, 2))
    figures["two_processes_vs_one"] = round(one / two, 2)
    figures["pipeline_1_vs_generate_loop"] = round(loop_s / one, 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantoms", type=int, default=2000, help="phantom records beside the real files")
    parser.add_argument("--generate-records", type=int, default=6, help="phantom records for --generate")
    parser.add_argument("--no-generate", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="echopulse-batch-bench-") as folder:
        scratch = Path(folder)
        result = {"cores": os.cpu_count(), "preprocess": preprocessing_figures(scratch, args.phantoms)}
        if not args.no_generate:
            result["generate"] = generation_figures(scratch, args.generate_records)
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()

"""Parse → windows for every beat of a real 30-s Apple Watch export, against neurokit2.ecg_process.

Prints JSON. The realtime factor is recording seconds per second of one core's wall time (BLAS and
OpenMP pinned to one thread); the neurokit2 figure runs in the same process on the same samples, so the
ratio holds on a noisy machine where absolute times do not.

    python benchmarks/preprocess.py [--file CSV] [--repeats 30]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")

import neurokit2 as nk  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402
from timing import median_seconds  # noqa: E402

from echopulse.ingest import read_record  # noqa: E402
from echopulse.preprocess.offline import preprocess_record  # noqa: E402

DEFAULT_FILE = Path(__file__).resolve().parents[1].parent / "shared/data/apple_watch/ecg_2021-12-17.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    record = read_record(args.file)
    signal = record.signal[0].astype(float)

    def ours() -> int:
        return len(preprocess_record(read_record(args.file)).windows)

    def parse_only() -> None:
        read_record(args.file)

    def neurokit_process() -> None:
        nk.ecg_process(signal, sampling_rate=record.fs)

    with threadpool_limits(limits=1):
        windows = ours()
        t_ours = median_seconds(ours, args.repeats)
        t_parse = median_seconds(parse_only, args.repeats)
        t_nk = median_seconds(neurokit_process, max(3, args.repeats // 5))
    report = {
        "file": args.file.name,
        "fs": record.fs,
        "duration_s": round(record.duration_s, 3),
        "windows": windows,
        "threads": 1,
        "parse_to_windows_ms": round(t_ours * 1e3, 2),
        "parse_only_ms": round(t_parse * 1e3, 2),
        "realtime_factor_per_core": round(record.duration_s / t_ours),
        "neurokit2_ecg_process_ms": round(t_nk * 1e3, 2),
        "speedup_vs_neurokit2_ecg_process": round(t_nk / t_ours, 2),
        "target_realtime_factor": 1000,
    }
    json.dump(report, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()

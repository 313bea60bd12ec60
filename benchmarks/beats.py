"""R-peak benchmark: every detector in `DETECTION_BANDS_HZ` against the reference beats, plus robustness.

    python benchmarks/beats.py [--methods neurokit kalidas2017 ...] [--out beats.json]

Accuracy: every WFDB record in ../shared/data/wfdb with a `.atr` beside its `.hea` (found at run time, so
new annotated records count without touching this file) is scored on its first lead against the beat
annotations only (wfdb's QRS symbols; rhythm changes '+', noise '~', comments '|' etc. are not beats),
one-to-one within ±50 ms. Robustness: on the unannotated WFDB records and the Apple Watch Health-app
exports there is nothing to score against, so the default detector's beat count, refusals, RR extremes
and median heart rate are reported for a human (or a test) to judge against physiology.

The signals are read with `wfdb`/NumPy directly so the benchmark measures the detector, not the readers.

At 130 Hz (a Polar H10's rate), same run: each annotated record's first lead resampled to 130 Hz and
scored offline with the default detector, and on the live path: the simulator's PMD frames (whole µV, 73
samples a frame, as the strap sends them) decoded and pushed frame by frame through the
`StreamingPreprocessor` the service runs; beside the native-rate score of the same detector.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import neurokit2 as nk
import numpy as np
import wfdb
from tqdm import tqdm
from wfdb.io.annotation import ann_labels, is_qrs

from echopulse.ecg import ECGRecord
from echopulse.evaluation.beat_matching import BeatMatch, match_beats
from echopulse.ingest.polar import H10_ECG_FS, EcgFrameStream
from echopulse.ingest.polar_simulator import record_frames
from echopulse.preprocess.beats import DEFAULT_METHOD, DETECTION_BANDS_HZ, Beat, find_beats
from echopulse.preprocess.resample import resample
from echopulse.preprocess.streaming import StreamingPreprocessor

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
TOLERANCE_S = 0.05
BEAT_SYMBOLS = frozenset(label.symbol for label in ann_labels if is_qrs[label.label_store])
"""Annotation symbols that mark a heartbeat, per wfdb's own table (N, V, A, L, R, /, f, Q, ...)."""


def wfdb_records(wfdb_dir: Path, annotated: bool) -> list[Path]:
    """Record paths (no suffix) with, or without, reference annotations (a `.atr` next to the `.hea`)."""
    heads = sorted(wfdb_dir.glob("*.hea"))
    return [hea.with_suffix("") for hea in heads if hea.with_suffix(".atr").exists() == annotated]


def first_lead(record_path: Path) -> tuple[np.ndarray, float, str]:
    """The first lead in mV, its sample rate and name, straight from `wfdb` (no echopulse reader)."""
    record = wfdb.rdrecord(str(record_path), channels=[0])
    return record.p_signal[:, 0].astype(np.float64), float(record.fs), record.sig_name[0]


def reference_beats(record_path: Path) -> np.ndarray:
    """Sample indices of the annotated heartbeats, leaving out rhythm, noise and comment labels."""
    annotation = wfdb.rdann(str(record_path), "atr")
    keep = [symbol in BEAT_SYMBOLS for symbol in annotation.symbol]
    return np.asarray(annotation.sample)[np.asarray(keep, dtype=bool)]


def read_health_csv(path: Path) -> tuple[np.ndarray, float]:
    """Lead I (mV) and rate of an Apple Health ECG export: `echopulse.ingest.read_record` when its
    Apple Watch reader is installed, else a minimal local parse (header down to `Unit`, then samples)."""
    try:
        from echopulse.ingest import read_record

        record = read_record(path)
        return record.signal[0].astype(np.float64), record.fs
    except ImportError:
        return _parse_health_csv(path)


def _parse_health_csv(path: Path) -> tuple[np.ndarray, float]:
    """Fallback parser for the English Health-app layout described in apple_watch/MANIFEST.md."""
    lines = path.read_text(encoding="utf-8").splitlines()
    fs = next(float(line.split(",", 1)[1].split()[0]) for line in lines if line.startswith("Sample Rate,"))
    unit_row = next(i for i, line in enumerate(lines) if line.startswith("Unit,"))
    scale = 1e-3 if "µV" in lines[unit_row] else 1.0
    samples = np.array([float(line) for line in lines[unit_row + 1 :] if line.strip()])
    return samples * scale, fs


def timed_beats(signal: np.ndarray, fs: float, method: str) -> tuple[list[Beat], float]:
    """Beats and the wall-clock seconds the detector took (reading the file is not counted)."""
    start = time.perf_counter()
    beats = find_beats(signal, fs, method)
    return beats, time.perf_counter() - start


def accuracy_entry(match: BeatMatch, seconds: float, method: str) -> dict:
    """One method's scores on one record, rounded for reading."""
    entry = {key: _round(value) for key, value in asdict(match).items()}
    return entry | {"seconds": round(seconds, 2), "default": method == DEFAULT_METHOD}


def robustness_entry(beats: list[Beat], duration_s: float, seconds: float) -> dict:
    """What can be checked without annotations: counts, refusals, RR range and the median rate.

    The median heart rate is over accepted beats, as `Preprocessed.hr_bpm` reports it."""
    rr = np.array([b.rr_s for b in beats if b.rr_s is not None])
    rates = [b.hr_bpm for b in beats if b.hr_bpm is not None and b.accepted]
    refused = sum(not b.accepted for b in beats)
    return {
        "duration_s": round(duration_s, 2),
        "beats": len(beats),
        "refused": refused,
        "refused_fraction": _round(refused / len(beats)) if beats else None,
        "rr_min_s": _round(rr.min()) if rr.size else None,
        "rr_max_s": _round(rr.max()) if rr.size else None,
        "rr_over_3s": int((rr > 3.0).sum()),
        "median_hr_bpm": _round(np.median(rates)) if rates else None,
        "seconds": round(seconds, 2),
    }


def score_methods(records: Sequence[Path], methods: Sequence[str], progress: tqdm) -> dict:
    """Per record, per method: TP/FP/FN, sensitivity, PPV, F1 and time on the first lead."""
    results = {}
    for path in records:
        signal, fs, lead = first_lead(path)
        reference = reference_beats(path) / fs
        per_method = {}
        for method in methods:
            progress.set_postfix_str(f"{path.name} {method}")
            beats, seconds = timed_beats(signal, fs, method)
            detected = np.array([b.r_peak_s for b in beats])
            per_method[method] = accuracy_entry(
                match_beats(detected, reference, TOLERANCE_S), seconds, method
            )
            progress.update()
        results[path.name] = {
            "lead": lead,
            "fs": fs,
            "duration_s": round(signal.size / fs, 2),
            "reference_beats": int(reference.size),
            "methods": per_method,
        }
    return results


def totals(accuracy: dict, methods: Sequence[str]) -> dict:
    """Gross scores per method over all annotated records (beats pooled, as EC57 reports them)."""
    pooled = {}
    for method in methods:
        runs = [record["methods"][method] for record in accuracy.values()]
        match = BeatMatch.from_counts(*(sum(run[key] for run in runs) for key in ("tp", "fp", "fn")))
        pooled[method] = accuracy_entry(match, sum(run["seconds"] for run in runs), method)
    return pooled


def polar_rate(records: Sequence[Path], progress: tqdm) -> dict:
    """Default-method F1 at the native rate, at 130 Hz offline, and at 130 Hz through PMD frames and the live
    preprocessor, per annotated record and pooled."""
    results, pooled = {}, {"native": [0, 0, 0], "offline_130": [0, 0, 0], "live_130": [0, 0, 0]}
    for path in records:
        progress.set_postfix_str(f"{path.name} at {H10_ECG_FS} Hz")
        signal, fs, lead = first_lead(path)
        reference = reference_beats(path) / fs
        native, _ = timed_beats(signal, fs, DEFAULT_METHOD)
        at_130 = resample(signal[np.newaxis, :], fs, H10_ECG_FS)[0]
        offline, offline_s = timed_beats(at_130, H10_ECG_FS, DEFAULT_METHOD)
        start = time.perf_counter()
        live = live_beats(ECGRecord(signal[np.newaxis, :].astype(np.float32), fs, (lead,)))
        live_s = time.perf_counter() - start
        entry = {}
        for name, beats, seconds in (("native", native, None), ("offline_130", offline, offline_s),
                                     ("live_130", live, live_s)):
            match = match_beats(np.array([b.r_peak_s for b in beats]), reference, TOLERANCE_S)
            entry[name] = {"f1": _round(match.f1), "tp": match.tp, "fp": match.fp, "fn": match.fn}
            if seconds is not None:
                entry[name]["seconds"] = round(seconds, 2)
            pooled[name] = [a + b for a, b in zip(pooled[name], (match.tp, match.fp, match.fn), strict=True)]
        results[path.name] = entry
        progress.update()
    f1 = {name: _round(BeatMatch.from_counts(*counts).f1) for name, counts in pooled.items()}
    return {"records": results, "pooled_f1": f1, "target_f1_at_130": 0.995}


def live_beats(record: ECGRecord) -> list[Beat]:
    """The record as a Polar H10 streams it, through the decoder and the service's preprocessor."""
    stream = EcgFrameStream()
    live = StreamingPreprocessor(H10_ECG_FS, ("I",))
    beats: list[Beat] = []
    for frame in record_frames(record):
        block = stream.push(frame.data)
        beats += live.push(block.samples_uv[np.newaxis, :] / 1000.0).beats
    return beats + live.finish().beats


def robustness(wfdb_records: Sequence[Path], csvs: Sequence[Path], progress: tqdm) -> dict:
    """Default-method robustness figures for recordings that have no reference annotations."""
    sources = [(f"wfdb/{p.name}", lambda p=p: first_lead(p)[:2]) for p in wfdb_records]
    sources += [(f"apple_watch/{p.name}", lambda p=p: read_health_csv(p)) for p in csvs]
    results = {}
    for name, load in sources:
        progress.set_postfix_str(name)
        signal, fs = load()
        beats, seconds = timed_beats(signal, fs, DEFAULT_METHOD)
        results[name] = {"fs": fs} | robustness_entry(beats, signal.size / fs, seconds)
        progress.update()
    return results


def _round(value: float | int | None, digits: int = 4) -> float | int | None:
    """JSON-friendly numbers: counts stay ints, undefined ratios (NaN) become null."""
    if value is None or isinstance(value, int | np.integer):
        return None if value is None else int(value)
    return None if np.isnan(value) else round(float(value), digits)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--methods", nargs="+", default=list(DETECTION_BANDS_HZ), choices=list(DETECTION_BANDS_HZ)
    )
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--data", type=Path, default=DATA, help="shared data folder (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    wfdb_dir = args.data / "wfdb"
    annotated, unannotated = wfdb_records(wfdb_dir, True), wfdb_records(wfdb_dir, False)
    csvs = sorted((args.data / "apple_watch").glob("ecg_*.csv"))
    total = len(annotated) * (len(args.methods) + 1) + len(unannotated) + len(csvs)
    with tqdm(total=total, desc="beats", file=sys.stderr) as progress:
        accuracy = score_methods(annotated, args.methods, progress)
        at_130 = polar_rate(annotated, progress)
        robust = robustness(unannotated, csvs, progress)
    report = {
        "default_method": DEFAULT_METHOD,
        "tolerance_s": TOLERANCE_S,
        "lead": "first lead of each record",
        "reference_symbols": sorted(BEAT_SYMBOLS),
        "accuracy": accuracy,
        "accuracy_pooled": totals(accuracy, args.methods),
        "polar_h10_rate": at_130,
        "robustness_default_method": robust,
        "versions": {
            "python": platform.python_version(),
            "neurokit2": nk.__version__,
            "wfdb": wfdb.__version__,
        },
    }
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Seconds per Apple Watch PDF page, per 3000-px strip image and per ECG in a Health export.zip.

Prints JSON. The PDFs and the zip are built from the real Apple Watch CSVs in ../shared/data with the
same builders the tests use; the strip image is the ECHOPulse authors' own `ecg_page_2.png` (2972 px).
Each figure sits beside the time to read the source CSV itself in the same run, so ratios survive a noisy
machine.

    python benchmarks/documents.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO / "tests"))

from apple_pdf import build_apple_watch_pdf  # noqa: E402
from timing import median_seconds  # noqa: E402

from echopulse.ingest import read_record, read_records  # noqa: E402


def build_export_zip(csvs: list[Path], path: Path, copies: int) -> int:
    """A Health-style export.zip holding `copies` of every CSV; returns the number of ECGs in it."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("apple_health_export/export.xml", "<HealthData locale='en_US'></HealthData>\n")
        for k in range(copies):
            for csv in csvs:
                name = f"apple_health_export/electrocardiograms/{csv.stem}_{k}.csv"
                archive.writestr(name, csv.read_bytes())
    return copies * len(csvs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    csvs = sorted((SHARED_DATA / "apple_watch").glob("ecg_*.csv"))
    strip = SHARED_DATA / "echopulse" / "ecg_page_2.png"
    report: dict[str, object] = {"repeats": args.repeats}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        pdfs = [build_apple_watch_pdf(csv, work / f"{csv.stem}.pdf") for csv in csvs]
        t_csv = statistics.mean(median_seconds(lambda c=c: read_record(c), args.repeats) for c in csvs)
        t_pdf = statistics.mean(median_seconds(lambda p=p: read_record(p), args.repeats) for p in pdfs)
        t_strip = median_seconds(lambda: read_record(strip), args.repeats)
        export = work / "export.zip"
        n_ecgs = build_export_zip(csvs, export, copies=10)
        t_zip = median_seconds(lambda: list(read_records(export)), max(1, args.repeats // 2))
    report.update(
        {
            "csv_s_per_file": round(t_csv, 4),
            "pdf_s_per_page": round(t_pdf, 4),
            "pdf_vs_csv": round(t_pdf / t_csv, 1),
            "strip_image": {"file": strip.name, "s_per_image": round(t_strip, 4)},
            "strip_vs_csv": round(t_strip / t_csv, 1),
            "zip": {"ecgs": n_ecgs, "s_per_ecg": round(t_zip / n_ecgs, 4)},
            "zip_ecg_vs_csv": round(t_zip / n_ecgs / t_csv, 2),
        }
    )
    json.dump(report, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()

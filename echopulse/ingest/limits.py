"""Explicit limits on what a reader accepts.

They keep a hostile or broken file from exhausting memory and keep absurd values (a zero sample rate, a
recording in volts declared as microvolts) from reaching the model. A file beyond a limit is an
`IngestError`, never a truncated record.
"""

from __future__ import annotations

MAX_FILE_BYTES = 512 * 1024 * 1024
"""Largest file a reader opens (a 30-min 12-lead WFDB record at 1 kHz is about 43 MB)."""

MAX_ARCHIVE_BYTES = 16 * 1024**3
"""Largest Health export.zip opened: its export.xml alone can be gigabytes, but only the ECG members are
ever read (each under its own limits in `health_export.py`), so the archive itself may be large."""

MAX_DURATION_S = 6 * 3600.0
"""Longest recording accepted: six hours, so a 24-hour Holter must be split before ingest."""

MIN_FS = 100.0
"""Below 100 Hz a QRS complex is too few samples to locate an R-peak within 10 ms."""

MAX_FS = 10_000.0

MAX_LEADS = 32

MIN_DURATION_S = 1.0
"""Shorter than one second holds no full heartbeat."""

MAX_ABS_MV = 50.0
"""ECG amplitudes are a few millivolts; a 99.9th percentile above this means the units are wrong."""

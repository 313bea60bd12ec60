"""Pickled NumPy arrays (ST-MEM data sets, ECHOPulse ECG traces) without trusting the pickle.

Unpickling runs whatever callable the file names, so a plain `pickle.load` on an uploaded `.pkl` is code
execution. `SafeUnpickler` resolves only the handful of NumPy globals an array pickle needs (and a
Latin-1-only stand-in for `_codecs.encode`, which protocol-2 pickles use for raw bytes); any other global,
`os.system` or `builtins.eval` included, stops the load before anything is called.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from echopulse.ecg import ECGRecord
from echopulse.errors import IngestError
from echopulse.ingest.numpy_arrays import array_record
from echopulse.ingest.validate import check_file_size, check_sample_rate

ECHOPULSE_TILES = 16
"""ECHOPulse tiles its one-cycle trace 16 times and squeezes the result into ST-MEM's 9-s window."""
ECHOPULSE_WINDOW_S = 9.0
_MAX_TRACE_SAMPLES = 4096
"""A 1-D, non-negative pickle up to this length is an ECHOPulse pixel trace (theirs hold 103–167)."""


def _core(module: str) -> Any:
    """NumPy's core module under its NumPy 2 name, falling back to NumPy 1's."""
    import importlib

    try:
        return importlib.import_module(f"numpy._core.{module}")
    except ImportError:  # NumPy 1.x
        return importlib.import_module(f"numpy.core.{module}")


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """`_codecs.encode` as protocol-2 array pickles use it; any other codec is refused."""
    if encoding.replace("-", "").replace("_", "").lower() not in {"latin1", "iso88591"}:
        raise pickle.UnpicklingError(f"codec {encoding!r} is not allowed")
    return text.encode("latin-1")


def _allowed() -> dict[tuple[str, str], Any]:
    multiarray, numeric = _core("multiarray"), _core("numeric")
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for package in ("numpy.core", "numpy._core"):
        table[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        table[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        table[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return table


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild NumPy arrays and nothing else."""

    def __init__(self, file: io.BufferedIOBase, source: str | Path) -> None:
        super().__init__(file)
        self._source = source
        self._allowed = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise IngestError(self._source, f"pickle refers to {module}.{name}, refusing to load") from None

    def persistent_load(self, pid: Any) -> Any:
        raise IngestError(self._source, "pickle uses persistent ids, refusing to load")


def load_pickled_array(path: str | Path) -> np.ndarray:
    """The numeric NumPy array a pickle holds; anything else (other globals, object arrays) is refused."""
    source = check_file_size(Path(path))
    with source.open("rb") as handle:
        try:
            value = SafeUnpickler(handle, source).load()
        except IngestError:
            raise
        except Exception as error:  # a corrupt pickle can fail in many ways; none of them is a crash
            raise IngestError(source, f"not a readable pickle: {type(error).__name__}: {error}") from error
    if type(value) is not np.ndarray:
        raise IngestError(source, f"pickle holds a {type(value).__name__}, not a NumPy array")
    if value.dtype.hasobject or value.dtype.kind not in "iuf":
        raise IngestError(source, f"pickled array has dtype {value.dtype}, not numbers")
    return value


def read_pickle(path: str | Path, fs: float | None = None) -> ECGRecord:
    """An ST-MEM (leads × samples) array in mV, or an ECHOPulse one-cycle pixel trace.

    Neither format stores its rate: an ST-MEM array needs `fs`; an ECHOPulse trace gets the rate its
    preprocessing implies unless `fs` is given.
    """
    source = Path(path)
    array = load_pickled_array(source)
    if is_echopulse_trace(array):
        return _pixel_trace_record(source, array, fs)
    return array_record(source, array, fs, source_format="pickle")


def is_echopulse_trace(array: np.ndarray) -> bool:
    """ECHOPulse's ECG input: one short, non-negative 1-D trace in screen pixels (never mV)."""
    return array.ndim == 1 and 0 < array.size <= _MAX_TRACE_SAMPLES and float(array.min()) >= 0.0


def _pixel_trace_record(source: Path, trace: np.ndarray, fs: float | None) -> ECGRecord:
    """The trace tiled as ECHOPulse tiles it, so the record spans its 9-s window and passes the limits.

    The amplitude stays in pixels: there is no calibration to turn it into mV. The untouched cycle is
    `signal[:, :meta["echopulse_cycle_samples"]]`.
    """
    implied = trace.size / (ECHOPULSE_WINDOW_S / ECHOPULSE_TILES)
    rate = check_sample_rate(source, float(fs) if fs is not None else implied)
    meta = {
        "units": "pixel",
        "echopulse_pixel_trace": True,
        "echopulse_cycle_samples": int(trace.size),
        "echopulse_tiles": ECHOPULSE_TILES,
        "fs_assumed": fs is None,
        "lead_assumed": True,
    }
    if fs is None:
        meta["fs_note"] = (
            f"no rate in the file; {implied:.4g} Hz is what ECHOPulse implies "
            f"({ECHOPULSE_TILES} copies of the cycle in {ECHOPULSE_WINDOW_S:g} s)"
        )
    return ECGRecord(
        signal=np.tile(trace.astype(np.float32), ECHOPULSE_TILES)[np.newaxis, :],
        fs=rate,
        leads=("II",),
        source_format="pickle",
        meta=meta,
    )

"""ST-MEM windows: the input contract, offline = live, the ECHOPulse compat layout, padding and memory."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from scipy import signal as sps

from echopulse.ecg import canonical_lead
from echopulse.ingest import ECGRecord, read_record
from echopulse.preprocess.compat import echopulse_ecg_input
from echopulse.preprocess.offline import preprocess_record
from echopulse.preprocess.resample import rational_ratio, resample
from echopulse.preprocess.streaming import StreamingPreprocessor
from echopulse.preprocess.windows import lead_layout


@pytest.fixture(scope="module")
def watch_record(shared_data: Path) -> ECGRecord:
    return read_record(shared_data / "apple_watch" / "ecg_2021-12-17.csv")


@pytest.fixture(scope="module")
def mitbih_60s(shared_data: Path) -> ECGRecord:
    record = read_record(shared_data / "wfdb" / "100.hea")
    n = round(60 * record.fs)
    return ECGRecord(signal=record.signal[:, :n], fs=record.fs, leads=record.leads, source_format="wfdb")


def plain_scipy_window(record: ECGRecord, r_peak: int) -> np.ndarray:
    """ST-MEM's recipe written out with nothing but scipy: 10 s before and 1 s after the R-peak of raw
    signal, resample_poly to 250 Hz, Butterworth(5, 0.67–40 Hz) sosfiltfilt, the 2250 samples that end at
    the R-peak, one z-score over the present leads."""
    fs = record.fs
    start, stop = r_peak - math.ceil(10 * fs), r_peak + math.ceil(fs) + 1
    raw = record.signal[:, start:stop].astype(np.float64)
    up, down = rational_ratio(fs)
    x = sps.resample_poly(raw, up, down, axis=-1)
    sos = sps.butter(5, [0.67, 40], btype="bandpass", fs=250, output="sos")
    x = sps.sosfiltfilt(sos, x, axis=-1)
    end = round((r_peak - start) * up / down)
    x = x[:, end - 2249 : end + 1]
    return (x - x.mean()) / x.std()


@pytest.mark.parametrize("fixture", ["watch_record", "mitbih_60s"])
def test_window_matches_plain_scipy_recipe(fixture: str, request: pytest.FixtureRequest) -> None:
    record: ECGRecord = request.getfixturevalue(fixture)
    result = preprocess_record(record)
    checked = 0
    for window, beat in zip(result.windows, result.beats, strict=True):
        margins_inside = beat.r_peak - math.ceil(10 * record.fs) >= 0 and (
            beat.r_peak + math.ceil(record.fs) + 1 <= record.n_samples
        )
        if not margins_inside:
            continue
        expected = plain_scipy_window(record, beat.r_peak)
        slots = [slot for _, slot in lead_layout(record.leads)]
        np.testing.assert_allclose(window.signal[slots], expected, atol=2e-5)
        assert not window.signal[[s for s in range(12) if s not in slots]].any()
        assert window.lead_mask.tolist() == [s in slots for s in range(12)]
        checked += 1
    assert checked >= 10


def test_single_lead_watch_fills_lead_i_slot(watch_record: ECGRecord) -> None:
    window = preprocess_record(watch_record).windows[-1]
    assert window.signal.shape == (12, 2250) and window.signal.dtype == np.float32
    assert window.lead_mask.tolist() == [True] + [False] * 11
    assert window.signal[0].std() == pytest.approx(1.0, abs=1e-4)


def test_mv_layout_keeps_the_amplitude_that_the_z_score_erases(watch_record: ECGRecord) -> None:
    """A real watch trace and the same trace at half the voltage: the z-scored windows cannot tell them apart
    (a low-voltage QRS is invisible to them); the mV windows halve, and z-scored they are the ST-MEM ones."""
    half = ECGRecord(signal=watch_record.signal * 0.5, fs=watch_record.fs, leads=watch_record.leads,
                     source_format=watch_record.source_format)  # fmt: skip
    z_full, z_half = (preprocess_record(r, layout="stmem").windows[-1].signal for r in (watch_record, half))
    mv_full, mv_half = (preprocess_record(r, layout="mv").windows for r in (watch_record, half))
    np.testing.assert_allclose(z_full, z_half, atol=1e-5)
    np.testing.assert_allclose(mv_half[-1].signal, 0.5 * mv_full[-1].signal, atol=1e-6)
    lead_i = mv_full[-1].signal[0]
    assert mv_full[-1].layout == "mv" and 0.3 < np.ptp(lead_i) < 5.0  # a watch QRS spans about a millivolt
    np.testing.assert_allclose(lead_i / lead_i.std(), z_full[0], atol=1e-4)
    assert abs(float(lead_i.mean())) < 1e-6


@pytest.mark.parametrize("fixture", ["watch_record", "mitbih_60s"])
def test_streaming_in_random_chunks_equals_offline(fixture: str, request: pytest.FixtureRequest) -> None:
    record: ECGRecord = request.getfixturevalue(fixture)
    offline = preprocess_record(record)
    live = StreamingPreprocessor(record.fs, record.leads)
    rng = np.random.default_rng(20261125)
    beats, windows, position = [], [], 0
    while position < record.n_samples:
        size = int(rng.integers(1, 4097))
        out = live.push(record.signal[:, position : position + size])
        beats += out.beats
        windows += out.windows
        position += size
    tail = live.finish()
    beats += tail.beats
    windows += tail.windows
    assert len(offline.beats) >= 40 if record.duration_s >= 60 else len(offline.beats) >= 25
    assert beats == offline.beats
    assert len(windows) == len(offline.windows)
    for got, want in zip(windows, offline.windows, strict=True):
        np.testing.assert_allclose(got.signal, want.signal, atol=1e-6)
        np.testing.assert_array_equal(got.r_peaks_s, want.r_peaks_s)
        assert (got.accepted, got.padded, got.pad_samples) == (want.accepted, want.padded, want.pad_samples)


def test_windows_end_at_their_r_peak_and_list_the_beats_inside(watch_record: ECGRecord) -> None:
    result = preprocess_record(watch_record)
    times = np.array([b.r_peak_s for b in result.beats])
    for window, beat in zip(result.windows, result.beats, strict=True):
        assert window.end_s == beat.r_peak_s
        assert window.r_peaks_s[-1] == beat.r_peak_s
        assert np.array_equal(window.r_peaks_s, times[(times > beat.r_peak_s - 9) & (times <= beat.r_peak_s)])
        # The band-passed R-peak is the window's last sample (within the 4-ms grid and 2 samples of
        # filter smoothing), and it towers over the window.
        lead = window.signal[0]
        assert np.argmax(lead[-40:]) >= 40 - 4
        assert lead[-4:].max() > 2.5


def test_first_windows_are_padded_and_flagged(watch_record: ECGRecord) -> None:
    result = preprocess_record(watch_record)
    for window in result.windows:
        missing = max(0, round((9 - window.end_s) * 250))
        assert window.padded == (missing > 0)
        assert abs(window.pad_samples - missing) <= 1
        assert not window.signal[:, : window.pad_samples].any()
        if window.padded:
            assert window.signal[0, window.pad_samples :].std() == pytest.approx(1.0, abs=1e-3)
    assert result.windows[0].padded and not result.windows[-1].padded


def test_compat_layout_reproduces_official_echopulse_preprocessing(shared_data: Path) -> None:
    fixture = shared_data.parent / "compat" / "ecg_preproc.io.safetensors"
    with safe_open(str(fixture), "np") as tensors:
        for i in (0, 1):
            raw, expected = tensors.get_tensor(f"raw_{i}"), tensors.get_tensor(f"processed_lead1_{i}")
            out = echopulse_ecg_input(raw)
            np.testing.assert_allclose(out[1], expected, rtol=0, atol=1e-12)
            assert not np.delete(out, 1, axis=0).any()


def test_compat_windows_hold_one_cycle_in_lead_ii(watch_record: ECGRecord) -> None:
    result = preprocess_record(watch_record, layout="compat")
    window, beat = result.windows[5], result.beats[5]
    previous = result.beats[4]
    cycle = watch_record.signal[0, previous.r_peak : beat.r_peak]
    np.testing.assert_allclose(window.signal, echopulse_ecg_input(cycle).astype(np.float32))
    assert window.lead_mask.tolist() == [s == 1 for s in range(12)]
    assert window.layout == "compat"


def test_resample_uses_the_declared_rate_exactly() -> None:
    assert rational_ratio(513.625) == (2000, 4109)
    up, down = rational_ratio(512.508)
    assert up / down * 512.508 == pytest.approx(250.0, rel=1e-15)
    x = np.random.default_rng(1).normal(size=(2, 5000))
    np.testing.assert_array_equal(resample(x, 513.625), sps.resample_poly(x, 2000, 4109, axis=-1))
    assert resample(x, 500.0).shape == (2, 2500)


@pytest.mark.parametrize("fs", [512.508, 130.0, 360.0, 1000.0])
def test_the_cached_resampling_map_is_scipys_resample_poly(fs: float) -> None:
    """Windows go through a sparse matrix cached per rate and length; it must be `resample_poly` exactly,
    for a watch's 2.5-million-tap ratio, a strap's upsampling, and on signals too long for a matrix."""
    up, down = rational_ratio(fs)
    rng = np.random.default_rng(round(fs))
    for n in (round(11 * fs) + 1, 7, 40 * 60 * round(fs)):  # a window, a scrap, a 40-min record
        x = rng.normal(size=(3, n)) if n < 100_000 else rng.normal(size=n)
        expected = sps.resample_poly(x, up, down, axis=-1)
        np.testing.assert_array_equal(resample(x, fs), expected)


def test_lead_names_map_to_stmem_slots() -> None:
    assert [canonical_lead(n) for n in ("Lead I", "MLII", "avf", "V5", "v1", "ECG 1", "vx")] == [
        "I", "II", "aVF", "V5", "V1", None, None,
    ]  # fmt: skip
    assert lead_layout(("MLII", "V5")) == [(0, 1), (1, 10)]
    assert lead_layout(("ECG 1", "ECG 2")) == [(0, 0)]
    # A 12-lead record, rows in any order: every lead gets its own slot, in ST-MEM's order I … aVF, V1 … V6.
    standard = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    assert lead_layout(standard[::-1]) == [(row, 11 - row) for row in range(12)]


def test_streaming_memory_stays_bounded(shared_data: Path) -> None:
    """Ten minutes of a live stream leave the preprocessor holding no more than two minutes did: a ring of
    recent samples and beats, not the stream. What it holds is measured as its pickled state, which (unlike
    allocator figures) is exact and the same on every run."""
    record = read_record(shared_data / "wfdb" / "106.hea")
    live = StreamingPreprocessor(record.fs, record.leads)
    chunk = round(record.fs)  # one second at a time, ten minutes
    held = []
    for start in range(0, 600 * chunk, chunk):
        live.push(record.signal[:, start : start + chunk])
        held.append(len(pickle.dumps(live)))
    # The buffers trim in large steps, so what is held swings within a band; the band must not move up.
    # Keeping the 8 later minutes would add 1.4 MB of raw samples, or ~35 kB of beats alone.
    first_two_minutes, later = max(held[:120]), max(held[120:])
    assert later - first_two_minutes < 4096, (first_two_minutes, later)


def test_noise_burst_beats_are_refused_with_a_reason(watch_record: ECGRecord) -> None:
    noisy = watch_record.signal.copy()
    rng = np.random.default_rng(7)
    a, b = round(15 * watch_record.fs), round(17 * watch_record.fs)
    noisy[0, a:b] += rng.normal(scale=0.8, size=b - a).astype(np.float32)
    record = ECGRecord(signal=noisy, fs=watch_record.fs, leads=watch_record.leads)
    result = preprocess_record(record)
    refused = [beat for beat in result.beats if not beat.accepted]
    assert refused, "a 2-s burst of 0.8-mV noise must refuse beats"
    assert all(14.5 < beat.r_peak_s < 17.5 for beat in refused)
    assert all(beat.reason and "r=" in beat.reason for beat in refused)
    clean = preprocess_record(watch_record)
    assert all(beat.accepted for beat in clean.beats)


def test_echopulse_pickle_reads_into_the_official_input(shared_data: Path) -> None:
    """An ECHOPulse ECG pickle, read by the safe unpickler and laid out as `compat`, is the very array the
    official code fed its model."""
    name = "A2C.USm.1.2.840.114089.1.0.1.2887499449.1641693197.4144.604080_1_27.pkl"
    record = read_record(shared_data / "echopulse" / name)
    cycle = record.signal[0, : record.meta["echopulse_cycle_samples"]]
    fixture = shared_data.parent / "compat" / "ecg_preproc.io.safetensors"
    with safe_open(str(fixture), "np") as tensors:
        np.testing.assert_array_equal(cycle, tensors.get_tensor("raw_0").astype(np.float32))
        np.testing.assert_allclose(
            echopulse_ecg_input(cycle)[1], tensors.get_tensor("processed_lead1_0"), atol=1e-12
        )

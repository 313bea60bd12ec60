"""A simulated Polar H10 into the real service (uvicorn on loopback, the bundled model): the strap's PMD
frames, paced as it sends them, through the decoder and the websocket must give the beats `echopulse
ingest` finds in the same recording at 130 Hz (within one sample), and on MIT-BIH 100 the annotated beats
(F1 ≥ 0.995, as at the native 360 Hz)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
import wfdb
from interrupts import interrupt_on_first_ack
from live_server import running_server
from wfdb.io.annotation import ann_labels, is_qrs

from echopulse.cli import main
from echopulse.ecg import ECGRecord
from echopulse.evaluation.beat_matching import match_beats
from echopulse.ingest import read_record
from echopulse.ingest.polar import H10_ECG_FS
from echopulse.ingest.polar_link import ecg_chunks, simulated_link
from echopulse.ingest.polar_simulator import h10_samples_uv, record_frames
from echopulse.streaming.client import stream_chunks

TOKEN = "polar-test-token"
WATCH = Path("apple_watch") / "ecg_2021-12-17.csv"
MITBIH_SECONDS = 300
MITBIH_SPEED = 25
"""Five minutes at 25× real time: 12 s of streaming. (At 100× a busy server falls more than its 30-s
backlog behind and closes the session as overloaded, as it should.)"""


@pytest.fixture(scope="module")
def server(one_torch_thread):
    from echopulse.generator.echo_generator import EchoGenerator
    from echopulse.streaming.app import ServiceSettings

    generator = EchoGenerator.from_pretrained(device="cpu")
    with running_server(generator, ServiceSettings(token=TOKEN)) as running:
        yield running


@pytest.fixture(scope="module")
def streamed(server, shared_data: Path, tmp_path_factory) -> tuple[int, Path]:
    out = tmp_path_factory.mktemp("polar") / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ECHOPULSE_TOKEN", TOKEN)
        code = main(["stream", "--simulated-h10", str(shared_data / WATCH), "--url", server.ws_url,
                     "--speed", "20", "--out", str(out), "--seed", "5"])
    return code, out


def test_the_simulated_strap_streams_to_its_end(streamed, shared_data: Path) -> None:
    code, out = streamed
    assert code == 0
    document = json.loads((out / "stream.json").read_text(encoding="utf-8"))
    samples = h10_samples_uv(read_record(shared_data / WATCH)).size
    assert document["source"] == "simulated Polar H10 (ecg_2021-12-17.csv)"
    assert document["fs"] == H10_ECG_FS and document["leads"] == ["I"]
    assert document["samples_sent"] == document["acknowledged"] == document["end"]["received"] == samples
    assert document["device"] == {} and document["source_error"] is None
    assert not document["interrupted"] and not document["problems"]
    assert document["clips"], "no beat got a clip"
    for beat in document["beats"]:
        assert (beat["clip"] is None) != (beat["skipped"] is None), beat


def test_live_beats_are_ingests_beats_of_the_130_hz_recording(streamed, shared_data: Path,
                                                               tmp_path: Path) -> None:
    recording = tmp_path / "h10.csv"
    duration = read_record(shared_data / WATCH).duration_s
    assert main(["record", "--simulated-h10", str(shared_data / WATCH), "--seconds", f"{duration:.3f}",
                 "--speed", "60", "--out", str(recording)]) == 0
    assert main(["ingest", str(recording), "--out", str(tmp_path / "ingest")]) == 0
    offline = json.loads((tmp_path / "ingest" / "beats.json").read_text(encoding="utf-8"))["beats"]
    live = json.loads((streamed[1] / "stream.json").read_text(encoding="utf-8"))["beats"]
    assert len(live) == len(offline) > 20
    for event, beat in zip(live, offline, strict=True):
        assert event["index"] == beat["index"]
        assert abs(event["t"] - beat["r_peak_s"]) * H10_ECG_FS <= 1.0 + 1e-6, (event, beat)


def test_mitbih_100_at_130_hz_on_the_live_path_keeps_its_beats(server, shared_data: Path) -> None:
    """Five minutes of MIT-BIH 100 as an H10 would stream it (130 Hz, whole µV, 73-sample frames)."""
    path = shared_data / "wfdb" / "100"
    source = wfdb.rdrecord(str(path), channels=[0], sampto=MITBIH_SECONDS * 360)
    record = ECGRecord(signal=source.p_signal.T.astype(np.float32), fs=float(source.fs), leads=("II",))
    annotation = wfdb.rdann(str(path), "atr", sampto=MITBIH_SECONDS * 360)
    symbols = {label.symbol for label in ann_labels if is_qrs[label.label_store]}
    beats = [s for s, sym in zip(annotation.sample, annotation.symbol, strict=True) if sym in symbols]
    reference = np.asarray(beats) / 360.0

    async def run():
        chunks = ecg_chunks(simulated_link(record_frames(record), speed=MITBIH_SPEED))
        return await stream_chunks(server.ws_url, chunks, H10_ECG_FS, units="uV", token=TOKEN)

    result = asyncio.run(run())
    assert result.end is not None and result.final_ack == result.samples_sent
    detected = np.array([b.t for b in result.beats])
    # the live path closes a beat causally: the stream's last seconds may hold a beat not closed yet
    end = MITBIH_SECONDS - 2.0
    match = match_beats(detected[detected < end], reference[reference < end], tolerance=0.05)
    assert match.f1 >= 0.995, match


def test_ctrl_c_ends_a_live_stream_politely_with_exit_0(server, shared_data: Path, tmp_path: Path, capsys,
                                                        monkeypatch) -> None:
    """A live source has no end of its own: Ctrl-C is how it ends, so the stream stops politely (the server
    still says end) and the command exits 0 with what came."""
    interrupt_on_first_ack(monkeypatch)
    out = tmp_path / "out"
    code = main(["stream", "--simulated-h10", str(shared_data / WATCH), "--url", server.ws_url,
                 "--token", TOKEN, "--out", str(out)])
    assert code == 0
    assert capsys.readouterr().out.startswith("simulated Polar H10 (ecg_2021-12-17.csv): ")
    document = json.loads((out / "stream.json").read_text(encoding="utf-8"))
    assert document["interrupted"] and document["end"] is not None
    assert 0 < document["samples_sent"] == document["acknowledged"] == document["end"]["received"]


def test_seconds_limits_a_live_stream(server, shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["stream", "--simulated-h10", str(shared_data / WATCH), "--url", server.ws_url,
                 "--token", TOKEN, "--seconds", "5", "--speed", "10", "--out", str(out)])
    assert code == 0
    document = json.loads((out / "stream.json").read_text(encoding="utf-8"))
    assert document["samples_sent"] == document["acknowledged"] == 5 * H10_ECG_FS
    assert not document["interrupted"]


def test_a_strap_gone_silent_ends_the_stream_politely_with_its_reason(server, shared_data: Path) -> None:
    frames = record_frames(read_record(shared_data / WATCH))
    silent_after = [f for k, f in enumerate(frames) if not 20 <= k < 26]  # 3.4 s lost after 14.6 s

    async def run():
        chunks = ecg_chunks(simulated_link(silent_after, speed=20))
        return await stream_chunks(server.ws_url, chunks, H10_ECG_FS, units="uV", token=TOKEN)

    result = asyncio.run(run())
    assert result.source_error is not None and "stopped for 3.4 s" in result.source_error
    assert result.end is not None and result.samples_sent == 20 * 73 == result.final_ack
    assert result.beats and not result.unanswered()  # the beats already sent were all answered

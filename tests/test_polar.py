"""Polar H10 without the strap: the PMD decoder on the simulator's frames and on malformed ones, the control
commands, the Bluetooth link driven through a stand-in for bleak that behaves as a strap does, and
`echopulse record` writing a CSV every other command reads."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from pmd_frames import malformed_frames

from echopulse.cli import main
from echopulse.ingest import read_record
from echopulse.ingest.polar import (
    ECG_STOP_COMMAND,
    H10_ECG_FS,
    PMD_CONTROL,
    PMD_DATA,
    EcgFrameStream,
    PmdControlError,
    PmdFrameError,
    check_control_response,
    decode_frame,
    ecg_start_command,
)
from echopulse.ingest.polar_link import PolarLinkError, ecg_chunks, h10_link, simulated_link
from echopulse.ingest.polar_simulator import (
    encode_frame,
    h10_samples_uv,
    record_frames,
)

WATCH = Path("apple_watch") / "ecg_2021-12-17.csv"


@pytest.fixture(scope="module")
def watch_record(shared_data: Path):
    return read_record(shared_data / WATCH)


def test_simulated_frames_decode_to_the_h10_samples(watch_record) -> None:
    frames = record_frames(watch_record)
    expected = h10_samples_uv(watch_record)
    assert abs(expected.size - watch_record.duration_s * H10_ECG_FS) <= 1
    assert {len(f.data) for f in frames[:-1]} == {229}  # the H10's 73-sample frames
    stream = EcgFrameStream()
    blocks = [stream.push(f.data) for f in frames]
    assert all(b.gap == 0 for b in blocks)
    assert np.array_equal(np.concatenate([b.samples_uv for b in blocks]), expected)
    # the samples are the record's, in µV at 130 Hz: the same ECG, not just the same length
    assert 300 < np.percentile(np.abs(expected - np.median(expected)), 99) < 5000
    stamps = [decode_frame(f.data).timestamp_ns for f in frames]
    assert np.allclose(np.diff(stamps)[:-1], 73 / H10_ECG_FS * 1e9, atol=1)
    assert frames[1].due_s == pytest.approx(145 / H10_ECG_FS)


def test_int24_samples_keep_their_sign_and_range() -> None:
    values = np.array([0, 1, -1, 8_388_607, -8_388_608, 123_456, -654_321], dtype=np.int32)
    frame = decode_frame(encode_frame(values, 10**9))
    assert np.array_equal(frame.samples_uv, values) and frame.timestamp_ns == 10**9
    with pytest.raises(ValueError):
        encode_frame(np.array([1 << 23]), 0)


def test_every_malformed_frame_is_refused_with_its_reason_and_the_stream_goes_on(watch_record) -> None:
    good = [f.data for f in record_frames(watch_record)]
    stream = EcgFrameStream()
    outcomes = []
    for data, _ in malformed_frames(good):
        try:
            block = stream.push(data)
        except PmdFrameError as error:
            outcomes.append(error.code)
            assert str(error).startswith("PMD")  # says what it is about, in one line
            assert "\n" not in str(error)
            continue
        outcomes.append(("gap", block.gap) if block.gap else None)
    expected = [e for _, e in malformed_frames(good)]
    expected[10] = ("gap", 73)
    assert outcomes == expected
    assert stream.gaps == 1 and stream.missing == 73 and stream.samples == 3 * 73
    assert sum(stream.refused.values()) == 9


def test_control_point_commands_and_answers() -> None:
    # the start command Polar documents for the H10's ECG: 130 Hz, 14-bit resolution
    assert ecg_start_command().hex() == "02000001820001010e00"
    assert ECG_STOP_COMMAND.hex() == "0300"
    answer = bytes([0xF0, 0x02, 0x00, 0x00, 0x00, 0x05, 0x01])
    assert check_control_response(answer, 0x02) == bytes([0x05, 0x01])
    with pytest.raises(PmdControlError, match="already in state"):
        check_control_response(bytes([0xF0, 0x02, 0x00, 0x06, 0x00]), 0x02)
    with pytest.raises(PmdControlError, match="not a PMD response"):
        check_control_response(bytes([0x0F, 0x05]), 0x02)


async def _collect(chunks) -> np.ndarray:
    return np.concatenate([block async for block in chunks])


def test_a_gap_is_held_and_reported_and_a_long_one_ends_the_stream(watch_record) -> None:
    frames = record_frames(watch_record)
    events: list[tuple[str, str]] = []
    lost_one = [f.data for k, f in enumerate(frames) if k != 3]

    async def stream(datas):
        for data in datas:
            yield data

    samples = asyncio.run(_collect(ecg_chunks(stream(lost_one), lambda *e: events.append(e))))
    truth = h10_samples_uv(watch_record)
    assert samples.size == truth.size  # the stream keeps its clock
    held = samples[3 * 73 : 4 * 73]
    assert np.all(held == truth[3 * 73 - 1])  # held at the last value, not invented
    assert np.array_equal(samples[4 * 73 :], truth[4 * 73 :])
    assert events == [("gap", "73 samples (0.56 s) lost, held at the last value")]

    lost_many = [f.data for k, f in enumerate(frames) if not 3 <= k < 8]
    with pytest.raises(PolarLinkError, match=r"stopped for 2\.8 s"):
        asyncio.run(_collect(ecg_chunks(stream(lost_many))))


class FakeStrap:
    """Stands in for bleak's scanner and client the way a Polar H10 answers them: the PMD start command is
    answered on the control point, then the data characteristic notifies the simulator's frames."""

    def __init__(self, frames: list[bytes], already_streaming: bool = False, present: bool = True,
                 drops_link: bool = False):
        self.frames, self.already, self.present, self.drops = frames, already_streaming, present, drops_link
        self.written: list[bytes] = []
        self.disconnected = False
        strap = self

        class Scanner:
            @staticmethod
            async def find_device_by_filter(filter_func, timeout):
                device = SimpleNamespace(name="Polar H10 ABCD1234", address="A0:9E:1A:00:00:01")
                advertisement = SimpleNamespace(local_name=device.name, service_uuids=[])
                return device if strap.present and filter_func(device, advertisement) else None

            @staticmethod
            async def find_device_by_address(address, timeout):
                return SimpleNamespace(name="Polar H10 ABCD1234", address=address) if strap.present else None

        class Client:
            def __init__(self, device, disconnected_callback=None):
                self.callbacks = {}
                self.is_connected = False
                self.on_disconnect = disconnected_callback

            async def connect(self):
                self.is_connected = True

            async def start_notify(self, uuid, callback):
                self.callbacks[uuid] = callback

            async def write_gatt_char(self, uuid, data, response=False):
                assert uuid == PMD_CONTROL and response
                strap.written.append(bytes(data))
                op = data[0]
                status = 0x06 if op == 0x02 and strap.already else 0x00
                if op == 0x03:
                    strap.already = False
                self.callbacks[PMD_CONTROL](None, bytearray([0xF0, op, 0x00, status, 0x00]))
                if op == 0x02 and status == 0:
                    asyncio.get_running_loop().create_task(self._notify())

            async def _notify(self):
                for frame in strap.frames:
                    await asyncio.sleep(0)
                    self.callbacks[PMD_DATA](None, bytearray(frame))
                if strap.drops:  # out of range: the link goes down
                    self.is_connected = False
                    self.on_disconnect(self)

            async def disconnect(self):
                strap.disconnected = True
                self.is_connected = False

        self.module = SimpleNamespace(BleakScanner=Scanner, BleakClient=Client)


def _through_link(strap: FakeStrap, monkeypatch, address=None, n_samples=None) -> tuple[np.ndarray, list]:
    monkeypatch.setattr("echopulse.ingest.polar_link._bleak", lambda: strap.module)
    events: list = []

    async def run():
        out = []
        async with h10_link(address, scan_timeout_s=1, on_event=lambda *e: events.append(e)) as frames:
            async for block in ecg_chunks(frames):
                out.append(block)
                if sum(map(len, out)) >= n_samples:
                    break
        return np.concatenate(out)

    return asyncio.run(run()), events


def test_the_link_starts_the_ecg_reads_frames_and_stops_the_strap(watch_record, monkeypatch) -> None:
    frames = [f.data for f in record_frames(watch_record)]
    truth = h10_samples_uv(watch_record)
    strap = FakeStrap(frames)
    samples, events = _through_link(strap, monkeypatch, n_samples=truth.size)
    assert np.array_equal(samples, truth)
    assert strap.written == [ecg_start_command(), ECG_STOP_COMMAND]  # stopped on the way out
    assert strap.disconnected
    assert events[0][0] == "connected" and "130 Hz" in events[0][1]


def test_a_strap_left_streaming_is_restarted(watch_record, monkeypatch) -> None:
    frames = [f.data for f in record_frames(watch_record)][:5]
    strap = FakeStrap(frames, already_streaming=True)
    samples, events = _through_link(strap, monkeypatch, address="A0:9E:1A:00:00:01", n_samples=5 * 73)
    assert samples.size == 5 * 73
    assert strap.written[:3] == [ecg_start_command(), ECG_STOP_COMMAND, ecg_start_command()]
    assert ("restart", "the strap was already streaming: stopped and started again") in events


def test_no_strap_and_no_bleak_are_said_in_one_line(monkeypatch) -> None:
    with pytest.raises(PolarLinkError, match=r"no Polar H10 found nearby within 1 s: wear the strap"):
        _through_link(FakeStrap([], present=False), monkeypatch, n_samples=1)
    monkeypatch.setattr("echopulse.ingest.polar_link._bleak", lambda: (_ for _ in ()).throw(
        PolarLinkError("a Polar H10 needs the bleak package: pip install 'echopulse[polar]'")))
    assert main(["record", "--polar", "--seconds", "1", "--out", "/tmp/never.csv"]) == 2


def test_bleak_offers_what_the_link_calls() -> None:
    import bleak  # the polar extra is part of the test set-up
    assert callable(bleak.BleakScanner.find_device_by_filter)
    assert callable(bleak.BleakScanner.find_device_by_address)
    for name in ("connect", "disconnect", "start_notify", "write_gatt_char", "is_connected"):
        assert hasattr(bleak.BleakClient, name), name


def test_record_writes_a_csv_every_command_reads(watch_record, shared_data: Path, tmp_path: Path,
                                                capsys) -> None:
    out = tmp_path / "h10.csv"
    code = main(["record", "--simulated-h10", str(shared_data / WATCH), "--seconds", "12", "--speed", "40",
                 "--out", str(out)])
    assert code == 0
    assert "12.0 s of ECG, 1560 samples at 130 Hz" in capsys.readouterr().out
    recording = read_record(out)
    assert recording.fs == 130 and recording.leads == ("I",)
    truth = h10_samples_uv(watch_record)[:1560] / 1000.0
    assert np.allclose(recording.signal[0], truth, atol=1e-6)
    assert out.read_text().splitlines()[0] == "time_s,I (uV)"
    assert main(["ingest", str(out), "--out", str(tmp_path / "ingested")]) == 0


def test_record_refuses_what_it_cannot_write(shared_data: Path, tmp_path: Path, capsys) -> None:
    assert main(["record", "--simulated-h10", str(shared_data / WATCH), "--seconds", "1",
                 "--out", str(tmp_path / "x.txt")]) == 2
    assert "name it *.csv" in capsys.readouterr().err
    assert main(["record", "--simulated-h10", str(tmp_path / "missing.csv"), "--seconds", "1",
                 "--out", str(tmp_path / "x.csv")]) == 2
    assert not (tmp_path / "x.csv").exists()


def test_the_simulated_link_paces_frames_as_the_strap_sends_them(watch_record) -> None:
    frames = record_frames(watch_record)[:8]

    async def arrival_times():
        loop = asyncio.get_running_loop()
        began, times = loop.time(), []
        async for _ in simulated_link(frames, speed=10):
            times.append(loop.time() - began)
        return times

    times = asyncio.run(arrival_times())
    due = [f.due_s / 10 for f in frames]
    assert all(t >= d - 0.01 for t, d in zip(times, due, strict=True))
    assert times[-1] < due[-1] + 2.0  # not late by more than a loaded machine explains


def test_a_strap_that_goes_quiet_ends_the_stream_and_is_still_stopped(watch_record, monkeypatch) -> None:
    frames = [f.data for f in record_frames(watch_record)][:3]
    strap = FakeStrap(frames)
    monkeypatch.setattr("echopulse.ingest.polar_link.SILENCE_S", 0.3)
    with pytest.raises(PolarLinkError, match=r"Polar H10 ABCD1234 sent no ECG for 0\.3 s"):
        _through_link(strap, monkeypatch, n_samples=10_000)
    assert strap.written[-1] == ECG_STOP_COMMAND and strap.disconnected


def test_a_lost_link_ends_the_stream_in_words(watch_record, monkeypatch) -> None:
    frames = [f.data for f in record_frames(watch_record)][:4]
    with pytest.raises(PolarLinkError, match=r"Polar H10 ABCD1234 disconnected \(out of range"):
        _through_link(FakeStrap(frames, drops_link=True), monkeypatch, n_samples=10_000)


def test_record_keeps_what_came_when_the_strap_goes_away(watch_record, monkeypatch, tmp_path: Path,
                                                         capsys) -> None:
    frames = [f.data for f in record_frames(watch_record)][:6]
    strap = FakeStrap(frames, drops_link=True)
    monkeypatch.setattr("echopulse.ingest.polar_link._bleak", lambda: strap.module)
    out = tmp_path / "cut.csv"
    assert main(["record", "--polar", "--seconds", "60", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "disconnected" in err and "3.4 s of the 60 s asked were recorded" in err
    recording = read_record(out)
    assert recording.signal.shape == (1, 6 * 73)
    assert np.allclose(recording.signal[0], h10_samples_uv(watch_record)[: 6 * 73] / 1000.0, atol=1e-6)

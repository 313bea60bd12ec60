"""The live service on a real server (uvicorn on 127.0.0.1): its HTTP routes, the websocket protocol with
every kind of bad input, auth, and what the engine does under load, failure and clients that misbehave.

A one-layer random model keeps these quick; the replay of a real watch export with the bundled model, beat
for beat against `echopulse ingest`, is in test_stream_client.py.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import threading
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from live_server import running_server
from random_model import save_random_model, thin_small_config
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from echopulse.generator.echo_generator import EchoGenerator
from echopulse.ingest import read_record
from echopulse.streaming.app import ServiceSettings
from echopulse.streaming.protocol import End
from echopulse.streaming.session import OUTBOX_CLIPS, SessionSettings

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def generator(tmp_path_factory) -> EchoGenerator:
    folder = tmp_path_factory.mktemp("model")
    save_random_model(folder, thin_small_config(), {"model_id": "random-svc"})
    return EchoGenerator.from_pretrained(folder, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def server(generator):
    with running_server(generator, ServiceSettings(max_batch=4, max_wait_ms=20)) as running:
        yield running


@pytest.fixture(scope="module")
def watch(shared_data: Path):
    return read_record(shared_data / "apple_watch" / "ecg_2021-12-17.csv")


def receive_json(ws, timeout: float = 30.0) -> dict:
    while True:
        message = ws.recv(timeout=timeout)
        if isinstance(message, str):
            return json.loads(message)


def start(ws, **fields) -> dict:
    ws.send(json.dumps({"type": "start", "fs": 513.625, "lead": "I", "units": "mV", "seed": 1, **fields}))
    return receive_json(ws)


def errors_until_quiet(ws, seconds: float = 1.0) -> list[dict]:
    found, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            message = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            break
        if isinstance(message, str) and json.loads(message)["type"] == "error":
            found.append(json.loads(message))
    return found


def finish(ws) -> tuple[End, list[dict], dict[int, bytes]]:
    """Send stop; every message until `end`, and the clips' bytes by beat."""
    ws.send(json.dumps({"type": "stop"}))
    messages, clips, expect = [], {}, None
    while True:
        message = ws.recv(timeout=60)
        if isinstance(message, bytes):
            assert expect is not None and len(message) == expect["bytes"]
            clips[expect["beat"]] = message
            expect = None
            continue
        data = json.loads(message)
        messages.append(data)
        if data["type"] == "clip":
            expect = data
        if data["type"] == "end":
            return End(**data), messages, clips


def send_record(ws, signal: np.ndarray, fs: float, seconds: float, chunk_s: float = 0.25) -> int:
    step = round(fs * chunk_s)
    n = round(seconds * fs)
    for begin in range(0, n, step):
        ws.send(signal[begin : min(n, begin + step)].astype("<f4").tobytes())
    return n


# ---- HTTP ------------------------------------------------------------------------------------------------
def test_health_readiness_model_and_metrics(server, generator) -> None:
    assert httpx.get(f"{server.http_url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.http_url}/readyz").json() == {"status": "ready"}
    model = httpx.get(f"{server.http_url}/v1/model").json()
    assert model["id"] == "random-svc" and model["precision"] == "fp32" and model["device"] == "cpu"
    assert model["frames"] == generator.config.tokenizer.num_frames
    metrics = httpx.get(f"{server.http_url}/metrics").text
    for name in ("echopulse_sessions", "echopulse_clips_total", "echopulse_skips_total",
                 "echopulse_batch_size", "echopulse_queue_wait_seconds", "echopulse_generate_seconds"):
        assert name in metrics


def test_the_viewer_and_the_openapi_document_are_served(server) -> None:
    page = httpx.get(f"{server.http_url}/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    paths = httpx.get(f"{server.http_url}/openapi.json").json()["paths"]
    for path in ("/healthz", "/readyz", "/metrics", "/v1/model", "/v1/generate", "/v1/sample"):
        assert path in paths


def test_post_generate_gives_what_the_cli_writes(server, shared_data: Path) -> None:
    path = shared_data / "apple_watch" / "ecg_2023-09-26.csv"
    reply = httpx.post(f"{server.http_url}/v1/generate", params={"seed": 3}, timeout=300,
                       files={"file": (path.name, path.read_bytes(), "text/csv")})
    assert reply.status_code == 200, reply.text
    with zipfile.ZipFile(io.BytesIO(reply.content)) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
    assert {"manifest.json", "contact_sheet.png"} <= names
    made = [b for b in manifest["beats"] if b["generated"]]
    assert manifest["source"] == path.name and manifest["seed"] == 3 and len(made) >= 10
    assert all(b["seed"] == 3 + b["index"] for b in made)
    assert {b["files"]["mp4"] for b in made} <= names and {b["files"]["gif"] for b in made} <= names


def test_post_generate_refuses_bad_files_with_a_problem_body(server) -> None:
    reply = httpx.post(f"{server.http_url}/v1/generate", files={"file": ("x.csv", b"hello\nworld\n")})
    assert reply.status_code == 422
    body = reply.json()
    assert body["code"] == "refused" and body["message"].startswith("x.csv: ")
    missing = httpx.post(f"{server.http_url}/v1/generate")
    assert missing.status_code == 422 and missing.json()["code"] == "bad_request"


# ---- the websocket: a whole session ----------------------------------------------------------------------
def test_a_session_answers_every_beat_and_acks_every_sample(server, watch) -> None:
    with connect(server.ws_url, max_size=2**24) as ws:
        ready = start(ws)
        assert ready["type"] == "ready" and ready["frames"] == 11
        sent = send_record(ws, watch.signal[0], watch.fs, 12.0)
        end, messages, clips = finish(ws)
    beats = [m for m in messages if m["type"] == "beat"]
    answered = {m["beat"] for m in messages if m["type"] in ("clip", "skipped")}
    assert len(beats) >= 8 and answered == {b["index"] for b in beats}
    assert end.received == sent and end.beats == len(beats) == end.clips + end.skipped
    acks = [m["received"] for m in messages if m["type"] == "ack"]
    assert acks and acks[-1] == sent and acks == sorted(acks)
    clip_meta = [m for m in messages if m["type"] == "clip"]
    assert clip_meta and all(m["synthetic"] is True and m["seed"] == 1 + m["beat"] for m in clip_meta)
    assert all(clips[m["beat"]][:6] == b"GIF89a" for m in clip_meta)


# ---- bad input: an error or a close code, and nothing accepted is lost ------------------------------------
@pytest.mark.parametrize(
    ("bad", "code"),
    [
        ("not json at all", "bad_json"),
        ('{"type": "hello"}', "unknown_type"),
        ("[1, 2, 3]", "unknown_type"),
        ('{"type": "start", "fs": 512}', "already_started"),
        ('{"type": "stop", "extra": 1}', "bad_message"),
        (b"\x00\x00\xc0\x7f" * 8, "bad_samples"),  # NaN
        (b"\x00\x00\x80\x7f" * 8, "bad_samples"),  # +inf
        (b"\x00\x00\x80", "bad_samples"),  # a partial sample
        (b"\x00" * (300 * 1024), "too_large"),
    ],
)
def test_a_bad_message_gets_its_error_and_loses_nothing(server, watch, bad, code) -> None:
    signal = watch.signal[0]
    with connect(server.ws_url, max_size=2**24) as ws:
        start(ws)
        first = send_record(ws, signal, watch.fs, 5.0)
        ws.send(bad)
        (error,) = errors_until_quiet(ws)
        assert error["code"] == code and error["message"]
        step = round(watch.fs * 0.25)
        n = first
        for begin in range(first, round(11 * watch.fs), step):
            ws.send(signal[begin : begin + step].astype("<f4").tobytes())
            n += len(signal[begin : begin + step])
        end, _, _ = finish(ws)
    assert end.received == n  # everything before and after the bad message counted


@pytest.mark.parametrize(
    ("fields", "code", "says"),
    [
        ({"fs": 0}, "bad_message", "fs"),
        ({"fs": -250}, "bad_message", "fs"),
        ({"fs": 100_000}, "bad_start", "sample rate"),
        ({"lead": "Z9"}, "bad_start", "unknown lead"),
        ({"units": "furlongs"}, "bad_start", "unit"),
        ({"format": "s16le"}, "bad_message", "format"),
    ],
)
def test_a_bad_start_is_refused_and_a_good_one_may_follow(server, fields, code, says) -> None:
    with connect(server.ws_url) as ws:
        error = start(ws, **fields)
        assert error["type"] == "error" and error["code"] == code and says in error["message"]
        assert start(ws)["type"] == "ready"


def test_samples_before_start_are_refused(server) -> None:
    with connect(server.ws_url) as ws:
        ws.send(np.zeros(64, "<f4").tobytes())
        assert receive_json(ws)["code"] == "not_started"
        assert start(ws)["type"] == "ready"
        end, _, _ = finish(ws)
    assert end.received == 0


def test_a_far_oversize_message_closes_with_1009(server) -> None:
    with connect(server.ws_url, max_size=2**24) as ws:
        start(ws)
        ws.send(b"\x00" * (2 * 1024 * 1024))
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(10):
                ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


# ---- auth --------------------------------------------------------------------------------------------
def test_a_token_is_required_everywhere_but_health(generator) -> None:
    with running_server(generator, ServiceSettings(token=TOKEN, warm_up=False)) as secured:
        assert httpx.get(f"{secured.http_url}/healthz").status_code == 200
        refused = httpx.get(f"{secured.http_url}/v1/model")
        assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
        wrong = httpx.get(f"{secured.http_url}/v1/model", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = httpx.get(f"{secured.http_url}/v1/model", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        for kwargs in ({}, {"additional_headers": {"Authorization": "Bearer nope"}}):
            with pytest.raises(ConnectionClosed) as closed, connect(secured.ws_url, **kwargs) as ws:
                ws.recv(timeout=10)
            assert closed.value.rcvd.code == 1008
        ways = [
            {"url": secured.ws_url, "additional_headers": {"Authorization": f"Bearer {TOKEN}"}},
            {"url": secured.ws_url, "subprotocols": ["echopulse", f"token.{TOKEN}"]},
            {"url": f"{secured.ws_url}?token={TOKEN}"},
        ]
        for way in ways:
            url = way.pop("url")
            with connect(url, **way) as ws:
                assert start(ws)["type"] == "ready"


def test_without_a_token_serve_refuses_to_listen_beyond_loopback(capsys) -> None:
    from echopulse.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "loopback only" in err[0]


# ---- clients that misbehave, a failing model, and batching ----------------------------------------------
class SilentClient:
    """A websocket client that sends and does not read until told to: a device whose app hangs. Built on the
    websockets library's sans-I/O protocol over a plain socket with a small receive window, so nothing reads
    behind the test's back."""

    def __init__(self, url: str, port: int) -> None:
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri

        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        self.sock.connect(("127.0.0.1", port))
        self.protocol = ClientProtocol(parse_uri(url), max_size=None)
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        while self.protocol.handshake_exc is None and not self.protocol.events_received() and \
                getattr(self.protocol, "response", None) is None:
            self.protocol.receive_data(self.sock.recv(65536))

    def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.sock.sendall(data)

    def send(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.protocol.send_text(message.encode())
        else:
            self.protocol.send_binary(message)
        self._flush()

    def read_until_end(self, timeout_s: float = 120.0) -> list[dict]:
        """Read at last: every JSON message up to `end`."""
        self.sock.settimeout(timeout_s)
        messages: list[dict] = []
        while True:
            for event in self.protocol.events_received():
                if event.opcode.name == "TEXT":
                    messages.append(json.loads(event.data))
                    if messages[-1]["type"] == "end":
                        self.sock.close()
                        return messages
            self.protocol.receive_data(self.sock.recv(1 << 20))


def test_a_client_that_stops_reading_gets_backpressure_and_bounded_memory(generator, watch) -> None:
    def rss_mb() -> float:
        status = Path("/proc/self/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024

    # Large raw clips (512 × 512 × 11 bytes): a few of them fill the socket's buffers.
    settings = ServiceSettings(session=SessionSettings(deadline_s=30.0, clip_scale=8))
    with running_server(generator, settings) as slow_server:
        client = SilentClient(slow_server.ws_url, slow_server.port)
        client.send(json.dumps({"type": "start", "fs": watch.fs, "lead": "I", "units": "mV",
                                "clip_format": "raw"}))
        rss_before, grown_mb, waiting = rss_mb(), 0.0, 0
        signal, step = watch.signal[0], round(2 * watch.fs)
        for begin in range(0, len(signal), step):  # 2 s of ECG every 0.4 s, never reading
            client.send(signal[begin : begin + step].astype("<f4").tobytes())
            time.sleep(0.4)
            grown_mb = max(grown_mb, rss_mb() - rss_before)
            waiting = max([waiting] + [s.clips_waiting for s in slow_server.app.state.sessions])
        client.send(json.dumps({"type": "stop"}))
        messages = client.read_until_end()
    end = End(**messages[-1])
    reasons = [m["reason"] for m in messages if m["type"] == "skipped"]
    assert "backpressure" in reasons
    assert end.beats == end.clips + end.skipped
    assert 1 <= waiting <= OUTBOX_CLIPS  # dropped, not queued
    assert grown_mb < 250  # 38 clips of 2.9 MB queued would be 110 MB on top of the working memory


def test_a_client_that_vanishes_mid_generation_does_not_stop_the_others(server, watch) -> None:
    gone = connect(server.ws_url, max_size=2**24)
    start(gone)
    send_record(gone, watch.signal[0], watch.fs, 10.0, chunk_s=1.0)
    gone.close()  # without stop, while its beats are being generated
    with connect(server.ws_url, max_size=2**24) as ws:
        start(ws)
        send_record(ws, watch.signal[0], watch.fs, 10.0)
        end, _, _ = finish(ws)
    assert end.clips >= 1 and end.beats == end.clips + end.skipped
    assert httpx.get(f"{server.http_url}/healthz").status_code == 200


def test_a_failing_generator_is_an_error_for_its_beats_and_the_service_stays_up(generator, watch,
                                                                                  monkeypatch) -> None:
    # The model on a thread of the server, so the test can break its generate method in place.
    with running_server(generator, ServiceSettings(warm_up=False, engine_process=False)) as failing:
        engine = failing.app.state.engine

        def broken(*args, **kwargs):
            raise RuntimeError("out of memory (simulated)")

        monkeypatch.setattr(engine.generator, "generate", broken)
        with connect(failing.ws_url, max_size=2**24) as ws:
            start(ws)
            send_record(ws, watch.signal[0], watch.fs, 6.0)
            end, messages, _ = finish(ws)
        errors = [m for m in messages if m["type"] == "error"]
        assert errors and all(e["code"] == "generation_failed" for e in errors)
        assert "simulated" in errors[0]["message"] and end.clips == 0 and end.skipped == end.beats
        monkeypatch.undo()
        with connect(failing.ws_url, max_size=2**24) as ws:
            start(ws)
            send_record(ws, watch.signal[0], watch.fs, 6.0)
            end, _, _ = finish(ws)
        assert end.clips >= 1


def test_a_killed_model_process_fails_its_batch_and_is_replaced(generator, watch) -> None:
    """The model's process dies (the kernel's OOM killer, say): the batch that finds it gone fails with an
    error for its beats, every beat is still answered, and a new process takes over: readiness returns and
    clips follow."""
    with running_server(generator, ServiceSettings(max_batch=1)) as crashing:
        engine = crashing.app.state.engine
        first_pid = engine.worker_pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        with connect(crashing.ws_url, max_size=2**24) as ws:
            start(ws)
            send_record(ws, watch.signal[0], watch.fs, 8.0)
            end, messages, _ = finish(ws)
        errors = [m for m in messages if m["type"] == "error"]
        assert errors and all(e["code"] == "generation_failed" for e in errors)
        assert "died" in errors[0]["message"]
        assert end.beats == end.clips + end.skipped
        deadline = time.monotonic() + 120
        while not engine.ready and time.monotonic() < deadline:
            time.sleep(0.2)
        assert engine.ready and engine.worker_restarts == 1 and engine.worker_pid not in (None, first_pid)
        assert httpx.get(f"{crashing.http_url}/readyz").status_code == 200
        with connect(crashing.ws_url, max_size=2**24) as ws:
            start(ws)
            send_record(ws, watch.signal[0], watch.fs, 6.0)
            end, _, _ = finish(ws)
        assert end.clips >= 1


def test_the_engine_batches_beats_of_several_sessions(server, watch) -> None:
    before = server.app.state.metrics.batch_size.collect()[0].samples
    sum_before = next(s.value for s in before if s.name.endswith("_sum"))
    count_before = next(s.value for s in before if s.name.endswith("_count"))

    def device() -> None:
        with connect(server.ws_url, max_size=2**24) as ws:
            start(ws)
            send_record(ws, watch.signal[0], watch.fs, 14.0, chunk_s=14.0)
            finish(ws)

    threads = [threading.Thread(target=device) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    after = server.app.state.metrics.batch_size.collect()[0].samples
    windows = next(s.value for s in after if s.name.endswith("_sum")) - sum_before
    calls = next(s.value for s in after if s.name.endswith("_count")) - count_before
    assert calls > 0 and windows / calls > 1.0  # four sessions' beats shared model calls


def test_schemathesis_finds_no_server_error_in_the_openapi_document(server, tmp_path) -> None:
    """Property-based requests generated from /openapi.json: every answer is a documented 2xx/4xx, no 5xx."""
    import shutil
    import subprocess
    import sys

    tool = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert tool is not None, "schemathesis is installed by the test extra"
    result = subprocess.run(
        [tool, "run", f"{server.http_url}/openapi.json", "--checks", "not_a_server_error", "--max-examples",
         "25", "--request-timeout", "120", "--seed", "1", "--no-color"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,  # its cache stays there
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert "passed" in result.stdout and "failed" not in result.stdout.split("SUMMARY")[-1]

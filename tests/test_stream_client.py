"""`echopulse stream` against a real server (uvicorn on loopback, the bundled model): a watch recording
replayed like a device must come back beat for beat as `echopulse ingest` sees it offline, every beat
answered with a clip or a reason, every sample acknowledged, and the saved clips what was announced."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from interrupts import interrupt_on_first_ack
from live_server import free_port, running_server

from echopulse.cli import main
from echopulse.ingest import read_record
from echopulse.pipeline import preprocess_record

pytest.importorskip("websockets")

TOKEN = "stream-test-token"
WATCH = Path("apple_watch") / "ecg_2021-12-17.csv"


@pytest.fixture(scope="module")
def generator(one_torch_thread):
    from echopulse.generator.echo_generator import EchoGenerator

    return EchoGenerator.from_pretrained(device="cpu")


@pytest.fixture(scope="module")
def server(generator):
    from echopulse.streaming.app import ServiceSettings

    with running_server(generator, ServiceSettings(token=TOKEN)) as running:
        yield running


@pytest.fixture(scope="module")
def watch_file(shared_data: Path) -> Path:
    return shared_data / WATCH


@pytest.fixture(scope="module")
def replay(server, watch_file: Path, tmp_path_factory) -> tuple[int, Path]:
    """One 20× replay through the command, shared by the checks below (the token from the environment)."""
    out = tmp_path_factory.mktemp("stream") / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ECHOPULSE_TOKEN", TOKEN)
        code = main(["stream", str(watch_file), "--url", server.ws_url, "--speed", "20", "--out", str(out),
                     "--seed", "3"])
    return code, out


def manifest(out: Path) -> dict:
    return json.loads((out / "stream.json").read_text(encoding="utf-8"))


def test_the_replay_exits_0_and_every_sample_is_acknowledged(replay, watch_file: Path) -> None:
    code, out = replay
    assert code == 0
    document = manifest(out)
    samples = read_record(watch_file).signal.shape[1]
    assert document["samples"] == document["samples_sent"] == samples
    assert document["acknowledged"] == samples
    assert document["end"]["received"] == samples
    assert document["close"]["code"] == 1000
    assert not document["interrupted"] and not document["problems"]


def test_the_live_beats_are_the_beats_ingest_finds_offline(replay, watch_file: Path, generator) -> None:
    record = read_record(watch_file)
    offline = preprocess_record(record, layout=generator.window_layout).beats
    live = manifest(replay[1])["beats"]
    assert len(live) == len(offline) > 20
    for event, beat in zip(live, offline, strict=True):
        assert event["index"] == beat.index
        assert abs(event["t"] - beat.r_peak_s) <= 1.0 / record.fs


def test_every_beat_gets_a_clip_or_a_skip_with_a_reason(replay) -> None:
    document = manifest(replay[1])
    assert document["clips"], "no beat got a clip"
    for beat in document["beats"]:
        assert (beat["clip"] is None) != (beat["skipped"] is None), beat
        if beat["skipped"] is not None:
            assert beat["skipped"]["reason"] in ("busy", "late", "quality", "backpressure")
    assert document["end"]["beats"] == len(document["beats"])
    assert document["end"]["clips"] == len(document["clips"])
    assert document["end"]["skipped"] == len(document["skips"])
    assert sum(document["skips_by_reason"].values()) == len(document["skips"])
    assert document["latency_s"]["beat_to_clip"]["n"] == len(document["clips"])


def test_the_saved_clips_are_gifs_with_the_announced_frames(replay) -> None:
    from PIL import Image

    out = replay[1]
    document = manifest(out)
    assert sorted(p.name for p in out.glob("beat_*")) == sorted(c["file"] for c in document["clips"])
    for clip in document["clips"]:
        path = out / clip["file"]
        assert path.name == f"beat_{clip['beat']:04d}.gif"
        assert path.read_bytes()[:6] == b"GIF89a" and path.stat().st_size == clip["bytes"]
        with Image.open(path) as image:
            assert image.n_frames == clip["frames"]
            assert image.size == (clip["width"], clip["height"])
        assert clip["seed"] == 3 + clip["beat"]


def test_a_wrong_token_is_one_line_and_exit_2(server, watch_file: Path, capsys) -> None:
    assert main(["stream", str(watch_file), "--url", server.ws_url, "--token", "wrong"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == f"echopulse: error: {server.ws_url}: the server refused the token"
    assert captured.out == ""


def test_an_unreachable_server_is_one_line_and_exit_2(watch_file: Path, capsys) -> None:
    url = f"ws://127.0.0.1:{free_port()}/v1/stream"
    assert main(["stream", str(watch_file), "--url", url]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"echopulse: error: {url}: cannot reach the server")


def test_an_unreadable_file_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    junk = tmp_path / "junk.csv"
    junk.write_text("not,an\necg,file\n", encoding="utf-8")
    assert main(["stream", str(junk), "--url", "ws://127.0.0.1:9/v1/stream"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("echopulse: error: ") and "junk.csv" in lines[0]


def test_ctrl_c_stops_politely_keeps_what_came_and_exits_130(
    server, watch_file, tmp_path, capsys, monkeypatch
) -> None:
    """Real time, and SIGINT once the first ack is in: the command sends stop, the server still says end,
    and stream.json is written with what came."""
    interrupt_on_first_ack(monkeypatch)
    out = tmp_path / "out"
    code = main(["stream", str(watch_file), "--url", server.ws_url, "--token", TOKEN, "--out", str(out)])
    assert code == 130
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("echopulse: error: interrupted")
    document = manifest(out)
    assert document["interrupted"] and document["end"] is not None
    assert 0 < document["samples_sent"] < document["samples"]
    assert document["acknowledged"] == document["samples_sent"] == document["end"]["received"]


def test_the_client_measures_three_latencies_per_beat(server, watch_file: Path) -> None:
    from echopulse.streaming.client import stream_record

    result = asyncio.run(stream_record(server.ws_url, read_record(watch_file), speed=30, token=TOKEN))
    assert result.clean and not result.unanswered()
    for timing in result.timings.values():
        assert 0 <= timing.sent_s <= timing.beat_s
        if timing.clip_s is not None:
            assert timing.total == pytest.approx(timing.to_beat + timing.to_clip)
    clips = {c.message.beat: c for c in result.clips}
    assert all(c.data is not None and len(c.data) == c.message.bytes for c in clips.values())


def test_the_commands_clip_formats_are_the_protocols() -> None:
    from echopulse.cli.stream import CLIP_FORMATS
    from echopulse.streaming.protocol import CLIP_FORMATS as PROTOCOL_FORMATS

    assert CLIP_FORMATS == PROTOCOL_FORMATS

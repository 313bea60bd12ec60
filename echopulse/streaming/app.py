"""The FastAPI app: health, readiness, metrics, the model, one-shot generation, the websocket, the viewer.

`create_app(generator, settings)` builds an app around one `Engine`; `echopulse serve` runs it under
uvicorn. Every error is a JSON problem body `{"code", "message"}` with a 4xx status (5xx only for a bug),
and no route ever shows a traceback.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from echopulse.errors import EchopulseError, one_line
from echopulse.streaming.auth import TokenCheck, websocket_token_ok
from echopulse.streaming.engine import Engine, EngineBusy, GenerationFailed
from echopulse.streaming.metrics import Metrics
from echopulse.streaming.session import CLOSE_POLICY, Session, SessionSettings
from echopulse.version import __version__

if TYPE_CHECKING:
    from echopulse.generator.echo_generator import EchoGenerator

STATIC = Path(__file__).resolve().parent / "static"
CLOSE_FULL = 1013


@dataclass(frozen=True)
class ServiceSettings:
    token: str | None = None
    max_batch: int = 8
    max_wait_ms: float = 60.0
    """Beats of every stream commit at the detector's half-second hops, a device chunk (≤ 0.1 s) or so apart:
    waiting 60 ms gathers them into one batch. Measured with two devices on the 2-core CPU: beat → clip p95
    0.83 s at 60 ms against 1.47 s at 15 ms, where the second beat waited behind the first's clip."""
    max_queue: int = 256
    max_sessions: int = 200
    session: SessionSettings = field(default_factory=SessionSettings)
    warm_up: bool = True
    engine_process: bool = True
    """The model in a worker process of its own (see `Engine`); False keeps it on a thread."""


class Problem(BaseModel):
    code: str
    message: str


class ModelInfo(BaseModel):
    id: str
    config_name: str
    config_hash: str
    image_size: int
    frames: int
    precision: str
    device: str
    official_compatible: bool
    window_layout: str
    steps: int
    guidance: float
    metadata: dict[str, str]
    echopulse_version: str


class SampleECG(BaseModel):
    """A real 30-s Apple Watch trace (MIT licence), in mV, to replay through the websocket."""

    fs: float
    lead: str
    units: str
    samples: list[float]
    source: str


class Health(BaseModel):
    status: str


def problem(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"code": code, "message": message})


PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing or wrong bearer token"},
    422: {"model": Problem, "description": "a request the service cannot use (the message says why)"},
}


def create_app(generator: EchoGenerator, settings: ServiceSettings = ServiceSettings()) -> FastAPI:
    metrics = Metrics()
    engine = Engine(generator, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms,
                    max_queue=settings.max_queue, metrics=metrics, process=settings.engine_process)
    sessions: set[Session] = set()
    pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="echopulse-session")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await engine.start(warm_up=settings.warm_up)
        yield
        await engine.stop()
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="echopulse",
        version=__version__,
        summary="Synthetic echocardiogram clips from ECG, one per heartbeat. Every clip is SYNTHETIC.",
        description="HTTP side of the echopulse service; the live websocket `/v1/stream` is described in "
        "docs/PROTOCOL.md. Errors are JSON `{code, message}`.",
        lifespan=lifespan,
    )
    app.state.engine, app.state.metrics, app.state.sessions = engine, metrics, sessions
    require_token = TokenCheck(settings.token)

    @app.exception_handler(HTTPException)
    async def http_problem(request: Request, error: HTTPException) -> JSONResponse:
        detail = error.detail
        if not isinstance(detail, dict):
            detail = {"code": "http", "message": str(detail)}
        return JSONResponse(status_code=error.status_code, content=detail, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_problem(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return problem(422, "bad_request", f"{where}: {first.get('msg', 'invalid request')}")

    @app.get("/healthz", response_model=Health, summary="the process is up")
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, summary="the model is loaded and has made a warm-up clip",
             responses={503: {"model": Problem, "description": "not ready yet"}})
    async def readyz() -> Any:
        if not engine.ready:
            return problem(503, "not_ready", "the model is loading or warming up")
        return Health(status="ready")

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {}}}})
    async def metrics_text() -> Response:
        metrics.sessions.set(len(sessions))
        metrics.queue_depth.set(engine.queued)
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/model", response_model=ModelInfo, summary="the model this service runs",
             dependencies=[Depends(require_token)], responses=PROBLEMS)
    async def model_info() -> ModelInfo:
        config = generator.config
        steps, guidance = generator.sampling_settings()
        return ModelInfo(
            id=generator.model_id, config_name=config.name, config_hash=config.hash,
            image_size=config.tokenizer.image_size, frames=config.tokenizer.num_frames,
            precision=generator.precision, device=str(generator.device),
            official_compatible=generator.official_compatible, window_layout=generator.window_layout,
            steps=steps, guidance=guidance, metadata=dict(generator.metadata), echopulse_version=__version__,
        )

    @app.post(
        "/v1/generate",
        summary="an ECG file in, a zip of synthetic echo clips, contact sheet and manifest out",
        description="The same as `echopulse generate FILE`: every ECG of the file (each of a Health "
        "export.zip in its own folder), one clip per usable beat, MP4 and GIF, `contact_sheet.png` and "
        "`manifest.json`. "
        "Same size limits and refusals as the command line.",
        dependencies=[Depends(require_token)],
        response_class=Response,
        responses={200: {"content": {"application/zip": {}}}, 413: {"model": Problem}, **PROBLEMS},
    )
    async def generate_file(
        file: Annotated[UploadFile, File(description="an ECG file or a Health export.zip")],
        fs: Annotated[float | None, Query(gt=0, le=100_000, description="rate if the file has none")] = None,
        seed: Annotated[int, Query(ge=0, lt=2**31, description="beat b's clip uses seed + b")] = 0,
        steps: Annotated[int | None, Query(ge=1, le=64)] = None,
        guidance: Annotated[float | None, Query(ge=0, le=20)] = None,
    ) -> Response:
        from echopulse.ingest import limits

        data = await file.read(limits.MAX_ARCHIVE_BYTES + 1)
        if len(data) > limits.MAX_ARCHIVE_BYTES:
            limit = limits.MAX_ARCHIVE_BYTES
            return problem(413, "too_large", f"{file.filename}: over the {limit} byte limit")
        name = Path(file.filename or "upload").name or "upload"
        try:
            archive = await generate_zip(engine, data, name, fs, seed, steps, guidance)
        except (EngineBusy, GenerationFailed) as error:
            return problem(503, "busy", one_line(error))
        except EchopulseError as error:
            return problem(422, "refused", one_line(error))
        return Response(archive, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{Path(name).stem}-echo.zip"'})

    @app.get("/v1/sample", response_model=SampleECG, summary="the bundled sample ECG, for a replay")
    async def sample() -> SampleECG:
        return await asyncio.to_thread(bundled_sample)

    @app.get("/v1/sample/pmd", summary="the bundled sample as a simulated Polar H10's PMD frames",
             response_class=Response, responses={200: {"content": {"application/octet-stream": {}}}})
    async def sample_pmd() -> Response:
        """The viewer's Polar demo: the frames a strap would notify (each a uint16 LE length, then the
        frame), for the page to pace and decode exactly as it does a real strap's."""
        return Response(await asyncio.to_thread(bundled_sample_pmd), media_type="application/octet-stream")

    @app.websocket("/v1/stream")
    async def stream(socket: WebSocket) -> None:
        offered = socket.headers.get("sec-websocket-protocol", "").split(",")
        protocols = [p.strip() for p in offered if p.strip()]
        subprotocol = "echopulse" if "echopulse" in protocols else None
        await socket.accept(subprotocol=subprotocol)  # then close with a code: a browser sees no HTTP status
        if not websocket_token_ok(settings.token, socket.headers.get("authorization"), protocols,
                                  socket.query_params.get("token")):
            await socket.close(code=CLOSE_POLICY, reason="missing or wrong token")
            return
        if len(sessions) >= settings.max_sessions:
            await socket.close(code=CLOSE_FULL, reason=f"server full ({settings.max_sessions} sessions)")
            return
        session = Session(socket, engine, metrics, settings.session, pool)
        sessions.add(session)
        metrics.sessions_total.inc()
        try:
            await session.run()
        finally:
            sessions.discard(session)

    if STATIC.is_dir():
        app.mount("/", StaticFiles(directory=STATIC, html=True), name="viewer")
    return app


@functools.cache
def _sample_record():
    """The bundled sample ECG, read once: both the replay and the simulated strap play it."""
    from echopulse.ingest import read_record
    from echopulse.sample import SAMPLE_ECG_FS, sample_ecg_path

    return read_record(sample_ecg_path(), fs=SAMPLE_ECG_FS)


def bundled_sample() -> SampleECG:
    record = _sample_record()
    samples = [round(float(v), 4) for v in record.signal[0]]
    return SampleECG(fs=record.fs, lead=record.leads[0], units="mV", samples=samples,
                     source="echopulse/data/sample_ecg.csv (heartphase, MIT licence)")


@functools.cache
def bundled_sample_pmd() -> bytes:
    from echopulse.ingest.polar_simulator import frames_file, record_frames

    return frames_file(record_frames(_sample_record()))


async def generate_zip(
    engine: Engine, data: bytes, name: str, fs: float | None, seed: int, steps: int | None,
    guidance: float | None,
) -> bytes:
    """What `echopulse generate` writes for an upload, as a zip: the same pipeline and sink, through the
    engine (so uploads are batched with live sessions, never beside them on the model)."""
    from echopulse.ingest import iter_recordings
    from echopulse.pipeline import clip_windows, plan_clips, preprocess_record
    from echopulse.video.clip_files import default_scale
    from echopulse.video.generate_outputs import FileSettings, GenerateOutputs, model_facts, sampling_facts

    generator = engine.generator
    steps, guidance = engine.sampling_settings(steps, guidance)
    size = generator.config.tokenizer.image_size
    files = FileSettings(scale=default_scale(size))
    recordings = await asyncio.to_thread(lambda: list(iter_recordings(data, fs=fs, name=name)))
    refusals: list[str] = []
    with tempfile.TemporaryDirectory(prefix="echopulse-upload-") as folder:
        root = Path(folder) / "out"
        for number, recording in enumerate(recordings):
            if recording.record is None:
                refusals.append(one_line(recording.error))
                continue
            record = recording.record
            try:
                result = await asyncio.to_thread(preprocess_record, record, layout=generator.window_layout)
                todo = clip_windows(result, recording.label)
            except EchopulseError as error:
                refusals.append(one_line(error))
                continue
            made = await asyncio.gather(*(engine.submit(w, seed=seed + w.beat_index, steps=steps,
                                                        guidance=guidance) for w in todo))
            target = root / f"{number + 1:03d}" if len(recordings) > 1 else root

            def write(record=record, result=result, label=recording.label, target=target, made=made) -> None:
                with GenerateOutputs(target, record, result, plan_clips(result), label, files,
                                     model=model_facts(generator),
                                     sampling=sampling_facts(generator, steps, guidance, seed, None)) as out:
                    for generated in made:
                        out.add(generated.clip)
                    out.commit()

            await asyncio.to_thread(write)
        if not root.exists():
            raise EchopulseError("; ".join(refusals) or f"{name}: no recording to read")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(root).as_posix())
            if refusals:
                archive.writestr("refused.json", json.dumps({"refused": refusals}, indent=1) + "\n")
        return buffer.getvalue()

"""`echopulse serve`: the live service (websocket stream, one-shot generation, the viewer) under uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import os
from pathlib import Path
from typing import Any

from echopulse.cli.common import EXIT_OK, positive_float, positive_int, status
from echopulse.errors import EchopulseError

TOKEN_ENV = "ECHOPULSE_TOKEN"


def add_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the live service: websocket ECG in, a synthetic echo clip per beat out, and the viewer",
        description="Serve WS /v1/stream (docs/PROTOCOL.md), POST /v1/generate, /healthz, /readyz, /metrics, "
        "/v1/model and the viewer at /. One engine owns the model and batches every session's beats "
        "(--max-batch, --max-wait-ms). Without a token the service listens on loopback only.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--token", help=f"bearer token clients must send (default: ${TOKEN_ENV}); required "
                       "to listen beyond loopback")
    serve.add_argument("--max-batch", type=positive_int, default=8, help="windows per model call (default 8)")
    serve.add_argument("--max-wait-ms", type=float, default=60.0,
                       help="longest a beat waits for its batch to fill (default 60)")
    serve.add_argument("--deadline-ms", type=positive_float, default=2000.0,
                       help="a beat's clip must arrive this soon after its beat event, else it is skipped as "
                       "late (default 2000)")
    serve.add_argument("--max-sessions", type=positive_int, default=200, help="open sessions (default 200)")
    serve.add_argument("--model", type=Path, action="append", metavar="PATH",
                       help="model folder or official files, as for generate (default: the bundled model)")
    serve.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    serve.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                       help="as for generate (default auto)")
    serve.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info"))
    serve.set_defaults(func=run)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if token is None and not is_loopback(args.host):
        raise EchopulseError(f"--host {args.host}: without --token (or ${TOKEN_ENV}) the service listens on "
                             "loopback only (127.0.0.1, ::1, localhost)")
    import uvicorn

    from echopulse.generator.model_files import load_generator
    from echopulse.streaming.app import ServiceSettings, create_app
    from echopulse.streaming.session import SessionSettings

    status("loading the model …")
    generator = load_generator(args.model, args.device, args.precision)
    settings = ServiceSettings(
        token=token, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_sessions=args.max_sessions,
        session=SessionSettings(deadline_s=args.deadline_ms / 1000.0),
    )
    app = create_app(generator, settings)
    print(f"serve: model {generator.model_id} ({generator.precision}, {generator.device}) on "
          f"http://{args.host}:{args.port}/ (viewer), ws://{args.host}:{args.port}/v1/stream", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, ws="websockets-sansio", log_level=args.log_level,
                ws_max_size=4 * settings.session.max_message_bytes)  # larger: closed 1009 by uvicorn
    return EXIT_OK

"""A real echopulse server for tests: uvicorn on 127.0.0.1 and a free port, in a thread of the test process.

    with running_server(generator, ServiceSettings(token="t")) as server:
        server.http_url, server.ws_url   # http://127.0.0.1:PORT, ws://127.0.0.1:PORT/v1/stream
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from echopulse.streaming.app import ServiceSettings, create_app


@dataclass(frozen=True)
class Server:
    port: int
    app: object

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_server(
    generator, settings: ServiceSettings | None = None, timeout_s: float = 120.0
) -> Iterator[Server]:
    """Start the app as `echopulse serve` does (uvicorn, the websockets implementation); wait for /readyz."""
    settings = settings or ServiceSettings()
    app = create_app(generator, settings)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, ws="websockets-sansio", log_level="warning",
                            ws_max_size=4 * settings.session.max_message_bytes, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="echopulse-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not (server.started and app.state.engine.ready):
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError("the test server did not become ready")
        time.sleep(0.05)
    try:
        yield Server(port, app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)

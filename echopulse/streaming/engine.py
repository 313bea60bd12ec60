"""`Engine`: the one owner of the model in a server process, batching clip requests from every session.

Async code calls `await engine.submit(window, …)`. A batcher task gathers requests until it has
`max_batch` of them or the first has waited `max_wait_ms`, then runs one `EchoGenerator.generate` call on a
worker thread, so the event loop keeps serving sockets while the model works. Requests of different
sampling settings are never mixed in one batch. The queue is bounded (`max_queue`); a full queue is
`EngineBusy` at once rather than a wait. A request whose caller has gone (cancelled) is dropped before it
costs anything. A failing batch fails its own requests, never the engine.

Fairness comes from the sessions: each has at most one request in the engine at a time, so first come,
first served is also round robin.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from echopulse.errors import EchopulseError

if TYPE_CHECKING:
    from echopulse.generator.clip import EchoClip
    from echopulse.generator.echo_generator import EchoGenerator
    from echopulse.preprocess.windows import STMEMWindow
    from echopulse.streaming.metrics import Metrics


class EngineBusy(EchopulseError):
    """The engine's queue is full: the caller skips this clip rather than wait behind the others."""


class GenerationFailed(EchopulseError):
    """The model raised while making a batch; the message says what, the engine stays up."""


@dataclass(frozen=True)
class Generated:
    """A clip and what it cost: time queued before its batch started, and the batch's generation time."""

    clip: EchoClip
    queue_ms: float
    generate_ms: float
    batch_size: int


@dataclass
class _Request:
    window: STMEMWindow
    seed: int
    steps: int
    guidance: float
    future: asyncio.Future[Generated]
    queued: float = field(default_factory=time.perf_counter)

    @property
    def key(self) -> tuple[int, float]:
        return (self.steps, self.guidance)


class Engine:
    def __init__(
        self,
        generator: EchoGenerator,
        *,
        max_batch: int = 8,
        max_wait_ms: float = 15.0,
        max_queue: int = 256,
        metrics: Metrics | None = None,
    ) -> None:
        if max_batch < 1 or max_wait_ms < 0 or max_queue < 1:
            raise ValueError("max_batch and max_queue must be at least 1, max_wait_ms not negative")
        self.generator = generator
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.metrics = metrics
        self.ready = False
        self._pending: deque[_Request] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._warming: asyncio.Task | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="echopulse-engine")

    # ---- life cycle ----------------------------------------------------------------------------------
    async def start(self, warm_up: bool = True) -> None:
        """Start batching at once; with `warm_up`, `ready` turns true only after one clip has been made
        (kernels, caches) in the background, so the server answers /healthz and a 503 /readyz meanwhile."""
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._batches(), name="echopulse-engine")
        if warm_up:
            self._warming = asyncio.create_task(self._warm_then_ready(), name="echopulse-warm-up")
        else:
            self.ready = True

    async def _warm_then_ready(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._worker, self._warm_up)
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        if self._warming is not None and not self._warming.done():
            self._warming.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for request in self._pending:
            if not request.future.done():
                request.future.cancel()
        self._pending.clear()
        self._worker.shutdown(wait=True, cancel_futures=True)

    def _warm_up(self) -> None:
        from echopulse.ecg import STMEM_LEADS, WINDOW_SAMPLES

        window = np.zeros((1, len(STMEM_LEADS), WINDOW_SAMPLES), np.float32)
        self.generator.generate(window, seed=0)

    # ---- requests ------------------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        return len(self._pending)

    def sampling_settings(self, steps: int | None, guidance: float | None) -> tuple[int, float]:
        return self.generator.sampling_settings(steps, guidance)

    async def submit(
        self, window: STMEMWindow, *, seed: int, steps: int | None = None, guidance: float | None = None
    ) -> Generated:
        """The clip of `window`, drawn with `seed`; `EngineBusy` at once when the queue is full."""
        if self._wakeup is None:
            raise RuntimeError("the engine is not started")
        if len(self._pending) >= self.max_queue:
            raise EngineBusy(f"the generator queue is full ({self.max_queue} clips waiting)")
        steps, guidance = self.sampling_settings(steps, guidance)
        future: asyncio.Future[Generated] = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(window, int(seed), steps, guidance, future))
        self._wakeup.set()
        return await future

    # ---- the batcher ---------------------------------------------------------------------------------
    async def _batches(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            self._drop_cancelled()
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            deadline = self._pending[0].queued + self.max_wait_s
            while len(self._pending) < self.max_batch and time.perf_counter() < deadline:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), max(0.0, deadline - time.perf_counter()))
                except TimeoutError:
                    break
            batch = self._take_batch()
            if not batch:
                continue
            started = time.perf_counter()
            try:
                clips = await loop.run_in_executor(self._worker, self._generate, batch)
            except Exception as error:  # the model failed: this batch's requests fail, the engine goes on
                failure = GenerationFailed(f"generation failed ({type(error).__name__}: {error})")
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(failure)
                continue
            generate_ms = (time.perf_counter() - started) * 1000.0
            self._observe(batch, started, generate_ms)
            for request, clip in zip(batch, clips, strict=True):
                if not request.future.done():
                    queue_ms = (started - request.queued) * 1000.0
                    request.future.set_result(Generated(clip, queue_ms, generate_ms, len(batch)))

    def _drop_cancelled(self) -> None:
        if any(r.future.done() for r in self._pending):
            self._pending = deque(r for r in self._pending if not r.future.done())

    def _take_batch(self) -> list[_Request]:
        """Up to `max_batch` live requests sharing the oldest one's sampling settings, oldest first."""
        self._drop_cancelled()
        if not self._pending:
            return []
        key = self._pending[0].key
        batch, rest = [], deque()
        while self._pending:
            request = self._pending.popleft()
            if len(batch) < self.max_batch and request.key == key:
                batch.append(request)
            else:
                rest.append(request)
        self._pending = rest
        return batch

    def _generate(self, batch: list[_Request]) -> list[EchoClip]:
        steps, guidance = batch[0].key
        return self.generator.generate(
            [r.window for r in batch], steps=steps, guidance=guidance, seeds=[r.seed for r in batch],
            batch_size=len(batch),
        )

    def _observe(self, batch: list[_Request], started: float, generate_ms: float) -> None:
        if self.metrics is None:
            return
        self.metrics.batch_size.observe(len(batch))
        self.metrics.generate_seconds.observe(generate_ms / 1000.0)
        for request in batch:
            self.metrics.queue_wait_seconds.observe(started - request.queued)

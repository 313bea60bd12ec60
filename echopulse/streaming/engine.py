"""`Engine`: the one owner of the model in a server process, batching clip requests from every session.

Async code calls `await engine.submit(window, …)`. A batcher task gathers requests until it has
`max_batch` of them or the first has waited `max_wait_ms`, then runs one `EchoGenerator.generate` call
away from the event loop, so the loop keeps serving sockets while the model works. Requests of different
sampling settings are never mixed in one batch. The queue is bounded (`max_queue`); a full queue is
`EngineBusy` at once rather than a wait. A request whose caller has gone (cancelled) is dropped before it
costs anything. A failing batch fails its own requests, never the engine.

By default the model runs in a worker process of its own (`process=True`), not on a thread of the server:
measured on a 2-core machine, one clip took 0.33 s on a process's main thread but 0.5 s on a second thread
(PyTorch's OpenMP team of a non-main thread does worse), and 0.8 s once another thread, busy a fifth of
the time as the event loop is under load, also wanted the interpreter lock between the model's thousands
of small operations. A worker that dies (out of memory, a crash in a kernel) fails its batch and is
replaced; the engine is not ready again until the new one has made a clip. `process=False` keeps the
model on a thread (tests that swap a method of the generator need it there).

Fairness comes from the sessions: each has at most one request in the engine at a time, so first come,
first served is also round robin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import time
from collections import deque
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from echopulse.errors import EchopulseError

log = logging.getLogger("echopulse.engine")

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
        max_wait_ms: float = 60.0,
        max_queue: int = 256,
        metrics: Metrics | None = None,
        process: bool = True,
    ) -> None:
        if max_batch < 1 or max_wait_ms < 0 or max_queue < 1:
            raise ValueError("max_batch and max_queue must be at least 1, max_wait_ms not negative")
        self.generator = generator
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.metrics = metrics
        self.process = process
        self.ready = False
        self.worker_pid: int | None = None
        """The process the model runs in, known once it has made its warm-up clip."""
        self.worker_restarts = 0
        self._pending: deque[_Request] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._warming: asyncio.Task | None = None
        self._worker = self._new_worker()

    def _new_worker(self) -> Executor:
        if not self.process:
            return ThreadPoolExecutor(max_workers=1, thread_name_prefix="echopulse-engine")
        # spawn, not fork: the server has threads (uvicorn's, the session pool's), and a forked child would
        # inherit their locks in whatever state they were.
        return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_install_generator, initargs=(self.generator,))

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
        try:
            self.worker_pid = await asyncio.get_running_loop().run_in_executor(
                self._worker, _warm_up, self._target()
            )
        except Exception as error:  # not ready, and /readyz says so, until a batch succeeds
            log.warning("the model's warm-up failed (%s: %s)", type(error).__name__, error)
            return
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
            steps, guidance = batch[0].key
            try:
                windows, seeds = [r.window for r in batch], [r.seed for r in batch]
                clips = await loop.run_in_executor(
                    self._worker, _generate, self._target(), windows, seeds, steps, guidance
                )
            except Exception as error:  # the model failed: this batch's requests fail, the engine goes on
                if isinstance(error, BrokenProcessPool):
                    error = RuntimeError("the model's worker process died")
                    self._replace_worker()
                failure = GenerationFailed(f"generation failed ({type(error).__name__}: {error})")
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(failure)
                continue
            generate_ms = (time.perf_counter() - started) * 1000.0
            self.ready = True  # a clip made is as good a proof as the warm-up's
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

    def _target(self) -> EchoGenerator | None:
        """What the worker functions run on: this generator on a thread; in a process, its own copy."""
        return None if self.process else self.generator

    def _replace_worker(self) -> None:
        """A dead worker process is replaced by a new one, warmed up before the engine is ready again."""
        self.ready = False
        self.worker_restarts += 1
        if self._warming is not None and not self._warming.done():
            self._warming.cancel()
        self._worker.shutdown(wait=False, cancel_futures=True)
        self._worker = self._new_worker()
        self._warming = asyncio.create_task(self._warm_then_ready(), name="echopulse-warm-up")

    def _observe(self, batch: list[_Request], started: float, generate_ms: float) -> None:
        if self.metrics is None:
            return
        self.metrics.batch_size.observe(len(batch))
        self.metrics.generate_seconds.observe(generate_ms / 1000.0)
        for request in batch:
            self.metrics.queue_wait_seconds.observe(started - request.queued)


# ---- what runs in the worker -----------------------------------------------------------------------------
_WORKER_GENERATOR: EchoGenerator | None = None


def _install_generator(generator: EchoGenerator) -> None:
    """Worker process start: keep the generator it was sent (pickled as weights and settings). Ctrl-C in
    the terminal reaches the whole process group; the server shuts its worker down itself, so the worker
    ignores it rather than print a traceback of its own."""
    global _WORKER_GENERATOR
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER_GENERATOR = generator


def _generator(target: EchoGenerator | None) -> EchoGenerator:
    generator = target if target is not None else _WORKER_GENERATOR
    if generator is None:
        raise RuntimeError("no generator in this worker")
    return generator


def _warm_up(target: EchoGenerator | None) -> int:
    """One clip, so kernels are chosen and caches filled before the first beat counts; the worker's pid."""
    from echopulse.ecg import STMEM_LEADS, WINDOW_SAMPLES

    window = np.zeros((1, len(STMEM_LEADS), WINDOW_SAMPLES), np.float32)
    _generator(target).generate(window, seed=0)
    return os.getpid()


def _generate(
    target: EchoGenerator | None, windows: list[STMEMWindow], seeds: list[int], steps: int, guidance: float
) -> list[EchoClip]:
    return _generator(target).generate(windows, steps=steps, guidance=guidance, seeds=seeds,
                                       batch_size=len(windows))

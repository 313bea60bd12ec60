"""What `GET /metrics` exports (Prometheus text format), in a registry of the app's own so that two apps in
one process (tests) never share or collide over counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions = Gauge("echopulse_sessions", "open websocket sessions", registry=r)
        self.sessions_total = Counter("echopulse_sessions_opened", "sessions opened", registry=r)
        self.samples = Counter("echopulse_samples_total", "samples accepted (per lead)", registry=r)
        self.beats = Counter("echopulse_beats_total", "beats detected", registry=r)
        self.clips = Counter("echopulse_clips_total", "clips sent", registry=r)
        self.skips = Counter("echopulse_skips_total", "beats without a clip", ["reason"], registry=r)
        self.errors = Counter("echopulse_errors_total", "error messages sent", ["code"], registry=r)
        self.queue_depth = Gauge("echopulse_queue_depth", "clip requests waiting for the engine", registry=r)
        self.batch_size = Histogram("echopulse_batch_size", "windows per generator call",
                                    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32), registry=r)
        self.queue_wait_seconds = Histogram("echopulse_queue_wait_seconds", "time a request waited for its "
                                            "batch", buckets=LATENCY_BUCKETS, registry=r)
        self.generate_seconds = Histogram("echopulse_generate_seconds", "generator call time",
                                          buckets=LATENCY_BUCKETS, registry=r)
        self.beat_to_clip_seconds = Histogram("echopulse_beat_to_clip_seconds", "beat event to clip sent",
                                              buckets=LATENCY_BUCKETS, registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)

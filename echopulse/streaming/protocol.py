"""The websocket protocol of `WS /v1/stream`, one Pydantic model per message (docs/PROTOCOL.md shows each).

The same models validate what clients send, build what the server sends, and are what the docs and the
tests use, so the three cannot drift apart. Every message is a JSON object with a `type`; after `start`,
ECG samples travel as binary messages of little-endian float32, and every `clip` is followed by one
binary message of exactly `bytes` bytes: the encoded clip.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

CLIP_FORMATS = ("gif", "mp4", "raw")
SKIP_REASONS = ("busy", "late", "quality", "backpressure")
"""busy: a newer beat took the waiting slot; late: its clip could not arrive before its deadline; quality:
its window was refused (or it has no RR interval); backpressure: the client was not reading its clips."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Start(_Message):
    """Client → server, first: what the samples are. `seed`: beat k's clip uses seed + k."""

    type: Literal["start"]
    fs: float = Field(gt=0, description="samples per second, per lead")
    lead: str | list[str] = Field("I", description="lead name, or names in the order samples interleave")
    units: str = Field("mV", description="mV, uV or V")
    format: Literal["f32le"] = "f32le"
    seed: int | None = Field(None, ge=0, lt=2**31)
    steps: int | None = Field(None, ge=1, le=64)
    guidance: float | None = Field(None, ge=0, le=20)
    clip_format: Literal["gif", "mp4", "raw"] = "gif"


class Stop(_Message):
    """Client → server: no more samples; the server finishes what is in flight, then sends `end`."""

    type: Literal["stop"]


ClientMessage = TypeAdapter(Annotated[Start | Stop, Field(discriminator="type")])


class Ready(_Message):
    type: Literal["ready"] = "ready"
    session: str
    model: str
    frames: int
    max_message_bytes: int
    deadline_ms: int


class Ack(_Message):
    """Samples (per lead) accepted so far."""

    type: Literal["ack"] = "ack"
    received: int


class BeatEvent(_Message):
    """A beat closed: `t` is its R-peak in seconds from the stream's first sample."""

    type: Literal["beat"] = "beat"
    index: int
    t: float
    rr: float | None
    hr: float | None
    quality: float | None


class ClipMessage(_Message):
    """A clip follows as one binary message of `bytes` bytes (`raw`: frames × height × width uint8)."""

    type: Literal["clip"] = "clip"
    beat: int
    fps: float
    frames: int
    height: int
    width: int
    format: Literal["gif", "mp4", "raw"]
    bytes: int
    seed: int
    synthetic: Literal[True] = True
    queue_ms: float
    generate_ms: float


class Skipped(_Message):
    type: Literal["skipped"] = "skipped"
    beat: int
    reason: Literal["busy", "late", "quality", "backpressure"]
    detail: str | None = None


class ErrorMessage(_Message):
    """A refused message or a failure; the session goes on unless the socket is then closed."""

    type: Literal["error"] = "error"
    code: str
    message: str


class End(_Message):
    type: Literal["end"] = "end"
    received: int
    beats: int
    clips: int
    skipped: int


ServerMessage = TypeAdapter(
    Annotated[
        Ready | Ack | BeatEvent | ClipMessage | Skipped | ErrorMessage | End, Field(discriminator="type")
    ]
)
"""Every JSON message the server sends, told apart by `type` (what a client parses with)."""

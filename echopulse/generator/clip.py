"""`EchoClip`: what the generator hands to every sink (files, websocket, Beam), synthetic by construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Provenance:
    """Where a clip came from. `synthetic` is always True: nothing here is a recording of a heart."""

    model_id: str
    config_hash: str
    seed: int
    steps: int
    guidance: float
    primed: bool
    device: str
    precision: str = "fp32"
    guidance_steps: int | None = None  # guidance on the first N decoding steps only (None: all)
    synthetic: bool = field(default=True, init=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EchoClip:
    """One cardiac cycle of synthetic echo: frame k shows time `start_s + k·rr_s/n` (R-peak to R-peak).

    `frames` are uint8 (t, h, w). Played at `fps` = n/RR the clip beats with the patient. Beat times are
    seconds from the record start; they are None when the clip was made from a bare array.
    """

    frames: np.ndarray
    fps: float
    rr_s: float
    end_s: float | None
    beat_index: int | None
    provenance: Provenance
    # A cycle tokenizer's anatomy ids (1, h, w) of this clip's heart, so the next clip of a recording can
    # keep the heart (`EchoGenerator.generate(after=…)`); never written out with the clip.
    anatomy_ids: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def start_s(self) -> float | None:
        return None if self.end_s is None else self.end_s - self.rr_s

    @property
    def frame_times_s(self) -> np.ndarray:
        """Time of each frame, from the opening R-peak (or from 0 without beat times)."""
        start = self.start_s or 0.0
        return start + np.arange(len(self.frames)) * self.rr_s / len(self.frames)

    def metadata(self) -> dict[str, Any]:
        return {
            "synthetic": True,
            "frames": int(self.frames.shape[0]),
            "height": int(self.frames.shape[1]),
            "width": int(self.frames.shape[2]),
            "fps": float(self.fps),
            "rr_s": float(self.rr_s),
            "start_s": self.start_s,
            "end_s": self.end_s,
            "beat_index": self.beat_index,
            "provenance": self.provenance.to_dict(),
        }

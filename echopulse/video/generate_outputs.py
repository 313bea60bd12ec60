"""What `echopulse generate` writes for one recording, written all or nothing.

Per beat `beat_NNNN.mp4/.gif`, then `contact_sheet.png`, `manifest.json` and, for a chained run,
`video.mp4`. Clips arrive one by one from `echopulse.pipeline.generate_clips`; files go into a staging
folder beside the target and move in only when the recording is complete, so a failure or Ctrl-C leaves
nothing half-written. Moving in replaces what an earlier `generate` wrote into the same folder (its
manifest names its files), so a re-run never leaves the old run's clips beside the new ones.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from echopulse.video.clip_files import write_clip_files
from echopulse.video.manifest import beat_entry, manifest_document
from echopulse.video.sheet import contact_sheet, pick_sheet_beats
from echopulse.video.timeline import TimelineVideo

if TYPE_CHECKING:
    from echopulse.ecg import ECGRecord
    from echopulse.generator.clip import EchoClip
    from echopulse.generator.echo_generator import EchoGenerator
    from echopulse.pipeline import BeatPlan
    from echopulse.preprocess.offline import Preprocessed

GENERATE_FILES = re.compile(r"beat_\d{4,}\.(mp4|gif)|contact_sheet\.png|manifest\.json|video\.mp4")
"""Names `generate` writes; what a re-run into the same folder replaces."""


@dataclass(frozen=True)
class FileSettings:
    """How clips become files: which formats, enlarged how much, marked SYNTHETIC or not, and the
    whole-recording video (`video`, at `video_fps`)."""

    formats: tuple[str, ...] = ("mp4", "gif")
    scale: int = 4
    mark: bool = True
    video: bool = False
    video_fps: float = 30.0


def model_facts(generator: EchoGenerator) -> dict[str, Any]:
    """What the manifest says of the model: enough to find and reload it, nothing about this machine."""
    config = generator.config
    return {
        "id": generator.model_id,
        "config_name": config.name,
        "config_hash": config.hash,
        "official_compatible": generator.official_compatible,
        "image_size": config.tokenizer.image_size,
        "frames": config.tokenizer.num_frames,
    }


class GenerateOutputs:
    """The files of one recording: `add` each clip as it is made, then `commit` (or `abort`).

    Usable as a context manager: leaving the block by an exception aborts, leaving nothing behind.
    """

    def __init__(
        self,
        folder: Path,
        record: ECGRecord,
        result: Preprocessed,
        plans: Sequence[BeatPlan],
        source: str,
        files: FileSettings,
        *,
        model: dict[str, Any],
        sampling: dict[str, Any],
    ) -> None:
        self.folder = folder
        self.record = record
        self.result = result
        self.plans = list(plans)
        self.source = source
        self.files = files
        self.model = model
        self.sampling = sampling
        self.made: dict[int, tuple[EchoClip, dict[str, str]]] = {}
        self._sheet_beats = set(pick_sheet_beats([p.beat.index for p in self.plans if p.gets_clip]))
        self._shown: list[EchoClip] = []
        self._signal = record.signal[record.leads.index(result.detection_lead)]
        folder.parent.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=".generate-", dir=folder.parent))
        self.timeline: TimelineVideo | None = None
        if files.video:
            self.timeline = TimelineVideo(
                self.staging / "video.mp4", self._signal, record.fs, record.duration_s, result.beats,
                fps=files.video_fps, image_size=model["image_size"], scale=files.scale, mark=files.mark,
                title=f"synthetic echo of {source}",
                skipped={p.beat.index: str(p.reason) for p in self.plans if not p.gets_clip},
            )

    def __enter__(self) -> GenerateOutputs:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            self.abort()

    @property
    def skipped(self) -> dict[int, str]:
        """Beat index → why it has no clip, for every beat without one."""
        return {p.beat.index: str(p.reason) for p in self.plans if p.beat.index not in self.made}

    def add(self, clip: EchoClip) -> None:
        files = write_clip_files(clip, self.staging, self.files.formats, self.files.scale, self.files.mark)
        assert clip.beat_index is not None  # clips of a recording always come from its windows
        self.made[clip.beat_index] = (clip, files)
        if clip.beat_index in self._sheet_beats:
            self._shown.append(clip)
        if self.timeline is not None:
            self.timeline.add(clip)

    def commit(self) -> Path:
        """Write the sheet and the manifest, then move everything into the folder; returns the folder."""
        top: dict[str, Any] = {"manifest": "manifest.json", "contact_sheet": "contact_sheet.png"}
        video = None
        if self.timeline is not None:
            self.timeline.close()
            top["video"] = "video.mp4"
            video = self._video_facts(self.timeline)
        steps, seed = self.sampling["steps"], self.sampling["seed"]
        model, made, beats = self.model, len(self.made), len(self.result.beats)
        title = (
            f"SYNTHETIC echo · {self.source} · model {model['id']} ({model['config_hash']}) · "
            f"steps {steps} · seed {seed} · {made} clips of {beats} beats (refused beats shaded red)"
        )
        contact_sheet(self.staging / "contact_sheet.png", self._signal, self.record.fs, self.result.beats,
                      self._shown, title=title, mark=self.files.mark, skipped=self.skipped)
        document = manifest_document(
            source=self.source, record_facts=self._record_facts(), model=model,
            settings={**self.sampling, "formats": list(self.files.formats), "scale": self.files.scale,
                      "mark": self.files.mark, "video": video},
            entries=[beat_entry(p, *self.made.get(p.beat.index, (None, {}))) for p in self.plans],
            files=top,
        )
        (self.staging / "manifest.json").write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_previous_outputs(self.folder)
        for item in sorted(self.staging.iterdir()):
            item.replace(self.folder / item.name)
        shutil.rmtree(self.staging, ignore_errors=True)
        return self.folder

    def abort(self) -> None:
        if self.timeline is not None:
            self.timeline.abort()
        shutil.rmtree(self.staging, ignore_errors=True)

    def _record_facts(self) -> dict[str, Any]:
        record, result = self.record, self.result
        return {
            "source_format": record.source_format,
            "fs": record.fs,
            "leads": list(record.leads),
            "detection_lead": result.detection_lead,
            "duration_s": record.duration_s,
            "hr_bpm": result.hr_bpm,
            "method": result.method,
            "layout": result.layout,
        }

    @staticmethod
    def _video_facts(timeline: TimelineVideo) -> dict[str, Any]:
        return {
            "file": "video.mp4", "fps": timeline.fps, "frames": timeline.n_frames,
            "duration_s": timeline.n_frames / timeline.fps, "width": timeline.width,
            "height": timeline.height, "resampling": "nearest earlier clip frame",
            "gaps": "a dark 'no clip' card saying why", "primed_with_previous_clip": True,
        }


def remove_previous_outputs(folder: Path) -> None:
    """Delete what an earlier `generate` wrote into `folder` (its known file names); nothing else."""
    for item in folder.iterdir():
        if item.is_file() and GENERATE_FILES.fullmatch(item.name):
            item.unlink()


def sampling_facts(
    generator: EchoGenerator, steps: int, guidance: float, seed: int, prime: dict[str, Any] | None
) -> dict[str, Any]:
    """The manifest's account of how the clips were drawn."""
    return {
        "steps": steps,
        "guidance": float(guidance),
        "seed": seed,
        "seeds": "beat b uses seed + b",
        "device": generator.device.type,
        "precision": generator.precision,
        "prime": prime,
    }


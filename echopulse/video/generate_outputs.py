"""One recording to synthetic echo files: clips for its usable beats, written all or nothing.

A beat is usable when its window was accepted and it has an RR (an accepted beat before it). The clip
of beat b is drawn with seed `seed + b`, whatever else is generated in the same run: batches are runs
of consecutive beats, and `EchoGenerator.generate` gives clip i of a call seed `seed + i`.

Without a long video, clips are generated in batches. With one (`video=True`) they are generated one
after another in beat order, each primed with the previous clip's last frame, so the video runs on
without a jump at each R-peak; the `prime` image, if any, primes the first clip only.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from echopulse.errors import PreprocessError
from echopulse.preprocess.windows import STMEMWindow
from echopulse.video.clip_files import write_clip_files
from echopulse.video.manifest import beat_entry, manifest_document, skip_reason
from echopulse.video.sheet import contact_sheet, pick_sheet_beats
from echopulse.video.timeline import TimelineVideo

if TYPE_CHECKING:
    from echopulse.ecg import ECGRecord
    from echopulse.generator.clip import EchoClip
    from echopulse.generator.echo_generator import EchoGenerator
    from echopulse.preprocess.offline import Preprocessed


@dataclass(frozen=True)
class GenerateSettings:
    formats: tuple[str, ...] = ("mp4", "gif")
    scale: int = 4
    mark: bool = True
    video: bool = False
    video_fps: float = 30.0
    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    batch_size: int = 16
    prime: np.ndarray | None = None
    prime_source: dict[str, Any] | None = None


def usable_windows(result: Preprocessed, source: str) -> list[STMEMWindow]:
    """The windows that get a clip; `PreprocessError` (one line, the reasons counted) when there is none."""
    usable = [w for w in result.windows if skip_reason(w) is None]
    if usable:
        return usable
    n = len(result.windows)
    if n == 0:
        raise PreprocessError(f"{source}: no usable beat (0 beats found)")
    reasons = Counter(skip_reason(w) for w in result.windows)
    listed = [f"{reason} ×{count}" if count > 1 else str(reason) for reason, count in reasons.most_common(4)]
    more = ", …" if len(reasons) > 4 else ""
    listing = ", ".join(listed) + more
    raise PreprocessError(f"{source}: no usable beat ({n} beats found, all refused: {listing})")


def _runs(windows: Sequence[STMEMWindow], size: int) -> Iterator[list[STMEMWindow]]:
    """Batches of at most `size` windows of consecutive beat indices (so seeds follow beat indices)."""
    batch: list[STMEMWindow] = []
    for window in windows:
        if batch and (len(batch) == size or window.beat_index != batch[-1].beat_index + 1):
            yield batch
            batch = []
        batch.append(window)
    if batch:
        yield batch


def _model_facts(generator: EchoGenerator) -> dict[str, Any]:
    config = generator.config
    return {
        "id": generator.model_id,
        "config_name": config.name,
        "config_hash": config.hash,
        "official_compatible": generator.official_compatible,
        "image_size": config.tokenizer.image_size,
        "frames": config.tokenizer.num_frames,
    }


def generate_recording(
    record: ECGRecord,
    result: Preprocessed,
    generator: EchoGenerator,
    folder: Path,
    source: str,
    settings: GenerateSettings,
    progress: Callable[[int], Any] | None = None,
) -> tuple[Path, int, int]:
    """Generate and write everything for one recording into `folder`; (folder, clips, beats without clip).

    Raises `PreprocessError` before writing anything when no beat is usable. Files are written into a
    staging folder beside `folder` and moved in at the end, so a failure leaves nothing behind.
    """
    todo = usable_windows(result, source)
    s = settings
    steps = s.steps or generator.config.sampling.steps
    guidance = 1.0 if generator.official_compatible else (s.guidance or generator.config.sampling.guidance)
    row = record.leads.index(result.detection_lead)
    signal = record.signal[row]
    sheet_beats = set(pick_sheet_beats([w.beat_index for w in todo]))
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".generate-", dir=folder.parent))
    timeline = None
    try:
        if s.video:
            timeline = TimelineVideo(
                staging / "video.mp4", signal, record.fs, record.duration_s, result.beats,
                fps=s.video_fps, image_size=generator.config.tokenizer.image_size, scale=s.scale, mark=s.mark,
                title=f"synthetic echo of {source}",
            )
        made: dict[int, tuple[EchoClip, dict[str, str]]] = {}
        shown: list[EchoClip] = []
        previous: EchoClip | None = None
        batches = ([w] for w in todo) if s.video else _runs(todo, s.batch_size)
        for batch in batches:
            prime = s.prime
            if s.video and previous is not None:
                prime = previous.frames[-1]
            clips = generator.generate(
                batch, prime_frame=prime, steps=steps, guidance=guidance, seed=s.seed + batch[0].beat_index,
                batch_size=len(batch),
            )
            for clip in clips:
                files = write_clip_files(clip, staging, s.formats, s.scale, s.mark)
                made[clip.beat_index] = (clip, files)
                if clip.beat_index in sheet_beats:
                    shown.append(clip)
                if timeline is not None:
                    timeline.add(clip)
                previous = clip
            if progress is not None:
                progress(len(clips))
        files_top: dict[str, Any] = {"manifest": "manifest.json", "contact_sheet": "contact_sheet.png"}
        video_facts = None
        if timeline is not None:
            timeline.close()
            files_top["video"] = "video.mp4"
            video_facts = {
                "file": "video.mp4", "fps": timeline.fps, "frames": timeline.n_frames,
                "duration_s": timeline.n_frames / timeline.fps, "width": timeline.width,
                "height": timeline.height, "resampling": "nearest earlier clip frame",
                "gaps": "a dark 'no clip' card saying why", "primed_with_previous_clip": True,
            }
        model = _model_facts(generator)
        title = (
            f"SYNTHETIC echo · {source} · model {model['id']} ({model['config_hash']}) · steps {steps} · "
            f"seed {s.seed} · {len(made)} clips of {len(result.beats)} beats (refused beats shaded red)"
        )
        contact_sheet(staging / "contact_sheet.png", signal, record.fs, result.beats, shown, title=title,
                      mark=s.mark)
        windows = {w.beat_index: w for w in result.windows}
        entries = []
        for beat in result.beats:
            clip, files = made.get(beat.index, (None, {}))
            entries.append(beat_entry(beat, windows.get(beat.index), clip, files))
        document = manifest_document(
            source=source,
            record_facts={
                "source_format": record.source_format,
                "fs": record.fs,
                "leads": list(record.leads),
                "detection_lead": result.detection_lead,
                "duration_s": record.duration_s,
                "hr_bpm": result.hr_bpm,
                "method": result.method,
                "layout": result.layout,
            },
            model=model,
            settings={
                "steps": steps,
                "guidance": float(guidance),
                "seed": s.seed,
                "seeds": "beat b uses seed + b",
                "device": generator.device.type,
                "precision": getattr(generator, "precision", "fp32"),
                "prime": s.prime_source,
                "formats": list(s.formats),
                "scale": s.scale,
                "mark": s.mark,
                "video": video_facts,
            },
            entries=entries,
            files=files_top,
        )
        (staging / "manifest.json").write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        folder.mkdir(parents=True, exist_ok=True)
        for item in sorted(staging.iterdir()):
            item.replace(folder / item.name)
    except BaseException:
        if timeline is not None:
            timeline.abort()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder, len(made), len(result.beats) - len(made)

"""Training data: paired (ECG window, echo clip) samples, from phantom shards or a folder of clips.

Sources (`open_dataset(path, ...)` picks one):

- phantom shards (`echopulse phantom --out DIR`): `phantom.json` plus `shard-*.npz`; every sample is a
  12-lead ECG at 250 Hz whose closing R-peak is at 10.0 s and the clip of the cardiac cycle it closes;
- a folder of clips: `*.gif` / `*.mp4` (searched recursively), each with an ECG file of the same stem
  beside it (`a4c_017.gif` + `a4c_017.csv`, any format `echopulse.ingest.read_record` reads; a WFDB
  record by its `.hea`). MP4 needs an imageio video plugin (imageio-ffmpeg or PyAV); GIF needs nothing
  more. The clip is taken to be the cycle closed by the record's last accepted beat at least 0.9 s
  before the record ends (`CLOSING_MARGIN_S`): write the ECG as the phantom does, from at least 9 s
  before the clip's closing R-peak to 1 s after it.

ECG windows are made by the project's inference functions (`echopulse.preprocess.windows.stmem_windows`
with the beat's R-peak), so training and inference see identically prepared inputs: 9 s ending at the
closing R-peak, band-passed, z-scored over the leads present, placed in ST-MEM's 12 lead slots.

Leads (`leads=`): which lead slots the generator sees, the others being zero, as they are for a device
that records fewer leads. The z-scoring runs over the kept leads only, as it does at inference on a
record that has only those leads.

- ``"I"`` (default): lead I only, what a watch records;
- ``"all"``: every lead the source has (12 for the phantom);
- a comma-separated list or a sequence of lead names (``"I,II,V2"``);
- ``"random"``: per sample and step, a random non-empty subset of the leads the source has (uniform over
  subset sizes, then over subsets of that size), so one model serves any device.

Clips become float tensors (channels, num_frames, size, size) in [0, 1]: grey, replicated to the
config's channels, resized (antialiased bilinear; frames that are not square are stretched) to its image
size and resampled in time to its frame count (linear interpolation between neighbouring frames, frame k
at k/num_frames of the clip's span, periodic for phantom cycles since the cycle's end is the next cycle's
start).

Phantom shards also carry each frame's left-ventricular area (`lv_area_px`): a cycle tokenizer with one
cycle number per frame takes it as its cycle code (`cycles`), the area of each frame over that of frame 0,
less 1, the volume curve the ECG decides. A clip folder has no such label, and a wider cycle code is learnt;
there the code is the tokenizer's own reading of the clip.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from echopulse.ecg import STMEM_LEADS, WINDOW_SAMPLES, canonical_lead
from echopulse.generator.config import TokenizerConfig
from echopulse.generator.training.errors import TrainingError
from echopulse.preprocess.beats import Beat
from echopulse.preprocess.windows import stmem_windows

VIDEO_SUFFIXES = (".gif", ".mp4")
LEAD_MODES = ("all", "random")
CLOSING_MARGIN_S = 0.9
"""Folder data: a clip's closing R-peak is the record's last accepted beat at least this long before the
record ends (the phantom's layout, closing R-peak 1 s before the end, with room for detection jitter)."""


def parse_leads(spec: str | Sequence[str]) -> tuple[str, ...] | str:
    """`"all"`, `"random"` or a tuple of canonical lead names (in ST-MEM order, no duplicates)."""
    if isinstance(spec, str):
        if spec.strip().lower() in LEAD_MODES:
            return spec.strip().lower()
        names = [part for part in spec.split(",") if part.strip()]
    else:
        names = list(spec)
    if not names:
        raise TrainingError("--leads: give 'all', 'random' or lead names such as 'I' or 'I,II,V2'")
    kept = set()
    for name in names:
        canonical = canonical_lead(name)
        if canonical is None:
            raise TrainingError(
                f"--leads: {name.strip()!r} is not one of the 12 standard leads {STMEM_LEADS}"
            )
        kept.add(canonical)
    return tuple(lead for lead in STMEM_LEADS if lead in kept)


@dataclass
class ECGSource:
    """The raw ECG of one sample: `signal` (leads, samples) in mV at `fs`, and its beat's R-peak."""

    signal: np.ndarray
    fs: float
    leads: tuple[str, ...]  # canonical names, one per row
    r_peak: int  # sample index of the closing R-peak

    def window(self, keep: Sequence[str] | None, layout: str = "stmem") -> np.ndarray:
        """(12, 2250) float32 ST-MEM window of the kept leads (None: all the source has), in `layout`
        ("stmem" z-scored or "mv", as the model's `stmem.window_layout` says)."""
        rows = [i for i, lead in enumerate(self.leads) if keep is None or lead in keep]
        if not rows:
            return np.zeros((len(STMEM_LEADS), WINDOW_SAMPLES), np.float32)
        beat = Beat(
            index=0,
            r_peak=self.r_peak,
            r_peak_s=self.r_peak / self.fs,
            rr_s=None,
            hr_bpm=None,
            quality=None,
            accepted=True,
        )
        (window,) = stmem_windows(
            self.signal[rows], self.fs, [self.leads[i] for i in rows], [beat], layout=layout
        )
        return window.signal


def choose_leads(
    spec: tuple[str, ...] | str, available: Sequence[str], rng: np.random.Generator
) -> tuple[str, ...]:
    """The leads one sample keeps under `spec` (see the module docstring)."""
    if spec == "all":
        return tuple(available)
    if spec == "random":
        size = int(rng.integers(1, len(available) + 1))
        picked = rng.choice(len(available), size=size, replace=False)
        return tuple(available[i] for i in sorted(picked))
    return tuple(spec)


def prepare_clip(clip: np.ndarray, config: TokenizerConfig, periodic: bool) -> Tensor:
    """uint8 or float (frames, H, W[, 3]) → float32 (channels, num_frames, size, size) in [0, 1]."""
    x = torch.as_tensor(np.asarray(clip))
    if x.ndim == 4:  # colour frames: to grey
        x = x[..., :3].float().mean(dim=-1)
    if x.ndim != 3 or x.shape[0] < 1:
        raise ValueError(f"a clip must be (frames, H, W), got {tuple(x.shape)}")
    x = x.float() / 255.0 if np.asarray(clip).dtype == np.uint8 else x.float()
    x = resample_frames(x, config.num_frames, periodic)
    size = config.image_size
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(
            x[:, None], size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )[:, 0]
    x = x.clamp(0, 1)
    return x[None].expand(config.channels, -1, -1, -1).contiguous()


def resample_frames(x: Tensor, frames: int, periodic: bool) -> Tensor:
    """(n, H, W) → (frames, H, W), frame k at position k·n/frames, linear between neighbours."""
    n = x.shape[0]
    if n == frames:
        return x
    pos = torch.arange(frames, dtype=torch.float64) * n / frames
    lo = pos.floor().long()
    frac = (pos - lo).float()[:, None, None]
    hi = (lo + 1) % n if periodic else (lo + 1).clamp(max=n - 1)
    return x[lo] * (1 - frac) + x[hi] * frac


def cycle_target(lv_area: np.ndarray, frames: int, periodic: bool) -> np.ndarray:
    """Per-frame LV areas (n,) → (frames,) area over frame 0's, less 1 (0 at end-diastole, about −0.4 at
    end-systole), resampled in time as the clip is (`resample_frames`)."""
    area = torch.as_tensor(np.asarray(lv_area, dtype=np.float64))
    ratio = area / area[0].clamp(min=1e-6) - 1.0
    return resample_frames(ratio[:, None, None], frames, periodic)[:, 0, 0].numpy().astype(np.float32)


class PairDataset:
    """Paired samples in memory: raw clips and raw ECG sources, prepared on demand."""

    def __init__(
        self,
        clips: list[np.ndarray],
        ecgs: list[ECGSource],
        names: list[str],
        periodic: bool,
        source: Path,
        fingerprint: str,
        lv_areas: list[np.ndarray] | None = None,
    ) -> None:
        self.raw_clips = clips
        self.ecgs = ecgs
        self.names = names
        self.periodic = periodic
        self.source = source
        self.fingerprint = fingerprint
        self.lv_areas = lv_areas

    def __len__(self) -> int:
        return len(self.raw_clips)

    def clips(self, indices: Sequence[int], config: TokenizerConfig) -> Tensor:
        """(b, channels, num_frames, size, size) float32 in [0, 1]."""
        return torch.stack([prepare_clip(self.raw_clips[i], config, self.periodic) for i in indices])

    def cycles(self, indices: Sequence[int], config: TokenizerConfig) -> Tensor | None:
        """(b, num_frames, 1) cycle targets (`cycle_target`) for a tokenizer whose cycle code is the one
        labelled number per frame (cycle_dim 1); None for data without LV areas, a tokenizer without a cycle
        code, or one that learns a code of its own (cycle_dim > 1)."""
        if self.lv_areas is None or config.cycle_dim != 1:
            return None
        targets = [cycle_target(self.lv_areas[i], config.num_frames, self.periodic) for i in indices]
        return torch.from_numpy(np.stack(targets))[..., None]

    def windows(
        self,
        indices: Sequence[int],
        leads: tuple[str, ...] | str,
        rng: np.random.Generator,
        layout: str = "stmem",
    ) -> Tensor:
        """(b, 12, 2250) float32 ST-MEM windows with the kept leads of each sample, in `layout`."""
        out = []
        for i in indices:
            source = self.ecgs[i]
            out.append(source.window(choose_leads(leads, source.leads, rng), layout))
        return torch.from_numpy(np.stack(out).astype(np.float32))


def open_dataset(path: str | Path) -> PairDataset:
    """Phantom shards or a clip folder (see the module docstring); TrainingError when neither."""
    path = Path(path)
    if not path.exists():
        raise TrainingError(f"{path}: data folder not found")
    if not path.is_dir():
        raise TrainingError(f"{path}: --data must be a folder (phantom shards or clips with ECG files)")
    if (path / "phantom.json").is_file():
        return _phantom_dataset(path)
    videos = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if not videos:
        raise TrainingError(
            f"{path}: no training data (neither phantom shards with phantom.json "
            "nor .gif/.mp4 clips with ECG files)"
        )
    return _folder_dataset(path, videos)


def _phantom_dataset(path: Path) -> PairDataset:
    try:
        meta = json.loads((path / "phantom.json").read_text())
        names = list(meta["shards"])
        fs = float(meta.get("ecg_fs", 250.0))
        closing = float(meta.get("closing_r_peak_s", 10.0))
        leads = tuple(meta.get("ecg_leads", STMEM_LEADS))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise TrainingError(f"{path / 'phantom.json'}: unreadable phantom description ({error})") from error
    if not names:
        raise TrainingError(f"{path}: phantom.json lists no shards")
    clips, ecgs, labels, areas = [], [], [], []
    digest = hashlib.sha256()
    for name in names:
        shard = path / name
        if not shard.is_file():
            raise TrainingError(f"{shard}: shard listed in phantom.json is missing")
        try:
            with np.load(shard, allow_pickle=False) as z:
                ecg, clip, seeds = z["ecg"], z["clip"], z["seed"]
                lv_area = z["lv_area_px"] if "lv_area_px" in z.files else None
        except (OSError, ValueError, KeyError) as error:
            raise TrainingError(f"{shard}: unreadable phantom shard ({error})") from error
        digest.update(name.encode() + np.ascontiguousarray(seeds).tobytes() + str(clip.shape).encode())
        for k in range(len(clip)):
            clips.append(clip[k])
            ecgs.append(ECGSource(ecg[k], fs, leads, round(closing * fs)))
            labels.append(f"{name}:{k}")
            areas.append(None if lv_area is None else lv_area[k])
    return PairDataset(
        clips,
        ecgs,
        labels,
        periodic=meta.get("layout", "cycle") == "cycle",
        source=path,
        fingerprint=digest.hexdigest()[:16],
        lv_areas=areas if all(a is not None for a in areas) else None,
    )


def _folder_dataset(path: Path, videos: list[Path]) -> PairDataset:
    from echopulse.ingest import read_record
    from echopulse.preprocess.offline import preprocess_record

    clips, ecgs, names = [], [], []
    digest = hashlib.sha256()
    for video in videos:
        partners = [
            p
            for p in video.parent.glob(video.stem + ".*")
            if p.is_file() and p.stem == video.stem and p.suffix.lower() not in VIDEO_SUFFIXES
        ]
        if not partners:
            raise TrainingError(f"{video}: no ECG file with the same name stem beside it")
        headers = [p for p in partners if p.suffix.lower() == ".hea"]
        partners = headers or partners  # a WFDB record: its header names the data file
        if len(partners) > 1:
            found = sorted(p.name for p in partners)
            raise TrainingError(f"{video}: several ECG files share its stem: {found}")
        record = read_record(partners[0])  # IngestError names the file
        latest = record.duration_s - CLOSING_MARGIN_S
        beats = [b for b in preprocess_record(record).beats if b.accepted and b.r_peak_s <= latest]
        if not beats:
            raise TrainingError(
                f"{partners[0]}: no accepted beat at least {CLOSING_MARGIN_S:g} s before the record's end, "
                f"so no ECG window for {video.name}"
            )
        keep = [i for i, name in enumerate(record.leads) if canonical_lead(name) is not None] or [0]
        leads = tuple(canonical_lead(record.leads[i]) or "I" for i in keep)
        clips.append(read_video(video))
        ecgs.append(ECGSource(record.signal[keep], record.fs, leads, beats[-1].r_peak))
        names.append(str(video.relative_to(path)))
        digest.update(f"{names[-1]}|{video.stat().st_size}|{record.content_hash()}".encode())
    return PairDataset(clips, ecgs, names, periodic=False, source=path, fingerprint=digest.hexdigest()[:16])


def read_video(path: Path) -> np.ndarray:
    """(frames, H, W) uint8 grey frames of a GIF or MP4 (via imageio)."""
    import imageio.v3 as iio

    try:
        frames = iio.imread(path, index=None)
    except Exception as error:  # imageio raises many kinds; one line names the file
        hint = " (MP4 needs imageio-ffmpeg or PyAV installed)" if path.suffix.lower() == ".mp4" else ""
        raise TrainingError(f"{path}: unreadable clip{hint}: {error}") from error
    frames = np.asarray(frames)
    if frames.ndim == 4:
        frames = frames[..., :3].astype(np.float32).mean(axis=-1).round().astype(np.uint8)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3 or frames.shape[0] < 1:
        raise TrainingError(f"{path}: not a clip of frames (shape {frames.shape})")
    return frames


@lru_cache(maxsize=64)
def _epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)


def batch_indices(n: int, batch: int, seed: int, step: int) -> list[int]:
    """Sample indices of `step`: positions step·batch … of an endless stream of per-epoch shuffles.

    Depends on (n, batch, seed, step) only, so a resumed run draws exactly the batches it would have.
    """
    out = []
    for position in range(step * batch, (step + 1) * batch):
        epoch, offset = divmod(position, n)
        out.append(int(_epoch_order(n, seed, epoch)[offset]))
    return out


def step_rng(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    """A numpy generator for one step's draws (lead subsets, ...)."""
    return np.random.default_rng([seed, step, stream])


def step_torch_seed(seed: int, step: int) -> int:
    """The torch seed of one step (masks, condition dropout, dead-code restarts)."""
    return int(np.random.SeedSequence([seed, step, 0x70C4]).generate_state(1, np.uint64)[0] >> np.uint64(1))

"""`echopulse generate`: ECG files in, one synthetic echo clip per beat out.

Kept apart from cli.py so that building the CLI parser imports neither torch nor the generator.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from echopulse.errors import EchopulseError, ModelError

if TYPE_CHECKING:
    import numpy as np

    from echopulse.generator.echo_generator import EchoGenerator

OFFICIAL_SUFFIXES = {".pt": "stage2", ".bin": "tokenizer", ".pth": "stmem"}
FORMAT_CHOICES = ("mp4", "gif")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _formats(text: str) -> tuple[str, ...]:
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if names == ["none"]:
        return ()
    wrong = [n for n in names if n not in FORMAT_CHOICES]
    if wrong or not names:
        raise argparse.ArgumentTypeError(f"choose from mp4, gif (comma-separated) or none, got {text!r}")
    return tuple(n for n in FORMAT_CHOICES if n in names)


def add_generate_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the `generate` sub-command to `commands` (an argparse sub-parsers object)."""
    from echopulse.preprocess.beats import DEFAULT_METHOD, DETECTION_BANDS_HZ

    generate = commands.add_parser(
        "generate",
        help="make one synthetic echo clip per heartbeat (MP4/GIF), a contact sheet and a manifest",
        description="Read each ECG (any format ingest reads, or every ECG of a Health export.zip), find its "
        "beats and generate one synthetic echo clip per accepted beat with an RR interval: the cardiac "
        "cycle that ends at the beat's R-peak, played at frames/RR fps so it beats with the patient. Writes "
        "beat_NNNN.mp4/.gif per beat, contact_sheet.png (the ECG with beat marks above frames of several "
        "beats), manifest.json (every beat, its seed and files, refused beats with reasons; synthetic: "
        "true) and, with --video, video.mp4 on the ECG's timeline. One input writes into --out, several "
        "into one sub-folder each. Every frame is marked SYNTHETIC unless --no-mark. An input with no "
        "usable beat is refused with one line and writes nothing; the other inputs still complete.",
    )
    generate.add_argument("files", type=Path, nargs="+", metavar="FILE", help="ECG files or export.zip")
    generate.add_argument("--out", type=Path, required=True, help="output folder")
    generate.add_argument("--fs", type=float, help="sample rate in Hz, for files that do not state it")
    generate.add_argument(
        "--method", default=DEFAULT_METHOD, choices=sorted(DETECTION_BANDS_HZ),
        help=f"neurokit2 R-peak detector (default {DEFAULT_METHOD})",
    )
    generate.add_argument(
        "--model", type=Path, action="append", metavar="PATH",
        help="model: an echopulse model directory (default: the bundled model), or official ECHOPulse "
        "files by extension: a stage-2 .pt, optionally with a tokenizer .bin and an ST-MEM .pth (repeat "
        "--model for each); official weights use the compat window layout and no guidance",
    )
    generate.add_argument("--steps", type=_positive_int, help="sampling steps (default: the model's)")
    generate.add_argument(
        "--guidance", type=float, help="classifier-free guidance scale (default: the model's)"
    )
    generate.add_argument(
        "--seed", type=int, default=0,
        help="seed (default 0, so a re-run gives the same frames); beat b's clip uses seed + b",
    )
    generate.add_argument(
        "--prime", type=Path, metavar="IMAGE",
        help="PNG/JPEG used as frame 0 of every clip (with --video: of the first clip only); made grey, "
        "centre-cropped square and resized to the model's frame size",
    )
    generate.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda"),
        help="where the model runs (default auto: CUDA when present)",
    )
    generate.add_argument(
        "--precision", default="auto", choices=("auto", "bf16", "fp32"),
        help="auto (default): bf16 where the hardware does it natively (CUDA, CPUs with AVX-512 BF16 or "
        "AMX; about 1.6x faster there), else float32; fp32: the same clips on every CPU",
    )
    generate.add_argument(
        "--batch-size", type=_positive_int, default=16,
        help="clips per model call (default 16; --video generates one at a time)",
    )
    generate.add_argument(
        "--format", type=_formats, default=FORMAT_CHOICES, dest="formats", metavar="LIST",
        help="per-beat files: mp4,gif (default), mp4, gif or none",
    )
    generate.add_argument(
        "--scale", type=_positive_int,
        help="enlarge frames this many times, nearest neighbour (default: the least that gives >= 256 px)",
    )
    generate.add_argument("--no-mark", action="store_true", help="leave out the visible SYNTHETIC mark")
    generate.add_argument(
        "--video", action="store_true",
        help="also write video.mp4: the whole ECG at --video-fps, each clip at its real time (nearest "
        "earlier frame), the ECG with a moving cursor below, a 'no clip' card where a beat was refused. "
        "Clips are then generated one at a time in beat order, each primed with the previous clip's last "
        "frame, so the video is continuous (slower than batched generation)",
    )
    generate.add_argument(
        "--video-fps", type=_positive_float, default=30.0, help="frame rate of video.mp4 (default 30)"
    )
    return generate


def load_generator(models: list[Path] | None, device: str) -> EchoGenerator:
    """The bundled model, a model directory, or official files mapped by extension; `ModelError` else."""
    import torch

    from echopulse.generator.echo_generator import EchoGenerator

    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda: no CUDA device is available here")
    if not models:
        return EchoGenerator.from_pretrained(None, device=device)
    if len(models) == 1 and (models[0].is_dir() or models[0].suffix.lower() not in OFFICIAL_SUFFIXES):
        return EchoGenerator.from_pretrained(models[0], device=device)
    parts: dict[str, Path] = {}
    for path in models:
        role = OFFICIAL_SUFFIXES.get(path.suffix.lower())
        if role is None or path.is_dir():
            raise ModelError(f"{path}: with several --model, each must be an official .pt, .bin or .pth file")
        if role in parts:
            raise ModelError(f"{path}: a second {role} file (first {parts[role]})")
        if not path.is_file():
            raise ModelError(f"{path}: no such model file")
        parts[role] = path
    if "stage2" not in parts:
        raise ModelError(f"{models[0]}: official weights need the stage-2 .pt file (the masked transformer)")
    return EchoGenerator.from_official(**parts, device=device)


def read_prime(path: Path, size: int) -> tuple[np.ndarray, dict[str, Any]]:
    """The --prime image as a (size, size) uint8 grey frame, and how the manifest names it."""
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        data = path.read_bytes()
    except OSError as error:
        raise EchopulseError(f"{path}: cannot read the --prime image ({error.strerror or error})") from None
    try:
        import io

        with Image.open(io.BytesIO(data)) as image:
            image.load()
            grey = ImageOps.fit(image.convert("L"), (size, size), method=Image.Resampling.BILINEAR)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        raise EchopulseError(f"{path}: not a usable --prime image ({message})") from None
    facts = {"file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "size": size}
    return np.array(grey, dtype=np.uint8), facts  # a writable copy (torch wants one)


def run_generate(args: argparse.Namespace) -> int:
    """The `generate` command. A model or --prime problem is one line and exit 2 before any input is read;
    a refused input is one line, writes nothing, and the others still complete (exit 2 at the end)."""
    from tqdm import tqdm

    from echopulse.cli import (
        EXIT_OK,
        EXIT_REFUSED,
        _fail,
        _open_input,
        _output_folders,
        _unused,
        recording_folder_name,
    )
    from echopulse.preprocess.offline import preprocess_record
    from echopulse.video.clip_files import default_scale
    from echopulse.video.generate import GenerateSettings, generate_recording, usable_windows

    try:
        generator = load_generator(args.model, args.device)
        if getattr(args, "precision", "auto") != "auto":
            generator.precision = args.precision
        size = generator.config.tokenizer.image_size
        prime, prime_facts = read_prime(args.prime, size) if args.prime else (None, None)
    except EchopulseError as error:
        _fail(str(error))
        return EXIT_REFUSED
    layout = generator.window_layout
    settings = GenerateSettings(
        formats=tuple(args.formats), scale=args.scale or default_scale(size), mark=not args.no_mark,
        video=args.video, video_fps=args.video_fps, steps=args.steps, guidance=args.guidance,
        seed=args.seed, batch_size=args.batch_size, prime=prime, prime_source=prime_facts,
    )
    folders = _output_folders(args.files, args.out)
    used: set[Path] = set()
    refused = 0
    for path in args.files:
        try:
            with _open_input(path, args.fs) as recordings:
                for recording in recordings:
                    try:
                        record = recording.read()
                        result = preprocess_record(
                            record, method=args.method, layout=layout, progress=record.duration_s > 600
                        )
                        total = len(usable_windows(result, recording.label))
                        base = folders[path]
                        folder = _unused(base / recording_folder_name(record), used) if recording.in_archive \
                            else base
                        with tqdm(total=total, desc=recording.label, unit="beat", leave=False,
                                  disable=None) as bar:
                            folder, made, skipped = generate_recording(
                                record, result, generator, folder, recording.label, settings, bar.update
                            )
                    except EchopulseError as error:
                        _fail(str(error))
                        refused += 1
                        continue
                    extra = " and video.mp4" if settings.video else ""
                    tqdm.write(f"{recording.label}: {made} clips{extra} ({skipped} beats without a clip) "
                               f"-> {folder}")
        except EchopulseError as error:  # the input itself (a missing file, a broken archive)
            _fail(str(error))
            refused += 1
    return EXIT_REFUSED if refused else EXIT_OK

"""`echopulse generate`: ECG files in, one synthetic echo clip per beat out.

The steps are the pipeline core's (`echopulse.pipeline`); the files are the `GenerateOutputs` sink's. This
module only turns options into those calls and says what happened, beat counts and reasons included.
"""

from __future__ import annotations

import argparse
import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from echopulse.cli.common import (
    EXIT_OK,
    EXIT_REFUSED,
    add_input_options,
    check_output_folder,
    for_each_recording,
    positive_float,
    positive_int,
    status,
    warn,
)
from echopulse.errors import EchopulseError, one_line

if TYPE_CHECKING:
    import numpy as np

FORMAT_CHOICES = ("mp4", "gif")


def _formats(text: str) -> tuple[str, ...]:
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if names == ["none"]:
        return ()
    wrong = [n for n in names if n not in FORMAT_CHOICES]
    if wrong or not names:
        raise argparse.ArgumentTypeError(f"choose from mp4, gif (comma-separated) or none, got {text!r}")
    return tuple(n for n in FORMAT_CHOICES if n in names)


def add_parser(commands: Any) -> None:

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
        "usable beat is refused with one line and writes nothing; the other inputs still complete. A re-run "
        "into the same folder replaces the previous run's files.",
    )
    add_input_options(generate)
    generate.add_argument(
        "--model", type=Path, action="append", metavar="PATH",
        help="model: an echopulse model directory (default: the bundled model), or official ECHOPulse "
        "files by extension: a stage-2 .pt, optionally with a tokenizer .bin and an ST-MEM .pth (repeat "
        "--model for each); official weights use the compat window layout and no guidance",
    )
    generate.add_argument("--steps", type=positive_int, help="sampling steps (default: the model's)")
    generate.add_argument(
        "--guidance", type=float, help="classifier-free guidance scale (default: the model's)"
    )
    generate.add_argument(
        "--seed", type=int, default=0,
        help="seed (default 0, so a re-run gives the same frames); beat b's clip uses seed + b",
    )
    generate.add_argument(
        "--prime", type=Path, metavar="IMAGE",
        help="PNG/JPEG echo frame used as frame 0 of every clip (with --video: of the first clip only); made "
        "grey, centre-cropped square and resized to the model's frame size; a warning when it does not look "
        "like an echo frame",
    )
    generate.add_argument(
        "--device", default="auto",
        help="where the model runs (default auto: CUDA when present; cuda:N for another GPU)",
    )
    generate.add_argument(
        "--precision", default="auto", choices=("auto", "bf16", "fp32"),
        help="auto (default): bf16 where the hardware does it natively (CUDA, CPUs with AVX-512 BF16 or "
        "AMX; about 1.6x faster there), else float32; fp32: the same clips on every CPU",
    )
    generate.add_argument(
        "--batch-size", type=positive_int, default=16,
        help="clips per model call (default 16; --video generates one at a time)",
    )
    generate.add_argument(
        "--format", type=_formats, default=FORMAT_CHOICES, dest="formats", metavar="LIST",
        help="per-beat files: mp4,gif (default), mp4, gif or none",
    )
    generate.add_argument(
        "--scale", type=positive_int,
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
        "--video-fps", type=positive_float, default=30.0, help="frame rate of video.mp4 (default 30)"
    )
    generate.add_argument("--no-progress", action="store_true", help="no progress bars or status lines")
    generate.set_defaults(func=run)




def read_prime(path: Path, size: int) -> tuple[np.ndarray, dict[str, Any]]:
    """The --prime image as a (size, size) uint8 grey frame, and how the manifest names it; a warning when
    it does not look like an echo frame (it is used all the same: the user may know better)."""
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    from echopulse.echo.frame_check import echo_frame_doubt

    try:
        data = path.read_bytes()
    except OSError as error:
        raise EchopulseError(f"{path}: cannot read the --prime image ({error.strerror or error})") from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            colour = image.convert("RGB")
            grey = ImageOps.fit(image.convert("L"), (size, size), method=Image.Resampling.BILINEAR)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise EchopulseError(f"{path}: not a usable --prime image ({one_line(error)})") from None
    doubt = echo_frame_doubt(np.asarray(colour))
    if doubt:
        warn(f"{path}: --prime does not look like an echo frame ({doubt}); every clip will start from it")
    facts = {"file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "size": size}
    return np.array(grey, dtype=np.uint8), facts  # a writable copy (torch wants one)


def run(args: argparse.Namespace) -> int:
    """The `generate` command. A model, --prime or --out problem is one line and exit 2 before any input is
    read; a refused input is one line, writes nothing, and the others still complete (exit 2 at the end)."""
    from tqdm import tqdm

    from echopulse.generator.model_files import load_generator
    from echopulse.pipeline import (
        ClipOptions,
        clip_windows,
        generate_clips,
        plan_clips,
        preprocess_record,
        refusal_summary,
    )
    from echopulse.video.clip_files import default_scale
    from echopulse.video.generate_outputs import FileSettings, GenerateOutputs, model_facts, sampling_facts

    quiet = args.no_progress
    check_output_folder(args.out)
    if not quiet:
        status("loading the model …")
    generator = load_generator(args.model, args.device, args.precision)
    size = generator.config.tokenizer.image_size
    prime, prime_facts = read_prime(args.prime, size) if args.prime else (None, None)
    steps, guidance = generator.sampling_settings(args.steps, args.guidance)
    options = ClipOptions(steps=steps, guidance=guidance, seed=args.seed, batch_size=args.batch_size,
                          prime=prime, chain=args.video)
    files = FileSettings(formats=tuple(args.formats), scale=args.scale or default_scale(size),
                         mark=not args.no_mark, video=args.video, video_fps=args.video_fps)
    model = model_facts(generator)
    sampling = sampling_facts(generator, steps, guidance, args.seed, prime_facts)

    def generate_one(recording, record, folder: Path) -> str:
        if not quiet:
            status(f"{recording.label}: finding beats …")
        result = preprocess_record(record, method=args.method, layout=generator.window_layout,
                                   progress=record.duration_s > 600 and not quiet)
        todo = clip_windows(result, recording.label)
        plans = plan_clips(result)
        shown = None if not quiet else True  # None: a bar on a terminal only
        bar = tqdm(total=len(todo), desc=recording.label, unit="clip", leave=False, disable=shown)
        with bar, GenerateOutputs(folder, record, result, plans, recording.label, files, model=model,
                                  sampling=sampling) as outputs:
            for clip in generate_clips(generator, todo, options, progress=bar.update):
                outputs.add(clip)
            skipped = outputs.skipped
            outputs.commit()
        extra = " and video.mp4" if files.video else ""
        why = ""
        if skipped:
            beats = "beat" if len(skipped) == 1 else "beats"
            why = f" ({len(skipped)} {beats} without a clip: {refusal_summary(list(skipped.values()))})"
        return f"{recording.label}: {len(outputs.made)} clips{extra}{why} -> {folder}"

    refused = for_each_recording(args.files, args.fs, generate_one, out=args.out)
    return EXIT_REFUSED if refused else EXIT_OK

"""One `echopulse eval` run: held-out set, tokenizer reconstruction, generation with controls, files."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from echopulse.evaluation.generation_eval import (
    MEASURE_SIZE,
    ClipSource,
    GeneratorClips,
    TrueClips,
    evaluate_generation,
    ideal_generator_runs,
    mean_clip_agreement,
    measure_run,
    primed_shift,
    repeat_runs,
    run_metrics,
)
from echopulse.evaluation.heldout import EvalError, check_count, eval_leads, heldout_set
from echopulse.evaluation.plots import best_worst_strip, ef_scatter, tokenizer_strip
from echopulse.evaluation.report import generation_keys, write_eval_json, write_per_sample_csv
from echopulse.evaluation.tokenizer_eval import real_echo_clips, reconstruct

RECONSTRUCTED_KEYS = ("ef_mae", "ef_r2", "es_frame_within_1", "ed_frame_within_1")
"""Measured on the tokenizer's reconstructions of the true clips (`*_reconstructed` in eval.json): the best
a generator could score through this tokenizer, which separates the tokenizer's share of the error."""

REFERENCE_KEYS = ("ef_mae", "ef_rmse", "ef_r2", "ef_r", "es_frame_within_1", "ed_frame_within_1")
"""Scored for the two references (`*_true_clips`, `*_ideal_generator` in eval.json): the measurement on
the beats' own clips, and the phantom as an ideal generator (another heart for the same ECG)."""

PRIMING_KEYS = ("ef_mean_primed", "ef_mean_unprimed", "ef_primed_minus_unprimed", "n_primed_measured")
"""What priming does: the default run's beats again, each clip primed with the last frame of the one
before (as `generate --video` chains a recording's clips), same seeds."""

CLIPS_PER_BEAT = 4
"""Clips drawn per beat (other seeds, same ECG) for the `*_mean4` figures: each beat's EF as the mean over
its clips, which takes the sampling's spread out and shows how closely the clips follow the ECG."""

IDEAL_DRAWS = CLIPS_PER_BEAT
"""The ideal generator's score is itself one draw of a random variable: over 200 held-out beats (seed
900 000) six draws gave EF R² 0.50–0.65. Its keys are the mean over this many draws (each draw's R² is in
`ef_r2_ideal_generator_draws`), so the yardstick moves less than the model's own single-draw score does."""


def mean_metrics(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    """Each reference key's mean over the runs that have a number for it (None when none has)."""
    out: dict[str, float | None] = {}
    for key in REFERENCE_KEYS:
        values = [float(m[key]) for m in runs if m[key] is not None]
        out[key] = float(np.mean(values)) if values else None
    return out


def _bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="clip", leave=False, disable=not enabled)


def evaluate(
    generator,
    out_dir: Path,
    *,
    n: int,
    seed: int,
    steps: int | None = None,
    batch_size: int = 16,
    real_echo_dir: Path | None = None,
    clip_source: ClipSource | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every part of the eval with `generator` (an `EchoGenerator`) and write into `out_dir`.

    The model's training leads and data come from `generator.metadata` (what its checkpoint says of
    itself). `clip_source` replaces the generator as the maker of clips (for example `TrueClips()`, to
    validate the measurement machinery); the tokenizer is still the generator's.
    """
    start = time.perf_counter()
    check_count(n, seed)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise EvalError(f"eval: --batch-size must be a positive integer, got {batch_size!r}")
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise EvalError(f"eval: --steps must be a positive integer, got {steps!r}")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise EvalError(f"{out_dir}: cannot create the output folder ({error.strerror or error})") from error

    config = generator.config
    metadata: Mapping[str, str] = generator.metadata
    tok = config.tokenizer
    keep, leads_name, leads_note = eval_leads(metadata.get("leads", "I"))
    notes: list[str] = [leads_note] if leads_note else []
    with _bar(n, "held-out phantom", progress) as bar:
        samples = heldout_set(
            n, seed, tok.image_size, tok.num_frames, keep, config.stmem.window_layout, progress=bar.update
        )

    with _bar(n, "tokenizer", progress) as bar:
        phantom_recon = reconstruct(
            generator.tokenizer,
            tok,
            [s.clip for s in samples],
            [f"seed {s.seed}" for s in samples],
            periodic=True,
            batch_size=batch_size,
            progress=bar.update,
        )
    tokenizer_strip(
        out_dir / "tokenizer_phantom.png",
        phantom_recon.originals,
        phantom_recon.reconstructions,
        phantom_recon.names,
        "video tokenizer: held-out phantom clips, input vs reconstruction",
    )
    real: dict[str, Any] = {"mse": None, "mae": None, "ssim": None}
    real_clips: list[str] = []
    if real_echo_dir is None or not Path(real_echo_dir).is_dir():
        notes.append(f"real echo GIFs not found ({real_echo_dir}): real_echo_tokenizer_* are null")
    else:
        clips, real_clips, skipped = real_echo_clips(Path(real_echo_dir))
        notes.extend(f"real echo GIF skipped: {line}" for line in skipped)
        if not clips:
            notes.append(f"no Visualization GIFs in {real_echo_dir}: real_echo_tokenizer_* are null")
        else:
            real_recon = reconstruct(
                generator.tokenizer, tok, clips, real_clips, periodic=False, batch_size=batch_size
            )
            real = real_recon.summary()
            tokenizer_strip(
                out_dir / "tokenizer_real_echo.png",
                real_recon.originals,
                real_recon.reconstructions,
                real_recon.names,
                "video tokenizer: real echo (ECHOPulse Visualization GIFs, out of domain)",
            )

    _, default_guidance = generator.sampling_settings(steps, None)
    runs = 2 if float(default_guidance) == 1.0 else 3
    with _bar(runs * n, "generate", progress) as bar:
        source = clip_source or GeneratorClips(generator, steps, batch_size, progress=bar.update)
        result = evaluate_generation(samples, source, seed, default_guidance)
    notes.extend(result.notes)
    every_beat = np.arange(n)
    with _bar((CLIPS_PER_BEAT - 1) * n, "more clips per beat", progress) as bar:
        source = clip_source or GeneratorClips(generator, steps, batch_size, progress=bar.update)
        more = repeat_runs(samples, source, seed, default_guidance, CLIPS_PER_BEAT)
    draws = [result.runs["default"], *more]
    priming: dict[str, Any] = dict.fromkeys(PRIMING_KEYS)
    if clip_source is None:
        with _bar(n, "primed clips", progress) as bar:
            chained = GeneratorClips(generator, steps, 1, progress=bar.update, chained=True)
            clips = chained(samples, default_guidance, seed)
        priming = primed_shift(result.runs["default"], measure_run("primed", samples, clips, every_beat,
                                                                   default_guidance))
    else:
        notes.append("clips from a fixed source cannot be primed: ef_primed_minus_unprimed is null")
    with _bar(IDEAL_DRAWS * n, "ideal generator", progress) as bar:
        ideal_runs = ideal_generator_runs(
            samples, tok.image_size, tok.num_frames, IDEAL_DRAWS, progress=bar.update
        )
    own_clips = measure_run("true_clips", samples, TrueClips()(samples, None, seed), every_beat, None)
    ef_scatter(out_dir / "ef_scatter.png", samples, result, ideal_runs[0])
    best_worst_strip(out_dir / "frames_best_worst.png", samples, result)
    write_per_sample_csv(out_dir, samples, result)

    # The ceiling the tokenizer sets: its reconstructions of the true clips are what a generator that
    # predicted every token right would make, measured the same way.
    recon_clips = [np.round(c * 255).astype(np.uint8) for c in phantom_recon.reconstructions]
    ceiling = run_metrics(samples, measure_run("reconstructed", samples, recon_clips, every_beat, None))
    ideal_metrics = [run_metrics(samples, run) for run in ideal_runs]
    reference = {
        "true_clips": run_metrics(samples, own_clips),
        "ideal_generator": mean_metrics(ideal_metrics),
    }
    true_ef = np.array([s.ef for s in samples])
    report: dict[str, Any] = {
        "tokenizer_mse": phantom_recon.summary()["mse"],
        "tokenizer_mae": phantom_recon.summary()["mae"],
        "tokenizer_ssim": phantom_recon.summary()["ssim"],
        "real_echo_tokenizer_mse": real["mse"],
        "real_echo_tokenizer_mae": real["mae"],
        "real_echo_tokenizer_ssim": real["ssim"],
        "real_echo_clips": real_clips,
        **generation_keys(result),
        **{f"{key}_reconstructed": ceiling[key] for key in RECONSTRUCTED_KEYS},
        **{f"{key}_{name}": metrics[key] for name, metrics in reference.items() for key in REFERENCE_KEYS},
        "ef_r2_ideal_generator_draws": [m["ef_r2"] for m in ideal_metrics],
        **{f"{key}_mean{CLIPS_PER_BEAT}": value for key, value in mean_clip_agreement(samples, draws).items()
           if key != "measured"},
        **{f"{key}_mean{CLIPS_PER_BEAT}_ideal_generator": value
           for key, value in mean_clip_agreement(samples, ideal_runs).items() if key != "measured"},
        "clips_per_beat": CLIPS_PER_BEAT,
        **priming,
        "n": n,
        "seed": seed,
        "steps": int(steps or config.sampling.steps),
        "guidance": float(default_guidance),
        "model": {
            "id": generator.model_id,
            "config_hash": config.hash,
            "config": config.name,
            "training_data": metadata.get("data"),
        },
        "leads": leads_name,
        "model_leads": metadata.get("leads", "I"),
        "size": tok.image_size,
        "frames": tok.num_frames,
        "measure_size": MEASURE_SIZE,
        "ef_true_mean": float(true_ef.mean()),
        "ef_true_std": float(true_ef.std()),
        "clip_source": "generator" if clip_source is None else type(clip_source).__name__,
        "device": str(getattr(generator, "device", "cpu")),
        "precision": getattr(generator, "precision", "fp32"),
        "synthetic": True,
        "notes": notes,
    }
    report["seconds"] = round(time.perf_counter() - start, 3)
    write_eval_json(out_dir, report)
    return report

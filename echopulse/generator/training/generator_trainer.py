"""Stage 2: train the masked-token transformer and the ST-MEM encoder (`echopulse train generator`).

The tokenizer comes from a stage-1 checkpoint, frozen in eval mode; every clip is tokenised once and the
ids are cached (`token_cache.pt`, keyed by the tokenizer weights and the data). Per step and sample, as in
the official trainer: rand_step ~ U{0 … S−1} with S the config's sampling steps, mask probability
p = cos(π/2 · rand_step / S), exactly max(1, round(p·n)) random positions replaced by [MASK],
cross-entropy on the masked positions only. Added to the official recipe: condition dropout
(`drop_context` with the config's `cond_drop_prob`), so classifier-free guidance has a null context to
contrast with, and the ST-MEM encoder trains jointly with the transformer (no released ST-MEM weights
may be shipped); `--stmem DIR` starts it from a checkpoint's encoder and `--freeze-stmem` keeps it fixed.

With a cycle tokenizer the ids are one frame of anatomy, and the transformer's cycle head learns the clip's
cycle code (cached beside the ids) from the ECG context by Gaussian likelihood (`cycle_loss`), added to
the masked-token loss; the cycle head always sees the real context (condition dropout is for the ids).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from echopulse.errors import ModelError
from echopulse.generator.checkpoints import WEIGHTS_FILE, load_checkpoint, save_checkpoint
from echopulse.generator.config import GeneratorConfig
from echopulse.generator.parts import new_module
from echopulse.generator.sampling import cosine_masked_count, sample_ids
from echopulse.generator.training.common import (
    SAMPLES_DIR,
    TrainingSteps,
    TrainLog,
    TrainResult,
    autocast,
    due,
    load_resume,
    resolve_device,
    restore,
    resume_state,
    save_state,
    seed_init,
)
from echopulse.generator.training.data import (
    PairDataset,
    batch_indices,
    parse_leads,
    step_rng,
)
from echopulse.generator.training.ema import EMA
from echopulse.generator.training.errors import TrainingError
from echopulse.generator.training.settings import TrainSettings

KIND = "generator"
CACHE_FILE = "token_cache.pt"
ENCODE_BATCH = 16


def mask_tokens(
    ids: Tensor, steps: int, mask_id: int, prime_prob: float = 0.0, prime_n: int = 0
) -> tuple[Tensor, Tensor]:
    """The official training mask: (masked input ids, bool mask) for flat ids (b, n), masking per row the
    `cosine_masked_count` of a random step k/steps, k ~ U{0 … steps−1}.

    `prime_prob`: each row, with this probability, keeps its first `prime_n` ids (the first frame's) unmasked
    and masks the count of the rest, as sampling with a prime frame does (`generate --video` chains clips
    so); without it the transformer never sees a whole first frame given. Uses the global torch RNG (seeded
    per step by the trainer); at 0 it draws exactly what the official mask draws.
    """
    b, n = ids.shape
    rand_step = torch.randint(0, steps, (b,), device=ids.device)
    noise = torch.rand(b, n, device=ids.device)
    free = torch.full((b,), n, device=ids.device)
    if prime_prob > 0 and prime_n > 0:
        primed = torch.rand(b, device=ids.device) < prime_prob
        noise[primed, :prime_n] = 2.0  # ranked last, so never among the masked
        free = free - primed.long() * prime_n
    count = cosine_masked_count(free, rand_step.double() / steps)
    rank = noise.argsort(dim=-1).argsort(dim=-1)
    mask = rank < count[:, None]
    return ids.masked_fill(mask, mask_id), mask


def masked_token_loss(logits: Tensor, ids: Tensor, mask: Tensor) -> Tensor:
    """Mean cross-entropy over the masked positions of the batch (float32)."""
    return F.cross_entropy(logits[mask].float(), ids[mask])


def cycle_loss(mean: Tensor, log_std: Tensor, target: Tensor) -> Tensor:
    """Mean Gaussian negative log-likelihood (constant dropped) of the cycle code under the prediction."""
    mean, log_std = mean.float(), log_std.float()
    return (0.5 * ((target - mean) * torch.exp(-log_std)) ** 2 + log_std).mean()


class GeneratorParts(nn.Module):
    """The trained parts together, so one EMA and one optimizer cover them."""

    def __init__(self, stmem: nn.Module, transformer: nn.Module) -> None:
        super().__init__()
        self.stmem = stmem
        self.transformer = transformer


def load_tokenizer(directory: Path, config: GeneratorConfig, device: torch.device) -> nn.Module:
    """The frozen, eval-mode tokenizer of a stage-1 checkpoint; ModelError when it is not one."""
    directory = Path(directory)
    checkpoint = load_checkpoint(directory)  # ModelError naming the file for anything unreadable
    if "tokenizer" not in checkpoint.state:
        raise ModelError(f"{directory}: holds no tokenizer weights (parts: {', '.join(checkpoint.parts)})")
    if checkpoint.config.tokenizer != config.tokenizer:
        raise TrainingError(
            f"{directory}: its tokenizer config differs from --config's; train the generator with the "
            f"tokenizer's config ({directory / 'config.json'})"
        )
    tokenizer = checkpoint.build(["tokenizer"], device)["tokenizer"].eval()
    for p in tokenizer.parameters():
        p.requires_grad_(False)
    return tokenizer


def load_stmem(directory: Path, config: GeneratorConfig, device: torch.device) -> dict[str, Tensor]:
    checkpoint = load_checkpoint(directory)
    if "stmem" not in checkpoint.state:
        raise ModelError(f"{directory}: holds no stmem weights (parts: {', '.join(checkpoint.parts)})")
    if checkpoint.config.stmem != config.stmem:
        raise TrainingError(f"{directory}: its stmem config differs from --config's")
    return checkpoint.build(["stmem"], device)["stmem"].state_dict()


def load_transformer(directory: Path, config: GeneratorConfig) -> dict[str, Tensor]:
    """The transformer weights of a generator checkpoint, checked to fit `config`."""
    checkpoint = load_checkpoint(directory)
    if "transformer" not in checkpoint.state:
        raise ModelError(f"{directory}: holds no transformer weights (parts: {', '.join(checkpoint.parts)})")
    if checkpoint.config.transformer != config.transformer or checkpoint.config.tokenizer != config.tokenizer:
        raise TrainingError(f"{directory}: its transformer or tokenizer config differs from --config's; "
                            f"fine-tune with its own config ({directory}/config.json)")
    return checkpoint.build(["transformer"], torch.device("cpu"))["transformer"].state_dict()


def check_shapes(config: GeneratorConfig) -> tuple[int, int, int]:
    """The token grid; TrainingError when the three parts of the config do not fit together."""
    tok, tr, st = config.tokenizer, config.transformer, config.stmem
    grid = tok.grid
    n = grid[0] * grid[1] * grid[2]
    if tr.num_tokens != tok.codebook_size:
        raise TrainingError(
            f"config: transformer.num_tokens {tr.num_tokens} != codebook_size {tok.codebook_size}"
        )
    if n > tr.max_seq_len:
        raise TrainingError(f"config: {n} tokens per clip exceed transformer.max_seq_len {tr.max_seq_len}")
    if st.width != tr.dim_context:
        raise TrainingError(f"config: stmem.width {st.width} != transformer.dim_context {tr.dim_context}")
    if tok.cycle_dim and (tr.cycle_dim, tr.cycle_frames) != (tok.cycle_dim, tok.num_frames):
        raise TrainingError(
            f"config: a cycle tokenizer ({tok.num_frames} frames × {tok.cycle_dim}) needs a transformer "
            f"cycle head of the same shape, got {tr.cycle_frames} × {tr.cycle_dim}"
        )
    return grid


def tokenize_dataset(
    tokenizer: nn.Module,
    data: PairDataset,
    config: GeneratorConfig,
    device: torch.device,
    key: str,
    cache_dirs: list[Path],
    out: Path,
    progress: bool,
) -> tuple[Tensor, Tensor | None]:
    """(N, t, h, w) ids of every clip and, for a cycle tokenizer, (N, f, cycle_dim) cycle codes (else None),
    from a cache with the same key when one exists."""
    for directory in cache_dirs:
        path = directory / CACHE_FILE
        if path.is_file():
            try:
                cached = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:  # a broken cache is rebuilt, not an error
                continue
            if isinstance(cached, dict) and cached.get("key") == key:
                return cached["ids"].long(), cached.get("cycle")
    chunks, cycles = [], []
    for start in tqdm(
        range(0, len(data), ENCODE_BATCH), desc="tokenise", unit="batch", leave=False, disable=not progress
    ):
        indices = list(range(start, min(start + ENCODE_BATCH, len(data))))
        with torch.no_grad():  # float32: the ids must be the ones the tokenizer gives at inference
            clips = data.clips(indices, config.tokenizer).to(device)
            chunks.append(tokenizer.encode(clips).cpu())
            if config.tokenizer.cycle_dim:  # the label where the data has one, as the decoder learnt
                labels = data.cycles(indices, config.tokenizer)
                cycles.append(tokenizer.cycle_code(clips).float().cpu() if labels is None else labels.float())
    ids = torch.cat(chunks)
    cycle = torch.cat(cycles) if cycles else None
    out.mkdir(parents=True, exist_ok=True)
    dtype = torch.int16 if config.tokenizer.codebook_size <= 32767 else torch.int32
    torch.save({"key": key, "ids": ids.to(dtype), "cycle": cycle}, out / CACHE_FILE)
    return ids, cycle


def cache_key(tokenizer_dir: Path, data: PairDataset, config: GeneratorConfig) -> str:
    digest = hashlib.sha256()
    with open(Path(tokenizer_dir) / WEIGHTS_FILE, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    digest.update(data.fingerprint.encode() + config.to_json().encode())
    return digest.hexdigest()[:24]


def train_generator(
    config: GeneratorConfig,
    data: PairDataset,
    tokenizer_dir: Path,
    out: Path,
    settings: TrainSettings,
    resume: Path | None = None,
    stmem_dir: Path | None = None,
    freeze_stmem: bool = False,
    init: Path | None = None,
    prime_prob: float = 0.0,
) -> TrainResult:
    """Train (or continue) the transformer and ST-MEM on `data`; writes a full checkpoint to `out`.

    `init` starts the transformer from a trained generator checkpoint's (fine-tuning, a fresh optimizer);
    `prime_prob` is `mask_tokens`' share of rows trained with their first frame given."""
    if not 0.0 <= prime_prob <= 1.0:
        raise TrainingError(f"--prime-prob must be in 0 … 1, got {prime_prob}")
    if init is not None and resume is not None:
        raise TrainingError("--init and --resume exclude each other (a resumed run has its own weights)")
    settings.check()
    leads = parse_leads(settings.leads)
    grid = check_shapes(config)
    if prime_prob > 0 and config.tokenizer.cycle_dim:
        raise TrainingError("--prime-prob is for a frame-by-frame tokenizer: a cycle tokenizer's prime gives "
                            "all of its ids (the anatomy) and leaves the motion to the ECG")
    device = resolve_device(settings.device)
    out = Path(out)
    tokenizer = load_tokenizer(tokenizer_dir, config, device)
    if len(data) < 1:
        raise TrainingError(f"{data.source}: no samples to train on")
    if isinstance(leads, tuple):
        lacking = [
            name for name, ecg in zip(data.names, data.ecgs, strict=True) if not set(leads) & set(ecg.leads)
        ]
        if lacking:
            raise TrainingError(
                f"{data.source}: {len(lacking)} samples have none of --leads {','.join(leads)} "
                f"(first: {lacking[0]})"
            )
    holdout = min(settings.holdout, len(data) // 5)
    train_n = len(data) - holdout
    shown = list(range(train_n, len(data))) or list(range(min(4, len(data))))

    key = cache_key(tokenizer_dir, data, config)
    caches = [out] + ([Path(resume)] if resume is not None else [])
    all_ids, all_cycles = tokenize_dataset(
        tokenizer, data, config, device, key, caches, out, settings.progress
    )

    seed_init(settings.seed)
    stmem = new_module(config, "stmem")
    transformer = new_module(config, "transformer")
    if stmem_dir is not None:
        stmem.load_state_dict(load_stmem(stmem_dir, config, torch.device("cpu")))
    if init is not None:
        transformer.load_state_dict(load_transformer(init, config))
    parts = GeneratorParts(stmem, transformer).to(device).train()
    if freeze_stmem:
        parts.stmem.eval()
        for p in parts.stmem.parameters():
            p.requires_grad_(False)
    params = [p for p in parts.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=settings.lr, betas=(settings.beta1, settings.beta2))
    ema = EMA(parts, settings.ema_beta)
    state, start = load_resume(resume, KIND, config, device, settings.steps)
    if state is not None:
        if bool(state.get("freeze_stmem", False)) != freeze_stmem:
            was = "with" if state.get("freeze_stmem") else "without"
            raise TrainingError(f"{resume}: that run trained {was} --freeze-stmem; resume it the same way")
        restore(state, parts, optimizer, ema)
    end = settings.end_step
    log = TrainLog(out, resume, start)
    sampling_steps = config.sampling.steps
    frame_tokens = grid[1] * grid[2]  # the first frame's ids: what a prime frame fixes
    layout = config.stmem.window_layout
    # A fixed encoder on fixed leads gives each sample one context for the whole run: compute them once.
    fixed_context = (
        encode_contexts(parts.stmem, data, train_n, leads, layout, device, settings.progress)
        if freeze_stmem and isinstance(leads, tuple)
        else None
    )

    steps = TrainingSteps(settings, optimizer, start, "generator")
    for step, lr in steps:
        step_began = time.perf_counter()
        indices = batch_indices(train_n, settings.batch_size, settings.seed, step)
        ids = all_ids[indices].flatten(1).to(device)
        with autocast(device):
            if fixed_context is not None:
                context = fixed_context[indices].to(device)
            else:
                ecg = data.windows(indices, leads, step_rng(settings.seed, step), layout).to(device)
                with torch.set_grad_enabled(not freeze_stmem):
                    context = parts.stmem.context(ecg)
            cycle_prediction = None
            if all_cycles is not None:
                cycle_prediction = parts.transformer.predict_cycle(context)
            context = parts.transformer.drop_context(context)
            mask_id = parts.transformer.mask_id
            inputs, mask = mask_tokens(ids, sampling_steps, mask_id, prime_prob, frame_tokens)
            logits = parts.transformer(inputs, context, grid)
        token_loss = masked_token_loss(logits, ids, mask)
        loss = token_loss
        extra = {}
        if cycle_prediction is not None:
            motion = cycle_loss(*cycle_prediction, all_cycles[indices].to(device))
            loss = loss + motion
            extra = {"token_loss": round(token_loss.item(), 6), "cycle_nll": round(motion.item(), 6)}
        value, grad_norm = steps.update(loss, params, ema, parts)

        done = step + 1
        with torch.no_grad():
            accuracy = float((logits[mask].argmax(dim=-1) == ids[mask]).float().mean())
        log.write(
            {
                "step": done,
                "step_s": round(time.perf_counter() - step_began, 4),
                "loss": round(value, 6),
                "accuracy": round(accuracy, 6),
                "lr": lr,
                "masked_fraction": round(float(mask.float().mean()), 6),
                "grad_norm": round(grad_norm, 6),
                **extra,
            }
        )
        steps.bar.set_postfix(loss=f"{value:.4f}", acc=f"{accuracy:.3f}", lr=f"{lr:.2e}")
        if due(done, settings.sample_every, end):
            write_generations(
                ema.model,
                tokenizer,
                data,
                shown,
                leads,
                config,
                settings,
                device,
                out / SAMPLES_DIR,
                f"step-{done:07d}",
            )
        if due(done, settings.save_every, end):
            save_generator(out, config, parts, tokenizer, optimizer, ema, done, settings, data)
    if start >= end:
        save_generator(out, config, parts, tokenizer, optimizer, ema, start, settings, data)
    return steps.result(out)


@torch.no_grad()
def encode_contexts(
    stmem: nn.Module,
    data: PairDataset,
    count: int,
    leads: tuple[str, ...],
    layout: str,
    device: torch.device,
    progress: bool,
    batch_size: int = 64,
) -> Tensor:
    """The frozen encoder's context of samples 0 … count-1, on the CPU."""
    out = []
    rng = np.random.default_rng(0)  # unused: fixed leads draw nothing
    for start in tqdm(range(0, count, batch_size), desc="ECG contexts", disable=not progress, leave=False):
        indices = list(range(start, min(start + batch_size, count)))
        with autocast(device):
            out.append(stmem.context(data.windows(indices, leads, rng, layout).to(device)).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def write_generations(
    parts: GeneratorParts,
    tokenizer: nn.Module,
    data: PairDataset,
    indices: list[int],
    leads: tuple[str, ...] | str,
    config: GeneratorConfig,
    settings: TrainSettings,
    device: torch.device,
    directory: Path,
    name: str,
) -> None:
    """Rows: the real clip (as the tokenizer reconstructs it), then the clip generated from its ECG, for
    each held-out sample; `sample_ids` with the config's sampling defaults and a fixed seed (a cycle
    tokenizer's code at the cycle head's mean)."""
    was_training = parts.training
    parts.eval()
    fixed = "all" if leads == "random" else leads
    ecg = data.windows(indices, fixed, np.random.default_rng(0), config.stmem.window_layout).to(device)
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    with autocast(device):
        context = parts.stmem.context(ecg)
        ids = sample_ids(
            parts.transformer,
            context,
            config.tokenizer.grid,
            steps=config.sampling.steps,
            starting_temperature=config.sampling.starting_temperature,
            guidance=config.sampling.guidance,
            guidance_steps=config.sampling.guidance_steps,
            generator=generator,
        )
        real = tokenizer.reconstruct(data.clips(indices, config.tokenizer).to(device)).float()
        if config.tokenizer.cycle_dim:
            generated = tokenizer.decode(ids, parts.transformer.predict_cycle(context)[0]).float()
        else:
            generated = tokenizer.decode(ids).float()
    parts.train(was_training)
    if not any(p.requires_grad for p in parts.stmem.parameters()):
        parts.stmem.eval()
    rows = [clip for pair in zip(real, generated, strict=True) for clip in pair]
    from echopulse.generator.training.samples import save_samples

    save_samples(directory, name, rows)


def save_generator(
    out: Path,
    config: GeneratorConfig,
    parts: GeneratorParts,
    tokenizer: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: EMA,
    step: int,
    settings: TrainSettings,
    data: PairDataset,
) -> None:
    """A full generator checkpoint (EMA stmem and transformer, the frozen tokenizer) and the resume state."""
    frozen = not any(p.requires_grad for p in parts.stmem.parameters())
    save_state(out, resume_state(KIND, step, config, settings, parts, optimizer, ema, freeze_stmem=frozen))
    save_checkpoint(
        out,
        config,
        {"stmem": ema.model.stmem, "tokenizer": tokenizer, "transformer": ema.model.transformer},
        metadata={
            "trained": KIND,
            "steps": str(step),
            "data": str(data.source),
            "data_fingerprint": data.fingerprint,
            "seed": str(settings.seed),
            "leads": str(settings.leads),
        },
    )

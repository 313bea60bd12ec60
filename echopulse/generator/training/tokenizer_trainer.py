"""Stage 1: train the video tokenizer on clips (`echopulse train tokenizer`).

Objective per step: 10·MSE + L1 + (1 − SSIM) between clip and reconstruction (`losses.py`), plus the VQ
commitment loss; the codebook itself learns by EMA inside the quantizer (with dead-code restarts when the
config asks for them). Adam (β 0.9/0.99, no weight decay), gradients clipped to norm 0.5, learning rate
warmed up then cosine-decayed (`schedule.py`), EMA weights (`ema.py`) saved as the checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from echopulse.generator.checkpoints import save_checkpoint
from echopulse.generator.config import GeneratorConfig
from echopulse.generator.cycle_tokenizer import CYCLE_NOISE, CycleTokenizer
from echopulse.generator.parts import new_module
from echopulse.generator.tokenizer import TokenizerOutput, VideoTokenizer
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
from echopulse.generator.training.data import PairDataset, batch_indices
from echopulse.generator.training.ema import EMA
from echopulse.generator.training.errors import TrainingError
from echopulse.generator.training.generator_trainer import load_tokenizer
from echopulse.generator.training.losses import ReconLossWeights, reconstruction_loss
from echopulse.generator.training.samples import save_samples
from echopulse.generator.training.settings import TrainSettings

KIND = "tokenizer"
SHOWN_CLIPS = 4


def train_tokenizer(
    config: GeneratorConfig,
    data: PairDataset,
    out: Path,
    settings: TrainSettings,
    resume: Path | None = None,
    weights: ReconLossWeights | None = None,
    init: Path | None = None,
    decoder_only: bool = False,
) -> TrainResult:
    """Train (or continue training) the tokenizer of `config` on `data`; writes a checkpoint to `out`.

    `init` starts the weights (codebook included) from a trained tokenizer checkpoint with a fresh optimizer
    and schedule: a second, longer run on top of a finished one, which `resume` (same schedule) cannot do.
    `decoder_only` (with `init`) trains the decoder alone: the encoder and the codebook stay as they are, so
    every clip keeps its token ids and a generator trained on them stays valid, while the pixels those ids
    decode to get better.
    """
    settings.check()
    weights = weights or ReconLossWeights()
    if len(data) == 0:
        raise TrainingError(f"{data.source}: no clips to train on")
    device = resolve_device(settings.device)
    out = Path(out)

    seed_init(settings.seed)
    model = new_module(config, "tokenizer").to(device).train()
    assert isinstance(model, VideoTokenizer | CycleTokenizer)
    if init is not None:
        if resume is not None:
            raise TrainingError("--init and --resume exclude each other (a resumed run has its own weights)")
        model.load_state_dict(load_tokenizer(init, config, torch.device("cpu")).state_dict())
    if decoder_only:
        if init is None and resume is None:
            raise TrainingError("--decoder-only needs --init (the tokenizer whose decoder to train)")
        freeze_encoder(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=settings.lr, betas=(settings.beta1, settings.beta2))
    ema = EMA(model, settings.ema_beta)
    state, start = load_resume(resume, KIND, config, device, settings.steps)
    if state is not None:
        restore(state, model, optimizer, ema)
    end = settings.end_step
    log = TrainLog(out, resume, start)
    shown = list(range(min(SHOWN_CLIPS, len(data))))

    forward = decoder_forward if decoder_only else tokenizer_forward
    steps = TrainingSteps(settings, optimizer, start, "tokenizer")
    for step, lr in steps:
        step_began = time.perf_counter()
        indices = batch_indices(len(data), settings.batch_size, settings.seed, step)
        video = data.clips(indices, config.tokenizer).to(device)
        cycle = data.cycles(indices, config.tokenizer)
        output = forward(model, video, device, None if cycle is None else cycle.to(device))
        losses = reconstruction_loss(output.recon, video, weights)
        loss = losses["total"] + output.commit_loss.float()
        if output.cycle_loss is not None:
            loss = loss + output.cycle_loss.float()
        value, grad_norm = steps.update(loss, params, ema, model)

        done = step + 1
        stats = {k: v.item() for k, v in losses.items()}
        log.write(
            {
                "step": done,
                "step_s": round(time.perf_counter() - step_began, 4),
                "loss": round(value, 6),
                "mse": round(stats["mse"], 6),
                "l1": round(stats["l1"], 6),
                "ssim": round(stats["ssim"], 6),
                "commit": round(output.commit_loss.item(), 6),
                "lr": lr,
                "codebook_usage": round(float(output.codebook_usage), 6),
                "perplexity": round(float(output.perplexity), 3),
                "grad_norm": round(grad_norm, 6),
                **({} if output.cycle_loss is None else {"cycle_mse": round(output.cycle_loss.item(), 6)}),
            }
        )
        steps.bar.set_postfix(
            loss=f"{value:.4f}",
            mse=f"{stats['mse']:.5f}",
            usage=f"{float(output.codebook_usage):.2f}",
            lr=f"{lr:.2e}",
        )
        if due(done, settings.sample_every, end):
            write_reconstructions(
                ema.model, data, shown, config, device, out / SAMPLES_DIR, f"step-{done:07d}"
            )
        if due(done, settings.save_every, end):
            save_tokenizer(out, config, model, optimizer, ema, done, settings, data)
    if start >= end:  # nothing left to do: still leave a checkpoint behind
        save_tokenizer(out, config, model, optimizer, ema, start, settings, data)
    return steps.result(out)


DECODER_PARTS = (
    "vq.project_out.", "dec_temporal.", "dec_spatial.", "to_pixels_first.", "to_pixels.", "cycle_in.",
    "frame_emb",
)


def freeze_encoder(model: VideoTokenizer | CycleTokenizer) -> None:
    """Everything but the decoder stops learning; the quantizer stops its EMA codebook updates (eval)."""
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(DECODER_PARTS))
    model.vq.eval()


def decoder_forward(
    model: VideoTokenizer | CycleTokenizer, video: torch.Tensor, device: torch.device,
    cycle_target: torch.Tensor | None = None,
) -> TokenizerOutput:
    """Reconstruction from the clip's fixed token ids (and cycle code: the label where the data has one),
    gradients through the decoder only."""
    ids = model.encode(video)
    with autocast(device):
        if isinstance(model, CycleTokenizer):
            with torch.no_grad():
                cycle = model.cycle_code(video) if cycle_target is None else cycle_target
                cycle = cycle + CYCLE_NOISE * torch.randn_like(cycle)  # as the full training sees it
            recon = model.decode(ids, cycle)
        else:
            recon = model.decode(ids)
    recon = recon.float()
    perplexity, usage = model.vq.usage_stats(ids)
    return TokenizerOutput(
        recon=recon, ids=ids, recon_loss=F.mse_loss(recon, video),
        commit_loss=torch.zeros((), device=video.device), perplexity=perplexity, codebook_usage=usage,
    )  # fmt: skip


def tokenizer_forward(
    model: VideoTokenizer | CycleTokenizer, video: torch.Tensor, device: torch.device,
    cycle_target: torch.Tensor | None = None,
) -> TokenizerOutput:
    """`model(video)` with the transformers under autocast (bf16 on CUDA) and the quantizer in float32.

    The quantizer's EMA codebook update and its nearest-code search must stay in float32: bf16 would
    round the similarities (changing ids) and mix dtypes in the in-place EMA buffers.
    """
    if isinstance(model, CycleTokenizer):  # its forward quantises in float32 itself
        with autocast(device):
            output = model(video, cycle_target)
        output.recon = output.recon.float()
        return output
    with autocast(device):
        tokens = model.encode_tokens(model.patch_tokens(video))
    vq = model.vq(tokens.float())
    with autocast(device):
        recon = model.decode_tokens(vq.quantized)
    recon = recon.float()
    return TokenizerOutput(
        recon=recon, ids=vq.ids, recon_loss=F.mse_loss(recon, video), commit_loss=vq.commit_loss,
        perplexity=vq.perplexity, codebook_usage=vq.usage,
    )  # fmt: skip


@torch.no_grad()
def write_reconstructions(
    model: torch.nn.Module,
    data: PairDataset,
    indices: list[int],
    config: GeneratorConfig,
    device: torch.device,
    directory: Path,
    name: str,
) -> None:
    """Rows: input, reconstruction, input, reconstruction, ... (EMA weights, eval mode)."""
    video = data.clips(indices, config.tokenizer).to(device)
    was_training = model.training
    model.eval()
    recon = tokenizer_forward(model, video, device).recon.float()
    model.train(was_training)
    rows = [clip for pair in zip(video, recon, strict=True) for clip in pair]
    save_samples(directory, name, rows)


def save_tokenizer(
    out: Path,
    config: GeneratorConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: EMA,
    step: int,
    settings: TrainSettings,
    data: PairDataset,
) -> None:
    """The EMA weights as a checkpoint (part "tokenizer"), the raw ones and the optimizer for resuming."""
    save_state(out, resume_state(KIND, step, config, settings, model, optimizer, ema))
    save_checkpoint(
        out,
        config,
        {"tokenizer": ema.model},
        metadata={
            "trained": KIND,
            "steps": str(step),
            "data": str(data.source),
            "data_fingerprint": data.fingerprint,
            "seed": str(settings.seed),
        },
    )

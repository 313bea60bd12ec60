"""Stage 0: teach the small ST-MEM encoder to read a beat's cardiac state from its ECG (`train ecg`).

Why supervised, and why on the phantom: ST-MEM's own objective (masked ECG reconstruction over hundreds of
thousands of records) is far beyond a 2-core CPU, and its released weights are CC BY-NC, so they may not
ship. The phantom's ECG decides the heart's state by rule (EF from QRS width, QRS voltage and ST deviation;
ejection after the QRS, end-systole at the T end; see `echo.heart_cycle`). An encoder trained to regress those
quantities gives the generator a context that already carries what the clip must show, which the masked-token
loss alone teaches slowly and weakly (the bundled model trained that way made the same EF for every beat).

Every step draws fresh phantom ECGs (3 ms each, the echo is not rendered), so the encoder never sees an ECG
twice and cannot overfit; a fixed held-out set (its own seed stream) measures how well it reads EF (R²).
The checkpoint holds the encoder alone (part "stmem"); `echopulse train generator --stmem DIR --freeze-stmem`
builds on it. The regression head is kept in the resume state only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from echopulse.echo.ecg_phantom import CLOSING_R_S, LEADS, PhantomECG, simulate_ecg
from echopulse.echo.heart_cycle import CycleTiming, ecg_ef
from echopulse.generator.checkpoints import save_checkpoint
from echopulse.generator.config import GeneratorConfig
from echopulse.generator.parts import new_module
from echopulse.generator.training.common import (
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
from echopulse.generator.training.data import ECGSource, choose_leads, parse_leads, step_rng
from echopulse.generator.training.ema import EMA
from echopulse.generator.training.scores import r2
from echopulse.generator.training.settings import TrainSettings

KIND = "ecg"
HOLDOUT_STREAM = 0x45564C  # held-out ECGs: seeds [HOLDOUT_STREAM, i], never a training step's

# (name, centre, scale): each target is regressed as (value - centre) / scale, so all weigh about the same.
TARGETS: tuple[tuple[str, float, float], ...] = (
    ("ecg_ef", 53.0, 9.0),  # percent: the EF the ECG decides
    ("ejection_start", 0.12, 0.04),  # fractions of the clip's RR interval
    ("end_systole", 0.42, 0.08),
    ("mitral_opening", 0.50, 0.08),
    ("hr_bpm", 80.0, 18.0),
    ("qrs_ms", 110.0, 25.0),
    ("voltage", 0.95, 0.35),
    ("st_mv", 0.0, 0.1),
    ("abs_st_mv", 0.05, 0.07),
)


@dataclass(frozen=True)
class ECGBatch:
    windows: Tensor  # (b, 12, 2250)
    targets: Tensor  # (b, len(TARGETS)) standardised


def cycle_targets(ecg: PhantomECG) -> np.ndarray:
    """The raw target values of TARGETS for the clip cycle that ends at the ECG's closing R-peak."""
    timing = CycleTiming.of_closing_cycle(ecg)
    rr = timing.rr
    m = ecg.morphology
    values = {
        "ecg_ef": ecg_ef(m),
        "ejection_start": timing.ejection_start / rr,
        "end_systole": timing.end_systole / rr,
        "mitral_opening": timing.mitral_opening / rr,
        "hr_bpm": 60.0 / rr,
        "qrs_ms": m.qrs_ms,
        "voltage": m.voltage,
        "st_mv": m.st_mv,
        "abs_st_mv": abs(m.st_mv),
    }
    return np.array([values[name] for name, _, _ in TARGETS])


def standardise(raw: np.ndarray) -> np.ndarray:
    centre = np.array([c for _, c, _ in TARGETS])
    scale = np.array([s for _, _, s in TARGETS])
    return (raw - centre) / scale


def ecg_batch(
    seeds: list[np.random.Generator], leads: tuple[str, ...] | str, layout: str, lead_rng: np.random.Generator
) -> ECGBatch:
    """Simulate one ECG per generator and cut its closing beat's window, as the phantom pairs are cut."""
    windows, targets = [], []
    for rng in seeds:
        ecg = simulate_ecg(rng)
        source = ECGSource(ecg.signal, ecg.fs, LEADS, round(CLOSING_R_S * ecg.fs))
        windows.append(source.window(choose_leads(leads, LEADS, lead_rng), layout))
        targets.append(standardise(cycle_targets(ecg)))
    return ECGBatch(
        torch.from_numpy(np.stack(windows).astype(np.float32)),
        torch.from_numpy(np.stack(targets).astype(np.float32)),
    )


class ECGReader(nn.Module):
    """The encoder plus a linear head on its pooled vector (the head is for this training only)."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.stmem = new_module(config, "stmem")
        self.head = nn.Linear(config.stmem.width, len(TARGETS))

    def forward(self, ecg: Tensor) -> Tensor:
        pooled = self.stmem.context(ecg).mean(dim=1)  # (b, width) for every pooling
        return self.head(pooled)


@torch.no_grad()
def holdout_scores(model: ECGReader, batch: ECGBatch, device: torch.device) -> dict[str, float]:
    """R² of every target on the held-out ECGs (EMA weights)."""
    was = model.training
    model.eval()
    pred = model(batch.windows.to(device)).float().cpu().numpy()
    model.train(was)
    true = batch.targets.numpy()
    return {f"r2_{name}": round(r2(true[:, j], pred[:, j]), 4) for j, (name, _, _) in enumerate(TARGETS)}


def train_ecg_encoder(
    config: GeneratorConfig,
    out: Path,
    settings: TrainSettings,
    resume: Path | None = None,
    holdout: int = 256,
) -> TrainResult:
    """Train the ST-MEM encoder of `config` to regress TARGETS from fresh phantom ECGs; checkpoint: `out`."""
    settings.check()
    leads = parse_leads(settings.leads)
    layout = config.stmem.window_layout
    device = resolve_device(settings.device)
    out = Path(out)
    eval_leads = ("I",) if leads == "random" else leads
    held = ecg_batch(
        [np.random.default_rng([HOLDOUT_STREAM, i]) for i in range(holdout)],
        eval_leads,
        layout,
        np.random.default_rng(0),
    )

    seed_init(settings.seed)
    model = ECGReader(config).to(device).train()
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=settings.lr, betas=(settings.beta1, settings.beta2))
    ema = EMA(model, settings.ema_beta)
    state, start = load_resume(resume, KIND, config, device, settings.steps)
    if state is not None:
        restore(state, model, optimizer, ema)
    end = settings.end_step
    log = TrainLog(out, resume, start)

    steps = TrainingSteps(settings, optimizer, start, "ECG encoder")
    for step, lr in steps:
        began = time.perf_counter()
        seeds = [np.random.default_rng([settings.seed, step, i]) for i in range(settings.batch_size)]
        batch = ecg_batch(seeds, leads, layout, step_rng(settings.seed, step))
        with autocast(device):
            pred = model(batch.windows.to(device))
        loss = F.smooth_l1_loss(pred.float(), batch.targets.to(device))
        value, grad_norm = steps.update(loss, params, ema, model)

        done = step + 1
        entry = {"step": done, "step_s": round(time.perf_counter() - began, 4), "loss": round(value, 6),
                 "lr": lr, "grad_norm": round(grad_norm, 6)}  # fmt: skip
        if due(done, settings.save_every, end):
            entry.update(holdout_scores(ema.model, held, device))
            save_reader(out, config, model, optimizer, ema, done, settings, entry)
            steps.bar.set_postfix(loss=f"{value:.4f}", ef_r2=f"{entry['r2_ecg_ef']:.3f}")
        log.write(entry)
    if start >= end:
        scores = holdout_scores(ema.model, held, device)
        save_reader(out, config, model, optimizer, ema, start, settings, scores)
    return steps.result(out)


def save_reader(
    out: Path,
    config: GeneratorConfig,
    model: ECGReader,
    optimizer: torch.optim.Optimizer,
    ema: EMA,
    step: int,
    settings: TrainSettings,
    scores: dict,
) -> None:
    """The EMA encoder as a checkpoint (part "stmem"); everything, head included, in the resume state."""
    save_state(out, resume_state(KIND, step, config, settings, model, optimizer, ema))
    reader = ema.model
    assert isinstance(reader, ECGReader)
    metadata = {
        "trained": KIND,
        "steps": str(step),
        "data": "fresh phantom ECGs every step (echopulse.echo.ecg_phantom.simulate_ecg)",
        "leads": settings.leads,
        "seed": str(settings.seed),
        "targets": ",".join(name for name, _, _ in TARGETS),
    }
    metadata.update({k: str(v) for k, v in scores.items() if k.startswith("r2_")})
    save_checkpoint(out, config, {"stmem": reader.stmem}, metadata=metadata)

"""What both trainers share: config loading, the device, the resume state, the step loop and the log."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from echopulse.errors import ModelError
from echopulse.generator.config import CONFIGS, GeneratorConfig
from echopulse.generator.device import resolve_device as resolve_model_device
from echopulse.generator.training.data import step_torch_seed
from echopulse.generator.training.errors import TrainingError
from echopulse.generator.training.schedule import WarmupCosine
from echopulse.generator.training.settings import TrainSettings

STATE_FILE = "train_state.pt"
LOG_FILE = "train_log.jsonl"
SAMPLES_DIR = "samples"


def resolve_config(spec: str | Path) -> GeneratorConfig:
    """`small`, `paper` or a JSON file written like a checkpoint's config.json."""
    if str(spec) in CONFIGS:
        return CONFIGS[str(spec)]()
    path = Path(spec)
    if not path.is_file():
        raise TrainingError(f"--config: {spec!r} is neither one of {sorted(CONFIGS)} nor a JSON file")
    try:
        return GeneratorConfig.load(path)
    except (OSError, ValueError, TypeError) as error:
        raise TrainingError(f"{path}: not a generator config ({error})") from None


def resolve_device(name: str) -> torch.device:
    """The generator's one resolver (`auto`, `cpu`, `cuda`, `cuda:N`), its refusals as `TrainingError`."""
    try:
        return resolve_model_device(name)
    except ModelError as error:
        raise TrainingError(str(error)) from None


def autocast(device: torch.device) -> Any:
    """bf16 autocast on CUDA; nothing on CPU (full float32 keeps CPU runs deterministic and exact)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def seed_init(seed: int) -> None:
    torch.manual_seed(seed)


def clip_gradients(params: list[nn.Parameter], limit: float) -> float:
    if limit > 0:
        return float(torch.nn.utils.clip_grad_norm_(params, limit))
    norms = [p.grad.detach().norm() for p in params if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


def save_state(out: Path, state: dict[str, Any]) -> None:
    """`train_state.pt` (raw weights, optimizer, EMA, step): tensors and plain containers only."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{STATE_FILE}.tmp"
    torch.save(state, tmp)
    tmp.replace(out / STATE_FILE)


def load_state(directory: Path, kind: str, config: GeneratorConfig, device: torch.device) -> dict[str, Any]:
    """The resume state in `directory`, checked to be of this trainer and this config."""
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise TrainingError(f"{directory}: nothing to resume from ({STATE_FILE} missing)")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # unpickling errors come in many types; one line names the file
        raise TrainingError(f"{path}: unreadable training state ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict) or state.get("kind") != kind:
        found = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise TrainingError(f"{path}: a {found!r} training state, not a {kind} one")
    if state.get("config_hash") != config.hash:
        raise TrainingError(
            f"{path}: written for config hash {state.get('config_hash')}, but --config has hash {config.hash}"
        )
    return state


def load_resume(
    directory: Path | None, kind: str, config: GeneratorConfig, device: torch.device, total_steps: int
) -> tuple[dict[str, Any] | None, int]:
    """The resume state (None for a fresh run) and the step it resumes at; a run already past
    `total_steps` is refused."""
    if directory is None:
        return None, 0
    state = load_state(directory, kind, config, device)
    start = int(state["step"])
    if start > total_steps:
        raise TrainingError(f"{directory}: already trained {start} steps, more than --steps {total_steps}")
    return state, start


def resume_state(
    kind: str,
    step: int,
    config: GeneratorConfig,
    settings: TrainSettings,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: Any,
    **extra: Any,
) -> dict[str, Any]:
    """What `save_state` writes and `load_resume` + `restore` read back: raw weights, optimizer, EMA, step."""
    return {
        "kind": kind,
        "step": step,
        **extra,
        "config_hash": config.hash,
        "settings": settings.to_json(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "ema": ema.state_dict(),
    }


def restore(state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer, ema: Any) -> None:
    """Put the raw weights, the optimizer and the EMA of a resume state back."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    ema.load_state_dict(state["ema"])


@dataclass
class TrainResult:
    out: Path
    steps: int  # steps completed in total (including resumed ones)
    first_loss: float | None  # of this invocation's first step
    last_loss: float | None
    seconds_per_step: float | None


class TrainingSteps:
    """Steps `start` … `settings.end_step` of a run, behind a progress bar (`.bar`). Before each step it
    sets the learning rate of the schedule and the step's torch seed, so a resumed run repeats exactly
    what an uninterrupted one would have done."""

    def __init__(
        self, settings: TrainSettings, optimizer: torch.optim.Optimizer, start: int, desc: str
    ) -> None:
        self.settings = settings
        self.optimizer = optimizer
        self.start, self.end = start, settings.end_step
        self.schedule = WarmupCosine(settings.lr, settings.steps, settings.effective_warmup, settings.min_lr)
        self.bar = tqdm(
            range(start, self.end),
            initial=start,
            total=settings.steps,
            desc=desc,
            unit="step",
            disable=not settings.progress,
            leave=False,
        )
        self.began = time.perf_counter()
        self.first_loss: float | None = None
        self.last_loss: float | None = None

    def __iter__(self) -> Iterator[tuple[int, float]]:
        """(step, learning rate) for each step to run."""
        for step in self.bar:
            lr = self.schedule(step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            torch.manual_seed(step_torch_seed(self.settings.seed, step))
            yield step, lr
        self.bar.close()

    def update(
        self, loss: Tensor, params: list[nn.Parameter], ema: Any, model: nn.Module
    ) -> tuple[float, float]:
        """One optimizer step on `loss` (gradients clipped, EMA updated); returns (loss, gradient norm)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_gradients(params, self.settings.grad_clip)
        self.optimizer.step()
        ema.update(model)
        value = loss.item()
        self.first_loss = value if self.first_loss is None else self.first_loss
        self.last_loss = value
        return value, grad_norm

    def result(self, out: Path) -> TrainResult:
        ran = max(0, self.end - self.start)
        per_step = (time.perf_counter() - self.began) / ran if ran else None
        return TrainResult(out, max(self.start, self.end), self.first_loss, self.last_loss, per_step)


class TrainLog:
    """`train_log.jsonl`, one JSON object per step. On resume, lines past the resumed step are dropped
    (a run killed between its last save and its end logged steps the resumed run will redo)."""

    def __init__(self, out: Path, resume_from: Path | None, start_step: int) -> None:
        self.path = out / LOG_FILE
        out.mkdir(parents=True, exist_ok=True)
        kept: list[str] = []
        source = (resume_from / LOG_FILE) if resume_from is not None else None
        if source is not None and source.is_file():
            for line in source.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line)["step"] <= start_step:
                        kept.append(line)
                except (ValueError, KeyError, TypeError):
                    continue
        self.path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")

    def write(self, entry: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")


def due(step: int, every: int, last: int) -> bool:
    """Whether something done every `every` steps (and at the end) is due after completed step `step`."""
    return step % every == 0 or step == last

"""`EchoGenerator`: the one entry point the rest of echopulse uses to turn ST-MEM windows into echo clips.

It owns the three networks and the device. A call batches the windows, encodes them to ECG context,
samples token ids and decodes them to frames, in bf16 where the hardware does bf16 natively and float32
elsewhere (`PRECISIONS`). A seed fixes every clip: clip i of a call uses seed `seed + i`, drawn from its own
generator, so a clip does not change with the batch it happens to share.

`official_compatible=True` is the mode that reproduces the official ECHOPulse sampler (checked against
its trace): windows in the `compat` layout, ST-MEM pooled on lead II, and no guidance (the official weights
were trained without condition dropout, so a null context means nothing to them).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from contextlib import nullcontext
from copy import deepcopy
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from echopulse.errors import ModelError
from echopulse.generator.checkpoints import build_parts, load_checkpoint, load_official
from echopulse.generator.clip import EchoClip, Provenance
from echopulse.generator.config import GeneratorConfig
from echopulse.generator.sampling import sample_ids
from echopulse.generator.stmem import WINDOW_SLOTS
from echopulse.generator.transformer import MaskedTokenTransformer
from echopulse.preprocess.windows import STMEMWindow

BUNDLED_DIR = Path(__file__).resolve().parent / "weights" / "default"
PRECISIONS = ("auto", "fp32", "bf16")
"""auto: bf16 where the hardware does bf16 arithmetic natively (CUDA; a CPU with AVX-512 BF16 or AMX), else
float32; on the CPU, float32 for official-compatible models (what the compat checks use).

On the CPU, bf16 runs the transformer's sampling passes (most of the work) on a bf16 copy of its weights,
about 1.6× faster for the bundled model; the ECG encoder and the tokenizer stay float32. A seed still fixes
every clip on a given machine, but fp32 and bf16 clips differ slightly, as they do on a GPU: `fp32` gives
the same clips on every CPU. `echopulse eval` scores the bundled model the same in both."""
DEFAULT_RR_S = 1.0
"""RR used for a clip whose window has no RR (the record's first beat): a 60-bpm cycle."""


def pick_device(device: str | torch.device | None = None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class EchoGenerator:
    def __init__(
        self,
        config: GeneratorConfig,
        parts: dict[str, torch.nn.Module],
        *,
        model_id: str,
        device: str | torch.device | None = None,
        official_compatible: bool = False,
        precision: str = "auto",
    ) -> None:
        self.config = config
        self.model_id = model_id
        self.device = pick_device(device)
        self.official_compatible = official_compatible
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "auto":
            fast = self.device.type == "cuda" or (cpu_has_bf16() and not official_compatible)
            precision = "bf16" if fast else "fp32"
        self.precision = precision
        self.stmem = parts["stmem"].to(self.device).eval()
        self.tokenizer = parts["tokenizer"].to(self.device).eval()
        self.transformer = parts["transformer"].to(self.device).eval()
        self._bf16_transformer: tuple[tuple, MaskedTokenTransformer] | None = None

    # ---- loading -------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, path_or_name: str | Path | None = None, *, device: str | torch.device | None = None
    ) -> EchoGenerator:
        """Load the bundled default model (no argument, or "default") or one of our checkpoint directories."""
        if path_or_name is None or str(path_or_name) in ("default", "bundled"):
            path, model_id = BUNDLED_DIR, "echopulse-default"
        else:
            path, model_id = Path(path_or_name), Path(path_or_name).name
        if not (path / "model.safetensors").exists() and path == BUNDLED_DIR:
            raise ModelError(f"{path}: the bundled model is not installed (no model.safetensors)")
        checkpoint = load_checkpoint(path)
        model_id = checkpoint.metadata.get("model_id", model_id)
        official = checkpoint.metadata.get("official_compatible") == "1"
        parts = checkpoint.build()
        return cls(checkpoint.config, parts, model_id=model_id, device=device, official_compatible=official)

    @classmethod
    def from_official(
        cls,
        *,
        tokenizer: str | Path | None = None,
        stage2: str | Path | None = None,
        stmem: str | Path | None = None,
        config: GeneratorConfig | None = None,
        device: str | torch.device | None = None,
    ) -> EchoGenerator:
        """Load the released ECHOPulse / ST-MEM files (through the key map) in official-compatible mode."""
        config, state = load_official(tokenizer=tokenizer, stage2=stage2, stmem=stmem, config=config)
        parts = build_parts(config, state, device="cpu")
        names = [Path(p).name for p in (tokenizer, stage2, stmem) if p is not None]
        return cls(config, parts, model_id="official:" + "+".join(names), device=device,
                   official_compatible=True)

    @property
    def window_layout(self) -> str:
        """The `stmem_windows` layout this model's ECG encoder reads."""
        return "compat" if self.official_compatible else self.config.stmem.window_layout

    # ---- generation ----------------------------------------------------------------------------------
    def _autocast(self):
        """bf16 autocast for the ECG encoder and the tokenizer: on CUDA only (see `PRECISIONS`)."""
        if self.precision == "bf16" and self.device.type == "cuda":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _sampling_transformer(self) -> MaskedTokenTransformer:
        """The transformer the sampler runs: in bf16, a bf16 copy of it, remade whenever the transformer
        or any of its weights changes.

        A copy rather than autocast, which on the CPU spends a tenth of each pass casting weights and
        activations back and forth."""
        if self.precision != "bf16":
            return self.transformer
        key = (id(self.transformer), tuple(p._version for p in self.transformer.parameters()))
        if self._bf16_transformer is None or self._bf16_transformer[0] != key:
            copy = deepcopy(self.transformer).to(torch.bfloat16).eval()
            self._bf16_transformer = (key, copy)
        return self._bf16_transformer[1]

    def _ecg_batch(self, windows: Sequence[STMEMWindow] | np.ndarray | Tensor) -> Tensor:
        if isinstance(windows, Tensor | np.ndarray):
            ecg = torch.as_tensor(np.asarray(windows) if isinstance(windows, np.ndarray) else windows)
            if ecg.ndim == 2:
                ecg = ecg[None]
        else:
            wrong = [w.layout for w in windows if w.layout != self.window_layout]
            if wrong:
                raise ValueError(
                    f"this model reads windows in the {self.window_layout!r} layout, got {wrong[0]!r}"
                )
            ecg = torch.as_tensor(np.stack([w.signal for w in windows]))
        slots = (WINDOW_SLOTS, self.config.stmem.num_leads)
        if ecg.ndim != 3 or ecg.shape[1] not in slots or ecg.shape[2] != self.config.stmem.seq_len:
            raise ValueError(
                f"ECG windows must be (batch, {WINDOW_SLOTS}, {self.config.stmem.seq_len}), "
                f"got {tuple(ecg.shape)}"
            )
        return ecg.to(self.device, torch.float32)

    def _prime_video(self, prime_frame: np.ndarray | Tensor, batch: int) -> Tensor:
        """(b, c, 1, H, W) float in [0, 1] from a (H, W) / (b, H, W) uint8 or float frame."""
        if not isinstance(prime_frame, Tensor):
            prime_frame = torch.as_tensor(np.asarray(prime_frame))
        frame = prime_frame
        if frame.dtype == torch.uint8:
            frame = frame.float() / 255.0
        frame = frame.float()
        if frame.ndim == 2:
            frame = frame[None].expand(batch, -1, -1)
        size = self.config.tokenizer.image_size
        if frame.ndim != 3 or frame.shape[0] != batch or tuple(frame.shape[1:]) != (size, size):
            raise ValueError(f"prime frame must be ({size}, {size}) or (batch, {size}, {size}), "
                             f"got {tuple(frame.shape)}")
        channels = self.config.tokenizer.channels
        return frame[:, None, None].expand(-1, channels, -1, -1, -1).to(self.device)

    @torch.no_grad()
    def generate_video(
        self,
        ecg: Tensor,
        *,
        prime: Tensor | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        seeds: Sequence[int] | None = None,
        noise: bool = True,
    ) -> Tensor:
        """Float video (b, c, f, H, W) as the tokenizer decodes it (unclamped), for one batch of windows."""
        steps = steps or self.config.sampling.steps
        guidance = 1.0 if self.official_compatible else (guidance or self.config.sampling.guidance)
        generators = None
        if seeds is not None:
            generators = [torch.Generator(self.device).manual_seed(int(s)) for s in seeds]
        t, h, w = self.config.tokenizer.grid
        transformer = self._sampling_transformer()
        with self._autocast():
            context = self.stmem.context(ecg.to(self.device))
            prefix = None
            if prime is not None:
                prefix = self.tokenizer.encode(prime).flatten(1)
                t -= 1
            ids = sample_ids(
                transformer, context.to(transformer.null_context.dtype), (t, h, w), steps=steps,
                starting_temperature=self.config.sampling.starting_temperature, guidance=guidance,
                guidance_steps=self.config.sampling.guidance_steps, prefix_ids=prefix, generator=generators,
                noise=noise,
            )
            if prefix is not None:
                ids = torch.cat((prefix, ids), dim=1)
            return self.tokenizer.decode(ids).float()

    def generate(
        self,
        windows: Sequence[STMEMWindow] | np.ndarray | Tensor,
        prime_frame: np.ndarray | Tensor | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int | None = None,
        *,
        batch_size: int = 16,
        noise: bool = True,
    ) -> list[EchoClip]:
        """One clip per window, in order. `prime_frame` (H, W) or one per window fixes frame 0."""
        seed = secrets.randbits(31) if seed is None else int(seed)
        steps = steps or self.config.sampling.steps
        guidance = 1.0 if self.official_compatible else (guidance or self.config.sampling.guidance)
        ecg = self._ecg_batch(windows)
        meta = list(windows) if not isinstance(windows, Tensor | np.ndarray) else [None] * len(ecg)
        prime = None if prime_frame is None else self._prime_video(prime_frame, len(ecg))
        clips: list[EchoClip] = []
        for start in range(0, len(ecg), batch_size):
            stop = min(start + batch_size, len(ecg))
            video = self.generate_video(
                ecg[start:stop], prime=None if prime is None else prime[start:stop], steps=steps,
                guidance=guidance, seeds=range(seed + start, seed + stop), noise=noise,
            )
            frames = to_uint8_frames(video)
            for i, clip_frames in enumerate(frames):
                index = start + i
                primed = prime is not None
                clips.append(self._clip(clip_frames, meta[index], seed + index, steps, guidance, primed))
        return clips

    def _clip(
        self,
        frames: np.ndarray,
        window: STMEMWindow | None,
        seed: int,
        steps: int,
        guidance: float,
        primed: bool,
    ) -> EchoClip:
        rr = window.rr_s if window is not None and window.rr_s else DEFAULT_RR_S
        provenance = Provenance(
            model_id=self.model_id, config_hash=self.config.hash, seed=seed, steps=steps,
            guidance=float(guidance), primed=primed, device=self.device.type, precision=self.precision,
            guidance_steps=self.config.sampling.guidance_steps if guidance != 1.0 else None,
        )
        return EchoClip(
            frames=frames, fps=len(frames) / rr, rr_s=float(rr),
            end_s=None if window is None else float(window.end_s),
            beat_index=None if window is None else window.beat_index, provenance=provenance,
        )


def cpu_has_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic natively (AVX-512 BF16 or AMX), so bf16 is faster, not slower."""
    capabilities = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def to_uint8_frames(video: Tensor) -> np.ndarray:
    """(b, c, f, H, W) float → (b, f, H, W) uint8 grey (channels averaged; echo is grey in all three)."""
    grey = video.float().clamp(0, 1).mean(dim=1)
    return (grey * 255).round().to(torch.uint8).cpu().numpy()

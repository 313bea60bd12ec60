"""`EchoGenerator`: the one entry point the rest of echopulse uses to turn ST-MEM windows into echo clips.

It owns the three networks and the device. A call batches the windows, encodes them to ECG context,
samples token ids and decodes them to frames, in bf16 where the hardware does bf16 natively and float32
elsewhere (`PRECISIONS`), chosen once at load. A seed fixes every clip: the clip of a window uses seed
`seed + beat_index` (`seed + i` for the i-th row of a bare array), drawn from its own generator, so a clip
does not change with the batch it happens to share, nor with which other windows are generated beside it.

One generator may be shared by threads: nothing it holds changes after loading, so concurrent `generate`
calls give the clips serial ones would (a service can run several batches at once or serialise them).

`official_compatible=True` is the mode that reproduces the official ECHOPulse sampler (checked against
its trace): windows in the `compat` layout, ST-MEM pooled on lead II, and no guidance (the official weights
were trained without condition dropout, so a null context means nothing to them).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from contextlib import nullcontext
from copy import deepcopy
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from echopulse.errors import ModelError
from echopulse.generator.checkpoints import load_checkpoint
from echopulse.generator.clip import EchoClip, Provenance
from echopulse.generator.config import GeneratorConfig
from echopulse.generator.device import resolve_device
from echopulse.generator.official import load_official
from echopulse.generator.parts import build_parts
from echopulse.generator.sampling import sample_cycle, sample_ids
from echopulse.generator.stmem import WINDOW_SLOTS
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
"""RR of a clip made from a bare array, which carries no beat times: a 60-bpm cycle."""


class EchoGenerator:
    """The three networks on one device at one precision, ready to turn ST-MEM windows into clips.

    `metadata` is what the checkpoint says of itself (model id, recipe, training data; empty for official
    files). The precision is fixed at construction: `with_precision` gives another generator on the same
    weights. The bf16 sampling copy is taken then too, so later in-place changes of the transformer's
    weights (a training step) need a new generator to be seen.
    """

    def __init__(
        self,
        config: GeneratorConfig,
        parts: dict[str, torch.nn.Module],
        *,
        model_id: str,
        device: str | torch.device | None = None,
        official_compatible: bool = False,
        precision: str = "auto",
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.model_id = model_id
        self.metadata = dict(metadata or {})
        self.device = resolve_device(device)
        self.official_compatible = official_compatible
        self._precision = resolve_precision(precision, self.device, official_compatible)
        self.stmem = parts["stmem"].to(self.device).eval()
        self.tokenizer = parts["tokenizer"].to(self.device).eval()
        self.transformer = parts["transformer"].to(self.device).eval()
        self._sampler = self.transformer
        if self._precision == "bf16":
            # A copy rather than autocast, which on the CPU spends a tenth of each pass casting weights and
            # activations back and forth.
            self._sampler = deepcopy(self.transformer).to(torch.bfloat16).eval()

    def __reduce__(self) -> tuple:
        """Pickled as its weights (on the CPU) and settings: a worker process, sent one, builds its own copy
        on the device this one runs on (the service's engine runs its model so)."""
        parts = {"stmem": self.stmem, "tokenizer": self.tokenizer, "transformer": self.transformer}
        state = {name: {key: value.detach().cpu() for key, value in module.state_dict().items()}
                 for name, module in parts.items()}
        settings = {"model_id": self.model_id, "device": str(self.device),
                    "official_compatible": self.official_compatible, "precision": self.precision,
                    "metadata": self.metadata}
        return (_rebuild_generator, (self.config, state, settings))

    @property
    def precision(self) -> str:
        """"bf16" or "fp32", as chosen at load (see `PRECISIONS`)."""
        return self._precision

    def with_precision(self, precision: str) -> EchoGenerator:
        """A generator on the same weights and device at another precision (e.g. a float32 baseline)."""
        parts = {"stmem": self.stmem, "tokenizer": self.tokenizer, "transformer": self.transformer}
        return EchoGenerator(
            self.config, parts, model_id=self.model_id, device=self.device,
            official_compatible=self.official_compatible, precision=precision, metadata=self.metadata,
        )

    def sampling_settings(self, steps: int | None = None, guidance: float | None = None) -> tuple[int, float]:
        """(steps, guidance) a call will use: the model's own where None is given. Official-compatible
        models always sample without guidance (a null context means nothing to them); guidance 0 is a real
        value (the unconditional model), not "the default"."""
        steps = self.config.sampling.steps if steps is None else int(steps)
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        if self.official_compatible:
            return steps, 1.0
        return steps, float(self.config.sampling.guidance if guidance is None else guidance)

    # ---- loading -------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path_or_name: str | Path | None = None,
        *,
        device: str | torch.device | None = None,
        precision: str = "auto",
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
        return cls(checkpoint.config, parts, model_id=model_id, device=device, official_compatible=official,
                   precision=precision, metadata=checkpoint.metadata)

    @classmethod
    def from_official(
        cls,
        *,
        tokenizer: str | Path | None = None,
        stage2: str | Path | None = None,
        stmem: str | Path | None = None,
        config: GeneratorConfig | None = None,
        device: str | torch.device | None = None,
        precision: str = "auto",
    ) -> EchoGenerator:
        """Load the released ECHOPulse / ST-MEM files (through the key map) in official-compatible mode."""
        config, state = load_official(tokenizer=tokenizer, stage2=stage2, stmem=stmem, config=config)
        parts = build_parts(config, state, device="cpu")
        names = [Path(p).name for p in (tokenizer, stage2, stmem) if p is not None]
        return cls(config, parts, model_id="official:" + "+".join(names), device=device,
                   official_compatible=True, precision=precision)

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

    def generate_video(
        self,
        ecg: Tensor,
        *,
        prime: Tensor | None = None,
        prime_ids: Tensor | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        seeds: Sequence[int] | None = None,
        noise: bool = True,
    ) -> Tensor:
        """Float video (b, c, f, H, W) as the tokenizer decodes it (unclamped), for one batch of windows.
        `prime_ids`: a cycle tokenizer's anatomy ids (b, 1, h, w) to draw the heart from, instead of
        sampling it or reading it from `prime`."""
        return self._sample(ecg, prime, prime_ids, steps, guidance, seeds, noise)[0]

    @torch.no_grad()
    def _sample(
        self,
        ecg: Tensor,
        prime: Tensor | None,
        prime_ids: Tensor | None,
        steps: int | None,
        guidance: float | None,
        seeds: Sequence[int] | None,
        noise: bool,
    ) -> tuple[Tensor, Tensor | None]:
        """(video, the cycle tokenizer's anatomy ids or None)."""
        steps, guidance = self.sampling_settings(steps, guidance)
        generators = None
        if seeds is not None:
            generators = [torch.Generator(self.device).manual_seed(int(s)) for s in seeds]
        t, h, w = self.config.tokenizer.grid
        transformer = self._sampler
        with self._autocast():
            context = self.stmem.context(ecg.to(self.device))
            if self.config.tokenizer.cycle_dim:
                return self._generate_cycle_video(
                    context, prime, prime_ids, steps, guidance, generators, noise
                )
            if prime_ids is not None:
                raise ValueError("prime_ids needs a cycle tokenizer; prime this model with a frame")
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
            return self.tokenizer.decode(ids).float(), None

    def _generate_cycle_video(
        self,
        context: Tensor,
        prime: Tensor | None,
        prime_ids: Tensor | None,
        steps: int,
        guidance: float,
        generators: list[torch.Generator] | None,
        noise: bool,
    ) -> tuple[Tensor, Tensor]:
        """A cycle tokenizer's clip and its anatomy ids: the ids given, read from a prime frame (the same
        heart) or sampled, then the cycle code drawn from the ECG, then both decoded. A prime sets the heart
        and nothing of its motion, which is the ECG's alone."""
        # The cycle is drawn first, so a seed gives the same motion with or without a prime.
        cycle = sample_cycle(
            self.transformer, context, temperature=self.config.sampling.cycle_temperature,
            generator=generators, noise=noise,
        )
        transformer = self._sampler
        if prime_ids is not None:
            ids = prime_ids.to(self.device).long()
        elif prime is not None:
            ids = self.tokenizer.encode(prime)
        else:
            ids = sample_ids(
                transformer, context.to(transformer.null_context.dtype), self.config.tokenizer.grid,
                steps=steps, starting_temperature=self.config.sampling.starting_temperature,
                guidance=guidance,
                guidance_steps=self.config.sampling.guidance_steps, generator=generators, noise=noise,
            )
        ids = ids.reshape(len(cycle), *self.config.tokenizer.grid)
        return self.tokenizer.decode(ids, cycle).float(), ids

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
        seeds: Sequence[int] | None = None,
        after: EchoClip | None = None,
    ) -> list[EchoClip]:
        """One clip per window, in order. `prime_frame` (H, W), or one per window, fixes frame 0. `after`
        continues from a clip this model made, so a recording's clips run on as one heart: a cycle
        tokenizer keeps that clip's anatomy ids (read again from decoded pixels at every beat, the heart
        drifts: mean EF fell 18–24 points over 200-beat chains), any other model takes its last frame as the
        prime frame.

        The clip of a window is drawn with seed `seed + window.beat_index` (`seed + i` for row i of an
        array), so splitting windows into calls or batches any way gives the same clips. `seeds` gives each
        window its own seed instead (a server batching beats of several streams, each with its seed)."""
        seed = secrets.randbits(31) if seed is None else int(seed)
        steps, guidance = self.sampling_settings(steps, guidance)
        ecg = self._ecg_batch(windows)
        meta = list(windows) if not isinstance(windows, Tensor | np.ndarray) else [None] * len(ecg)
        no_rr = [w.beat_index for w in meta if w is not None and not w.rr_s]
        if no_rr:  # its clip would have no length and no frame rate: `pipeline.plan_clips` says why not
            raise ValueError(f"beat {no_rr[0]} has no RR interval (no accepted beat before it): no cycle to "
                             "show; pick windows with echopulse.pipeline.clip_windows")
        if seeds is None:
            seeds = [seed + (i if w is None else w.beat_index) for i, w in enumerate(meta)]
        elif len(seeds) != len(meta):
            raise ValueError(f"{len(seeds)} seeds for {len(meta)} windows")
        seeds = [int(s) for s in seeds]
        prime_ids = None
        if after is not None:
            if prime_frame is not None:
                raise ValueError("give prime_frame or after, not both")
            prime_ids = self._anatomy_of(after, len(ecg))
            if prime_ids is None:
                prime_frame = after.frames[-1]
        prime = None if prime_frame is None else self._prime_video(prime_frame, len(ecg))
        primed = prime is not None or prime_ids is not None
        clips: list[EchoClip] = []
        for start in range(0, len(ecg), batch_size):
            stop = min(start + batch_size, len(ecg))
            video, ids = self._sample(
                ecg[start:stop], None if prime is None else prime[start:stop],
                None if prime_ids is None else prime_ids[start:stop], steps, guidance, seeds[start:stop],
                noise,
            )
            for i, clip_frames in enumerate(to_uint8_frames(video)):
                index = start + i
                clip = self._clip(clip_frames, meta[index], seeds[index], steps, guidance, primed)
                if ids is not None:
                    clip = replace(clip, anatomy_ids=ids[i].cpu().numpy().astype(np.int16))
                clips.append(clip)
        return clips

    def _anatomy_of(self, clip: EchoClip, batch: int) -> Tensor | None:
        """`clip`'s anatomy ids for each of `batch` windows, when this model made it and has a cycle
        tokenizer; None otherwise (the caller primes with the clip's last frame)."""
        ids = clip.anatomy_ids
        grid = self.config.tokenizer.grid
        made = clip.provenance
        same_model = made.config_hash == self.config.hash and made.model_id == self.model_id
        if not self.config.tokenizer.cycle_dim or ids is None or tuple(ids.shape) != grid or not same_model:
            return None
        return torch.as_tensor(ids, dtype=torch.long, device=self.device)[None].expand(batch, *grid)

    def _clip(
        self,
        frames: np.ndarray,
        window: STMEMWindow | None,
        seed: int,
        steps: int,
        guidance: float,
        primed: bool,
    ) -> EchoClip:
        rr = window.rr_s if window is not None else DEFAULT_RR_S
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


def resolve_precision(precision: str, device: torch.device, official_compatible: bool) -> str:
    """"bf16" or "fp32" for a `PRECISIONS` name on `device`; `ModelError` for anything else."""
    if precision not in PRECISIONS:
        raise ModelError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    fast = device.type == "cuda" or (cpu_has_bf16() and not official_compatible)
    return "bf16" if fast else "fp32"


def cpu_has_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic natively (AVX-512 BF16 or AMX), so bf16 is faster, not slower."""
    capabilities = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def _rebuild_generator(
    config: GeneratorConfig, state: dict[str, dict[str, Tensor]], settings: dict
) -> EchoGenerator:
    return EchoGenerator(config, build_parts(config, state), **settings)


def to_uint8_frames(video: Tensor) -> np.ndarray:
    """(b, c, f, H, W) float → (b, f, H, W) uint8 grey (channels averaged; echo is grey in all three)."""
    grey = video.float().clamp(0, 1).mean(dim=1)
    return (grey * 255).round().to(torch.uint8).cpu().numpy()

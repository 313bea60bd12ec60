"""Paper-config generation speed (random weights): ours against a naive baseline in the same run.

The naive baseline is the same model run the way the official ECHOPulse code runs it: explicit softmax
attention, the 1536×1536 continuous position bias recomputed on every pass, logits for all 1536 tokens at
every step, and a separate guidance pass each step (in the official code it repeats the conditional pass).
Because every naive step costs the same, the naive sampler is timed over `--naive-steps` steps and scaled
to `--steps` (said in the JSON); ours is timed over all of them.

    python benchmarks/generator.py [--steps 18] [--batches 1 8] [--guidance 1 3] [--device auto]
                                   [--precisions fp32 bf16]

Prints one JSON object: seconds per clip and clips/s for each batch size and guidance, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from contextlib import contextmanager
from functools import partial
from unittest import mock

import torch
import torch.nn.functional as F
from einops import rearrange

from echopulse.ecg import STMEM_LEADS, WINDOW_SAMPLES
from echopulse.generator.config import paper_config
from echopulse.generator.device import resolve_device
from echopulse.generator.echo_generator import EchoGenerator
from echopulse.generator.layers import Attention, ContinuousPositionBias
from echopulse.generator.parts import PARTS, new_module
from echopulse.generator.sampling import gumbel_noise, num_masked, temperature_at


def explicit_attention(self: Attention, x, context=None, bias=None, key_mask=None):
    """The official attention arithmetic: materialised (b, h, i, j) similarity, softmax, weighted sum."""
    q, k, v = self.queries_keys_values(x, context)
    sim = torch.einsum("b h i d, b h j d -> b h i j", q, k) * 8.0
    if bias is not None:
        sim = sim + F.pad(bias, (self.num_null_kv, 0))
    out = torch.einsum("b h i j, b h j d -> b h i d", sim.softmax(dim=-1), v)
    return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


@contextmanager
def naive_mode():
    with (
        mock.patch.object(Attention, "forward", explicit_attention),
        mock.patch.object(ContinuousPositionBias, "forward", ContinuousPositionBias.compute),
    ):
        yield


@torch.no_grad()
def naive_sample(generator: EchoGenerator, ecg: torch.Tensor, steps: int, run_steps: int, guidance: float):
    """The official sampling loop (all logits, a second pass for guidance), for `run_steps` of `steps`."""
    transformer = generator.transformer
    grid = generator.config.tokenizer.grid
    n = grid[0] * grid[1] * grid[2]
    context = generator.stmem.context(ecg)
    b = ecg.shape[0]
    ids = torch.full((b, n), transformer.mask_id, device=ecg.device)
    scores = None
    masked = torch.ones((b, n), dtype=torch.bool, device=ecg.device)
    for step in range(run_steps):
        if scores is not None:
            remask = scores.topk(num_masked(n, step, steps), dim=-1).indices
            masked = torch.zeros_like(masked).scatter_(1, remask, True)
        ids = ids.masked_fill(masked, transformer.mask_id)
        cond = transformer(ids, context, grid)
        uncond = transformer(ids, context, grid)  # the official "null" pass sees the same context
        logits = uncond + guidance * (cond - uncond)
        temperature = temperature_at(step, steps, generator.config.sampling.starting_temperature)
        noise = gumbel_noise(tuple(logits.shape), None, ecg.device)
        chosen = (logits / max(temperature, 1e-10) + noise).argmax(-1)
        ids = torch.where(masked, chosen, ids)
        confidence = logits.softmax(-1).gather(2, chosen[..., None])[..., 0]
        scores = torch.where(masked, 1 - confidence, -1e4)
    if run_steps == steps:
        return generator.tokenizer.decode(ids)
    return ids


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def build_random_paper_generator(device: torch.device) -> EchoGenerator:
    torch.manual_seed(0)
    config = paper_config()
    parts = {part: new_module(config, part) for part in PARTS}
    return EchoGenerator(config, parts, model_id="paper-random", device=device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=18)
    parser.add_argument("--naive-steps", type=int, default=1)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0, 3.0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"],
                        help="ours is timed in each (the naive baseline runs in fp32, as the official code)")
    args = parser.parse_args()

    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    generator = build_random_paper_generator(device)
    ecg = torch.randn(max(args.batches), len(STMEM_LEADS), WINDOW_SAMPLES, device=device)
    generator.generate_video(ecg[:1], steps=1, seeds=[0])  # warm-up: allocator, kernels, bias cache

    results = []
    for batch in args.batches:
        for guidance in args.guidance:
            x = ecg[:batch]
            ours = {}
            for precision in args.precisions:
                generator.precision = precision
                ours[precision] = timed(partial(generator.generate_video, x, steps=args.steps,
                                                guidance=guidance, seeds=range(batch)), device)
            generator.precision = "fp32"
            with naive_mode():
                run_naive = partial(naive_sample, generator, x, args.steps, args.naive_steps, guidance)
                naive_part = timed(run_naive, device)
                blank = torch.zeros(batch, 1536, dtype=torch.long, device=device)
                decode = timed(partial(generator.tokenizer.decode, blank), device)
            naive = naive_part * args.steps / args.naive_steps + decode
            row = {"batch": batch, "guidance": guidance, "steps": args.steps,
                   "naive_s_per_clip": round(naive / batch, 3), "naive_clips_per_s": round(batch / naive, 4),
                   "naive_measured_steps": args.naive_steps}
            for precision, seconds in ours.items():
                row[f"ours_{precision}_s_per_clip"] = round(seconds / batch, 3)
                row[f"ours_{precision}_clips_per_s"] = round(batch / seconds, 4)
                row[f"speedup_{precision}"] = round(naive / seconds, 2)
            results.append(row)
            print(json.dumps(results[-1]), flush=True)
    print(json.dumps({
        "benchmark": "generator",
        "config": "paper (random weights)",
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()

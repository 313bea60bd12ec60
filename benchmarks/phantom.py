"""Phantom throughput on one core: clips per second at 128×128×11 and at the small size (64×64×11).

Prints JSON. `render_clips_per_s` times the echo renderer alone (per-sample set-up, i.e. the polar speckle
grids, plus every frame and its LV mask); `sample_clips_per_s` times the whole `make_phantom` (12-lead ECG,
cycle, render, labels). BLAS and OpenMP are pinned to one thread.

    python benchmarks/phantom.py [--clips 100]
"""

from __future__ import annotations

import argparse
import json
import os
import time

for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")

import numpy as np  # noqa: E402

from echopulse.echo.apical4c import Apical4CRenderer, FrameState, draw_anatomy  # noqa: E402
from echopulse.echo.phantom import make_phantom  # noqa: E402


def _render_only(seed: int, size: int, frames: int) -> None:
    rng = np.random.default_rng(seed)
    renderer = Apical4CRenderer(draw_anatomy(rng, 55.0), size, rng)
    g = 0.5 + 0.5 * np.cos(2 * np.pi * np.arange(frames) / frames)
    for i in range(frames):
        renderer.render(FrameState(float(g[i]), float(i > frames // 2), i))


def _rate(fn, clips: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for seed in range(clips):
            fn(seed)
        best = min(best, time.perf_counter() - start)
    return clips / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--frames", type=int, default=11)
    args = parser.parse_args()
    try:
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(1)
    except ImportError:  # pragma: no cover
        limits = None
    results = []
    for size in (128, 64):
        make_phantom(0, size=size, frames=args.frames)  # warm up
        results.append(
            {
                "size": size,
                "frames": args.frames,
                "render_clips_per_s": round(
                    _rate(lambda s, size=size: _render_only(s, size, args.frames), args.clips), 1
                ),
                "sample_clips_per_s": round(
                    _rate(lambda s, size=size: make_phantom(s, size=size, frames=args.frames), args.clips), 1
                ),
            }
        )
    del limits
    print(json.dumps({"benchmark": "phantom", "cores": 1, "clips": args.clips, "results": results}, indent=1))


if __name__ == "__main__":
    main()

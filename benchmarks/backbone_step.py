"""Forward+backward time per training step of each registered backbone on CPU.

Prints ``name@size: milliseconds`` lines (batch 8; paper backbones at 224 px, the small CPU
backbones at 224, 128 and 64 px), then ``ratio: N`` = resnet50@224 step time / the fastest
small backbone's step time at the mini world's natural 128 px. Which backbone that was goes to
stderr. The whole run takes about 1-3 minutes on 2 cores.

    python benchmarks/backbone_step.py [--iters 2] [--batch 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from gtahuman.models import BACKBONES

PAPER_BACKBONES = ("resnet50", "resnet101", "resnet152", "deit_small", "deit_base")
SMALL_SIZES = (224, 128, 64)
NATURAL_SMALL_SIZE = 128


def step_ms(name: str, size: int, batch: int, iters: int, warmup: int = 1) -> float:
    """Best (minimum) ms of (forward, mean-square loss, backward) in train mode: on a shared
    machine the minimum is the figure least disturbed by other processes."""
    torch.manual_seed(0)
    backbone = BACKBONES.build(name).train()
    images = torch.randn(batch, 3, size, size)
    times = []
    for i in range(warmup + iters):
        start = time.perf_counter()
        backbone.zero_grad(set_to_none=True)
        backbone(images).square().mean().backward()
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000.0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=2, help="timed steps per entry (paper backbones)")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"load average {load:.2f} on {os.cpu_count()} cores",
        file=sys.stderr,
    )

    step_ms("resnet50", 224, args.batch, iters=1)  # process warm-up (thread pool, allocator)
    results: dict[str, float] = {}
    for name in PAPER_BACKBONES:
        results[f"{name}@224"] = step_ms(name, 224, args.batch, args.iters)
        print(f"{name}@224: {results[f'{name}@224']:.1f}", flush=True)
    small = [n for n in BACKBONES.names() if n not in PAPER_BACKBONES]
    for name in small:
        for size in SMALL_SIZES:
            # Small models are quick: more steps for a steadier figure.
            results[f"{name}@{size}"] = step_ms(name, size, args.batch, args.iters * 3)
            print(f"{name}@{size}: {results[f'{name}@{size}']:.1f}", flush=True)

    fastest = min(small, key=lambda n: results[f"{n}@{NATURAL_SMALL_SIZE}"])
    fastest_ms = results[f"{fastest}@{NATURAL_SMALL_SIZE}"]
    print(f"# fastest CPU backbone: {fastest}@{NATURAL_SMALL_SIZE} ({fastest_ms:.1f} ms)", file=sys.stderr)
    print(f"ratio: {results['resnet50@224'] / fastest_ms:.1f}")


if __name__ == "__main__":
    main()

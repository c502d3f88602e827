"""Forward+backward time per training step of each registered backbone on CPU.

Prints ``name@size: milliseconds`` lines (batch 8; paper backbones at 224 px, the small CPU
backbones at 224, 128 and 64 px), then ``ratio: N`` = resnet50@224 step time / the fastest
small backbone's step time at the mini world's natural 128 px. Which backbone that was goes to
stderr. Every entry gets the same warm-up steps and the same number of timed steps, and the
figure is the minimum of the timed steps (on a shared machine the least disturbed one); torch
runs with ``--threads`` intra-op threads. The whole run takes about 2-4 minutes on one core.

    python benchmarks/backbone_step.py [--iters 3] [--warmup 1] [--batch 8] [--threads 1]
                                       [--paper resnet50,...] [--small NAME,...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from gtahuman.models import BACKBONES

PAPER_BACKBONES = ("resnet50", "resnet101", "resnet152", "deit_small", "deit_base", "hrnet_w32")  # hrnet_w32: PARE
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
    parser.add_argument("--iters", type=int, default=3, help="timed steps per entry, every entry alike")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before them, every entry alike")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--paper", default=",".join(PAPER_BACKBONES),
                        help="paper backbones to time (comma-separated; resnet50 is the ratio's numerator)")
    parser.add_argument("--small", default="", help="small backbones to time (default: every other registered one)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    paper = [n for n in args.paper.split(",") if n]
    small = [n for n in args.small.split(",") if n] or [n for n in BACKBONES.names() if n not in PAPER_BACKBONES]
    if "resnet50" not in paper or not small:
        parser.error("--paper must include resnet50 and at least one small backbone must be timed (the ratio)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"load average {load:.2f} on {os.cpu_count()} cores",
        file=sys.stderr,
    )

    print(f"threads: {torch.get_num_threads()}")
    print(f"timed_steps_per_entry: {args.iters}")
    step_ms("resnet50", 224, args.batch, iters=1)  # process warm-up (thread pool, allocator)
    results: dict[str, float] = {}
    entries = [(name, 224) for name in paper] + [(name, size) for name in small for size in SMALL_SIZES]
    for name, size in entries:
        results[f"{name}@{size}"] = step_ms(name, size, args.batch, args.iters, args.warmup)
        print(f"{name}@{size}: {results[f'{name}@{size}']:.3f}", flush=True)

    fastest = min(small, key=lambda n: results[f"{n}@{NATURAL_SMALL_SIZE}"])
    fastest_ms = results[f"{fastest}@{NATURAL_SMALL_SIZE}"]
    print(f"# fastest CPU backbone: {fastest}@{NATURAL_SMALL_SIZE} ({fastest_ms:.1f} ms)", file=sys.stderr)
    print(f"ratio: {results['resnet50@224'] / fastest_ms:.2f}")


if __name__ == "__main__":
    main()

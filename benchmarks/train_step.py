"""Training step time: Lightning's loop vs a plain PyTorch loop on the same HMRSystem and batches;
on a GPU also HMR ResNet-50 throughput (224 px, bf16 autocast, channels_last) and the data
loader's share of the step time.

    python benchmarks/train_step.py [--steps 30] [--warmup 5] [--rounds 3] [--threads 1] [--world tiny]
                                    [--cache-dir .cache/gtahuman] [--gpu-batch 64] [--gpu-steps 50]
                                    [--gpu-rate 2750] [--loader-batches 20]

CPU part (always): the first ``--steps`` batches of the mini world's training mixture
(quickstart mixture, mobilenetv3_small_050 at 64 px, batch 8, augmentation on) are read once and
held in memory. The same model (one initial state) is then trained on them by

- ``plain``: ``loss = system.training_step(batch, i); zero_grad; backward; clip; step``;
- ``lightning``: ``Trainer.fit`` over the same list of batches (no logger, checkpoints, progress
  bar or validation; the same gradient clipping), i.e. what ``train()`` adds per step: hooks,
  the optimisation closure, ``self.log`` bookkeeping.

Each round times both after ``--warmup`` steps; the minimum ms/step over ``--rounds`` rounds is
kept (the figure least disturbed by other processes on a shared machine); one intra-op thread
by default, because two OpenMP threads competing with other busy processes made small CPU steps
erratic (5-10x slower here) and the ratio, not the absolute time, is the figure. Prints ``name: value``
lines; the last is ``ratio`` = lightning ms/step / plain ms/step (overhead % = 100 x (ratio - 1)).

GPU part (when CUDA is available, else one line saying why it was skipped): ResNet-50 HMR at
224 px (crop cache at 256), bf16 autocast, channels_last, batch ``--gpu-batch``: images/s with
batches already on the GPU, then with the DataLoader (``min(8, CPUs)`` workers, pinned memory)
feeding it, and the share of the step spent waiting for the next batch.

Loader cores (always): the training loader's samples/s on one core (224 px crops from the 336 px
cache, SPIN's augmentation, collation; finished on the CPU and with ``data.uint8_images``), and the
cores that would feed a GPU at ``--gpu-rate`` images/s (default 2,750: the order of an H100 training
a ResNet-50 at 224 px in bf16; the measured rate replaces it when a GPU is there). Without a GPU
the figure says it is an estimate from a stated rate.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch

from gtahuman.config import REPO_ROOT, load_config
from gtahuman.systems.hmr import HMRSystem
from gtahuman.run_data import build_datamodule, ensure_assets
from gtahuman.train_image import build_system

warnings.filterwarnings("ignore", message=".*self.log\\(\\)` but the `self.trainer` reference.*")
warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
CPU_SETUP = ("model.backbone=mobilenetv3_small_050", "data.img_res=64", "data.crop_res=96", "data.batch_size=8",
             "data.num_workers=0", "trainer.gradient_clip_val=5.0", "trainer.accelerator=cpu",
             "trainer.devices=1", "trainer.progress_bar=false")


def config(args: argparse.Namespace, *overrides: str):
    return load_config([f"data.miniworld={args.world}", f"run.cache_dir={args.cache_dir}", *overrides])


def first_batches(dm: Any, count: int) -> list[dict[str, torch.Tensor]]:
    batches = []
    for batch in dm.train_dataloader():
        batches.append(batch)
        if len(batches) == count:
            return batches
    raise ValueError(f"the training loader has only {len(batches)} batches; lower --steps")


def plain_ms_per_step(system: HMRSystem, batches: list, warmup: int, clip: float | None) -> float:
    # the optimiser and lr schedule configure_optimizers gives a Trainer of len(batches) steps; a
    # per-step schedule (the quickstart's warm-up + cosine) is stepped after every optimiser step,
    # as Lightning does
    [optimizer], schedulers = system.optimizers_and_schedulers(len(batches))
    per_step = [s["scheduler"] for s in schedulers if s.get("interval") == "step"]
    system.train()
    start = 0.0
    for i, batch in enumerate(batches):
        if i == warmup:
            start = time.perf_counter()
        loss = system.training_step(batch, i)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(system.parameters(), clip)
        optimizer.step()
        for scheduler in per_step:
            scheduler.step()
    return (time.perf_counter() - start) * 1000.0 / (len(batches) - warmup)


class _StepClock(L.Callback):
    """Wall time from the start of batch ``warmup`` to the end of the last batch."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.end = time.perf_counter()


class _HeldBatches:
    """The in-memory batches as one iterable of known length (a bare list would read to
    Lightning as a list of dataloaders)."""

    def __init__(self, batches: list):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def lightning_ms_per_step(system: HMRSystem, batches: list, warmup: int, clip: float | None) -> float:
    clock = _StepClock(warmup)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, gradient_clip_val=clip, callbacks=[clock])
    trainer.fit(system, train_dataloaders=_HeldBatches(batches))
    return (clock.end - clock.start) * 1000.0 / (len(batches) - warmup)


def cpu_part(args: argparse.Namespace) -> float:
    cfg = config(args, *CPU_SETUP, f"data.epoch_length={8 * args.steps}")
    body_dir = ensure_assets(cfg)
    dm = build_datamodule(cfg, body_dir)
    batches = first_batches(dm, args.steps)
    L.seed_everything(0, verbose=False)
    initial = build_system(cfg, body_dir, dm, None, world_size=1)
    clip = cfg.trainer.gradient_clip_val
    plain, lightning = [], []
    for _ in range(args.rounds):  # alternate, so both see the same machine load
        plain.append(plain_ms_per_step(copy.deepcopy(initial), batches, args.warmup, clip))
        lightning.append(lightning_ms_per_step(copy.deepcopy(initial), batches, args.warmup, clip))
    best_plain, best_lightning = min(plain), min(lightning)
    print(f"cpu_plain_ms_per_step: {best_plain:.2f}")
    print(f"cpu_lightning_ms_per_step: {best_lightning:.2f}")
    print(f"cpu_lightning_overhead_percent: {100.0 * (best_lightning / best_plain - 1.0):.1f}")
    return best_lightning / best_plain


def gpu_part(args: argparse.Namespace) -> float | None:
    """The GPU figures; returns the GPU's images/s with batches already there (None: no GPU)."""
    if not torch.cuda.is_available():
        print("# GPU part skipped: torch.cuda.is_available() is False on this machine", file=sys.stderr)
        print("gpu: skipped (no CUDA device)")
        return None
    print(f"gpu_device: {torch.cuda.get_device_name()}")
    return throughput(args, torch.device("cuda"), "gpu")


def throughput(args: argparse.Namespace, device: torch.device, label: str, warmup: int = 5) -> float:
    """ResNet-50 HMR at 224 px, bf16 autocast, channels_last on ``device``: images/s with the
    batches already there, then fed by the DataLoader, and the loader's share of the step."""
    steps, batch = args.gpu_steps, args.gpu_batch
    cfg = config(args, "model.backbone=resnet50", "data.img_res=224", "data.crop_res=256",
                 f"data.batch_size={batch}", f"data.num_workers={min(8, os.cpu_count() or 1)}",
                 f"data.epoch_length={batch * (steps + warmup)}", "trainer.progress_bar=false")
    body_dir = ensure_assets(cfg)
    dm = build_datamodule(cfg, body_dir)  # pinned memory when CUDA is there
    L.seed_everything(0, verbose=False)
    system = build_system(cfg, body_dir, dm, None, world_size=1).to(device).to(memory_format=torch.channels_last)
    [optimizer], _ = system.optimizers_and_schedulers(steps + warmup)  # throughput only: the lr schedule is not stepped
    system.train()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def to_device(b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        moved = {k: v.to(device, non_blocking=True) for k, v in b.items()}
        moved["img"] = moved["img"].contiguous(memory_format=torch.channels_last)
        return moved

    def step(b: dict[str, torch.Tensor], i: int) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = system.training_step(b, i)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    held = [to_device(b) for b in first_batches(dm, min(4, steps + warmup))]
    for i in range(warmup):
        step(held[i % len(held)], i)
    sync()
    start = time.perf_counter()
    for i in range(steps):
        step(held[i % len(held)], i)
    sync()
    held_rate = steps * batch / (time.perf_counter() - start)
    print(f"{label}_resnet50_224_bf16_images_per_s: {held_rate:.0f}")

    waited, iterator = 0.0, iter(dm.train_dataloader())
    for i in range(warmup):  # workers start and fill their queues
        step(to_device(next(iterator)), i)
    sync()
    start = time.perf_counter()
    for i in range(steps):
        fetch = time.perf_counter()
        b = to_device(next(iterator))
        waited += time.perf_counter() - fetch
        step(b, i)
    sync()
    total_s = time.perf_counter() - start
    print(f"{label}_resnet50_224_bf16_images_per_s_with_loader: {steps * batch / total_s:.0f}")
    print(f"{label}_loader_share_of_step_percent: {100.0 * waited / total_s:.1f}")
    return held_rate


def loader_cores(args: argparse.Namespace, gpu_images_per_s: float | None) -> None:
    """Samples/s of the training loader on one core (num_workers 0, one torch thread), and the
    cores that would keep a GPU at ``gpu_images_per_s`` (measured) or ``--gpu-rate`` (stated) fed."""
    batch = 32
    rates = {}
    for label, uint8 in (("float", "false"), ("uint8", "true")):
        cfg = config(args, "model.backbone=resnet50", "data.img_res=224", "data.crop_res=336",
                     f"data.batch_size={batch}", "data.num_workers=0", f"data.uint8_images={uint8}",
                     f"data.epoch_length={batch * (args.loader_batches + 2)}")
        dm = build_datamodule(cfg, ensure_assets(cfg))
        iterator = iter(dm.train_dataloader())
        for _ in range(2):  # the index and crop cache opened, the page cache warm
            next(iterator)
        start = time.perf_counter()
        for _ in range(args.loader_batches):
            next(iterator)
        rates[label] = args.loader_batches * batch / (time.perf_counter() - start)
        print(f"loader_{label}_samples_per_s_per_core: {rates[label]:.0f}")
    target, how = (gpu_images_per_s, "measured") if gpu_images_per_s else (args.gpu_rate, "stated, not measured")
    for label, rate in rates.items():
        print(f"loader_cores_to_feed_gpu_{label}: {target / rate:.1f}")
    print(f"# loader cores: GPU rate {target:.0f} images/s ({how}) / the loader's measured rate per core",
          file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="batches held in memory (CPU part)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps at the start of each run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads for the CPU part")
    parser.add_argument("--world", default="tiny", choices=("tiny", "default"), help="mini world size")
    parser.add_argument("--cache-dir", type=Path, default=REPO_ROOT / ".cache" / "gtahuman")
    parser.add_argument("--gpu-batch", type=int, default=64)
    parser.add_argument("--gpu-steps", type=int, default=50)
    parser.add_argument("--gpu-rate", type=float, default=2750.0,
                        help="images/s of the GPU the loader must feed, when none is here to measure")
    parser.add_argument("--loader-batches", type=int, default=20, help="batches timed for the loader rate")
    args = parser.parse_args()
    if args.steps <= args.warmup:
        parser.error("--steps must exceed --warmup")
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# torch {torch.__version__}, lightning {L.__version__}, {torch.get_num_threads()} threads, "
          f"load average {load:.2f} on {os.cpu_count()} cores", file=sys.stderr)
    ratio = cpu_part(args)
    measured = gpu_part(args)
    loader_cores(args, measured)
    print(f"ratio: {ratio:.3f}")


if __name__ == "__main__":  # the mini world renders with spawned workers
    main()

"""The plan and the one-batch check of `gtahuman.check`.

`build_plan` says what a run will do: samples per epoch per source (drawn by the configured
sampler over the prepared indices; before preparation, over the annotation files' row counts,
marked as estimated), batches per epoch per device, optimiser steps and total steps.

`measure_step` builds the system exactly as training does (`gtahuman.train_image.build_system`) and
runs a few training steps on ONE device with the per-device batch (``data.batch_size`` / world
size), through Lightning with the configured precision: real batches from the prepared sources,
or synthetic batches of the same keys and shapes when the data is not prepared. The first step
(warm-up: cuDNN autotuning, allocator) is reported apart; the step time is the median of the
others and includes data loading. Peak memory is the GPU's allocated peak, or on CPU the
process's peak resident size. The estimate assumes ideal data-parallel scaling (every device
does one per-device batch per step) and leaves out validation.
"""
from __future__ import annotations

import logging
import math
import resource
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
from lightning.pytorch.utilities import CombinedLoader
import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from gtahuman.data.datamodule import MixedDataModule
from gtahuman.data.source_spec import SourceSpec
from gtahuman.data.index import NUM_KEYPOINTS
from gtahuman.data.samplers import SAMPLERS, describe
from gtahuman.run_data import datamodule_arguments, write_prior_poses
from gtahuman.systems.pose_prior import OPTIMISER_STEPS_PER_BATCH, uses_adversarial_prior
from gtahuman.train_image import build_system, configured_world_size
from gtahuman.threads import choose_threads


@dataclass
class Plan:
    world_size: int
    global_batch: int
    per_device_batch: int
    accumulate: int
    sampler: str
    epoch_samples: dict[str, int]  # per train source, one epoch over all devices
    epoch_length: int
    batches_per_epoch: int  # per device
    max_epochs: int
    total_batches: int  # per device, the whole run
    estimated: bool  # from annotation row counts, before preparation
    eval_samples: dict[str, int] = field(default_factory=dict)


@dataclass
class StepMeasurement:
    device: str
    precision: str
    per_device_batch: int
    batch: str  # real | synthetic
    first_step_seconds: float
    step_seconds: float  # median after the first, data loading included
    peak_memory_bytes: int
    memory_kind: str  # "GPU allocated" | "process peak RSS"
    threads: str = ""  # torch's intra-op threads and why (gtahuman.threads), e.g. "1 (trainer.threads)"


# ------------------------------------------------------------------------------------ plan
def _sampler_descriptions(cfg: DictConfig, sizes: dict[str, int], world: int) -> dict[str, dict[str, Any]]:
    """The configured sampler(s) over sources of these sizes, as MixedDataModule builds them."""
    specs = {"train": {n: SourceSpec(n, index_dir="", image_root=".", role=cfg.data.train[n].role) for n in sizes}}
    args = datamodule_arguments(cfg, specs)
    specs_list = list(specs["train"].values())
    groups = {"train": specs_list}
    if cfg.data.mode == "adaptation":
        groups = {"source": [s for s in specs_list if s.role == "real"],
                  "target": [s for s in specs_list if s.role == "synthetic"]}
    out: dict[str, dict[str, Any]] = {}
    for key, group in groups.items():
        sources = np.repeat(np.arange(len(group), dtype=np.int32), [sizes[s.name] for s in group])
        if key == "target":
            name, kwargs = "mixture", {"epoch_length": out["source"]["global_length"]}
        else:
            name, kwargs = args["sampler"], dict(args["sampler_args"])
            if args["epoch_length"] is not None:
                kwargs["epoch_length"] = args["epoch_length"]
        sampler = SAMPLERS.build(name, **kwargs, sources=sources, seed=args["seed"], num_replicas=world, rank=0,
                                 source_names=[s.name for s in group])
        out[key] = describe(sampler)
    return out


def build_plan(cfg: DictConfig, report: Any) -> Plan | None:
    world, global_batch = configured_world_size(cfg), int(cfg.data.batch_size)
    if global_batch % world:
        report.problem("data.batch_size", "", f"{global_batch} is global and must divide by the world size {world} "
                                              "(trainer.devices x trainer.num_nodes)")
        return None
    train = [s for s in report.sources if s.split == "train"]
    if not train:
        return None
    try:
        if all(s.spec is not None for s in train):
            specs = {split: {s.name: s.spec for s in report.sources if s.split == split and s.spec is not None}
                     for split in ("train", "val", "test")}
            dm = MixedDataModule(**datamodule_arguments(cfg, specs), world_size=world, rank=0)
            described, estimated = {k: describe(v) for k, v in dm.train_samplers().items()}, False
        elif all(s.rows is not None and s.kind != "gta_raw" for s in train):
            sizes = {s.name: int(s.rows) for s in train}
            described, estimated = _sampler_descriptions(cfg, sizes, world), True
        else:
            report.notes.append("plan: samples per epoch are known once every train source is prepared "
                                "(GTA-Human raw: frames are counted while preparing)")
            return None
    except (ValueError, KeyError) as err:  # e.g. a Table 7 cell asking for more real data than exists
        report.problem("data.sampler_args", "", f"the sampler cannot draw this epoch: {err}")
        return None
    first = "source" if "source" in described else "train"
    counts = dict(described[first]["counts"])
    if "target" in described:
        counts.update(described["target"]["counts"])
    per_device = global_batch // world
    batches = described[first]["per_rank_length"] // per_device
    accumulate = int(cfg.trainer.accumulate_grad_batches)
    total = batches * int(cfg.trainer.max_epochs)
    if int(cfg.trainer.max_steps) >= 0:  # global steps: optimiser steps, two per batch for manual hmr
        per_step = 1 / OPTIMISER_STEPS_PER_BATCH if uses_adversarial_prior(cfg.model.variant) else accumulate
        total = min(total, int(cfg.trainer.max_steps * per_step))
    evals = {s.name: s.samples for s in report.sources if s.split in ("val", "test") and s.samples is not None}
    return Plan(world_size=world, global_batch=global_batch, per_device_batch=per_device, accumulate=accumulate,
                sampler=described[first]["sampler"], epoch_samples=counts,
                epoch_length=described[first]["global_length"], batches_per_epoch=batches,
                max_epochs=int(cfg.trainer.max_epochs), total_batches=total, estimated=estimated, eval_samples=evals)


# ------------------------------------------------------------------------------- one batch
class SyntheticSamples(Dataset):
    """Samples with the keys, shapes and dtypes of the training pipeline's (values are noise)."""

    def __init__(self, length: int, img_res: int, num_sources: int = 1):
        self.length, self.img_res, self.num_sources = length, img_res, num_sources

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        rng = np.random.default_rng(i)
        r, k = self.img_res, NUM_KEYPOINTS

        def f32(*shape: int, scale: float = 1.0) -> torch.Tensor:
            return torch.from_numpy((rng.standard_normal(shape) * scale).astype(np.float32))

        keypoints2d = torch.cat([torch.from_numpy(rng.uniform(0, r, (k, 2)).astype(np.float32)), torch.ones(k, 1)], 1)
        one = torch.tensor(1.0)
        return {"img": f32(3, r, r), "center": torch.tensor([r / 2, r / 2]), "scale": torch.tensor(float(r)),
                "keypoints2d": keypoints2d, "keypoints3d": torch.cat([f32(k, 3, scale=0.3), torch.ones(k, 1)], 1),
                "smpl_global_orient": f32(3, scale=0.3), "smpl_body_pose": f32(69, scale=0.2),
                "smpl_betas": f32(10), "smpl_transl": torch.tensor([0.0, 0.0, 5.0]), "has_smpl": one,
                "has_keypoints3d": one, "keypoints2d_crop": keypoints2d.clone(),
                "crop_affine": torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]), "is_flipped": torch.tensor(False),
                "rot_deg": torch.tensor(0.0), "valid": one, "gender": torch.tensor(-1),
                "sample_id": torch.tensor(i), "source": torch.tensor(i % self.num_sources)}


class _StepTimer(L.Callback):
    """Seconds from one batch's end to the next (so data loading counts), the first from the fit
    start; the CUDA peak is reset at the start."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._last = 0.0

    def _now(self, module: L.LightningModule) -> float:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)
        return time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(module.device)
        self._last = self._now(module)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        now = self._now(module)
        self.seconds.append(now - self._last)
        self._last = now


def _accelerator(cfg: DictConfig, report: Any) -> str:
    wanted = str(cfg.trainer.accelerator)
    if wanted in ("gpu", "cuda") and not torch.cuda.is_available():
        report.notes.append(f"trainer.accelerator={wanted} but no GPU is visible here: the step was measured on the "
                            "CPU (time and memory are not the GPU's)")
        return "cpu"
    return wanted


def _loaders(cfg: DictConfig, report: Any, per_device: int, steps: int, tmp: Path) -> tuple[Any, Any, str | None, str]:
    """(datamodule or None, dataloader or None, prior poses path, 'real' | 'synthetic')."""
    train = [s for s in report.sources if s.split == "train"]
    if train and all(s.spec is not None for s in train):
        args = datamodule_arguments(cfg, {"train": {s.name: s.spec for s in train}})
        dm = MixedDataModule(**{**args, "batch_size": per_device}, world_size=1, rank=0)
        prior = None
        if uses_adversarial_prior(cfg.model.variant):
            prior = write_prior_poses(dm, list(cfg.model.prior_sources), tmp / "prior_poses.npz")
        return dm, None, prior, "real"
    samples = SyntheticSamples(per_device * steps, int(cfg.data.img_res), max(len(train), 1))
    loader: Any = DataLoader(samples, batch_size=per_device, shuffle=False, drop_last=True)
    if cfg.data.mode == "adaptation":

        loader = CombinedLoader({"source": loader, "target": loader}, mode="max_size_cycle")
    prior = None
    if uses_adversarial_prior(cfg.model.variant):  # any valid poses: only the discriminator's real samples
        prior = str(tmp / "prior_poses.npz")
        np.savez(prior, body_pose=np.zeros((16, 69), np.float32), betas=np.zeros((16, 10), np.float32))
    names = [s.name for s in train] or ["train"]
    return SimpleNamespace(train_sources=[SimpleNamespace(name=n) for n in names]), loader, prior, "synthetic"


def measure_step(cfg: DictConfig, body_dir: Path, report: Any, steps: int = 3) -> StepMeasurement | None:
    """A few training steps on one device (see the module docstring); problems go to ``report``."""
    world = configured_world_size(cfg)
    per_device = int(cfg.data.batch_size) // world
    # Manual optimisation (the adversarial prior): accumulation is refused by config_checks before
    # check() gets here, and clipping is the system's, as in the run.
    manual = uses_adversarial_prior(cfg.model.variant)
    steps = max(int(steps), 1)
    threads, why = choose_threads(cfg.trainer.threads)  # time the steps with the threads the run would use
    torch.set_num_threads(threads)
    quiet = logging.getLogger("lightning.pytorch"), logging.getLogger("lightning.fabric")
    levels = [q.level for q in quiet]
    with tempfile.TemporaryDirectory(prefix="gtahuman-check-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for q in quiet:
            q.setLevel(logging.WARNING)
        try:
            dm, loader, prior, kind = _loaders(cfg, report, per_device, steps, Path(tmp))
            system = build_system(cfg, body_dir, dm, prior, world_size=world)
            timer = _StepTimer()
            # As in the run: with manual optimisation the system clips (build_system hands it the value).
            clip = {} if cfg.trainer.gradient_clip_val is None or manual else {
                "gradient_clip_val": cfg.trainer.gradient_clip_val}
            trainer = L.Trainer(accelerator=_accelerator(cfg, report), devices=1, num_nodes=1, strategy="auto",
                                precision=cfg.trainer.precision, max_epochs=1, limit_train_batches=steps,
                                limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
                                default_root_dir=tmp, callbacks=[timer], **clip)
            if loader is None:
                trainer.fit(system, datamodule=dm)
            else:
                trainer.fit(system, train_dataloaders=loader)
        except torch.cuda.OutOfMemoryError as err:
            report.problem("data.batch_size", "", f"one batch of {per_device} per device does not fit: {err}; "
                                                  "see docs/REPRODUCE.md for small-GPU settings")
            return None
        except Exception as err:  # noqa: BLE001 -- whatever would stop training is reported, named, here
            report.problem("model", "", f"one training step failed: {type(err).__name__}: {err}")
            return None
        finally:
            for q, level in zip(quiet, levels):
                q.setLevel(level)
    if not timer.seconds:
        report.problem("data", "", "no training batch came out of the data (too few samples for one batch?)")
        return None
    device = system.device if system.device.type != "meta" else torch.device("cpu")
    if device.type == "cuda":
        peak, memory = int(torch.cuda.max_memory_allocated(device)), "GPU allocated"
        name = f"cuda ({torch.cuda.get_device_name(device)})"
    else:
        peak, memory, name = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process peak RSS", device.type
    rest = timer.seconds[1:] or timer.seconds
    return StepMeasurement(device=name, precision=str(cfg.trainer.precision), per_device_batch=per_device, batch=kind,
                           first_step_seconds=timer.seconds[0], step_seconds=float(np.median(rest)),
                           peak_memory_bytes=peak, memory_kind=memory, threads=f"{threads} ({why})")


# ------------------------------------------------------------------------------ formatting
def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def format_plan(plan: Plan | None) -> list[str]:
    if plan is None:
        return []
    how = " (estimated from the annotation files' row counts; prepare drops a few)" if plan.estimated else ""
    head = (f"plan{how}: {plan.world_size} device(s) x {plan.per_device_batch} = {plan.global_batch} samples per "
            f"step, sampler {plan.sampler}")
    lines = [head]
    for name, count in plan.epoch_samples.items():
        lines.append(f"  {name:18s} {count:>10,d} samples per epoch ({count / max(plan.epoch_length, 1):.1%})")
    steps = math.ceil(plan.batches_per_epoch / max(plan.accumulate, 1))
    lines.append(f"  epoch {plan.epoch_length:,d} samples = {plan.batches_per_epoch:,d} batches per device = "
                 f"{steps:,d} optimiser steps; {plan.max_epochs} epochs -> {plan.total_batches:,d} batches in all")
    if plan.eval_samples:
        lines.append("  eval sets: " + ", ".join(f"{k} {v:,d}" for k, v in plan.eval_samples.items()))
    return lines


def format_step(step: StepMeasurement | None, plan: Plan | None, estimate_s: float | None) -> list[str]:
    if step is None:
        return []
    measured = (f"one batch: {step.per_device_batch} per device ({step.batch} batch) on {step.device}, "
                f"{step.precision}: {step.step_seconds:.3f} s per step (first {step.first_step_seconds:.2f} s), "
                f"peak memory {step.peak_memory_bytes / 2**30:.2f} GiB ({step.memory_kind})"
                + (f", torch threads {step.threads}" if step.threads else ""))
    lines = [measured]
    if estimate_s is not None and plan is not None:
        lines.append(f"estimate: {plan.total_batches:,d} steps x {step.step_seconds:.3f} s = {_duration(estimate_s)} "
                     f"on {plan.world_size} device(s) ({estimate_s * plan.world_size / 3600:.1f} device-hours; "
                     "ideal scaling, validation not included)")
    return lines

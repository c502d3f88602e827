"""The image task: HMR-family systems trained on single person crops (`train_image`), and the
assembly of their arguments from the config.

Stages, each cached or resumable so a rerun redoes no finished work:

1. body model and data (`gtahuman.run_data`): the toy body model or ``body.model_dir``, the mini
   world when asked for, every source prepared once into an index and a crop cache;
2. the run directory (config, commit, log) and the Trainer (`gtahuman.run_trainer`: last + best
   checkpoints, the best chosen on a validation metric, never on the test set); ``run.resume``
   continues from last.ckpt;
3. fit, then test the best checkpoint on every test set; per-sample errors, predictions, sampled
   backbone features and metrics.json are written into the run directory. Two constant
   predictions are scored on the same sets for comparison: the training data's best constant
   (``constant_baseline``: the mean pose and betas of what the train sampler draws, computed
   before fitting, saved as constant_prediction.npz; `gtahuman.constant_baseline`) and the SMPL
   mean parameters (``mean_pose_baseline``, the older, weaker floor).

`system_arguments` is separate from the training so that tests can check every experiment config
builds a system without any data, and ``experiments.check`` times a step of the same system.
"""
from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from gtahuman.sim2real.translate import SyntheticRowTranslation, apply_sim2real
from gtahuman.constant_baseline import CONSTANT_FILE, constant_from_datamodule
from gtahuman.data.budget import BUDGET_FILE, datamodule_budget
from gtahuman.data.datamodule import MixedDataModule
from gtahuman.data.dropped import dropped_at_prepare, log_dropped
from gtahuman.run_signals import signal_guard
from gtahuman.run_data import (
    datamodule_arguments,
    ensure_assets,
    prepare_specs,
    write_prior_poses,
    write_train_factors,
)
from gtahuman.run_trainer import build_trainer, evaluate_test_sets, open_run_dir, write_predictions
from gtahuman.rundir import attach_log, continue_requeued_job, resume_checkpoint, resume_record_callbacks
from gtahuman.systems.hmr import HMRSystem
from gtahuman.systems.pose_prior import uses_adversarial_prior
from gtahuman.threads import apply_thread_policy

log = logging.getLogger("gtahuman")


def supervision_source_ids(cfg: DictConfig, train_names: list[str]) -> list[int] | None:
    """``model.supervision_sources`` (train source names) -> source ids (positions); None = all."""
    names = cfg.model.supervision_sources
    if names is None:
        return None
    unknown = [n for n in names if n not in train_names]
    if unknown:
        raise ValueError(f"model.supervision_sources names {unknown}, not among the train sources {train_names}")
    return [train_names.index(n) for n in names]


def configured_world_size(cfg: DictConfig) -> int:
    """Processes the config asks for (devices x nodes); 1 when ``devices`` is left to Lightning."""
    devices = cfg.trainer.devices
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > 0:
        count = devices
    elif isinstance(devices, str) and devices.isdigit():
        count = int(devices)
    elif OmegaConf.is_list(devices) or isinstance(devices, (list, tuple)):
        count = len(devices)
    else:
        count = 1
    return count * cfg.trainer.num_nodes


def system_arguments(cfg: DictConfig, body_dir: Path, train_names: list[str], prior_path: str | None,
                     world_size: int | None = None) -> dict[str, Any]:
    """`HMRSystem` keyword arguments (all explicit: they become the checkpoint's hyper-parameters).
    ``world_size``: the Trainer's (default: `configured_world_size`)."""
    m, o, w = cfg.model, cfg.optim, cfg.model.loss_weights
    world_size = world_size or configured_world_size(cfg)
    if cfg.data.batch_size % world_size:
        raise ValueError(f"data.batch_size={cfg.data.batch_size} is global and must divide by the world size "
                         f"{world_size} (trainer.devices x trainer.num_nodes)")
    return dict(
        body_model_dir=str(body_dir), arch=m.arch, backbone=m.backbone,
        regressor_args=OmegaConf.to_container(m.regressor_args, resolve=True), part_labels=m.part_labels,
        backbone_args=OmegaConf.to_container(m.backbone_args, resolve=True), img_res=cfg.data.img_res,
        variant=m.variant, n_iter=m.n_iter, head_dropout=m.head_dropout, supervision=m.supervision,
        supervision_sources=supervision_source_ids(cfg, train_names),
        loss_weights=OmegaConf.to_container(w), keypoint_loss=m.keypoint_loss, keypoint_reduction=m.keypoint_reduction,
        lr=o.lr, disc_lr=o.disc_lr, weight_decay=o.weight_decay,
        # Per device: data.batch_size is global, and the system's lr scaling multiplies by the
        # trainer's world size and accumulation itself (global batch x accumulate / base).
        batch_size=cfg.data.batch_size // world_size,
        base_batch_size=o.base_batch_size, schedule=o.schedule, milestones=list(o.milestones) or None,
        gamma=o.gamma, warmup_steps=o.warmup_steps,
        manual_clip_norm=cfg.trainer.gradient_clip_val if uses_adversarial_prior(m.variant) else None,
        prior_poses_path=prior_path, init_checkpoint=m.init_checkpoint, init_format=m.init_format,
        eval_protocol=cfg.eval.protocol, eval_protocols=dict(cfg.eval.protocols) or None,
        feature_samples=m.feature_samples, **adaptation_arguments(cfg))


def adaptation_arguments(cfg: DictConfig) -> dict[str, Any]:
    """The DA objective for `HMRSystem` (``adaptation.method``); it needs paired batches."""
    a = cfg.adaptation
    if a.sim2real_mode not in ("online", "offline"):
        raise ValueError(f"config key 'adaptation.sim2real_mode' must be 'online' or 'offline', got {a.sim2real_mode!r}")
    online = {}
    if a.sim2real_checkpoint and a.sim2real_mode == "online":  # CycleGAN on synthetic samples, per batch
        ids = [i for i, src in enumerate(cfg.data.train.values()) if src.role == "synthetic"]
        online = dict(sim2real_checkpoint=str(a.sim2real_checkpoint), sim2real_source_ids=ids)
    if not a.method or a.method == "none":
        return online
    if cfg.data.mode != "adaptation":
        raise ValueError(f"adaptation.method={a.method} needs data.mode=adaptation (source/target batch pairs); "
                         f"got data.mode={cfg.data.mode}")
    return dict(adaptation=a.method, adaptation_args=OmegaConf.to_container(a.args, resolve=True),
                loss_adaptation=a.weight, **online)


def image_datamodule(cfg: DictConfig, body_dir: Path) -> MixedDataModule:
    """The prepared sources' data module; with ``adaptation.sim2real_mode=offline`` the synthetic
    sources' crop caches are translated by the CycleGAN generator once, and read translated."""
    specs = prepare_specs(cfg, body_dir)
    if cfg.adaptation.sim2real_checkpoint and cfg.adaptation.sim2real_mode == "offline":
        specs["train"] = apply_sim2real(cfg.adaptation.sim2real_checkpoint, "offline", specs["train"],
                                        cfg.run.cache_dir, progress=cfg.trainer.progress_bar).train_sources
    return MixedDataModule(**datamodule_arguments(cfg, specs))


INIT_ESTIMATES = ("smpl_mean_params", "train_mean")  # model.init_estimate (checked in config_checks)


def build_system(cfg: DictConfig, body_dir: Path, dm: MixedDataModule, prior_path: str | None,
                 world_size: int | None = None, initial_estimate: dict[str, list] | None = None) -> HMRSystem:
    """``initial_estimate``: the IEF's start (model.init_estimate=train_mean: the training data's constant).
    CycleGAN sim2real online: the system gets the translation itself (``synthetic_translation``)."""
    arguments = system_arguments(cfg, body_dir, [s.name for s in dm.train_sources], prior_path, world_size)
    checkpoint = arguments.get("sim2real_checkpoint")
    translation = SyntheticRowTranslation.from_checkpoint(checkpoint) if checkpoint else None
    return HMRSystem(**arguments, initial_estimate=initial_estimate, synthetic_translation=translation)


def train_image(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> dict[str, Any]:
    """The image task (``task=image``) of a validated, complete ``cfg``; returns its metrics.
    ``callbacks``: extra Lightning callbacks for the fit (a sweep's validation reporter / pruner)."""
    start = time.time()
    L.seed_everything(cfg.run.seed, workers=True, verbose=False)
    threads = apply_thread_policy(cfg.trainer.threads)  # before any work: a shared small machine
    body_dir = ensure_assets(cfg)
    dm = image_datamodule(cfg, body_dir)
    rank = int(rank_zero_only.rank)  # from the launcher's environment; only rank 0 writes the run directory
    requeue = continue_requeued_job(cfg)  # SLURM: the job's own run id; a requeued job continues it
    run = open_run_dir(cfg, rank)
    logger = attach_log(run) if rank == 0 else log
    logger.info("run %s: experiment %s, %d torch threads", run.path, cfg.experiment, threads)
    if requeue:
        logger.info("SLURM: %s", requeue)
    dropped = dropped_at_prepare([*dm.train_sources, *dm.val_sets.values(), *dm.test_sets.values()])
    log_dropped(dropped, logger)  # samples prepare left out (missing images, empty boxes): run.log names them
    prior = None
    if uses_adversarial_prior(cfg.model.variant):  # only the adversarial prior reads them
        prior_path = run.path / "prior_poses.npz"
        prior = write_prior_poses(dm, list(cfg.model.prior_sources), prior_path) if rank == 0 else \
            (str(prior_path) if cfg.model.prior_sources else None)
    trainer, best = build_trainer(cfg, run, [*callbacks, *resume_record_callbacks(run)])  # resumes.yaml once accepted
    if trainer.is_global_zero:
        write_train_factors(run.path / "train_factors.npz", dm.train_sources)
    # The best constant of the training data, from the epoch-0 plan before fitting (every rank
    # derives the same plan, so each computes the same constant); rank 0 saves it. It is the
    # baseline of every test set, and with model.init_estimate=train_mean the IEF's start.
    start_at_mean = cfg.model.init_estimate == "train_mean"
    constant = constant_from_datamodule(dm) if cfg.data.test or start_at_mean else None
    if constant is not None and rank == 0:
        constant.save(run.path / CONSTANT_FILE)
    # What the run will train on, counted from its samplers: steps, samples seen and unique
    # samples per source (budget.json; `python -m experiments.design` compares rows by it).
    budget = datamodule_budget(dm, cfg.trainer)
    if rank == 0:
        budget.save(run.path / BUDGET_FILE)
        logger.info("budget: %d steps, samples seen %s", budget.steps, budget.samples_seen)
    initial = constant.as_estimate() if start_at_mean and constant is not None else None
    system = build_system(cfg, body_dir, dm, prior, world_size=trainer.world_size, initial_estimate=initial)
    ckpt = None
    if cfg.run.resume:
        newest = resume_checkpoint(run)
        if newest is not None:
            ckpt = str(newest)
            logger.info("resuming from %s", ckpt)
        else:  # interrupted before its first checkpoint: nothing to continue from
            logger.warning("run.resume=true but %s does not exist; training from the start", run.last_checkpoint)
    with warnings.catch_warnings(), signal_guard(trainer):  # SIGINT / SIGTERM: run_signals.StopOnSignal
        if ckpt:  # a resumed run's checkpoint folder is expected to hold checkpoints
            warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
            # MixedDataModule restores its samplers' position itself (its state_dict travels in the checkpoint)
            warnings.filterwarnings("ignore", message=".*ended before the epoch ended and your dataloader is not resumable")
        trainer.fit(system, datamodule=dm, ckpt_path=ckpt)
    metrics: dict[str, Any] = {"experiment": cfg.experiment, "run_dir": str(run.path),
                               "protocol": cfg.eval.protocol, "global_step": int(trainer.global_step),
                               "body_model_is_toy": bool(system.is_toy_body)}
    test_ckpt = best.best_model_path or (str(run.last_checkpoint) if run.last_checkpoint.is_file() else None)
    # No checkpoint without a training step (trainer.max_steps=0): test the weights in memory,
    # i.e. model.init_checkpoint as imported (how a published model is evaluated, e.g. SPIN).
    metrics["tested_checkpoint"] = Path(test_ckpt).name if test_ckpt else "in-memory (no training step)"
    metrics["budget"] = budget.to_json()
    if constant is not None:
        metrics["constant_prediction"] = {**constant.to_json(), "file": CONSTANT_FILE}
    if cfg.data.test:
        with signal_guard(trainer):
            metrics.update(evaluate_test_sets(trainer, system, dm, test_ckpt, constant))
        if rank == 0:
            write_predictions(run.path / "predictions", system.test_results, dm.test_sets)
    metrics["bad_samples"] = dm.bad_sample_count
    metrics["dropped_at_prepare"] = dropped  # {source: {reason: {count, first}}}, from the manifests
    metrics["wall_time_s"] = round(time.time() - start, 1)
    if rank == 0:
        run.write_metrics(metrics)
    logger.info("metrics: %s", metrics)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # Every rank waits for rank 0's files, then leaves the group: a process exiting with a live
        # gloo/NCCL group may abort ("terminate called without an active exception"), which
        # torchrun reports as a failed run.
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return metrics

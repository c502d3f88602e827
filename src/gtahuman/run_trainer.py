"""A run's Lightning plumbing: the Trainer with its checkpoints, the run directory shared by
every rank, and what a finished fit leaves behind (the test pass with its baselines, per-sample
predictions). The pieces the Trainer carries (callbacks, the checkpoint writer, the logger) are in
`gtahuman.run_callbacks`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from gtahuman.constant_baseline import ConstantPrediction
from gtahuman.data.datamodule import FACTOR_COLUMNS, MixedDataModule
from gtahuman.data.source_spec import SourceSpec
from gtahuman.data.index import SampleIndex
from gtahuman.evaluation import summarize
from gtahuman.run_callbacks import AtomicCheckpointIO, ResumableCSVLogger, StepSeeding, StopOnNonFiniteLoss
from gtahuman.run_samples import SampleMeshes
from gtahuman.run_signals import StopOnSignal, resume_command
from gtahuman.rundir import RunDir, create_run_dir
from gtahuman.systems.pose_prior import uses_adversarial_prior
from gtahuman.systems.results import gather_rows

if TYPE_CHECKING:
    from gtahuman.systems.hmr import HMRSystem


def build_trainer(cfg: DictConfig, run: RunDir,
                  callbacks: Sequence[L.Callback] = ()) -> tuple[L.Trainer, ModelCheckpoint]:
    """Trainer with two checkpoints: best.ckpt (lowest ``eval.monitor`` on the val sets) and
    last.ckpt (every epoch end, what ``run.resume`` continues from). Two callbacks, because
    Lightning's ``save_last=True`` refreshes last.ckpt only when a top-k checkpoint is saved, so
    after an epoch that did not improve, last.ckpt would still hold the best epoch."""
    t = cfg.trainer
    has_val = len(cfg.data.val) > 0
    best = ModelCheckpoint(dirpath=run.checkpoint_dir, filename="best", monitor=cfg.eval.monitor if has_val else None,
                           mode="min", save_top_k=1 if has_val else 0, enable_version_counter=False)
    last = ModelCheckpoint(dirpath=run.checkpoint_dir, filename=run.last_checkpoint.stem, monitor=None,
                           save_top_k=1, every_n_epochs=1, enable_version_counter=False)
    extra: list[L.Callback] = [StepSeeding(cfg.run.seed), StopOnNonFiniteLoss(run.last_checkpoint),
                               # SIGINT / SIGTERM: last.ckpt between steps, the resume command, exit 130 / 143
                               StopOnSignal(run.last_checkpoint, *resume_command(cfg))]
    if t.sample_images_every_n_steps:  # predicted meshes over training crops (gtahuman.run_samples)
        extra.append(SampleMeshes(run.path / "samples", t.sample_images_every_n_steps, t.sample_images))
    if t.checkpoint_every_n_steps:  # mid-epoch last.ckpt too (Lightning wants a second callback for it)
        extra.append(ModelCheckpoint(dirpath=run.checkpoint_dir, filename=run.last_checkpoint.stem, monitor=None,
                                     save_top_k=1, every_n_train_steps=t.checkpoint_every_n_steps,
                                     enable_version_counter=False))
    optional = {k: t[k] for k in ("gradient_clip_val", "val_check_interval", "limit_train_batches",
                                  "limit_val_batches") if t[k] is not None}
    if uses_adversarial_prior(cfg.model.variant):  # manual optimisation: the system clips (system_arguments)
        optional.pop("gradient_clip_val", None)
    if t.val_every_steps is not None:  # an int interval counted across epochs needs the epoch rule off
        optional.update(val_check_interval=int(t.val_every_steps), check_val_every_n_epoch=None)
    trainer = L.Trainer(
        max_epochs=t.max_epochs, max_steps=t.max_steps, accelerator=t.accelerator, devices=t.devices,
        num_nodes=t.num_nodes, strategy=t.strategy, precision=t.precision,
        accumulate_grad_batches=t.accumulate_grad_batches, log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.progress_bar, use_distributed_sampler=False,
        # without a val set there is no best.ckpt (and two monitor-less callbacks would clash)
        callbacks=[*([best] if has_val else []), last, *extra, *callbacks,
                   # the learning rate per step, for the curves of trainer.loggers (and the CSV log then)
                   *([LearningRateMonitor(logging_interval="step")] if t.loggers else [])],
        plugins=[AtomicCheckpointIO()],
        logger=[ResumableCSVLogger(str(run.path), name="logs", version=""), *extra_loggers(cfg, run)],
        default_root_dir=str(run.path),
        num_sanity_val_steps=0, **optional)
    return trainer, best


def extra_loggers(cfg: DictConfig, run: RunDir) -> list:
    """``trainer.loggers``: loggers beside the run's CSV log, all writing inside the run directory
    (W&B offline). They receive what the CSV log does: the train loss and its terms, the learning
    rate, every validation and test metric. `gtahuman.config_checks` has checked that each one's
    package is installed."""
    loggers = []
    for name in cfg.trainer.loggers:
        if name == "tensorboard":
            from lightning.pytorch.loggers import TensorBoardLogger  # its optional package, only when asked for

            loggers.append(TensorBoardLogger(str(run.path), name="tensorboard", version="", default_hp_metric=False))
        elif name == "mlflow":
            from lightning.pytorch.loggers import MLFlowLogger  # its optional package, only when asked for

            loggers.append(MLFlowLogger(experiment_name=cfg.experiment, run_name=run.path.name,
                                        tracking_uri=f"file:{run.path / 'mlruns'}"))
        else:
            from lightning.pytorch.loggers import WandbLogger  # its optional package, only when asked for

            loggers.append(WandbLogger(project="gtahuman", name=run.path.name, save_dir=str(run.path), offline=True))
    return loggers


def write_predictions(out: Path, results: dict[str, dict[str, np.ndarray]], sets: dict[str, SourceSpec]) -> None:
    """Per set: ``<name>.npz`` (sample ids, per-sample errors, predictions, the index's factor
    columns, sequence/frame ids) and ``<name>_features.npz`` (sampled backbone features)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, spec in sets.items():
        rows = dict(results.get(name, {}))
        if not rows:
            continue
        index = SampleIndex.load(spec.index_dir)
        ids = rows["sample_id"].astype(np.int64)
        for column in FACTOR_COLUMNS + ("sequence_id", "frame_id"):
            rows[f"factor_{column}" if column in FACTOR_COLUMNS else column] = np.asarray(index[column])[ids]
        if "has_smpl" in index:  # the truth beside the prediction: spread and correlation (analysis.learning)
            rows["gt_pose"] = np.concatenate([np.asarray(index["smpl_global_orient"])[ids],
                                              np.asarray(index["smpl_body_pose"])[ids]], axis=1).astype(np.float32)
            rows["gt_has_smpl"] = np.asarray(index["has_smpl"])[ids]
        features = {k: rows.pop(k) for k in list(rows) if k.startswith("feature")}
        np.savez(out / f"{name}.npz", **rows)
        if features:
            np.savez(out / f"{name}_features.npz", **features)


def _baseline_summary(baseline: dict[str, Any], world_size: int) -> dict[str, float]:
    """A baseline's summary; under DDP each rank scored its contiguous block of the set, so the
    per-sample errors of all ranks are gathered and summarised together."""
    per_sample = baseline.pop("per_sample")
    if world_size > 1:
        return summarize({k: gather_rows(torch.from_numpy(v)) for k, v in per_sample.items()})
    return baseline


def evaluate_test_sets(trainer: L.Trainer, system: "HMRSystem", dm: MixedDataModule, ckpt_path: str | None,
                       constant: ConstantPrediction | None = None) -> dict[str, Any]:
    """Test ``ckpt_path`` (None: the system as it is) on every test set of ``dm``, and score the
    baselines under each set's protocol: ``mean_pose_baseline`` (SMPL mean parameters) and, given
    the train data's ``constant``, ``constant_baseline``. Returns the metrics.json entries."""
    trainer.test(system, datamodule=dm, ckpt_path=ckpt_path, verbose=False)
    names = dm.eval_set_names("test")
    constants = {"mean_pose_baseline": system.smpl_mean_params()}
    if constant is not None:
        constants["constant_baseline"] = (constant.rotmat(), constant.betas_tensor())
    baselines: dict[str, dict[str, Any]] = {key: {} for key in constants}
    for name, loader in zip(names, dm.test_dataloader()):  # one pass over each set for both
        scored = system.constant_baselines(loader, constants, protocol=system.eval_protocol_for(name).name)
        for key, baseline in scored.items():
            baselines[key][name] = _baseline_summary(baseline, trainer.world_size)
    return {"test": system.test_summaries, **baselines,
            "protocols": {name: system.eval_protocol_for(name).name for name in names}}


RUN_ID_ENV = "GTAHUMAN_RUN_ID"  # rank 0's run id, inherited by the processes Lightning's DDP launcher starts


def open_run_dir(cfg: DictConfig, rank: int) -> RunDir:
    """Rank 0 creates (or reopens) the run directory; other ranks (every process runs train())
    only join it, by the same run id: ``run.run_id``, else the one rank 0 exported before
    Lightning started them. Under torchrun / srun all ranks start at once: give run.run_id.
    A resume's record (resumes.yaml) waits for the checkpoint to be accepted: pass
    ``resume_record_callbacks(run)`` to the Trainer."""
    if rank == 0:
        run = create_run_dir(cfg, defer_resume_record=True)
        os.environ[RUN_ID_ENV] = cfg.run.run_id
        return run
    run_id = cfg.run.run_id or os.environ.get(RUN_ID_ENV)
    if not run_id:
        raise ValueError(f"process rank {rank}: run.run_id is not set; when torchrun or srun starts the processes, "
                         "give run.run_id=NAME so that every process names the same run directory")
    OmegaConf.set_struct(cfg, False)
    cfg.run.run_id = run_id
    OmegaConf.set_struct(cfg, True)
    return RunDir(Path(cfg.run.output_root) / cfg.experiment / run_id)

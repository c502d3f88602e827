"""``train_video(cfg) -> metrics``: paper Table 3 (VIBE on frame features), called by
`gtahuman.train.train` when ``cfg.task == 'video'``.

Stages (each cached or resumable, like the image pipeline):

1. assets and the run directory (`gtahuman.rundir`: config, commit, log);
2. the frame model: ``video.frame_checkpoint`` (a suite checkpoint, or a SPIN / mmhuman3d state
   dict with ``video.frame_checkpoint_format``). Left null on the mini world, one is trained
   first by `gtahuman.train_image.train_image` with this very config as ``task=image``, into
   ``<run>/frame_model/run/`` (reused when the run is resumed);
3. every source (train, val, test) prepared as for images, then its frames' features cached by
   `video.features` under ``<cache_dir>/video_features/<frame model>-r<img_res>/``;
4. `VideoDataModule` (windows of ``video.window`` frames; mixing: ``data.real_ratio`` between
   the real and synthetic groups, ``weight`` inside each group, or, with ``real_ratio: null``,
   every window equally likely as VIBE's concatenation; ``video.subsample_*`` for GTA*) and a
   `TemporalSystem` whose head starts from the frame model's;
5. fit (last.ckpt every epoch, best.ckpt on ``eval.monitor`` when there are val sets;
   ``run.resume`` continues last.ckpt), test, metrics.json (temporal and frame model on the same
   frames) and per-frame predictions.
"""
from __future__ import annotations

import copy
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from gtahuman.config import ConfigError
from gtahuman.data.source_spec import SourceSpec
from gtahuman.data.index import SampleIndex
from gtahuman.data.sampler_draws import mixture_target
from gtahuman.models import HMRHead
from gtahuman.run_signals import StopOnSignal, resume_command, signal_guard
from gtahuman.rundir import RunDir, attach_log, create_run_dir
from gtahuman.systems.checkpoint_import import import_hmr_state_dict
from gtahuman.systems.hmr import HMRSystem
from gtahuman.systems.safe_checkpoint import load_untrusted
from gtahuman.run_callbacks import ResumableCSVLogger
from gtahuman.run_data import ensure_assets, prepare_source
from gtahuman.run_trainer import build_trainer, write_predictions
from gtahuman.train_image import train_image
from gtahuman.video.datamodule import VideoDataModule
from gtahuman.video.features import extract_source, file_fingerprint, source_key
from gtahuman.video.system import TemporalSystem

log = logging.getLogger("gtahuman")


# ------------------------------------------------------------------------------ frame model
def frame_checkpoint(cfg: DictConfig, run: RunDir) -> Path:
    """``video.frame_checkpoint``, or on the mini world a frame model trained into the run."""
    if cfg.video.frame_checkpoint:
        path = Path(cfg.video.frame_checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"video.frame_checkpoint={path}: no such file (expected the frame model: a "
                                    "best.ckpt of this suite, or a SPIN / mmhuman3d checkpoint)")
        return path
    if not cfg.data.miniworld:
        raise ConfigError("video.frame_checkpoint is required on real data: the frame model whose features the "
                          "temporal model reads (VIBE: SPIN's checkpoint, video.frame_checkpoint_format=spin)")
    frame_run = run.path / "frame_model" / "run"
    if not (frame_run / "metrics.json").is_file():
        frame_cfg = copy.deepcopy(cfg)
        frame_cfg.task, frame_cfg.experiment = "image", "frame_model"
        frame_cfg.run.output_root, frame_cfg.run.run_id = str(run.path), "run"
        frame_cfg.run.resume = (frame_run / "config.yaml").is_file()  # an interrupted frame run goes on
        log.info("video.frame_checkpoint is null: training a frame model into %s", frame_run)
        train_image(frame_cfg)  # the image task of this very config (validated with it)
        frame_log = os.path.abspath(frame_run / "run.log")  # the frame run's log file ends with it
        for handler in [h for h in log.handlers if isinstance(h, logging.FileHandler)]:
            if handler.baseFilename == frame_log:
                log.removeHandler(handler)
                handler.close()
    for name in ("best.ckpt", "last.ckpt"):
        if (frame_run / "checkpoints" / name).is_file():
            return frame_run / "checkpoints" / name
    raise FileNotFoundError(f"{frame_run}/checkpoints: the frame model run left no best.ckpt or last.ckpt")


def load_frame_model(path: Path, fmt: str, cfg: DictConfig, body_dir: Path) -> HMRSystem:
    """A frozen `HMRSystem` in eval mode: from a suite checkpoint (its own hyper-parameters; the
    body model and, for real data, no ImageNet file needed), else built from ``cfg.model`` and
    filled by `import_hmr_state_dict` (SPIN / mmhuman3d layouts)."""
    checkpoint = load_untrusted(path)  # a peek at its layout; no code of the file runs
    suite = isinstance(checkpoint, dict) and "hyper_parameters" in checkpoint and "state_dict" in checkpoint
    if fmt == "suite" and not suite:
        raise ValueError(f"{path}: video.frame_checkpoint_format=suite, but the file has no Lightning "
                         "'hyper_parameters' and 'state_dict'")
    if suite and fmt in ("auto", "suite"):
        backbone_args = dict(checkpoint["hyper_parameters"].get("backbone_args") or {})
        backbone_args.pop("weights_path", None)  # ImageNet start: overwritten by the checkpoint anyway
        system = HMRSystem.load_from_checkpoint(path, map_location="cpu", body_model_dir=str(body_dir),
                                                backbone_args=backbone_args, init_checkpoint=None)
    else:
        system = HMRSystem(body_model_dir=str(body_dir), backbone=cfg.model.backbone, img_res=cfg.data.img_res,
                           n_iter=cfg.model.n_iter)
        import_hmr_state_dict(system, path, fmt)
    if not isinstance(getattr(system, "head", None), HMRHead):
        raise TypeError(f"{path}: the frame model has no HMR head to start the temporal head from "
                         f"(model.arch={system.hparams.get('arch', 'hmr')!r}); use a model.arch=hmr checkpoint")
    system.eval().requires_grad_(False)
    return system


# ------------------------------------------------------------------------------ data
def extract_all(frame_model: HMRSystem, fingerprint: str, specs: dict[str, SourceSpec], cfg: DictConfig,
                device: torch.device) -> dict[str, str]:
    """Feature directory of every source (cached per frame model and prepared index)."""
    img_res = int(frame_model.hparams.img_res)
    root = Path(cfg.run.cache_dir) / "video_features" / f"{fingerprint}-r{img_res}"
    frame_model.to(device)
    dirs = {}
    for name, spec in specs.items():
        out = root / f"{name}-{source_key(spec.index_dir)}"
        extract_source(frame_model, spec.index_dir, out, name=name, img_res=img_res, image_root=spec.image_root,
                       crop_cache_dir=spec.crop_cache_dir, model_key=fingerprint,
                       batch_size=cfg.video.feature_batch_size, progress=cfg.trainer.progress_bar)
        dirs[name] = str(out)
    frame_model.to("cpu")
    return dirs


def source_ratios(cfg: DictConfig) -> dict[str, float] | None:
    """Window share per train source: the mixture sampler's rule (``real_ratio`` split by
    ``weight`` inside each role group, `gtahuman.data.sampler_draws.mixture_target`); None
    (VIBE's concatenation: by window count) when ``data.real_ratio`` is null."""
    if cfg.data.real_ratio is None:
        return None
    names = list(cfg.data.train)
    roles = [str(cfg.data.train[n].role) for n in names]
    for role, share in (("real", float(cfg.data.real_ratio)), ("synthetic", 1.0 - float(cfg.data.real_ratio))):
        if share > 0 and role not in roles:
            raise ConfigError(f"data.real_ratio={cfg.data.real_ratio} gives the {role} sources {share:.2f} of each "
                              f"epoch, but no train source has role '{role}'; set data.real_ratio=null")
    target = mixture_target(np.array([float(cfg.data.train[n].weight) for n in names]),
                            np.array([r == "synthetic" for r in roles]), float(cfg.data.real_ratio))
    return {n: float(target.group_shares[g] * target.within_share[i]) if g >= 0 else 0.0
            for i, (n, g) in enumerate(zip(names, target.source_group))}


def subsample_setting(cfg: DictConfig, body_dir: Path) -> dict[str, int]:
    """``{source: SMPL poses to keep}`` for Table 3's GTA* (``video.subsample_*``), else {}."""
    v = cfg.video
    if v.subsample_source is None:
        if v.subsample_poses is not None or v.subsample_like is not None:
            raise ConfigError("video.subsample_poses / video.subsample_like need video.subsample_source (the "
                              "train source to cut down, e.g. gta)")
        return {}
    if v.subsample_source not in cfg.data.train:
        raise ConfigError(f"video.subsample_source={v.subsample_source!r} is not a train source; "
                          f"choose from {list(cfg.data.train)}")
    if (v.subsample_poses is None) == (v.subsample_like is None):
        raise ConfigError("video.subsample_source needs exactly one of video.subsample_poses (a count) and "
                          "video.subsample_like (a dataset whose SMPL-pose count to match)")
    if v.subsample_poses is not None:
        return {v.subsample_source: int(v.subsample_poses)}
    spec = prepare_source("subsample_like", v.subsample_like, cfg, body_dir)
    return {v.subsample_source: int(np.asarray(SampleIndex.load(spec.index_dir)["has_smpl"]).sum())}


def write_motion_bank(dm: VideoDataModule, out: Path) -> str:
    """Real motion for the motion discriminator: GT body-pose windows whose every frame has SMPL
    (VIBE uses AMASS; here the train sources' own labels)."""
    banks = []
    for dataset in dm.train_datasets():
        windows = dataset.windows
        labelled = (np.asarray(dataset.features["has_smpl"])[windows] > 0).all(axis=1)
        banks.append(np.asarray(dataset.features["smpl_body_pose"])[windows[labelled]])
    bank = np.concatenate(banks) if banks else np.zeros((0, dm.window, 69), np.float32)
    if not len(bank):
        raise ValueError("video.motion_discriminator needs train windows with SMPL on every frame; there are none")
    np.savez(out, body_pose=bank.astype(np.float32))
    return str(out)


def temporal_arguments(cfg: DictConfig, body_dir: Path, frame_model: HMRSystem, frame_path: Path,
                       motion_bank: str | None) -> dict[str, Any]:
    """`TemporalSystem` keyword arguments (they become the checkpoint's hyper-parameters)."""
    v, w, o = cfg.video, cfg.model.loss_weights, cfg.optim
    return dict(
        body_model_dir=str(body_dir), feature_dim=int(frame_model.backbone.feature_dim),
        img_res=int(frame_model.hparams.img_res), n_iter=int(frame_model.head.n_iter),
        head_dropout=float(frame_model.head.drop1.p), hidden_size=v.hidden_size,
        num_layers=v.num_layers, bidirectional=v.bidirectional, residual=v.residual, zero_init=v.zero_init,
        motion_discriminator=v.motion_discriminator, motion_bank_path=motion_bank,
        loss_weights=OmegaConf.to_container(w), loss_motion=v.motion_loss_weight, lr=o.lr, disc_lr=o.disc_lr,
        weight_decay=o.weight_decay, schedule=o.schedule, milestones=list(o.milestones) or None, gamma=o.gamma,
        frame_checkpoint=str(frame_path), eval_protocol=cfg.eval.protocol,
        eval_protocols=dict(cfg.eval.protocols) or None, feature_samples=cfg.model.feature_samples)


# ------------------------------------------------------------------------------ the run
def video_trainer(cfg: DictConfig, run: RunDir) -> tuple[L.Trainer, ModelCheckpoint | None]:
    """`gtahuman.run_trainer.build_trainer`; without val sets (the mini Table 3 rows) a Trainer with
    last.ckpt only: build_trainer's two ModelCheckpoints would then share one state key, which
    Lightning refuses."""
    if len(cfg.data.val):
        return build_trainer(cfg, run)
    t = cfg.trainer
    last = ModelCheckpoint(dirpath=run.checkpoint_dir, filename=run.last_checkpoint.stem, monitor=None,
                           save_top_k=1, every_n_epochs=1, enable_version_counter=False)
    optional = {k: t[k] for k in ("gradient_clip_val", "limit_train_batches") if t[k] is not None}
    trainer = L.Trainer(
        max_epochs=t.max_epochs, max_steps=t.max_steps, accelerator=t.accelerator, devices=t.devices,
        num_nodes=t.num_nodes, strategy=t.strategy, precision=t.precision,
        accumulate_grad_batches=t.accumulate_grad_batches, log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.progress_bar, use_distributed_sampler=False,
        callbacks=[last, StopOnSignal(run.last_checkpoint, *resume_command(cfg))],
        logger=ResumableCSVLogger(str(run.path), name="logs", version=""), default_root_dir=str(run.path),
        num_sanity_val_steps=0, limit_val_batches=0, **optional)
    return trainer, None


def train_video(cfg: DictConfig) -> dict[str, Any]:
    """Run one Table 3 experiment (see the module docstring); returns its metrics."""
    start = time.time()
    if cfg.video.motion_discriminator and cfg.trainer.gradient_clip_val is not None:
        raise ConfigError("video.motion_discriminator optimises manually and Lightning cannot clip it; "
                          "set trainer.gradient_clip_val=null")
    L.seed_everything(cfg.run.seed, workers=True, verbose=False)
    body_dir = ensure_assets(cfg)
    run = create_run_dir(cfg)
    logger = attach_log(run)
    logger.info("video run %s: experiment %s", run.path, cfg.experiment)
    frame_path = frame_checkpoint(cfg, run)
    frame_model = load_frame_model(frame_path, cfg.video.frame_checkpoint_format, cfg, body_dir)
    specs = {split: {name: prepare_source(name, src, cfg, body_dir) for name, src in cfg.data[split].items()}
             for split in ("train", "val", "test")}
    use_gpu = torch.cuda.is_available() and cfg.trainer.accelerator in ("auto", "gpu", "cuda")
    fingerprint = file_fingerprint(frame_path)
    dirs = {split: extract_all(frame_model, fingerprint, specs[split], cfg,
                               torch.device("cuda" if use_gpu else "cpu")) for split in specs}
    dm = VideoDataModule(dirs["train"], dirs["val"], dirs["test"], window=cfg.video.window, stride=cfg.video.stride,
                         ratios=source_ratios(cfg), epoch_length=cfg.data.epoch_length, batch_size=cfg.data.batch_size,
                         num_workers=cfg.data.num_workers, pin_memory=use_gpu, seed=cfg.run.seed,
                         subsample=subsample_setting(cfg, body_dir))
    motion_bank = write_motion_bank(dm, run.path / "motion_bank.npz") if cfg.video.motion_discriminator else None
    trainer, best = video_trainer(cfg, run)
    system = TemporalSystem(**temporal_arguments(cfg, body_dir, frame_model, frame_path, motion_bank))
    system.init_from_frame_model(frame_model)  # a resumed run overwrites it with last.ckpt
    ckpt = None
    if cfg.run.resume:
        if run.last_checkpoint.is_file():
            ckpt = str(run.last_checkpoint)
            logger.info("resuming from %s", ckpt)
        else:
            logger.warning("run.resume=true but %s does not exist; training from the start", run.last_checkpoint)
    with warnings.catch_warnings(), signal_guard(trainer):  # SIGINT / SIGTERM: last.ckpt, resume command, 130 / 143
        if ckpt:
            warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
        trainer.fit(system, datamodule=dm, ckpt_path=ckpt)
    best_path = best.best_model_path if best is not None else ""
    test_ckpt = best_path or (str(run.last_checkpoint) if run.last_checkpoint.is_file() else None)
    metrics: dict[str, Any] = {
        "experiment": cfg.experiment, "task": "video", "run_dir": str(run.path), "protocol": cfg.eval.protocol,
        "global_step": int(trainer.global_step), "body_model_is_toy": bool(system.is_toy_body),
        "frame_checkpoint": str(frame_path), "data": dm.describe(),
        "tested_checkpoint": Path(test_ckpt).name if test_ckpt else "in-memory (no training step)",
        "units": "mm; accel and accel_error in mm per frame^2, within person tracks"}
    if cfg.data.test:
        with signal_guard(trainer):
            trainer.test(system, datamodule=dm, ckpt_path=test_ckpt, verbose=False)
        metrics.update(test=system.test_summaries, frame_model=system.frame_summaries["test"],
                       protocols={name: system.eval_protocol_for(name).name for name in cfg.data.test})
        write_predictions(run.path / "predictions", system.test_results, specs["test"])
    metrics["wall_time_s"] = round(time.time() - start, 1)
    run.write_metrics(metrics)
    logger.info("metrics: %s", metrics)
    return metrics


__all__ = ["frame_checkpoint", "load_frame_model", "source_ratios", "subsample_setting", "temporal_arguments",
           "train_video", "write_motion_bank"]

"""``train(cfg) -> metrics``: the one pure function that ``experiments.run``, sweeps and tests call.

Stages, each cached or resumable so a rerun redoes no finished work:

1. body model: ``body.model_dir`` is checked; null generates the toy body model into the cache;
2. data: the mini world is generated when asked for; every source is prepared once into an index
   (``<cache_dir>/indices``) and, with ``data.crop_cache``, a crop cache (``<cache_dir>/crops``);
3. the run directory (config, commit, log) and the Trainer (last + best checkpoints, the best
   chosen on a validation metric, never on the test set); ``run.resume`` continues from last.ckpt;
4. fit, then test the best checkpoint on every test set; per-sample errors, predictions, sampled
   backbone features and metrics.json are written into the run directory; the mean-pose
   baseline is evaluated on the same sets for comparison.
"""
from __future__ import annotations

import hashlib
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from gtahuman.body.assets import check_body_model_dir
from gtahuman.body.toy import write_toy_body_assets
from gtahuman.data.crop_cache import build_crop_cache
from gtahuman.data.datamodule import MixedDataModule, SourceSpec
from gtahuman.data.prepare import prepare_dataset
from gtahuman.evaluation import get_protocol
from gtahuman.rundir import RunDir, attach_log, create_run_dir
from gtahuman.systems.hmr import HMRSystem

log = logging.getLogger("gtahuman")
warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)


# ------------------------------------------------------------------------------------ assets
def ensure_assets(cfg: DictConfig) -> Path:
    """Generate the mini world when asked for, and return the body-model directory to use.

    The mini world is rendered with a body model and its ground truth only holds for that model,
    so with ``data.miniworld`` the world's own body directory is used (``body.model_dir``, when
    given, is what the world is rendered with). Otherwise ``body.model_dir`` is checked, or the
    toy body model is generated into the cache.
    """
    if cfg.data.miniworld:
        from gtahuman.data.miniworld.world import generate_world

        world = generate_world(Path(cfg.data.world_dir), size=cfg.data.miniworld, seed=cfg.data.miniworld_seed,
                               body_dir=cfg.body.model_dir or None, progress=cfg.trainer.progress_bar,
                               overwrite=True)  # a cache: a world of another generator version is replaced
        model_dir = Path(world.body_dir)
    elif cfg.body.model_dir:
        model_dir = Path(cfg.body.model_dir)
    else:
        model_dir = Path(cfg.run.cache_dir) / "toy_body"
        if not (model_dir / "smpl_mean_params.npz").is_file():
            write_toy_body_assets(model_dir)
    check_body_model_dir(model_dir)
    return model_dir


def _key(*parts: Any) -> str:
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:10]


def prepare_source(name: str, src: DictConfig, cfg: DictConfig, body_dir: Path) -> SourceSpec:
    """Index (and crop cache) for one configured source; both are cached by content."""
    path = Path(src.path).resolve()
    image_root = Path(src.image_root).resolve() if src.image_root else (path if src.kind == "gta_raw" else path.parent)
    cache = Path(cfg.run.cache_dir)
    index_dir = cache / "indices" / f"{name}-{_key(src.kind, path, image_root, body_dir.resolve())}"
    index = prepare_dataset(src.kind, path, index_dir, body_model_dir=body_dir, dataset_name=name,
                            domain=src.domain or name, image_root=image_root,
                            progress=cfg.trainer.progress_bar)
    crop_dir = None
    if cfg.data.crop_cache:
        manifest = (index_dir / "manifest.json").read_bytes()  # a re-prepared index gets a new cache
        crop_dir = cache / "crops" / f"{name}-{_key(manifest, cfg.data.crop_res)}"
        build_crop_cache(index, image_root, crop_dir, crop_res=cfg.data.crop_res,
                         progress=cfg.trainer.progress_bar)
    return SourceSpec(name=name, index_dir=str(index_dir), image_root=str(image_root),
                      crop_cache_dir=None if crop_dir is None else str(crop_dir), role=src.role)


def build_datamodule(cfg: DictConfig, body_dir: Path) -> MixedDataModule:
    specs = {split: {name: prepare_source(name, src, cfg, body_dir) for name, src in cfg.data[split].items()}
             for split in ("train", "val", "test")}
    sampler_args = dict(OmegaConf.to_container(cfg.data.sampler_args, resolve=True))
    if cfg.data.real_ratio is not None:
        synthetic = [i for i, s in enumerate(specs["train"].values()) if s.role == "synthetic"]
        sampler_args.update(real_ratio=cfg.data.real_ratio, synthetic_sources=synthetic)
    if cfg.data.sampler == "mixture" and "partition" not in sampler_args:
        # weights inside each role group (or across all sources when no real_ratio is given)
        sampler_args["partition"] = [float(s.weight) for s in cfg.data.train.values()]
    return MixedDataModule(
        train_sources=list(specs["train"].values()), sampler=cfg.data.sampler, sampler_args=sampler_args,
        val_sets=specs["val"], test_sets=specs["test"], batch_size=cfg.data.batch_size,
        num_workers=cfg.data.num_workers, pin_memory=torch.cuda.is_available(),
        persistent_workers=cfg.data.num_workers > 0, img_res=cfg.data.img_res, augment=cfg.data.augment,
        seed=cfg.run.seed, mode=cfg.data.mode, epoch_length=cfg.data.epoch_length)


def write_prior_poses(dm: MixedDataModule, names: list[str], out: Path) -> str | None:
    """The pose discriminator's real samples: SMPL poses of the named train sources."""
    if not names:
        return None
    poses, betas = [], []
    for spec in dm.train_sources:
        if spec.name in names:
            from gtahuman.data.index import SampleIndex

            index = SampleIndex.load(spec.index_dir)
            keep = np.asarray(index["has_smpl"], bool)
            poses.append(np.asarray(index["smpl_body_pose"])[keep])
            betas.append(np.asarray(index["smpl_betas"])[keep])
    unknown = set(names) - {s.name for s in dm.train_sources}
    if unknown:
        raise ValueError(f"model.prior_sources names {sorted(unknown)}, not among the train sources "
                         f"{[s.name for s in dm.train_sources]}")
    np.savez(out, body_pose=np.concatenate(poses), betas=np.concatenate(betas))
    return str(out)


def build_system(cfg: DictConfig, body_dir: Path, dm: MixedDataModule, prior_path: str | None) -> HMRSystem:
    m, o, w = cfg.model, cfg.optim, cfg.model.loss_weights
    return HMRSystem(
        body_model_dir=str(body_dir), backbone=m.backbone,
        backbone_args=OmegaConf.to_container(m.backbone_args, resolve=True), img_res=cfg.data.img_res,
        variant=m.variant, n_iter=m.n_iter, supervision=m.supervision,
        loss_keypoints2d=w.keypoints2d, loss_keypoints3d=w.keypoints3d, loss_pose=w.smpl_pose,
        loss_betas=w.smpl_betas, loss_camera=w.camera, loss_vertices=w.vertices, loss_adversarial=w.adversarial,
        lr=o.lr, disc_lr=o.disc_lr, weight_decay=o.weight_decay,
        # data.batch_size is already global (split across ranks by the DataModule)
        batch_size=cfg.data.batch_size * cfg.trainer.accumulate_grad_batches,
        base_batch_size=o.base_batch_size, schedule=o.schedule, milestones=list(o.milestones) or None,
        gamma=o.gamma, prior_poses_path=prior_path, init_checkpoint=m.init_checkpoint, init_format=m.init_format,
        eval_protocol=cfg.eval.protocol, feature_samples=m.feature_samples)


# ----------------------------------------------------------------------------------- running
def build_trainer(cfg: DictConfig, run: RunDir) -> tuple[L.Trainer, ModelCheckpoint]:
    t = cfg.trainer
    has_val = len(cfg.data.val) > 0
    best = ModelCheckpoint(dirpath=run.checkpoint_dir, filename="best", monitor=cfg.eval.monitor if has_val else None,
                           mode="min", save_last=True, save_top_k=1 if has_val else 0, enable_version_counter=False)
    optional = {k: t[k] for k in ("gradient_clip_val", "val_check_interval", "limit_train_batches",
                                  "limit_val_batches") if t[k] is not None}
    trainer = L.Trainer(
        max_epochs=t.max_epochs, max_steps=t.max_steps, accelerator=t.accelerator, devices=t.devices,
        num_nodes=t.num_nodes, strategy=t.strategy, precision=t.precision,
        accumulate_grad_batches=t.accumulate_grad_batches, log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.progress_bar, use_distributed_sampler=False, callbacks=[best],
        logger=CSVLogger(str(run.path), name="logs", version=""), default_root_dir=str(run.path),
        num_sanity_val_steps=0, **optional)
    return trainer, best


def write_results(run: RunDir, system: HMRSystem, dm: MixedDataModule) -> None:
    """Per-sample errors/predictions (+ the index's factor columns) and sampled features."""
    from gtahuman.data.datamodule import FACTOR_COLUMNS
    from gtahuman.data.index import SampleIndex

    out = run.path / "predictions"
    out.mkdir(exist_ok=True)
    for name, spec in dm.test_sets.items():
        results = dict(system.test_results.get(name, {}))
        if not results:
            continue
        index = SampleIndex.load(spec.index_dir)
        ids = results["sample_id"].astype(np.int64)
        for column in FACTOR_COLUMNS + ("sequence_id", "frame_id"):
            results[f"factor_{column}" if column in FACTOR_COLUMNS else column] = np.asarray(index[column])[ids]
        features = {k: results.pop(k) for k in list(results) if k.startswith("feature")}
        np.savez(out / f"{name}.npz", **results)
        if features:
            np.savez(run.path / "predictions" / f"{name}_features.npz", **features)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one experiment described by ``cfg`` (see gtahuman.config); returns its metrics."""
    start = time.time()
    L.seed_everything(cfg.run.seed, workers=True, verbose=False)
    body_dir = ensure_assets(cfg)
    dm = build_datamodule(cfg, body_dir)
    run = create_run_dir(cfg)
    logger = attach_log(run)
    logger.info("run %s: experiment %s", run.path, cfg.experiment)
    prior = write_prior_poses(dm, list(cfg.model.prior_sources), run.path / "prior_poses.npz")
    system = build_system(cfg, body_dir, dm, prior)
    trainer, best = build_trainer(cfg, run)
    ckpt = str(run.last_checkpoint) if cfg.run.resume and run.last_checkpoint.is_file() else None
    trainer.fit(system, datamodule=dm, ckpt_path=ckpt)
    metrics: dict[str, Any] = {"experiment": cfg.experiment, "run_dir": str(run.path),
                               "protocol": cfg.eval.protocol, "global_step": int(trainer.global_step),
                               "body_model_is_toy": bool(system.is_toy_body)}
    test_ckpt = best.best_model_path or str(run.last_checkpoint)
    metrics["tested_checkpoint"] = Path(test_ckpt).name
    if cfg.data.test:
        trainer.test(system, datamodule=dm, ckpt_path=test_ckpt, verbose=False)
        metrics["test"] = system.test_summaries
        metrics["mean_pose_baseline"] = {}
        for k, name in enumerate(dm.eval_set_names("test")):
            baseline = system.mean_pose_baseline(dm.test_dataloader()[k])
            baseline.pop("per_sample")
            metrics["mean_pose_baseline"][name] = baseline
        write_results(run, system, dm)
    metrics["bad_samples"] = dm.bad_sample_count
    metrics["wall_time_s"] = round(time.time() - start, 1)
    run.write_metrics(metrics)
    logger.info("metrics: %s", metrics)
    return metrics


def format_results(metrics: dict[str, Any]) -> str:
    """The table printed at the end of a run: each test set, model vs mean-pose baseline (mm)."""
    protocol = get_protocol(metrics["protocol"])
    names = ("mpjpe", "pa_mpjpe", "pve")
    lines = [f"{'test set':<16} {'model':<16} " + " ".join(f"{n.upper():>10}" for n in names)]
    for set_name, summary in metrics.get("test", {}).items():
        for label, values in (("trained", summary), ("mean pose", metrics["mean_pose_baseline"].get(set_name, {}))):
            cells = " ".join(f"{values.get(n, float('nan')):>10.1f}" for n in names)
            lines.append(f"{set_name:<16} {label:<16} {cells}")
    note = "errors in mm; " + f"protocol '{metrics['protocol']}'"
    if metrics.get("body_model_is_toy") or protocol.toy_body_model:
        note += "; numbers come from the toy body model and the mini world, not SMPL or real data"
    return "\n".join(lines + [note])

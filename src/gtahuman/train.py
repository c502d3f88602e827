"""``train(cfg) -> metrics``: the one pure function that ``experiments.run``, sweeps and tests call.

Stages, each cached or resumable so a rerun redoes no finished work:

0. the config is complete: every ``???`` value (``body.model_dir`` of a real-data row...) is given;
1. body model: ``body.model_dir`` is checked; null generates the toy body model into the cache;
2. data: the mini world is generated when asked for; every source is prepared once into an index
   (``<cache_dir>/indices``) and, with ``data.crop_cache``, a crop cache (``<cache_dir>/crops``);
3. the run directory (config, commit, log) and the Trainer (last + best checkpoints, the best
   chosen on a validation metric, never on the test set); ``run.resume`` continues from last.ckpt;
4. fit, then test the best checkpoint on every test set; per-sample errors, predictions, sampled
   backbone features and metrics.json are written into the run directory. Two constant
   predictions are scored on the same sets for comparison: the training data's best constant
   (``constant_baseline``: the mean pose and betas of what the train sampler draws, computed
   before fitting, saved as constant_prediction.npz; `gtahuman.constant_baseline`) and the SMPL
   mean parameters (``mean_pose_baseline``, the older, weaker floor).

The argument assembly (`datamodule_arguments`, `system_arguments`) is separate from the data
preparation so that tests can check every experiment config builds without any data, and
``experiments.evaluate`` reuses the same pieces on a finished run.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from gtahuman.atomic import atomic_output, file_lock
from gtahuman.body.assets import check_body_model_dir
from gtahuman.body.toy import write_toy_body_assets
from gtahuman.config import require_complete
from gtahuman.constant_baseline import CONSTANT_FILE, ConstantPrediction, constant_from_datamodule
from gtahuman.data.budget import BUDGET_FILE, datamodule_budget
from gtahuman.data.crop_cache import build_crop_cache
from gtahuman.data.datamodule import MixedDataModule, SourceSpec
from gtahuman.data.dropped import dropped_at_prepare, log_dropped
from gtahuman.data.mixing import sampler_arguments
from gtahuman.data.prepare import prepare_dataset
from gtahuman.data.splits import split_index
from gtahuman.evaluation import summarize
from gtahuman.run_callbacks import (  # noqa: F401
    AtomicCheckpointIO,
    ResumableCSVLogger,
    StepSeeding,
    StopOnNonFiniteLoss,
    StopOnSignal,
    resume_command,
    signal_guard,
)
from gtahuman.results_table import format_results, ratios_to_constant  # noqa: F401  (callers import them here)
from gtahuman.rundir import RunDir, attach_log, create_run_dir, resume_record_callbacks
from gtahuman.systems.hmr import HMRSystem
from gtahuman.systems.results import gather_rows
from gtahuman.threads import apply_thread_policy

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

        world_dir = Path(cfg.data.world_dir)
        with file_lock(world_dir.parent / f".{world_dir.name}.lock"):  # runs started together build it once
            world = generate_world(world_dir, size=cfg.data.miniworld, seed=cfg.data.miniworld_seed,
                                   variant=cfg.data.miniworld_variant,
                                   body_dir=cfg.body.model_dir or None, progress=cfg.trainer.progress_bar,
                                   overwrite=True)  # a cache: a world of another generator version is replaced
        model_dir = Path(world.body_dir)
    elif cfg.body.model_dir:
        model_dir = Path(cfg.body.model_dir)
    else:
        model_dir = Path(cfg.run.cache_dir) / "toy_body"
        with file_lock(model_dir.parent / ".toy_body.lock"):
            if not (model_dir / "smpl_mean_params.npz").is_file():
                write_toy_body_assets(model_dir)
    check_body_model_dir(model_dir)
    return model_dir


def _key(*parts: Any) -> str:
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:10]


def prepare_source(name: str, src: DictConfig, cfg: DictConfig, body_dir: Path) -> SourceSpec:
    """Index (and crop cache) for one configured source; both are cached by content, and built
    under a lock so that runs started together (sweep workers, the findings set) build them once."""
    path = Path(src.path).resolve()
    image_root = Path(src.image_root).resolve() if src.image_root else (path if src.kind == "gta_raw" else path.parent)
    cache = Path(cfg.run.cache_dir)
    fits = Path(src.static_fits).resolve() if src.get("static_fits") else None
    key = _key(src.kind, path, image_root, body_dir.resolve(), *([fits] if fits else []))
    # '<source>_heldout' (experiments.evaluate) shares its source's whole index and lock
    stem = name.removesuffix("_heldout") if src.get("split") == "heldout" else name
    index_dir = cache / "indices" / f"{stem}-{key}"
    with file_lock(cache / "locks" / f"{index_dir.name}.lock"):
        index = prepare_dataset(src.kind, path, index_dir, body_model_dir=body_dir, dataset_name=stem,
                                domain=src.domain or stem, image_root=image_root,
                                progress=cfg.trainer.progress_bar, static_fits=fits)
        if src.get("split"):  # a fixed part of a held-out split by sequence, saved as its own index
            index, index_dir = split_index(index, index_dir, src.split, float(src.heldout_fraction))
        crop_dir = None
        if cfg.data.crop_cache:
            manifest = (index_dir / "manifest.json").read_bytes()  # a re-prepared index gets a new cache
            crop_dir = cache / "crops" / f"{name}-{_key(manifest, cfg.data.crop_res)}"
            build_crop_cache(index, image_root, crop_dir, crop_res=cfg.data.crop_res,
                             progress=cfg.trainer.progress_bar)
        shards_dir = None
        if cfg.data.crop_shards:  # litdata shards of the crop cache, keyed by the cache's content
            from gtahuman.data.shards import (
                CropCache,
                cache_fingerprint,
                write_crop_shards,
            )

            if crop_dir is None:
                raise ValueError("data.crop_shards=true needs data.crop_cache=true: the shards are written from the crop cache")
            shards_dir = cache / "crop_shards" / f"{name}-{_key(cache_fingerprint(CropCache(crop_dir)))}"
            write_crop_shards(crop_dir, shards_dir, progress=cfg.trainer.progress_bar)
        return SourceSpec(name=name, index_dir=str(index_dir), image_root=str(image_root),
                          crop_cache_dir=None if crop_dir is None else str(crop_dir), role=src.role,
                          crop_shards_dir=None if shards_dir is None else str(shards_dir))


def datamodule_arguments(cfg: DictConfig, specs: dict[str, dict[str, SourceSpec]]) -> dict[str, Any]:
    """`MixedDataModule` keyword arguments from the config and prepared ``specs[split][name]``."""
    train = list(specs.get("train", {}).values())
    sampler_args = sampler_arguments(cfg.data.sampler, OmegaConf.to_container(cfg.data.sampler_args, resolve=True),
                                     cfg.data.real_ratio, cfg.data.mode,
                                     [(s.name, s.role, float(cfg.data.train[s.name].weight)) for s in train])
    return dict(
        train_sources=train, sampler=cfg.data.sampler, sampler_args=sampler_args,
        val_sets=specs.get("val", {}), test_sets=specs.get("test", {}), batch_size=cfg.data.batch_size,
        num_workers=cfg.data.num_workers, pin_memory=torch.cuda.is_available(),
        persistent_workers=cfg.data.num_workers > 0, img_res=cfg.data.img_res, augment=cfg.data.augment,
        seed=cfg.run.seed, mode=cfg.data.mode, epoch_length=cfg.data.epoch_length,
        train_probe=cfg.data.train_probe, adaptation_batch=cfg.data.adaptation_batch)


def build_datamodule(cfg: DictConfig, body_dir: Path) -> MixedDataModule:
    specs = {split: {name: prepare_source(name, src, cfg, body_dir) for name, src in cfg.data[split].items()}
             for split in ("train", "val", "test")}
    if cfg.adaptation.sim2real_checkpoint and cfg.adaptation.sim2real_mode == "offline":
        from gtahuman.adaptation.sim2real import (
            apply_sim2real,  # synthetic crop caches, translated once
        )

        specs["train"] = apply_sim2real(cfg.adaptation.sim2real_checkpoint, "offline", specs["train"],
                                        cfg.run.cache_dir, progress=cfg.trainer.progress_bar).train_sources
    return MixedDataModule(**datamodule_arguments(cfg, specs))


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
        loss_keypoints2d=w.keypoints2d, loss_keypoints3d=w.keypoints3d,
        loss_keypoints3d_aligned=w.keypoints3d_aligned, loss_pose=w.smpl_pose,
        loss_betas=w.smpl_betas, loss_camera=w.camera, loss_vertices=w.vertices, loss_adversarial=w.adversarial,
        loss_parts=w.parts, loss_keypoints2d_direct=w.keypoints2d_direct,
        loss_keypoints2d_heatmap=w.keypoints2d_heatmap,
        lr=o.lr, disc_lr=o.disc_lr, weight_decay=o.weight_decay,
        # Per device: data.batch_size is global, and the system's lr scaling multiplies by the
        # trainer's world size and accumulation itself (global batch x accumulate / base).
        batch_size=cfg.data.batch_size // world_size,
        base_batch_size=o.base_batch_size, schedule=o.schedule, milestones=list(o.milestones) or None,
        gamma=o.gamma, warmup_steps=o.warmup_steps,
        manual_clip_norm=cfg.trainer.gradient_clip_val if m.variant == "hmr" else None,
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


INIT_ESTIMATES = ("smpl_mean_params", "train_mean")  # model.init_estimate (checked in config_checks)


def build_system(cfg: DictConfig, body_dir: Path, dm: MixedDataModule, prior_path: str | None,
                 world_size: int | None = None, initial_estimate: dict[str, list] | None = None) -> HMRSystem:
    """``initial_estimate``: the IEF's start (model.init_estimate=train_mean: the training data's constant)."""
    return HMRSystem(**system_arguments(cfg, body_dir, [s.name for s in dm.train_sources], prior_path, world_size),
                     initial_estimate=initial_estimate)


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
    if t.checkpoint_every_n_steps:  # mid-epoch last.ckpt too (Lightning wants a second callback for it)
        extra.append(ModelCheckpoint(dirpath=run.checkpoint_dir, filename=run.last_checkpoint.stem, monitor=None,
                                     save_top_k=1, every_n_train_steps=t.checkpoint_every_n_steps,
                                     enable_version_counter=False))
    optional = {k: t[k] for k in ("gradient_clip_val", "val_check_interval", "limit_train_batches",
                                  "limit_val_batches") if t[k] is not None}
    if cfg.model.variant == "hmr":  # manual optimisation: the system clips (system_arguments)
        optional.pop("gradient_clip_val", None)
    if t.val_every_steps is not None:  # an int interval counted across epochs needs the epoch rule off
        optional.update(val_check_interval=int(t.val_every_steps), check_val_every_n_epoch=None)
    trainer = L.Trainer(
        max_epochs=t.max_epochs, max_steps=t.max_steps, accelerator=t.accelerator, devices=t.devices,
        num_nodes=t.num_nodes, strategy=t.strategy, precision=t.precision,
        accumulate_grad_batches=t.accumulate_grad_batches, log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.progress_bar, use_distributed_sampler=False,
        # without a val set there is no best.ckpt (and two monitor-less callbacks would clash)
        callbacks=[*([best] if has_val else []), last, *extra, *callbacks], plugins=[AtomicCheckpointIO()],
        logger=ResumableCSVLogger(str(run.path), name="logs", version=""), default_root_dir=str(run.path),
        num_sanity_val_steps=0, **optional)
    return trainer, best


def write_predictions(out: Path, results: dict[str, dict[str, np.ndarray]], sets: dict[str, SourceSpec]) -> None:
    """Per set: ``<name>.npz`` (sample ids, per-sample errors, predictions, the index's factor
    columns, sequence/frame ids) and ``<name>_features.npz`` (sampled backbone features)."""
    from gtahuman.data.datamodule import FACTOR_COLUMNS
    from gtahuman.data.index import SampleIndex

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


def write_train_factors(out: Path, sources: list[SourceSpec]) -> None:
    """``train_factors.npz``: every train sample's factor columns and its source name, so the
    per-bin analyses (data density of the training mix) need no cache once the run is done."""
    from gtahuman.data.datamodule import FACTOR_COLUMNS
    from gtahuman.data.index import SampleIndex

    columns: dict[str, list[np.ndarray]] = {"source": []}
    for spec in sources:
        index = SampleIndex.load(spec.index_dir)
        columns["source"].append(np.full(len(index), spec.name))
        for column in FACTOR_COLUMNS:
            columns.setdefault(column, []).append(np.asarray(index[column]))
    with atomic_output(out) as tmp:
        with open(tmp, "wb") as file:
            np.savez(file, **{k: np.concatenate(v) for k, v in columns.items()})


def _baseline_summary(baseline: dict[str, Any], world_size: int) -> dict[str, float]:
    """A baseline's summary; under DDP each rank scored its contiguous block of the set, so the
    per-sample errors of all ranks are gathered and summarised together."""
    per_sample = baseline.pop("per_sample")
    if world_size > 1:
        return summarize({k: gather_rows(torch.from_numpy(v)) for k, v in per_sample.items()})
    return baseline


def evaluate_test_sets(trainer: L.Trainer, system: HMRSystem, dm: MixedDataModule, ckpt_path: str | None,
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


def train(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> dict[str, Any]:
    """Run one experiment described by ``cfg`` (see gtahuman.config); returns its metrics.
    ``callbacks``: extra Lightning callbacks for the fit (a sweep's validation reporter / pruner)."""
    start = time.time()
    from gtahuman.config_checks import validate_config

    validate_config(cfg)  # every value, before any work (cheap): sweeps and tests call train() directly
    require_complete(cfg)
    if cfg.task == "video":
        from gtahuman.video.train import train_video

        return train_video(cfg)
    if cfg.task != "image":
        raise ValueError(f"config key 'task' must be 'image' or 'video', got {cfg.task!r}")
    L.seed_everything(cfg.run.seed, workers=True, verbose=False)
    threads = apply_thread_policy(cfg.trainer.threads)  # before any work: a shared small machine
    body_dir = ensure_assets(cfg)
    dm = build_datamodule(cfg, body_dir)
    rank = int(rank_zero_only.rank)  # from the launcher's environment; only rank 0 writes the run directory
    run = open_run_dir(cfg, rank)
    logger = attach_log(run) if rank == 0 else log
    logger.info("run %s: experiment %s, %d torch threads", run.path, cfg.experiment, threads)
    dropped = dropped_at_prepare([*dm.train_sources, *dm.val_sets.values(), *dm.test_sets.values()])
    log_dropped(dropped, logger)  # samples prepare left out (missing images, empty boxes): run.log names them
    prior = None
    if cfg.model.variant == "hmr":  # only the adversarial prior reads them
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
        if run.last_checkpoint.is_file():
            ckpt = str(run.last_checkpoint)
            logger.info("resuming from %s", ckpt)
        else:  # interrupted before its first checkpoint: nothing to continue from
            logger.warning("run.resume=true but %s does not exist; training from the start", run.last_checkpoint)
    with warnings.catch_warnings(), signal_guard(trainer):  # SIGINT / SIGTERM: run_callbacks.StopOnSignal
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

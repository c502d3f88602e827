"""The data a run needs, prepared once and cached: the body model, the mini world, every source's
index and crop cache, and the data module built from them.

Everything here is keyed by content under ``run.cache_dir`` and built under a file lock, so runs
started together (sweep workers, the findings set) build each cache once and a rerun redoes nothing.
The argument assembly (`datamodule_arguments`) is separate from the preparation so that tests can
check every experiment config builds without any data, and ``experiments.evaluate``, ``check``,
``design`` and the CycleGAN stage reuse the same pieces.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from gtahuman.atomic import atomic_output, file_lock
from gtahuman.body.assets import check_body_model_dir
from gtahuman.body.toy import write_toy_body_assets
from gtahuman.data.crop_cache import build_crop_cache
from gtahuman.data.datamodule import FACTOR_COLUMNS, MixedDataModule
from gtahuman.data.source_spec import SourceSpec
from gtahuman.data.index import SampleIndex
from gtahuman.data.mixing import configured_sampler_arguments
from gtahuman.data.prepare import content_key, prepare_dataset
from gtahuman.data.splits import split_index


def ensure_assets(cfg: DictConfig) -> Path:
    """Generate the mini world when asked for, and return the body-model directory to use.

    The mini world is rendered with a body model and its ground truth only holds for that model,
    so with ``data.miniworld`` the world's own body directory is used (``body.model_dir``, when
    given, is what the world is rendered with). Otherwise ``body.model_dir`` is checked, or the
    toy body model is generated into the cache.
    """
    if cfg.data.miniworld:
        from gtahuman.miniworld.world import generate_world  # the renderer: only for mini-world runs

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


def prepare_source(name: str, src: DictConfig, cfg: DictConfig, body_dir: Path) -> SourceSpec:
    """Index (and crop cache) for one configured source; both are cached by content, and built
    under a lock so that runs started together (sweep workers, the findings set) build them once."""
    path = Path(src.path).resolve()
    image_root = Path(src.image_root).resolve() if src.image_root else (path if src.kind == "gta_raw" else path.parent)
    cache = Path(cfg.run.cache_dir)
    fits = Path(src.static_fits).resolve() if src.get("static_fits") else None
    key = content_key(src.kind, path, image_root, body_dir.resolve(), *([fits] if fits else []))
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
            crop_dir = cache / "crops" / f"{name}-{content_key(manifest, cfg.data.crop_res)}"
            build_crop_cache(index, image_root, crop_dir, crop_res=cfg.data.crop_res,
                             progress=cfg.trainer.progress_bar)
        shards_dir = None
        if cfg.data.crop_shards:  # litdata shards of the crop cache, keyed by the cache's content
            from gtahuman.data.shards import (  # litdata (optional, slow): only with data.crop_shards
                CropCache,
                cache_fingerprint,
                write_crop_shards,
            )

            if crop_dir is None:
                raise ValueError("data.crop_shards=true needs data.crop_cache=true: the shards are written from the crop cache")
            shards_dir = cache / "crop_shards" / f"{name}-{content_key(cache_fingerprint(CropCache(crop_dir)))}"
            write_crop_shards(crop_dir, shards_dir, progress=cfg.trainer.progress_bar)
        return SourceSpec(name=name, index_dir=str(index_dir), image_root=str(image_root),
                          crop_cache_dir=None if crop_dir is None else str(crop_dir), role=src.role,
                          crop_shards_dir=None if shards_dir is None else str(shards_dir))


def datamodule_arguments(cfg: DictConfig, specs: dict[str, dict[str, SourceSpec]]) -> dict[str, Any]:
    """`MixedDataModule` keyword arguments from the config and prepared ``specs[split][name]``."""
    train = list(specs.get("train", {}).values())
    sampler_args = configured_sampler_arguments(cfg.data, [(s.name, s.role) for s in train])
    return dict(
        train_sources=train, sampler=cfg.data.sampler, sampler_args=sampler_args,
        val_sets=specs.get("val", {}), test_sets=specs.get("test", {}), batch_size=cfg.data.batch_size,
        num_workers=cfg.data.num_workers, pin_memory=torch.cuda.is_available(),
        persistent_workers=cfg.data.num_workers > 0, img_res=cfg.data.img_res, augment=cfg.data.augment,
        uint8_images=cfg.data.uint8_images,
        seed=cfg.run.seed, mode=cfg.data.mode, epoch_length=cfg.data.epoch_length,
        train_probe=cfg.data.train_probe, adaptation_batch=cfg.data.adaptation_batch)


def prepare_specs(cfg: DictConfig, body_dir: Path) -> dict[str, dict[str, SourceSpec]]:
    """`prepare_source` for every source of every split: ``{split: {name: SourceSpec}}``."""
    return {split: {name: prepare_source(name, src, cfg, body_dir) for name, src in cfg.data[split].items()}
            for split in ("train", "val", "test")}


def build_datamodule(cfg: DictConfig, body_dir: Path) -> MixedDataModule:
    """The data module of ``cfg``'s prepared sources (the image task adds the offline CycleGAN
    translation of its synthetic sources when asked for: `gtahuman.train_image.image_datamodule`)."""
    return MixedDataModule(**datamodule_arguments(cfg, prepare_specs(cfg, body_dir)))


def write_prior_poses(dm: MixedDataModule, names: list[str], out: Path) -> str | None:
    """The pose discriminator's real samples: SMPL poses of the named train sources."""
    if not names:
        return None
    poses, betas = [], []
    for spec in dm.train_sources:
        if spec.name in names:
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


def write_train_factors(out: Path, sources: list[SourceSpec]) -> None:
    """``train_factors.npz``: every train sample's factor columns and its source name, so the
    per-bin analyses (data density of the training mix) need no cache once the run is done."""
    columns: dict[str, list[np.ndarray]] = {"source": []}
    for spec in sources:
        index = SampleIndex.load(spec.index_dir)
        columns["source"].append(np.full(len(index), spec.name))
        for column in FACTOR_COLUMNS:
            columns.setdefault(column, []).append(np.asarray(index[column]))
    with atomic_output(out) as tmp:
        with open(tmp, "wb") as file:
            np.savez(file, **{k: np.concatenate(v) for k, v in columns.items()})

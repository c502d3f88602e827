"""Unpaired real / synthetic person crops for CycleGAN training.

CycleGAN needs no correspondence between the two domains: every loss term reads one image of
one domain. The pixels come from crop caches (:mod:`gtahuman.data.crop_cache`, or their litdata
shards), the same person crops HMR trains on, so the generator learns the translation at the
scale it is later applied at (``sim2real.translate_crop_cache`` translates those caches).

``UnpairedCropDataset[i]`` returns ``{'real': (3, S, S), 'synthetic': (3, S, S)}`` in [-1, 1]
(CycleGAN's normalisation, mean = std = 0.5): real row ``i mod n_real`` and synthetic row
``i mod n_synthetic`` of the two pools; a shuffled sampler makes every batch a fresh unpaired
draw, and an epoch covers the larger pool once (or ``epoch_length`` samples). Augmentation as
in CycleGAN's unaligned loader: resize to ``load_res``, random ``img_res`` crop, random
horizontal flip. Rows recorded as unreadable when a cache was built are left out of its pool
(their count is logged; the cache's manifest names them).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler

from gtahuman.data.crop_cache import CropCache
from gtahuman.data.shards import CropShards
from gtahuman.data.workers import leave_stop_signals_to_the_main_process
from gtahuman.run_data import ensure_assets, prepare_source

log = logging.getLogger(__name__)
CropSource = CropCache | CropShards | str | os.PathLike


def to_unit_range(crop: np.ndarray) -> Tensor:
    """uint8 (H, W, 3) RGB -> float32 (3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))).float().div_(127.5).sub_(1.0)


def open_crop_source(source: CropSource) -> CropCache | CropShards:
    """A crop cache directory (or an already open cache / shards reader)."""
    if isinstance(source, (CropCache, CropShards)):
        return source
    return CropCache(source)


class CropPool:
    """The readable rows of several crop caches, end to end: ``read(k) -> uint8 (R, R, 3)``."""

    def __init__(self, sources: Sequence[CropSource], name: str):
        if not sources:
            raise ValueError(f"CycleGAN {name} crops: give at least one crop cache directory")
        self.name = name
        self.caches = [open_crop_source(s) for s in sources]
        resolutions = {c.crop_res for c in self.caches}
        if len(resolutions) != 1:
            raise ValueError(f"CycleGAN {name} crops: the caches have different crop_res "
                             f"{ {str(c.directory): c.crop_res for c in self.caches} }; use caches of one resolution")
        self.crop_res = resolutions.pop()
        rows = []
        for k, cache in enumerate(self.caches):
            good = np.setdiff1d(np.arange(len(cache), dtype=np.int64), np.fromiter(cache.bad_rows, np.int64))
            if cache.bad_rows:
                log.warning("CycleGAN %s crops: %d unreadable rows of %s left out", name, len(cache.bad_rows),
                            cache.directory)
            rows.append(np.stack([np.full_like(good, k), good], axis=1))
        self.rows = np.concatenate(rows)  # (n, 2): cache number, row in that cache
        if len(self.rows) == 0:
            raise ValueError(f"CycleGAN {name} crops: no readable rows in {[str(c.directory) for c in self.caches]}")

    def __len__(self) -> int:
        return len(self.rows)

    def read(self, k: int) -> np.ndarray:
        cache, row = self.rows[k]
        return self.caches[int(cache)].read(int(row))[0]


class UnpairedCropDataset(Dataset):
    """See the module docstring. ``load_res`` None: no resize (``img_res`` None: the crops' size)."""

    def __init__(self, real: CropPool, synthetic: CropPool, img_res: int | None = None,
                 load_res: int | None = None, flip: bool = True):
        if real.crop_res != synthetic.crop_res and load_res is None and img_res is None:
            raise ValueError(f"CycleGAN crops: real caches hold {real.crop_res} px crops, synthetic ones "
                             f"{synthetic.crop_res} px; give img_res (and load_res) to bring them to one size")
        self.real, self.synthetic = real, synthetic
        self.img_res = int(img_res or real.crop_res)
        self.load_res = int(load_res or self.img_res)
        if self.img_res % 4 or self.load_res < self.img_res:
            raise ValueError(f"CycleGAN crops: img_res must be a multiple of 4 (the generator downsamples twice) "
                             f"and load_res >= img_res; got img_res={self.img_res}, load_res={self.load_res}")
        self.flip = flip

    def __len__(self) -> int:
        return max(len(self.real), len(self.synthetic))

    def _augment(self, crop: np.ndarray) -> Tensor:
        if crop.shape[0] != self.load_res or crop.shape[1] != self.load_res:
            crop = np.asarray(Image.fromarray(crop).resize((self.load_res, self.load_res), Image.BILINEAR))
        # torch's RNG: Lightning seeds it per DataLoader worker (seed_everything(workers=True))
        top, left = (int(v) for v in torch.randint(self.load_res - self.img_res + 1, (2,)))
        crop = crop[top:top + self.img_res, left:left + self.img_res]
        if self.flip and torch.rand(()) < 0.5:
            crop = crop[:, ::-1]
        return to_unit_range(crop)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(f"UnpairedCropDataset has {len(self)} samples; asked for {i}")
        return {"real": self._augment(self.real.read(i % len(self.real))),
                "synthetic": self._augment(self.synthetic.read(i % len(self.synthetic)))}


class UnpairedCropDataModule(L.LightningDataModule):
    """Train loader over :class:`UnpairedCropDataset` (CycleGAN has no validation metric).

    ``epoch_length``: samples per epoch (TLlib: 5,000 iterations of batch 1); None: the larger
    pool once. Shuffling uses a generator seeded by ``seed``.
    """

    def __init__(self, real_crop_dirs: list[str], synthetic_crop_dirs: list[str], img_res: int | None = None,
                 load_res: int | None = None, flip: bool = True, batch_size: int = 1, num_workers: int = 0,
                 epoch_length: int | None = None, seed: int = 0):
        super().__init__()
        if batch_size <= 0 or (epoch_length is not None and epoch_length < batch_size):
            raise ValueError(f"UnpairedCropDataModule: need batch_size > 0 and epoch_length >= batch_size; "
                             f"got batch_size={batch_size}, epoch_length={epoch_length}")
        self.save_hyperparameters()
        self.dataset: UnpairedCropDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            hp = self.hparams
            self.dataset = UnpairedCropDataset(CropPool(hp.real_crop_dirs, "real"),
                                               CropPool(hp.synthetic_crop_dirs, "synthetic"),
                                               img_res=hp.img_res, load_res=hp.load_res, flip=hp.flip)

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        hp = self.hparams
        generator = torch.Generator().manual_seed(hp.seed)  # advances each epoch: a new order per epoch
        sampler = RandomSampler(self.dataset, num_samples=hp.epoch_length or len(self.dataset), generator=generator)
        return DataLoader(self.dataset, batch_size=hp.batch_size, sampler=sampler, num_workers=hp.num_workers,
                          drop_last=True, persistent_workers=False, pin_memory=torch.cuda.is_available(),
                          worker_init_fn=leave_stop_signals_to_the_main_process)


def crop_dirs_from_config(cfg: Any) -> tuple[list[str], list[str]]:
    """(real, synthetic) crop cache directories of an experiment config's train sources.

    Prepares them as ``train`` does (mini world, index, crop cache; all cached), so a CycleGAN
    trains on exactly the crops the HMR run of that config will read.
    """
    if not cfg.data.crop_cache:
        raise ValueError("CycleGAN from a config needs data.crop_cache=true (it trains on the crop caches)")
    body_dir = ensure_assets(cfg)
    dirs: dict[str, list[str]] = {"real": [], "synthetic": []}
    for name, src in cfg.data.train.items():
        spec = prepare_source(name, src, cfg, body_dir)
        dirs[spec.role].append(str(Path(spec.crop_cache_dir)))
    for role in ("real", "synthetic"):
        if not dirs[role]:
            raise ValueError(f"CycleGAN from a config: no train source with role '{role}' in data.train "
                             f"({list(cfg.data.train)})")
    return dirs["real"], dirs["synthetic"]

"""``MixedDataModule``: the training mixture, the DA source/target pair and named eval sets.

Every argument is explicit and typed (never a config tree), so checkpoints are self-describing.
Train sources are concatenated (``source`` id = position in ``train_sources``, ``sample_id`` =
global position) and drawn by a registered sampler (:mod:`.samplers`) built from the
concatenation's ``sources`` array and factor columns. Modes:

- ``blended``: one loader over the mixture;
- ``finetune``: the same with an explicit ``epoch_length`` (samples per epoch);
- ``adaptation``: ``train_dataloader`` returns Lightning's ``CombinedLoader({'source': real,
  'target': synthetic}, 'max_size_cycle')``. The configured sampler draws the source (role
  'real') batches; the target sources (role 'synthetic') get a size-weighted ``mixture``
  sampler of the same epoch length that cycles through the target pool (whole shuffled passes,
  a fresh order each pass) and so stays resumable. Both batches have the same size, as the DA
  losses need.

``batch_size`` is global and divided by the world size. Use ``Trainer(use_distributed_sampler=
False)``: the samplers shard themselves. Mid-epoch resume: Lightning calls ``state_dict()`` when
it checkpoints; the samplers record ``consumed = batches_seen x per-rank batch`` (batches_seen
from the trainer's progress, not from the prefetching loader) and the restored run continues
with exactly the remaining samples. Eval loaders visit every sample once (``sequential``).
Augmentation draws depend on (seed, epoch, sample_id) only: the sampler tags each index with
its epoch, so even persistent workers augment reproducibly.
"""
from __future__ import annotations

import dataclasses

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from typing import Any, Literal

import lightning as L
import numpy as np
import torch.distributed as dist
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset, Sampler

from gtahuman.data.crop_cache import CropCache
from gtahuman.data.datasets import ConcatIndexDataset, IndexDataset, split_key
from gtahuman.data.index import SampleIndex
from gtahuman.data.mixing import (ADAPTATION_BATCHES, FACTOR_COLUMNS, MixPart, build_train_samplers, loader_batch,
                                  train_groups)
from gtahuman.data.sampler_plans import EpochSampler
from gtahuman.data.samplers import SAMPLERS, describe
from gtahuman.data.shards import CropShards
from gtahuman.data.source_spec import SourceSpec
from gtahuman.data.transforms import AugmentConfig, TestTransform, TrainTransform
from gtahuman.data.workers import leave_stop_signals_to_the_main_process

Mode = Literal["blended", "finetune", "adaptation"]


class EpochTaggedSampler(Sampler):
    """Yields ``(epoch, index)`` from an :class:`EpochSampler` (datasets accept such keys);
    ``set_epoch``, ``state_dict`` and ``load_state_dict`` go to the wrapped sampler."""

    def __init__(self, sampler: EpochSampler):
        self.sampler = sampler

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.sampler.epoch  # read at the first next(), when the sampler builds its plan
        for i in self.sampler:
            yield epoch, i

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)


class MixedDataModule(L.LightningDataModule):
    """See the module docstring. ``world_size``/``rank`` override the trainer's (for tests and
    tools run outside a Trainer)."""

    def __init__(
        self,
        train_sources: Sequence[SourceSpec | Mapping[str, Any]] = (),
        sampler: str = "mixture",
        sampler_args: Mapping[str, Any] | None = None,
        val_sets: Mapping[str, SourceSpec | Mapping[str, Any]] | None = None,
        test_sets: Mapping[str, SourceSpec | Mapping[str, Any]] | None = None,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        img_res: int = 224,
        bbox_margin: float = 1.0,
        augment: bool = True,
        uint8_images: bool = False,  # training crops stay uint8; the system finishes them on the device
        seed: int = 0,
        mode: Mode = "blended",
        epoch_length: int | None = None,
        drop_last: bool = True,
        max_bad_samples: int = 100,
        world_size: int | None = None,
        rank: int | None = None,
        train_probe: int = 0,
        adaptation_batch: str = "split",
    ):
        super().__init__()
        if adaptation_batch not in ADAPTATION_BATCHES:
            raise ValueError(f"MixedDataModule: adaptation_batch must be one of {ADAPTATION_BATCHES}; got {adaptation_batch!r}")
        if mode not in ("blended", "finetune", "adaptation"):
            raise ValueError(f"MixedDataModule: mode must be 'blended', 'finetune' or 'adaptation'; got {mode!r}")
        if mode == "finetune" and epoch_length is None:
            raise ValueError("MixedDataModule: mode 'finetune' needs an explicit epoch_length (samples per epoch)")
        if sampler not in SAMPLERS:
            raise KeyError(f"MixedDataModule: unknown sampler '{sampler}'; valid names: {', '.join(SAMPLERS.names())}")
        if batch_size <= 0:
            raise ValueError(f"MixedDataModule: batch_size must be positive; got {batch_size}")
        self.train_sources = [SourceSpec.of(s) for s in train_sources]
        self.val_sets = {k: SourceSpec.of(s) for k, s in (val_sets or {}).items()}
        self.test_sets = {k: SourceSpec.of(s) for k, s in (test_sets or {}).items()}
        names = [s.name for s in self.train_sources]
        if len(set(names)) != len(names):
            raise ValueError(f"MixedDataModule: train source names must be unique; got {names}")
        # Plain types only, so checkpoints load with torch.load(weights_only=True). Not sent to the
        # logger: its global batch_size would clash with the system's per-device one under DDP
        # (Lightning refuses differing values of one key); the run's config.yaml records it anyway.
        self.save_hyperparameters(ignore=["train_sources", "val_sets", "test_sets"], logger=False)
        self.hparams.update(train_sources=[asdict(s) for s in self.train_sources],
                            val_sets={k: asdict(s) for k, s in self.val_sets.items()},
                            test_sets={k: asdict(s) for k, s in self.test_sets.items()})
        self.sampler_name, self.sampler_args = sampler, dict(sampler_args or {})
        self.batch_size, self.eval_batch_size, self.epoch_length = batch_size, eval_batch_size, epoch_length
        self.num_workers, self.pin_memory, self.persistent_workers = num_workers, pin_memory, persistent_workers
        self.augment_cfg = AugmentConfig(img_res=img_res, bbox_margin=bbox_margin)
        self.uint8_images = uint8_images
        self.augment, self.seed, self.mode, self.drop_last = augment, seed, mode, drop_last
        self.max_bad_samples, self._world_size, self._rank = max_bad_samples, world_size, rank
        if train_probe < 0:
            raise ValueError(f"MixedDataModule: train_probe must be >= 0 (samples per train source); got {train_probe}")
        self.train_probe = int(train_probe)
        self.adaptation_batch = adaptation_batch
        self._probe_names: list[str] = []
        self._train_parts: list[IndexDataset] = []
        self._eval: dict[str, list[IndexDataset]] = {}
        self._samplers: dict[str, EpochSampler] = {}
        self._samplers_layout: tuple[int, int] | None = None
        self._pending_state: dict[str, Any] | None = None

    # -- layout ---------------------------------------------------------------------------------
    def layout(self) -> tuple[int, int]:
        """(world size, rank): explicit arguments, else the trainer's, else torch.distributed's."""
        if self._world_size is not None:
            return self._world_size, self._rank or 0
        if self.trainer is not None:
            return self.trainer.world_size, self.trainer.global_rank
        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size(), dist.get_rank()
        return 1, 0

    def per_rank_batch(self, global_batch: int | None = None, argument: str = "batch_size") -> int:
        """The per-rank share of a global batch; an error when it does not divide evenly."""
        global_batch = self.batch_size if global_batch is None else global_batch
        world = self.layout()[0]
        if global_batch % world:
            raise ValueError(f"MixedDataModule: {argument}={global_batch} is global and must divide by the world "
                             f"size {world} (devices x nodes); use a multiple of {world}")
        return global_batch // world

    def train_batch(self) -> int:
        """Samples per rank in each train loader's batch: the per-rank batch, or in adaptation mode
        with ``adaptation_batch='split'`` half of it per domain (one step then sees as many samples,
        real and synthetic 1:1, as a blended step)."""
        return loader_batch(self.per_rank_batch(), self.mode, self.adaptation_batch)

    # -- datasets -------------------------------------------------------------------------------
    def _dataset(self, spec: SourceSpec, offset: int, source_id: int, train: bool) -> IndexDataset:
        cfg = self.augment_cfg
        if train and self.uint8_images:  # evaluation keeps finished float images: any consumer can read them
            cfg = dataclasses.replace(cfg, uint8_images=True)
        transform = TrainTransform(cfg, seed=self.seed) if train and self.augment else TestTransform(cfg)
        crops: CropShards | str | None = spec.crop_cache_dir
        if spec.crop_shards_dir is not None:
            crops = CropShards(spec.crop_shards_dir)
            if spec.crop_cache_dir is not None:
                crops.check_made_from(CropCache(spec.crop_cache_dir))
        return IndexDataset(SampleIndex.load(spec.index_dir, mmap=True), transform=transform,
                            image_root=spec.image_root, crop_cache=crops, sample_id_offset=offset,
                            source_id=source_id, max_bad_samples=self.max_bad_samples, name=spec.name)

    def setup(self, stage: str | None = None) -> None:
        self.per_rank_batch()  # fail early on an indivisible batch
        if stage in (None, "fit") and not self._train_parts:
            if not self.train_sources:
                raise ValueError("MixedDataModule: fitting needs at least one train source")
            offset = 0
            for source_id, spec in enumerate(self.train_sources):
                self._train_parts.append(self._dataset(spec, offset, source_id, train=True))
                offset += len(self._train_parts[-1])
        wanted = {"fit": ["val"], "validate": ["val"], "test": ["test"], None: ["val", "test"]}.get(stage, [])
        for split in wanted:
            if split not in self._eval:
                specs = self.val_sets if split == "val" else self.test_sets
                self._eval[split] = [self._dataset(s, 0, k, train=False) for k, s in enumerate(specs.values())]
                if split == "val" and self.train_probe:
                    self._add_train_probes()

    def _add_train_probes(self) -> None:
        """Fixed subsets of the train sources, evaluated with the val sets (without augmentation),
        so a run records its error on what it trains on beside its held-out error: the gap is
        memorisation (``python -m analysis.learning RUN``). Named ``probe_<source>``, after the
        val sets (the first val set still picks the best checkpoint). Sources without SMPL
        have nothing to evaluate and get no probe."""
        self._probe_names = []
        for k, spec in enumerate(self.train_sources):
            dataset = self._dataset(spec, 0, k, train=False)
            rows = np.flatnonzero(np.asarray(dataset.index["has_smpl"]) > 0)
            if not len(rows):
                continue
            picked = rows[np.linspace(0, len(rows) - 1, min(self.train_probe, len(rows))).round().astype(int)]
            self._eval["val"].append(RowSubset(dataset, np.unique(picked)))
            self._probe_names.append(f"probe_{spec.name}")

    # -- samplers -------------------------------------------------------------------------------
    def _mix_parts(self) -> list[MixPart]:
        return [MixPart(p.name, len(p), s.role, p.index) for p, s in zip(self._train_parts, self.train_sources)]

    def _train_groups(self) -> dict[str, list[IndexDataset]]:
        """The train datasets grouped as the loaders are (`gtahuman.data.mixing.train_groups`)."""
        by_name = {p.name: p for p in self._train_parts}
        return {key: [by_name[m.name] for m in group] for key, group in train_groups(self._mix_parts(), self.mode).items()}

    def train_samplers(self) -> dict[str, EpochSampler]:
        """The train samplers ('train', or 'source' and 'target'), built once per (world size, rank)
        (a describe() before the Trainer attached must not fix a single-process layout)."""
        if self._samplers and self._samplers_layout == self.layout():
            return self._samplers
        self._samplers, self._samplers_layout = self._new_train_samplers(), self.layout()
        if self._pending_state is not None:
            self._apply_state(self._pending_state)
        return self._samplers

    def plan_samplers(self) -> dict[str, EpochSampler]:
        """Train samplers as `train_samplers` builds them, but new ones at epoch 0, neither cached
        nor restored from a checkpoint: for reading what training draws (the constant baseline,
        `gtahuman.constant_baseline`) before the Trainer attaches, without fixing the samplers'
        layout or moving the ones training uses."""
        return self._new_train_samplers()

    def _new_train_samplers(self) -> dict[str, EpochSampler]:
        self.setup("fit")
        world, rank = self.layout()
        return build_train_samplers(self._mix_parts(), self.mode, self.sampler_name, self.sampler_args,
                                    self.epoch_length, self.seed, world, rank, self.adaptation_batch)

    # -- loaders --------------------------------------------------------------------------------
    def _loader(self, dataset: Any, sampler: Sampler, batch: int, drop_last: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=batch, sampler=sampler, shuffle=False, drop_last=drop_last,
                          num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.persistent_workers and self.num_workers > 0,
                          worker_init_fn=leave_stop_signals_to_the_main_process)

    def _check_trainer(self) -> None:
        connector = getattr(self.trainer, "_accelerator_connector", None)
        if connector is not None and getattr(connector, "use_distributed_sampler", False) and self.layout()[0] > 1:
            raise ValueError("MixedDataModule shards its own samplers: create the Trainer with "
                             "use_distributed_sampler=False")

    def train_dataloader(self) -> DataLoader | CombinedLoader:
        self._check_trainer()
        samplers, groups, batch = self.train_samplers(), self._train_groups(), self.train_batch()
        loaders = {key: self._loader(ConcatIndexDataset(groups[key]), EpochTaggedSampler(samplers[key]), batch,
                                     self.drop_last) for key in groups}
        if self.mode != "adaptation":
            return loaders["train"]
        return CombinedLoader(loaders, mode="max_size_cycle")

    def _eval_loaders(self, split: str) -> list[DataLoader]:
        self.setup("validate" if split == "val" else "test")
        world, rank = self.layout()
        batch = self.per_rank_batch(self.eval_batch_size or self.batch_size, "eval_batch_size")
        loaders = []
        for dataset in self._eval[split]:
            sampler = SAMPLERS.build("sequential", sources=np.zeros(len(dataset), np.int32), num_replicas=world,
                                     rank=rank, source_names=[dataset.name])
            loaders.append(self._loader(dataset, sampler, batch, drop_last=False))
        return loaders

    def val_dataloader(self) -> list[DataLoader]:
        """One loader per val set, in ``val_sets`` order (dataloader_idx k = k-th name)."""
        return self._eval_loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("test")

    # -- resume ---------------------------------------------------------------------------------
    def _batches_seen(self) -> int | None:
        trainer = self.trainer
        if trainer is None:
            return None
        return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)

    def state_dict(self, batches_seen: int | None = None) -> dict[str, Any]:
        """Sampler positions. ``batches_seen`` (train batches of the current epoch) defaults to
        the trainer's count; without a trainer, to the samplers' own (exact for a loop over a
        ``num_workers=0`` loader, ahead of training with prefetching workers)."""
        if not self._samplers:
            return dict(self._pending_state or {})
        batches_seen = self._batches_seen() if batches_seen is None else batches_seen
        batch = self.train_batch()
        states = {}
        for key, sampler in self._samplers.items():
            consumed = None if batches_seen is None else min(batches_seen * batch, len(sampler))
            states[key] = sampler.state_dict(consumed=consumed)
        return {"samplers": states, "per_rank_batch": batch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        self._pending_state = dict(state_dict)
        if self._samplers:
            self._apply_state(self._pending_state)

    def _apply_state(self, state: dict[str, Any]) -> None:
        saved = state["samplers"]
        if set(saved) != set(self._samplers):
            raise ValueError(f"MixedDataModule: checkpoint holds samplers {sorted(saved)}, this run (mode "
                             f"{self.mode!r}) has {sorted(self._samplers)}")
        batch = self.train_batch()
        if state["per_rank_batch"] != batch:
            raise ValueError(f"MixedDataModule: checkpoint was taken with {state['per_rank_batch']} samples per rank "
                             f"and batch, this run has {batch}; positions would not match")
        for key, sampler in self._samplers.items():
            sampler.load_state_dict(saved[key])
            left = len(sampler) - saved[key]["consumed"]
            if left == 0 or (self.drop_last and left < batch):  # no batch left: start the next epoch
                sampler.set_epoch(saved[key]["epoch"] + 1)
        self._pending_state = None

    # -- reporting ------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Samples per epoch per source, batch layout and eval set sizes (JSON-ready)."""
        world, _ = self.layout()
        out: dict[str, Any] = {"mode": self.mode, "batch_size": self.batch_size, "world_size": world,
                               "per_rank_batch": self.per_rank_batch(), "augment": self.augment,
                               "img_res": self.augment_cfg.img_res}
        if self.train_sources:
            samplers = self.train_samplers()
            out["train_sources"] = [
                {**asdict(spec), "samples": len(part),
                 "reader": _reader_name(part)}
                for spec, part in zip(self.train_sources, self._train_parts)]
            out["samplers"] = {key: describe(s) for key, s in samplers.items()}
        for split, specs in (("val", self.val_sets), ("test", self.test_sets)):
            if specs:
                self.setup("validate" if split == "val" else "test")
                out[split] = {name: len(ds) for name, ds in zip(specs, self._eval[split])}
        return out

    def eval_set_names(self, split: Literal["val", "test"]) -> list[str]:
        if split == "val":
            if self.train_probe and "val" not in self._eval:
                self.setup("validate")  # the probes' names exist once their datasets do
            return list(self.val_sets) + self._probe_names
        return list(self.test_sets)

    @property
    def bad_sample_count(self) -> int:
        """Distinct unreadable samples met so far in the train and eval datasets."""
        # Probes read train rows the train parts count already: leaving them out counts each once.
        parts = self._train_parts + [d for ds in self._eval.values() for d in ds if not isinstance(d, RowSubset)]
        return sum(p.bad.count for p in parts)


class RowSubset(Dataset):
    """Some rows of an `IndexDataset` (its sample ids unchanged), with its name."""

    def __init__(self, dataset: IndexDataset, rows: np.ndarray):
        self.dataset, self.rows, self.name = dataset, np.asarray(rows, dtype=np.int64), dataset.name
        self.bad = dataset.bad

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        epoch, i = split_key(key)
        return self.dataset.load(int(self.rows[i]), epoch)


def _reader_name(part: IndexDataset) -> str:
    if part.crop_cache is None:
        return "full frame"
    return "crop shards" if isinstance(part.crop_cache, CropShards) else "crop cache"


__all__ = ["FACTOR_COLUMNS", "EpochTaggedSampler", "MixedDataModule", "SourceSpec"]

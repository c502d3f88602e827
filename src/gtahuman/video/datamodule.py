"""Windows of cached frame features as datasets, and the video `VideoDataModule`.

A window item is a dict of tensors with a leading time axis T: every column of the feature
cache (`video.features.COLUMNS`), plus ``scored`` (T,) bool (frames an evaluation window reports;
all True in training), ``track_id`` (T,) (the person track, `windows.track_ids`) and ``source``.

`VideoDataModule` (explicit, typed arguments; no config tree):

* train: `windows.training_windows` per source (after the optional `subsample`: Table 3's GTA*),
  concatenated and drawn by `windows.WindowMixtureSampler` (``ratios`` per source name, default
  by window count; ``epoch_length`` windows per epoch, default all). ``batch_size`` is global and
  divided by the world size; the sampler shards itself (Trainer(use_distributed_sampler=False)).
* val / test: one loader per named set over `windows.evaluation_windows` (each frame once), the
  windows split across ranks (results are gathered and de-duplicated by sample id).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from gtahuman.data.workers import leave_stop_signals_to_the_main_process
from gtahuman.video.features import COLUMNS, FrameFeatures
from gtahuman.video.windows import (
    WindowMixtureSampler,
    evaluation_windows,
    subsample_tracks,
    track_ids,
    training_windows,
)

log = logging.getLogger("gtahuman")


class WindowDataset(Dataset):
    """Windows (W, T) of rows of one source's `FrameFeatures` (see module docstring)."""

    def __init__(self, features: FrameFeatures, windows: np.ndarray, scored: np.ndarray | None = None,
                 source_id: int = 0) -> None:
        windows = np.asarray(windows, np.int64)
        if windows.ndim != 2 or (windows.size and (windows.min() < 0 or windows.max() >= len(features))):
            raise ValueError(f"{features.directory}: windows must be (W, T) rows in 0..{len(features) - 1}, "
                             f"got shape {windows.shape}")
        if scored is not None and np.shape(scored) != windows.shape:
            raise ValueError(f"scored: expected shape {windows.shape}, got {np.shape(scored)}")
        self.features, self.windows, self.source_id = features, windows, source_id
        self.scored = np.ones(windows.shape, bool) if scored is None else np.asarray(scored, bool)
        self.tracks = track_ids(features["sequence_id"], features["frame_id"])

    def __len__(self) -> int:
        return int(self.windows.shape[0])

    def __getitem__(self, w: int) -> dict[str, torch.Tensor]:
        rows = self.windows[w]
        item = {name: torch.from_numpy(np.ascontiguousarray(self.features[name][rows])) for name in COLUMNS}
        item["scored"] = torch.from_numpy(self.scored[w].copy())
        item["track_id"] = torch.from_numpy(self.tracks[rows])
        item["source"] = torch.full((rows.shape[0],), self.source_id, dtype=torch.int64)
        return item


def source_windows(features: FrameFeatures, window: int, stride: int | None = None,
                   keep_poses: int | None = None, seed: int = 0) -> np.ndarray:
    """Training windows of one source, optionally on `subsample_tracks` rows (``keep_poses``
    frames with SMPL) only; rows index the full source."""
    sequence, frame = np.asarray(features["sequence_id"]), np.asarray(features["frame_id"])
    rows = np.arange(len(features))
    if keep_poses is not None:
        rows = np.flatnonzero(subsample_tracks(sequence, frame, keep_poses, seed,
                                               eligible=np.asarray(features["has_smpl"]) > 0))
    return rows[training_windows(sequence[rows], frame[rows], window, stride)]


class VideoDataModule(L.LightningDataModule):
    """See the module docstring. Sources are feature directories (`FrameFeatures.load`)."""

    def __init__(self, train_sources: Mapping[str, str], val_sets: Mapping[str, str] | None = None,
                 test_sets: Mapping[str, str] | None = None, window: int = 16, stride: int | None = None,
                 ratios: Mapping[str, float] | None = None, epoch_length: int | None = None, batch_size: int = 32,
                 eval_batch_size: int | None = None, num_workers: int = 0, pin_memory: bool = False, seed: int = 0,
                 subsample: Mapping[str, int] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        unknown = sorted(set(ratios or {}) - set(train_sources)) + sorted(set(subsample or {}) - set(train_sources))
        if unknown:
            raise KeyError(f"VideoDataModule: ratios/subsample name {unknown}, not among the train sources "
                           f"{sorted(train_sources)}")
        if batch_size < 1:
            raise ValueError(f"VideoDataModule: batch_size must be >= 1, got {batch_size}")
        self.train_sources = dict(train_sources)
        self.val_sets, self.test_sets = dict(val_sets or {}), dict(test_sets or {})
        self.window, self.stride, self.ratios, self.epoch_length = window, stride, ratios, epoch_length
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.pin_memory, self.seed, self.subsample = pin_memory, seed, dict(subsample or {})
        self._train: list[WindowDataset] = []
        self._eval: dict[str, list[WindowDataset]] = {}

    def layout(self) -> tuple[int, int]:
        if self.trainer is not None:
            return self.trainer.world_size, self.trainer.global_rank
        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size(), dist.get_rank()
        return 1, 0

    def per_rank(self, batch: int) -> int:
        world = self.layout()[0]
        if batch % world:
            raise ValueError(f"VideoDataModule: batch size {batch} is global and must divide by the world size {world}")
        return batch // world

    def train_datasets(self) -> list[WindowDataset]:
        if not self._train:
            if not self.train_sources:
                raise ValueError("VideoDataModule: fitting needs at least one train source")
            for source_id, (name, directory) in enumerate(self.train_sources.items()):
                features = FrameFeatures.load(directory)
                windows = source_windows(features, self.window, self.stride, self.subsample.get(name), self.seed)
                if len(windows) == 0:
                    log.warning("video source '%s': no track of %d consecutive frames; it gives no windows",
                                name, self.window)
                self._train.append(WindowDataset(features, windows, source_id=source_id))
            if not sum(len(d) for d in self._train):
                raise ValueError(f"VideoDataModule: no train source has a track of {self.window} consecutive frames "
                                 f"({sorted(self.train_sources)}); use a shorter window (video.window)")
        return self._train

    def window_counts(self) -> dict[str, int]:
        return {name: len(d) for name, d in zip(self.train_sources, self.train_datasets())}

    def train_sampler(self) -> WindowMixtureSampler:
        counts = list(self.window_counts().values())
        ratios = None
        if self.ratios is not None:  # a source without windows (warned about above) gets no share
            ratios = [float(self.ratios.get(name, 0.0)) if count else 0.0
                      for name, count in zip(self.train_sources, counts)]
            if not sum(ratios):
                raise ValueError(f"VideoDataModule: the sources with a positive ratio {dict(self.ratios)} have no "
                                 f"window of {self.window} frames")
        world, rank = self.layout()
        return WindowMixtureSampler(counts, ratios, self.epoch_length, self.seed, world, rank)

    def train_dataloader(self) -> DataLoader:
        data = ConcatDataset(self.train_datasets())
        return DataLoader(data, batch_size=self.per_rank(self.batch_size), sampler=self.train_sampler(),
                          drop_last=True, num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=False, worker_init_fn=leave_stop_signals_to_the_main_process)

    def _eval_loaders(self, split: Literal["val", "test"]) -> list[DataLoader]:
        if split not in self._eval:
            sets = self.val_sets if split == "val" else self.test_sets
            self._eval[split] = []
            for source_id, directory in enumerate(sets.values()):
                features = FrameFeatures.load(directory)
                windows, scored = evaluation_windows(features["sequence_id"], features["frame_id"], self.window)
                self._eval[split].append(WindowDataset(features, windows, scored, source_id))
        world, rank = self.layout()
        batch = self.per_rank(self.eval_batch_size or self.batch_size)
        loaders = []
        for dataset in self._eval[split]:
            shard = torch.utils.data.Subset(dataset, list(range(rank, len(dataset), world)))
            loaders.append(DataLoader(shard, batch_size=batch, shuffle=False, num_workers=self.num_workers,
                                      pin_memory=self.pin_memory, worker_init_fn=leave_stop_signals_to_the_main_process))
        return loaders

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("test")

    def eval_set_names(self, split: Literal["val", "test"]) -> list[str]:
        return list(self.val_sets if split == "val" else self.test_sets)

    def describe(self) -> dict[str, Any]:
        """Windows per train source and drawn per epoch (JSON-ready)."""
        sampler = self.train_sampler()
        return {"window": self.window, "stride": self.stride or self.window,
                "train_windows": self.window_counts(),
                "windows_per_epoch": dict(zip(self.train_sources, sampler.counts.tolist())),
                "subsample": self.subsample}


__all__ = ["VideoDataModule", "WindowDataset", "source_windows"]

"""Per-frame features of a frozen frame model, cached once per (frame model, source).

VIBE never sees pixels while training: each frame's pooled backbone feature is computed once
with the trained image model (SPIN) and stored (reference/spin_vibe_hmr2.md 2.2, 2.5). Here the
frame model is an `HMRSystem`; every frame of a prepared source (its `SampleIndex`, read through
the crop cache with the deterministic test crop, no augmentation) goes through its backbone and
head in eval mode, and this is stored per source as a directory of ``.npy`` columns (memory-mapped
when read, so a 1.4 M-frame GTA-Human source never has to fit in memory):

    features (N, F) float32        frame_pose_6d (N, 144), frame_betas (N, 10), frame_cam (N, 3):
                                   the frame model's own predictions (its baseline, and the
                                   temporal model's starting point)
    keypoints2d (N, 54, 3)         crop-normalised [-1, 1] + conf, at the frame model's img_res
    keypoints3d (N, 54, 4), smpl_global_orient (N, 3), smpl_body_pose (N, 69), smpl_betas (N, 10),
    has_smpl, has_keypoints3d, valid (N,) float32, gender (N,) int64,
    sequence_id, frame_id (N,) int64, sample_id (N,) int64 (= row of the index)

plus ``meta.json`` (written last: a source counts as finished only when its meta.json exists and
names the same frame model and index). Columns are written through `gtahuman.atomic`, so an
interrupted extraction leaves no half-written file that looks finished; a rerun skips finished
sources and redoes the others.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from gtahuman.atomic import atomic_output, atomic_write_text
from gtahuman.data.datasets import IndexDataset
from gtahuman.data.index import SampleIndex
from gtahuman.data.transforms import AugmentConfig, TestTransform

log = logging.getLogger("gtahuman")
META_FILE = "meta.json"
FORMAT = "gtahuman-video-features/1"
# Column -> (per-frame shape, dtype). features' width is the frame model's feature_dim.
COLUMNS: dict[str, tuple[tuple[int, ...], str]] = {
    "features": ((-1,), "float32"),
    "frame_pose_6d": ((144,), "float32"), "frame_betas": ((10,), "float32"), "frame_cam": ((3,), "float32"),
    "keypoints2d": ((54, 3), "float32"), "keypoints3d": ((54, 4), "float32"),
    "smpl_global_orient": ((3,), "float32"), "smpl_body_pose": ((69,), "float32"), "smpl_betas": ((10,), "float32"),
    "has_smpl": ((), "float32"), "has_keypoints3d": ((), "float32"), "valid": ((), "float32"),
    "gender": ((), "int64"), "sequence_id": ((), "int64"), "frame_id": ((), "int64"), "sample_id": ((), "int64"),
}
_FROM_BATCH = ("keypoints2d", "keypoints3d", "smpl_global_orient", "smpl_body_pose", "smpl_betas", "has_smpl",
               "has_keypoints3d", "valid", "gender", "sample_id")


class FeatureCacheError(ValueError):
    """A feature directory whose files do not match what its meta.json promises."""


def file_fingerprint(path: str | os.PathLike) -> str:
    """sha256 (first 16 hex digits) of a file's bytes: names the frame model in cache keys."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def source_key(index_dir: str | os.PathLike) -> str:
    """Identity of a prepared index: the sha1 of its manifest (a re-prepared index differs)."""
    manifest = Path(index_dir) / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: no prepared index here (expected a SampleIndex directory)")
    return hashlib.sha1(manifest.read_bytes()).hexdigest()[:10]


@dataclass(frozen=True)
class FrameFeatures:
    """One source's cached columns (numpy arrays, memory-mapped) and its meta."""

    directory: Path
    columns: Mapping[str, np.ndarray]
    meta: Mapping[str, Any]

    def __len__(self) -> int:
        return int(self.meta["frames"])

    def __getitem__(self, column: str) -> np.ndarray:
        return self.columns[column]

    @property
    def feature_dim(self) -> int:
        return int(self.meta["feature_dim"])

    @classmethod
    def load(cls, directory: str | os.PathLike, mmap: bool = True) -> FrameFeatures:
        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path}: missing; {directory} is not a finished feature directory")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise FeatureCacheError(f"{meta_path}: key 'format': expected {FORMAT!r}, got {meta.get('format')!r}")
        for key in ("frames", "feature_dim"):
            if not isinstance(meta.get(key), int):
                raise FeatureCacheError(f"{meta_path}: key '{key}': expected an integer, got {meta.get(key)!r}")
        n, width = int(meta["frames"]), int(meta["feature_dim"])
        columns = {}
        for name, (shape, dtype) in COLUMNS.items():
            path = directory / f"{name}.npy"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: column '{name}' missing from the feature directory")
            array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
            expected = (n, *(width if s == -1 else s for s in shape))
            if array.shape != expected or array.dtype != np.dtype(dtype):
                raise FeatureCacheError(f"{path}: column '{name}': expected {dtype} {expected}, "
                                        f"got {array.dtype} {array.shape}")
            columns[name] = array
        return cls(directory, columns, meta)


def _is_finished(directory: Path, expected: Mapping[str, Any]) -> bool:
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        return False
    meta = json.loads(meta_path.read_text())
    return all(meta.get(k) == v for k, v in expected.items())


@torch.no_grad()
def extract_source(frame_model: torch.nn.Module, index_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                   name: str, img_res: int, image_root: str | None = None, crop_cache_dir: str | None = None,
                   model_key: str = "", batch_size: int = 64, max_bad_samples: int = 100,
                   progress: bool = True) -> FrameFeatures:
    """Features and targets of every frame of one prepared source (see module docstring).

    ``frame_model(img) -> (HMROutput, features)`` (an `HMRSystem`); it is run in eval mode and
    put back in its previous mode. Skipped when ``out_dir`` already holds this model's (its
    ``model_key``) features of this very index.
    """
    out_dir = Path(out_dir)
    expected = {"format": FORMAT, "model_key": model_key, "index_key": source_key(index_dir), "img_res": img_res}
    if _is_finished(out_dir, expected):
        log.info("video features of '%s': cached in %s", name, out_dir)
        return FrameFeatures.load(out_dir)
    index = SampleIndex.load(index_dir, mmap=True)
    dataset = IndexDataset(index, transform=TestTransform(AugmentConfig(img_res=img_res)), image_root=image_root,
                           crop_cache=crop_cache_dir, max_bad_samples=max_bad_samples, name=name)
    n = len(dataset)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    (out_dir / META_FILE).unlink(missing_ok=True)  # from here on the directory is unfinished
    was_training = frame_model.training
    frame_model.eval()
    device = next(frame_model.parameters()).device
    arrays: dict[str, np.ndarray] = {}
    try:
        with contextlib.ExitStack() as stack:
            tmp = {c: stack.enter_context(atomic_output(out_dir / f"{c}.npy")) for c in COLUMNS}
            done = 0
            bar = stack.enter_context(tqdm(total=n, unit="frame", desc=f"video features {name}", disable=not progress))
            for batch in loader:
                output, features = frame_model(batch["img"].to(device))
                values = {"features": features, "frame_pose_6d": output.pose_6d, "frame_betas": output.betas,
                          "frame_cam": output.cam, **{k: batch[k] for k in _FROM_BATCH}}
                if not arrays:  # shapes known now: open every column for incremental writing
                    width = int(features.shape[1])
                    for c, (shape, dtype) in COLUMNS.items():
                        full = (n, *(width if s == -1 else s for s in shape))
                        arrays[c] = np.lib.format.open_memmap(tmp[c], mode="w+", dtype=dtype, shape=full)
                rows = slice(done, done + int(features.shape[0]))
                for c, value in values.items():
                    value = value.detach().cpu()
                    value = value.float() if value.is_floating_point() else value  # ids stay exact
                    arrays[c][rows] = value.numpy().astype(COLUMNS[c][1])
                done = rows.stop
                bar.update(rows.stop - rows.start)
            if not arrays:
                raise ValueError(f"source '{name}' ({index_dir}) has no frames to extract features from")
            arrays["sequence_id"][:] = np.asarray(index["sequence_id"], np.int64)
            arrays["frame_id"][:] = np.asarray(index["frame_id"], np.int64)
            for column in arrays.values():
                column.flush()
            arrays.clear()  # close the memory maps before the files are moved into place
    finally:
        frame_model.train(was_training)
    meta = {**expected, "source": name, "frames": n, "feature_dim": int(width), "index_dir": str(index_dir),
            "bad_samples": dataset.bad.count}
    atomic_write_text(out_dir / META_FILE, json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return FrameFeatures.load(out_dir)


__all__ = ["COLUMNS", "FeatureCacheError", "FrameFeatures", "extract_source", "file_fingerprint", "source_key"]

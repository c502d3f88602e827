"""Index-backed datasets: one :class:`IndexDataset` per sample index, and their concatenation.

``IndexDataset[i]`` reads the person's pixels from a crop cache (or its litdata shards,
:class:`.shards.CropShards`: same ``read(i)`` contract) when one is given, else from
the full frame (JPEGs decoded at 1/2, 1/4 or 1/8 size when the crop still gets enough pixels),
re-expresses centre, box side and 2D keypoints in the pixels of the image it read, applies the
transform (:mod:`gtahuman.data.transforms`) and returns a dict of tensors::

    img (3, R, R), keypoints2d (J, 3) normalised [-1, 1] + conf, keypoints3d (J, 4),
    smpl_global_orient (3), smpl_body_pose (69), smpl_betas (10), smpl_transl (3),
    has_smpl, has_keypoints3d, valid (float 0/1), gender, sample_id, source (int64),
    center (2), scale: the box in *full-frame* px, and crop_affine (2, 3): full-frame px ->
    output crop px, whichever path read the pixels; plus the transform's other keys.

``sample_id`` is ``sample_id_offset + i`` (unique across the sources of one DataModule) and
``source`` the source's id. Keys may be ``i`` or ``(epoch, i)``: an epoch-tagged key (see
``datamodule.EpochTaggedSampler``) reaches the augmentation even in persistent workers.

Unreadable images. The sample comes back with ``valid=0``, a black image, zero keypoint
confidences and has_smpl = has_keypoints3d = 0, so every loss masks it; it is logged (once per
sample) and counted in a counter shared by all DataLoader workers of the dataset. Once more than
``max_bad_samples`` distinct samples were unreadable, :class:`TooManyBadSamplesError` stops the
run, naming the files. Never silent, never a crash on the first bad JPEG of a million.
"""
from __future__ import annotations

import ctypes
import logging
import multiprocessing
import multiprocessing.context
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from gtahuman.data.crop_cache import CropCache
from gtahuman.data.frames import UnreadableImageError, bbox_center_side, decode_image, jpeg_reduction
from gtahuman.data.index import SampleIndex
from gtahuman.data.warp import compose_affines, transform_points

if TYPE_CHECKING:
    from gtahuman.data.shards import CropShards

log = logging.getLogger(__name__)
SampleKey = int | tuple[int, int]  # i, or (epoch, i)
_BAD_IMAGE_RES = 32  # side of the black stand-in image (the transform resamples it anyway)
_NAMED_IN_ERRORS = 20


class TooManyBadSamplesError(RuntimeError):
    """More unreadable samples than ``max_bad_samples``; the message names the files."""


class BadSampleCounter:
    """Distinct unreadable samples of one dataset, shared by its DataLoader workers.

    A shared byte per sample (fork- and spawn-safe shared memory; no lock needed: marking is
    idempotent and the count is the number of marked bytes), so revisiting a bad sample every
    epoch does not count it again. Pickled outside process start-up (e.g. a deepcopy), the copy
    gets its own counter starting from the current marks.
    """

    def __init__(self, num_samples: int, limit: int, name: str):
        if limit < 0:
            raise ValueError(f"max_bad_samples must be >= 0; got {limit}")
        self.limit, self.name = int(limit), name
        self._flags = multiprocessing.RawArray(ctypes.c_uint8, max(1, num_samples))
        self.seen_here: list[tuple[str, str]] = []  # (path, reason) met by this process

    def marks(self) -> np.ndarray:
        return np.frombuffer(self._flags, dtype=np.uint8)

    @property
    def count(self) -> int:
        return int(np.count_nonzero(self.marks()))

    def report(self, row: int, path: str, reason: str) -> None:
        """Record an unreadable sample: log it (once), count it, raise past the limit."""
        marks = self.marks()
        first_time = not marks[row]
        marks[row] = 1
        count = self.count
        if first_time:
            self.seen_here.append((path, reason))
            log.warning("%s: unreadable sample %d of at most %d: %s: %s (returned with valid=0)",
                        self.name, count, self.limit, path, reason)
        if count > self.limit:
            named = "\n  ".join(f"{p}: {r}" for p, r in self.seen_here[-_NAMED_IN_ERRORS:])
            raise TooManyBadSamplesError(
                f"{self.name}: {count} unreadable samples, more than max_bad_samples={self.limit}. "
                f"Files met by this process (pid {os.getpid()}):\n  {named}\n"
                "Fix or drop them (or rebuild the crop cache), or raise max_bad_samples.")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if multiprocessing.context.get_spawning_popen() is None:  # not a worker start: copy
            state["_flags"] = self.marks().tobytes()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state["_flags"], bytes):
            marks = state["_flags"]
            state["_flags"] = multiprocessing.RawArray(ctypes.c_uint8, len(marks))
            np.frombuffer(state["_flags"], dtype=np.uint8)[:] = np.frombuffer(marks, dtype=np.uint8)
        self.__dict__.update(state)


def split_key(key: SampleKey) -> tuple[int | None, int]:
    """``i`` -> (None, i); ``(epoch, i)`` -> (epoch, i)."""
    if isinstance(key, tuple):
        epoch, i = key
        return int(epoch), int(i)
    return None, int(key)


class IndexDataset(Dataset):
    """Samples of one :class:`SampleIndex` (see the module docstring).

    ``transform(sample, sample_id)`` (or ``(sample, sample_id, epoch=e)`` for transforms with
    ``set_epoch``, when the key carries an epoch). ``reduced_decoding`` lets the full-frame
    path decode JPEGs at reduced size; it needs the transform's ``cfg`` (img_res, bbox_margin,
    scale_factor) to know how many pixels the crop needs. ``crop_cache`` is a :class:`CropCache`,
    a :class:`~gtahuman.data.shards.CropShards` or a crop cache directory.
    """

    def __init__(
        self,
        index: SampleIndex,
        *,
        transform: Callable[..., dict[str, Any]],
        image_root: str | os.PathLike | None = None,
        crop_cache: CropCache | CropShards | str | os.PathLike | None = None,
        sample_id_offset: int = 0,
        source_id: int = 0,
        max_bad_samples: int = 100,
        name: str | None = None,
        reduced_decoding: bool = True,
    ):
        self.name = name or str(index.meta["dataset"])
        if image_root is None and crop_cache is None:
            raise ValueError(f"dataset '{self.name}': give image_root (full frames) or crop_cache (or both)")
        self.index, self.transform = index, transform
        self.image_root = Path(image_root) if image_root is not None else None
        if isinstance(crop_cache, (str, os.PathLike)):
            crop_cache = CropCache(crop_cache)
        if crop_cache is not None:
            crop_cache.check(index)
        self.crop_cache: CropCache | CropShards | None = crop_cache
        self.sample_id_offset, self.source_id = int(sample_id_offset), int(source_id)
        self.bad = BadSampleCounter(len(index), max_bad_samples, f"dataset '{self.name}'")
        cfg = getattr(transform, "cfg", None)
        # Fewest frame px the transform's crop window spans (smallest rescale), and its output size.
        self._needed = None
        if reduced_decoding and cfg is not None:
            self._needed = (cfg.img_res, cfg.bbox_margin * (1.0 - getattr(cfg, "scale_factor", 0.0)))
        self._epoch_aware = callable(getattr(transform, "set_epoch", None))
        if crop_cache is not None:
            self._check_cache_resolution(cfg)

    def _check_cache_resolution(self, cfg: Any) -> None:
        cache = self.crop_cache
        if cache.bad_rows:
            log.warning("dataset '%s': crop cache %s recorded %d unreadable rows; they come back with valid=0",
                        self.name, cache.directory, len(cache.bad_rows))
        if cfg is None:
            return
        px_per_box = cache.crop_res / cache.margin
        if px_per_box < cfg.img_res / cfg.bbox_margin:
            log.warning("dataset '%s': the crop cache holds %.0f px per box side, the transform samples %.0f: "
                        "crops are upsampled (rebuild with crop_res >= %.0f for full resolution)",
                        self.name, px_per_box, cfg.img_res / cfg.bbox_margin,
                        np.ceil(cfg.img_res / cfg.bbox_margin * cache.margin))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        epoch, i = split_key(key)
        if not 0 <= i < len(self):
            raise IndexError(f"dataset '{self.name}' has {len(self)} samples; asked for {i}")
        return self.load(i, epoch)

    # -- reading -------------------------------------------------------------------------------
    def _read_pixels(self, i: int, center: np.ndarray, side: float) -> tuple[np.ndarray, np.ndarray]:
        """(image uint8 (H, W, 3), affine (2, 3) full-frame px -> image px)."""
        if self.crop_cache is not None:
            return self.crop_cache.read(i)
        reduction = 1
        if self._needed is not None:
            img_res, window_per_side = self._needed
            reduction = jpeg_reduction(side * window_per_side, img_res)
        path = self.image_root / self.index.image_path(i)
        image, applied = decode_image(path, self.index["image_size"][i], reduction)
        return np.asarray(image), np.array([[1.0 / applied, 0.0, 0.0], [0.0, 1.0 / applied, 0.0]])

    def _path(self, i: int) -> str:
        root = self.image_root if self.image_root is not None else Path("<image_root>")
        return str(root / self.index.image_path(i))

    def load(self, i: int, epoch: int | None = None) -> dict[str, Any]:
        """Sample ``i`` through the transform (``epoch`` for epoch-aware transforms)."""
        idx = self.index
        center, side = bbox_center_side(idx["bbox_xywh"][i])
        keypoints2d = np.array(idx["keypoints2d"][i], np.float64)
        has_smpl, has_kp3d = bool(idx["has_smpl"][i]), bool(idx["has_keypoints3d"][i])
        valid = True
        try:
            image, to_image = self._read_pixels(i, center, float(side))
        except UnreadableImageError as err:
            self.bad.report(i, err.path, err.reason)
            valid, has_smpl, has_kp3d = False, False, False
            image = np.zeros((_BAD_IMAGE_RES, _BAD_IMAGE_RES, 3), np.uint8)
            zoom = _BAD_IMAGE_RES / float(side)  # the box fills the black stand-in image
            to_image = np.array([[zoom, 0.0, _BAD_IMAGE_RES / 2 - zoom * center[0]],
                                 [0.0, zoom, _BAD_IMAGE_RES / 2 - zoom * center[1]]])
            keypoints2d[:, 2] = 0.0
        zoom = float(np.sqrt(abs(np.linalg.det(to_image[:, :2]))))
        keypoints3d = np.array(idx["keypoints3d"][i], np.float64)
        if not has_kp3d:
            keypoints3d[:, 3] = 0.0
        sample = {
            "image": image,
            "image_path": self._path(i),  # for the transform's error messages; dropped below
            "center": transform_points(to_image, center),
            "scale": float(side) * zoom,
            "keypoints2d": np.concatenate([transform_points(to_image, keypoints2d[:, :2]), keypoints2d[:, 2:]], 1),
            "keypoints3d": keypoints3d,
            "smpl_global_orient": idx["smpl_global_orient"][i],
            "smpl_body_pose": idx["smpl_body_pose"][i],
            "smpl_betas": idx["smpl_betas"][i],
            "smpl_transl": np.array(idx["smpl_transl"][i]),
            "has_smpl": has_smpl,
            "has_keypoints3d": has_kp3d,
        }
        sample_id = self.sample_id_offset + i
        if epoch is not None and self._epoch_aware:
            out = self.transform(sample, sample_id, epoch=epoch)
        else:
            out = self.transform(sample, sample_id)
        out.pop("image_path", None)
        if "crop_affine" in out:  # full-frame px -> output crop px, whichever path read the pixels
            composed = compose_affines(np.asarray(out["crop_affine"], np.float64), to_image)
            out["crop_affine"] = torch.as_tensor(composed, dtype=torch.float32)
        out.update(
            center=torch.as_tensor(center, dtype=torch.float32),
            scale=torch.tensor(float(side), dtype=torch.float32),
            has_smpl=torch.tensor(float(has_smpl)),
            has_keypoints3d=torch.tensor(float(has_kp3d)),
            valid=torch.tensor(float(valid)),
            gender=torch.tensor(int(idx["gender"][i]), dtype=torch.int64),
            sample_id=torch.tensor(sample_id, dtype=torch.int64),
            source=torch.tensor(self.source_id, dtype=torch.int64),
        )
        return out


class ConcatIndexDataset(Dataset):
    """Several :class:`IndexDataset` end to end: key g reads part p at g - offset[p].

    ``sample_id`` stays each part's own (``sample_id_offset + i``), so it is unique across all
    of a DataModule's sources even when this concatenation holds only some of them."""

    def __init__(self, parts: Sequence[IndexDataset]):
        if not parts:
            raise ValueError("ConcatIndexDataset needs at least one dataset")
        self.parts = list(parts)
        self.offsets = np.concatenate([[0], np.cumsum([len(p) for p in self.parts])]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        epoch, g = split_key(key)
        if not 0 <= g < len(self):
            raise IndexError(f"concatenated dataset has {len(self)} samples; asked for {g}")
        part = int(np.searchsorted(self.offsets, g, side="right")) - 1
        return self.parts[part].load(g - int(self.offsets[part]), epoch)

    @property
    def bad_count(self) -> int:
        return sum(p.bad.count for p in self.parts)

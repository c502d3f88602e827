"""What every reader of ``prepare_sources`` shares: the unit of work (:class:`Chunk`), the counts of
dropped samples it reports (:class:`Counts`), the body model that turns SMPL into keypoints and
factors (:class:`BodyContext`), image sizes read from headers, and the keypoint and box helpers.

The choices that change numbers are listed in ``prepare_sources``' docstring; the margin a
projected joint may stray outside its frame (:data:`IMAGE_MARGIN`) is defined here.
"""
from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from gtahuman.body.assets import check_body_model_dir
from gtahuman.body.conventions import convert_keypoints
from gtahuman.body.part_render import self_occluded_joints
from gtahuman.body.rotations import rot6d_to_axis_angle
from gtahuman.body.smpl import BodyModel
from gtahuman.data import factors
from gtahuman.data.index import NUM_KEYPOINTS, SampleIndex

IMAGE_MARGIN = 0.5  # projected joints up to half an image outside the frame keep confidence 1
MIN_DEPTH = 1e-3  # metres in front of the camera for a projection to count
MAX_EXAMPLES = 5  # dropped samples named in meta per reason


@dataclass(frozen=True)
class Chunk:
    """Records ``[start, stop)`` of a source (sequences for GTA, rows otherwise)."""

    number: int
    start: int
    stop: int
    files: tuple[Path, ...]  # source files this chunk reads (their checksums guard its partial)
    label: str

    @property
    def name(self) -> str:
        return f"chunk_{self.number:05d}_{self.start}_{self.stop}"


class Counts:
    """Per-chunk counters and a few named examples of each reason a sample was dropped."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}

    def add(self, reason: str, number: int, examples: list[str] = ()) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + int(number)
        kept = self.examples.setdefault(reason, [])
        kept += list(examples)[: MAX_EXAMPLES - len(kept)]

    def meta(self) -> dict[str, Any]:
        return {"prepare_counts": self.counts, "prepare_examples": self.examples}


class BodyContext:
    """The neutral body model (loaded on first use) and what the factors need from its directory."""

    def __init__(self, model_dir: str | os.PathLike, batch_size: int = 512, device: str = "cpu"):
        self.assets = check_body_model_dir(model_dir, genders=("neutral",), load_models=False)
        self.batch_size, self.device = int(batch_size), torch.device(device)

    @property
    def files(self) -> list[Path]:
        return [self.assets.model_file("neutral"), self.assets.j_regressor_extra, self.assets.mean_params]

    @cached_property
    def model(self) -> torch.nn.Module:
        return BodyModel(self.assets.model_dir, "neutral", assets=self.assets).to(self.device).eval()

    @property
    def is_toy(self) -> bool:
        return bool(self.assets.is_toy)

    @cached_property
    def rest_joints(self) -> np.ndarray:
        """(24, 3) kinematic joints of the mean shape in the rest pose (float64)."""
        zero = np.zeros((1, 3), np.float32)
        joints = self.joints54(np.zeros((1, 10), np.float32), np.zeros((1, 69), np.float32), zero, zero)
        return joints[0, :24].astype(np.float64)

    @cached_property
    def mean_body_pose(self) -> np.ndarray:
        """(69,) axis-angle body pose of ``smpl_mean_params.npz`` (SPIN 6D, global orient dropped)."""
        with np.load(self.assets.mean_params, allow_pickle=False) as npz:
            rot6d = np.asarray(npz["pose"], dtype=np.float64).reshape(24, 6)
        return rot6d_to_axis_angle(rot6d)[1:].reshape(69)

    def _posed(self, rows: np.ndarray, *arrays: np.ndarray) -> Iterator[tuple[np.ndarray, Any]]:
        """(row indices, body model output) per batch of ``rows``; ``arrays`` are the model's
        inputs (betas, body_pose, global_orient[, transl]) for all N rows."""
        with torch.inference_mode():
            for start in range(0, len(rows), self.batch_size):
                chosen = rows[start:start + self.batch_size]
                yield chosen, self.model(*[torch.as_tensor(np.ascontiguousarray(a[chosen]), dtype=torch.float32,
                                                           device=self.device) for a in arrays])

    def joints54(self, betas: np.ndarray, body_pose: np.ndarray, global_orient: np.ndarray,
                 transl: np.ndarray) -> np.ndarray:
        """(N, 54, 3) float32 smpl_54 joints, translated (camera frame), in batches."""
        out = np.empty((len(body_pose), NUM_KEYPOINTS, 3), np.float32)
        for chosen, body in self._posed(np.arange(len(body_pose)), betas, body_pose, global_orient, transl):
            out[chosen] = body.joints54.cpu().numpy()
        return out

    def self_occluded_ratio(self, betas: np.ndarray, body_pose: np.ndarray, global_orient: np.ndarray,
                            rows: np.ndarray | None = None) -> np.ndarray:
        """(N,) float32 share of the 24 SMPL joints the body's own mesh hides from the camera
        (`gtahuman.body.part_render.self_occluded_joints`), for sources without visibility flags;
        NaN outside ``rows`` (bool)."""
        out = np.full(len(body_pose), np.nan, np.float32)
        chosen_rows = np.flatnonzero(np.ones(len(body_pose), bool) if rows is None else rows)
        for chosen, body in self._posed(chosen_rows, betas, body_pose, global_orient):
            out[chosen] = self_occluded_joints(body.vertices, body.joints).float().mean(dim=1).cpu().numpy()
        return out

    def smpl_factors(self, global_orient: np.ndarray, transl: np.ndarray, body_pose: np.ndarray,
                     rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Camera angles and pose distances; rows outside ``rows`` (bool) stay NaN."""
        n = len(body_pose)
        rows = np.ones(n, bool) if rows is None else rows
        names = ("cam_elevation", "cam_azimuth", "pose_dist_mean", "pose_dist_tpose")
        out = {name: np.full(n, np.nan, np.float32) for name in names}
        if rows.any():
            values = factors.smpl_factors(global_orient[rows], transl[rows], body_pose[rows],
                                          self.rest_joints, self.mean_body_pose)
            for key, value in values.items():
                out[key][rows] = value
        return out


# -- shared helpers ------------------------------------------------------------------------------
class ImageSizes:
    """(W, H) of image files from their headers (PIL reads no pixels), cached by path."""

    def __init__(self, root: Path):
        self.root, self.cache = root, {}

    def get(self, relative: str) -> tuple[int, int] | str:
        """The size, or a string saying why it cannot be had."""
        if relative not in self.cache:
            path = self.root / relative
            try:
                with Image.open(path) as image:
                    self.cache[relative] = (int(image.size[0]), int(image.size[1]))
            except FileNotFoundError:
                self.cache[relative] = f"{path}: missing"
            except (OSError, SyntaxError, ValueError) as err:
                self.cache[relative] = f"{path}: unreadable ({err})"
        return self.cache[relative]

    def many(self, paths: np.ndarray, counts: Counts) -> np.ndarray:
        """(N, 2) int32 sizes; rows whose image is bad get -1 and are counted as 'bad_images'."""
        sizes = np.full((len(paths), 2), -1, np.int32)
        problems = []
        for i, path in enumerate(paths.tolist()):
            size = self.get(path)
            if isinstance(size, str):
                problems.append(size)
            else:
                sizes[i] = size
        counts.add("bad_images", len(problems), problems)
        return sizes


def check_image_folders(image_root: Path, paths: np.ndarray, source: Path) -> None:
    """Raise naming the first image folder referenced by ``source`` that does not exist."""
    if not image_root.is_dir():
        raise FileNotFoundError(f"{image_root}: image root of {source} does not exist")
    folders = sorted({posixpath.dirname(p) for p in paths.tolist()})
    missing = [f for f in folders if not (image_root / f).is_dir()]
    if missing:
        raise FileNotFoundError(f"{image_root / missing[0]}: image folder referenced by {source} does not exist "
                                f"({len(missing)} of {len(folders)} folders missing)")


def clip_boxes(box: np.ndarray, sizes: np.ndarray, counts: Counts, paths: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Clip (N,4) boxes to their images; return (clipped, keep). Counts 'bbox_clipped' and
    'dropped_bbox' (no area inside the image, or not finite). A row without a size (size 0: its
    image is bad, already counted as 'bad_images') is dropped but not counted again here."""
    wh = sizes.astype(np.float32)
    lo = np.clip(box[:, :2], 0, wh)
    hi = np.clip(box[:, :2] + box[:, 2:], 0, wh)
    clipped = np.concatenate([lo, hi - lo], axis=1)
    keep = np.isfinite(box).all(axis=1) & (clipped[:, 2:] > 0).all(axis=1)
    changed = keep & (np.abs(clipped - box) > 1e-3).any(axis=1)
    counts.add("bbox_clipped", changed.sum(), [str(p) for p in paths[changed]])
    dropped = ~keep & (sizes > 0).all(axis=1)
    counts.add("dropped_bbox", dropped.sum(), [str(p) for p in paths[dropped]])
    return clipped, keep


def finite_keypoints(kps: np.ndarray, counts: Counts, what: str) -> np.ndarray:
    """Zero (confidence included) joints with a non-finite value; count the rows affected."""
    kps = np.array(kps, dtype=np.float32)
    bad = ~np.isfinite(kps).all(axis=-1)
    kps[bad] = 0.0
    counts.add(f"nonfinite_{what}_rows", bad.any(axis=1).sum())
    return kps


def to_smpl54(kps: np.ndarray, convention: str) -> np.ndarray:
    return convert_keypoints(kps, convention, "smpl_54")[0]


_TRAILING_NUMBER = re.compile(r"(\d+)\D*$")


def folder_sequences(paths: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Sequence codes by image folder (sorted folder names) and frame ids within it: the number
    at the end of the file name (``frame_000120.jpg`` -> 120) when every file of the folder has
    one and no two share it, so that a source keeping one frame in ten (MPI-INF-3DHP) keeps its
    real frame numbers and a dropped frame shows as a gap; else the file's rank by name."""
    folders = np.array([posixpath.dirname(p) for p in paths.tolist()], dtype=str)
    names, sequence = np.unique(folders, return_inverse=True)
    unique_paths, path_code = np.unique(paths, return_inverse=True)
    folder_of_unique = sequence[np.unique(path_code, return_index=True)[1]]
    order = np.lexsort((unique_paths, folder_of_unique))  # by folder, then by name
    first = np.searchsorted(folder_of_unique[order], folder_of_unique[order], side="left")
    frame = np.empty(len(unique_paths), np.int64)
    frame[order] = np.arange(len(order)) - first
    numbers = np.array([_frame_number(p) for p in unique_paths.tolist()], np.int64)
    for code in range(len(names)):
        rows = folder_of_unique == code
        own = numbers[rows]
        if (own >= 0).all() and len(np.unique(own)) == len(own) and own.max() <= np.iinfo(np.int32).max:
            frame[rows] = own
    return sequence.astype(np.int32), frame[path_code].astype(np.int32), names.tolist()


def _frame_number(path: str) -> int:
    match = _TRAILING_NUMBER.search(posixpath.splitext(posixpath.basename(path))[0])
    return int(match.group(1)) if match else -1


def project_with_margin(joints: np.ndarray, focal: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """(N,J,3) camera-frame joints -> (N,J,3) pixels + confidence (principal point W/2, H/2)."""
    wh = sizes.astype(np.float64)[:, None, :]
    z = joints[..., 2:3].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = focal.astype(np.float64)[:, None, None] * joints[..., :2] / z + wh / 2
    inside = (z[..., 0] > MIN_DEPTH) & ((uv >= -IMAGE_MARGIN * wh) & (uv <= (1 + IMAGE_MARGIN) * wh)).all(-1)
    out = np.zeros(joints.shape[:2] + (3,), np.float32)
    out[inside, :2] = uv[inside]
    out[inside, 2] = 1.0
    return out


def chunk_index(columns: dict[str, Any], keep: np.ndarray, meta: dict[str, Any]) -> SampleIndex:
    return SampleIndex({k: np.asarray(v)[keep] for k, v in columns.items()}, meta)


def row_chunks(n: int, chunk_size: int, files: tuple[Path, ...]) -> list[Chunk]:
    starts = range(0, n, chunk_size)
    return [Chunk(i, s, min(n, s + chunk_size), files, f"rows {s}..{min(n, s + chunk_size) - 1}")
            for i, s in enumerate(starts)] or [Chunk(0, 0, 0, files, "no rows")]

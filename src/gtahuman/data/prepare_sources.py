"""What ``prepare`` does to each kind of source: one chunk of raw records -> one SampleIndex.

A source object (:class:`GTARawSource`, :class:`SpinNpzSource`, :class:`HumanDataSource`) opens
and checks its input once, lists the files whose checksums guard the index (``source_files``),
cuts the work into :class:`Chunk` s and builds each chunk as a small :class:`SampleIndex` whose
meta carries per-chunk counts (``prepare_counts``) and examples of what was dropped. The
resumable loop, the partial files and the final assembly live in ``prepare.py``.

Choices that change numbers (all recorded in the index meta):

- GTA-Human keypoints are the neutral body model's ``smpl_54`` joints in the camera frame
  (mmhuman3d trains GTA with the neutral model whatever ``is_male`` says), projected with the
  sequence's pinhole camera: f = (H/2) / tan(fov/2), principal point (W/2, H/2), W x H read from
  the first JPEG's header. A projected joint gets confidence 1 only if it lies in front of the
  camera and within :data:`IMAGE_MARGIN` image sizes of the frame on each side; beyond that (or
  behind the camera, where the projection explodes) it is zeroed with confidence 0.
  mmhuman3d gives all joints confidence 1.
- Camera angles use ``transl`` as the body's position (not the exact pelvis ``transl + J0``,
  which lies ~0.2 m away and tilts the angle by ~2 degrees at 5 m). SPIN files have no
  translation, so the body is placed on the optical axis.
- SPIN and generic HumanData samples get sequence ids by image folder (codes index the sorted
  folder names in meta ``sequence_folders``) and frame ids by name order within the folder.
- ``keypoints3d`` is in the camera frame for GTA, root-relative as stored for SPIN (``S``) and
  HumanData (meta ``keypoints3d_frame``).
- Bad images (missing file, unreadable header) and boxes with no area inside the image drop the
  sample and are counted; boxes sticking out of the image are clipped and counted.
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
from gtahuman.body.camera import focal_from_fov
from gtahuman.body.conventions import convert_keypoints
from gtahuman.body.rotations import rot6d_to_axis_angle
from gtahuman.data import factors
from gtahuman.data.formats.errors import DataFormatError
from gtahuman.data.formats.gta_raw import FRAME_NAME, clean_bbox, intrinsics_from_fov, list_sequences, read_sequence
from gtahuman.data.formats.humandata import humandata_keypoints, load_humandata
from gtahuman.data.formats.spin_npz import bbox_xywh_from_center_scale, read_spin_npz
from gtahuman.data.index import NUM_KEYPOINTS, SampleIndex, encode_categorical, encode_strings
from gtahuman.data.static_fits import join_fits, read_static_fits

IMAGE_MARGIN = 0.5  # projected joints up to half an image outside the frame keep confidence 1
MIN_DEPTH = 1e-3  # metres in front of the camera for a projection to count
MAX_EXAMPLES = 5  # dropped samples named in meta per reason
GTA_IMAGE_SIZE = (1920, 1080)
GTA_FOV_DEG = 50.0
_GTA_PATH = re.compile(r"seq_(\d+)/(\d+)\.\w+$")


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
        from gtahuman.body.smpl import BodyModel

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
        from gtahuman.body.part_render import self_occluded_joints

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


# -- GTA-Human raw release ---------------------------------------------------------------------
class GTARawSource:
    kind = "gta_raw"

    def __init__(self, root: Path, image_root: Path | None, body: BodyContext, meta: dict[str, Any]):
        self.root, self.image_root, self.body = root, image_root or root, body
        self.names = list_sequences(root)
        if not self.names:
            raise FileNotFoundError(f"{root / 'annotations'}: no seq_*.pkl annotation files")
        missing = [n for n in self.names if not (self.image_root / "images" / n).is_dir()]
        if missing:
            raise FileNotFoundError(f"{self.image_root / 'images' / missing[0]}: image folder of sequence "
                                    f"{missing[0]} does not exist ({len(missing)} of {len(self.names)} missing)")
        self.source_files = [root / "annotations" / f"{n}.pkl" for n in self.names]
        self.meta = meta
        self.extra_meta = {"keypoints3d_frame": "camera", "keypoints_from": "neutral body model joints54",
                           "image_margin": IMAGE_MARGIN}

    def chunks(self, chunk_size: int) -> list[Chunk]:
        return [Chunk(i, s, min(len(self.names), s + chunk_size), tuple(self.source_files[s:s + chunk_size]),
                      f"sequences {self.names[s]}..{self.names[min(len(self.names), s + chunk_size) - 1]}")
                for i, s in enumerate(range(0, len(self.names), chunk_size))]

    def _sequence(self, name: str, counts: Counts) -> dict[str, Any]:
        seq = read_sequence(self.root, name)
        folder = self.image_root / "images" / name
        present = {entry.name for entry in os.scandir(folder)}
        frame_names = [FRAME_NAME.format(i) for i in range(seq.num_frames)]
        has_image = np.array([f in present for f in frame_names], bool)
        first = next((f for f in frame_names if f in present), None)
        size = seq.image_size if first is None else ImageSizes(folder).get(first)
        if isinstance(size, str):  # the frame is there but its header cannot be read
            raise DataFormatError(folder / first, None, "a readable image header", size)
        box, keep = clean_bbox(seq.bbox_xywh, size)
        paths = np.array([f"images/{name}/{f}" for f in frame_names])
        counts.add("dropped_bbox", (~keep).sum(), paths[~keep].tolist())
        missing = keep & ~has_image
        counts.add("bad_images", missing.sum(), [str(self.image_root / p) for p in paths[missing]])
        rows = np.flatnonzero(keep & has_image)
        n = len(rows)
        sizes = np.tile(np.array(size, np.int32), (n, 1))
        occluded, self_occluded = factors.occlusion_ratios(seq.occ[rows], seq.self_occ[rows])
        return {
            "image_path": paths[rows], "image_size": sizes, "bbox_xywh": box[rows],
            "smpl_global_orient": seq.global_orient[rows], "smpl_body_pose": seq.body_pose[rows],
            "smpl_betas": seq.betas[rows], "smpl_transl": seq.transl[rows],
            "gender": np.full(n, 0 if seq.is_male else 1, np.int8),
            "sequence_id": np.full(n, int(name.split("_")[-1]), np.int32), "frame_id": rows.astype(np.int32),
            "focal_length": np.full(n, intrinsics_from_fov(seq.fov, size)[0, 0], np.float32),
            "occluded_ratio": occluded, "self_occluded_ratio": self_occluded,
            "truncation": factors.truncation(seq.keypoints_2d[rows], size),
            "daytime_hours": factors.daytime_hours(np.tile(np.array(seq.daytime, np.float64), (n, 1))),
            "weather": [seq.weather] * n, "location": [seq.location_tag] * n,
        }

    def build(self, chunk: Chunk) -> SampleIndex:
        counts = Counts()
        parts = [self._sequence(name, counts) for name in self.names[chunk.start:chunk.stop]]
        labels = ("weather", "location")
        columns: dict[str, Any] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k not in labels}
        vocabularies = {}
        for key in labels:
            columns[key], vocabularies[key] = encode_categorical([label for p in parts for label in p[key]])
        go, pose, betas, transl = (columns[f"smpl_{k}"] for k in ("global_orient", "body_pose", "betas", "transl"))
        joints = self.body.joints54(betas, pose, go, transl)
        n = len(joints)
        columns["keypoints3d"] = np.concatenate([joints, np.ones((n, NUM_KEYPOINTS, 1), np.float32)], axis=2)
        columns["keypoints2d"] = project_with_margin(joints, columns["focal_length"], columns["image_size"])
        columns.update(has_smpl=np.ones(n, bool), has_keypoints3d=np.ones(n, bool),
                       **self.body.smpl_factors(go, transl, pose))
        columns["image_path"] = encode_strings(columns["image_path"])
        return SampleIndex(columns, {**self.meta, "vocabularies": vocabularies, **counts.meta()})


# -- SPIN npz ------------------------------------------------------------------------------------
def _camera_on_axis(n: int) -> np.ndarray:
    return np.tile(np.array([0.0, 0.0, 1.0]), (n, 1))  # any depth > 0 gives the same angles


class SpinNpzSource:
    kind = "spin_npz"

    def __init__(self, path: Path, image_root: Path | None, body: BodyContext, meta: dict[str, Any],
                 static_fits: Path | None = None):
        if image_root is None:
            raise ValueError(f"{path}: a SPIN npz needs --image-root (the folder its 'imgname' paths are relative to)")
        self.path, self.image_root, self.body, self.meta = path, image_root, body, meta
        self.data = read_spin_npz(path)
        self.fits = None if static_fits is None else read_static_fits(static_fits, len(self.data))
        check_image_folders(image_root, self.data.imgname, path)
        self.sequence, self.frame, folders = folder_sequences(self.data.imgname)
        self.sizes = ImageSizes(image_root)
        self.source_files = [path] + ([Path(static_fits)] if static_fits is not None else [])
        self.extra_meta = {"keypoints3d_frame": "root-relative (SPIN 'S')", "sequence_folders": folders,
                           "static_fits": None if static_fits is None else str(static_fits)}

    def chunks(self, chunk_size: int) -> list[Chunk]:
        return row_chunks(len(self.data), chunk_size, tuple(self.source_files))  # a changed fits file too

    def build(self, chunk: Chunk) -> SampleIndex:
        d, s, counts = self.data, slice(chunk.start, chunk.stop), Counts()
        paths = d.imgname[s]
        sizes = self.sizes.many(paths, counts)
        box = bbox_xywh_from_center_scale(d.center[s], d.scale[s])
        box, keep = clip_boxes(box, np.maximum(sizes, 0), counts, paths)
        keep &= (sizes > 0).all(axis=1)
        keypoints2d = to_smpl54(finite_keypoints(d.part[s], counts, "part"), "smpl_24")
        n = len(paths)
        columns: dict[str, Any] = {"image_path": encode_strings(paths), "image_size": sizes, "bbox_xywh": box,
                                   "keypoints2d": keypoints2d, "gender": d.gender[s],
                                   "sequence_id": self.sequence[s], "frame_id": self.frame[s],
                                   "truncation": factors.truncation(keypoints2d, np.maximum(sizes, 1))}
        if d.S is not None:
            keypoints3d = to_smpl54(finite_keypoints(d.S[s], counts, "S"), "smpl_24")
            columns.update(keypoints3d=keypoints3d, has_keypoints3d=(keypoints3d[..., 3] > 0).any(axis=1))
        if d.pose is not None or self.fits is not None:
            if d.pose is not None:
                has_smpl, pose72, betas = d.has_smpl[s] == 1, d.pose[s], d.shape[s]
            else:
                has_smpl, pose72, betas = np.zeros(n, bool), np.zeros((n, 72), np.float32), np.zeros((n, 10), np.float32)
            if self.fits is not None:
                square = bbox_xywh_from_center_scale(d.center[s], d.scale[s])  # SPIN's crop, not clipped
                pose72, betas, has_smpl = join_static_fits(self.body, self.fits[s], pose72, betas, has_smpl,
                                                           keypoints2d, square, counts)
            go, pose = pose72[:, :3], pose72[:, 3:]
            columns.update(smpl_global_orient=go, smpl_body_pose=pose, smpl_betas=betas, has_smpl=has_smpl,
                           self_occluded_ratio=self.body.self_occluded_ratio(betas[:, :10], pose, go, has_smpl),
                           **self.body.smpl_factors(go, _camera_on_axis(n), pose, has_smpl))
        return chunk_index(columns, keep, {**self.meta, **counts.meta()})


def join_static_fits(body: BodyContext, fits: np.ndarray, pose72: np.ndarray, betas: np.ndarray, has_smpl: np.ndarray,
                     keypoints2d: np.ndarray, bbox_xywh: np.ndarray, counts: Counts
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`gtahuman.data.static_fits.join_fits` with this source's body model, counting the fits used and
    rejected in the chunk's counts."""
    pose72, betas, has_smpl, used, rejected = join_fits(body.joints54, fits, pose72, betas, has_smpl, keypoints2d,
                                                        bbox_xywh)
    if used + rejected:
        counts.add("static_fits_used", used)
        counts.add("static_fits_rejected", rejected)
    return pose72, betas, has_smpl


# -- HumanData npz -------------------------------------------------------------------------------
_GENDERS = {"m": 0, "male": 0, "f": 1, "female": 1}


class HumanDataSource:
    kind = "humandata"

    def __init__(self, path: Path, image_root: Path | None, body: BodyContext, meta: dict[str, Any],
                 static_fits: Path | None = None):
        self.path, self.image_root, self.body, self.meta = path, image_root, body, meta
        hd = self.hd = load_humandata(path)
        self.fits = None if static_fits is None else read_static_fits(static_fits, hd.data_len)
        for key in ("image_path", "bbox_xywh"):
            if getattr(hd, key) is None:
                raise KeyError(f"{path}: key '{key}': expected this key in a HumanData file to prepare")
        self.is_gta = hd.config == "gta_human"
        self.keypoints = {key: humandata_keypoints(hd, key, "smpl_54")[0]
                          for key in ("keypoints2d", "keypoints3d") if key in hd.keypoints}
        self.sizes = None
        if image_root is not None:
            check_image_folders(image_root, hd.image_path, path)
            self.sizes = ImageSizes(image_root)
        elif not self.is_gta and not {"width", "height"} <= set(hd.meta):
            raise ValueError(f"{path}: config {hd.config!r} gives no image size (meta 'width'/'height'); "
                             "pass --image-root to read it from the images")
        gta_ids = [_GTA_PATH.search(p) for p in hd.image_path.tolist()] if self.is_gta else []
        if self.is_gta and all(gta_ids):
            self.sequence = np.array([int(m.group(1)) for m in gta_ids], np.int32)
            self.frame = np.array([int(m.group(2)) for m in gta_ids], np.int32)
            folders = None
        else:
            self.sequence, self.frame, folders = folder_sequences(hd.image_path)
        self.source_files = [path] + ([Path(static_fits)] if static_fits is not None else [])
        self.extra_meta = {"keypoints3d_frame": "as stored (mmhuman3d converters root-align to the pelvis)",
                           "config": hd.config, "sequence_folders": folders,
                           "static_fits": None if static_fits is None else str(static_fits)}

    def chunks(self, chunk_size: int) -> list[Chunk]:
        return row_chunks(self.hd.data_len, chunk_size, tuple(self.source_files))

    def _image_sizes(self, s: slice, paths: np.ndarray, counts: Counts) -> np.ndarray:
        if self.sizes is not None:
            return self.sizes.many(paths, counts)
        if not self.is_gta or {"width", "height"} <= set(self.hd.meta):
            n = self.hd.data_len
            return np.stack([np.broadcast_to(np.asarray(self.hd.meta[k], np.int32), (n,))[s]
                             for k in ("width", "height")], axis=1)
        return np.tile(np.array(GTA_IMAGE_SIZE, np.int32), (len(paths), 1))

    def build(self, chunk: Chunk) -> SampleIndex:
        hd, s, counts = self.hd, slice(chunk.start, chunk.stop), Counts()
        paths = hd.image_path[s]
        n = len(paths)
        sizes = self._image_sizes(s, paths, counts)
        box, keep = clip_boxes(hd.bbox_xywh[s, :4], np.maximum(sizes, 0), counts, paths)
        keep &= (sizes > 0).all(axis=1)
        focal = np.array([focal_from_fov(GTA_FOV_DEG, h) if self.is_gta and h > 0 else 0.0 for h in sizes[:, 1]],
                         np.float32)
        columns: dict[str, Any] = {"image_path": encode_strings(paths), "image_size": sizes, "bbox_xywh": box,
                                   "sequence_id": self.sequence[s], "frame_id": self.frame[s], "focal_length": focal}
        if "keypoints2d" in self.keypoints:
            kps = self.keypoints["keypoints2d"][s]
            columns.update(keypoints2d=kps, truncation=factors.truncation(kps, np.maximum(sizes, 1)))
        if "keypoints3d" in self.keypoints:
            kps = self.keypoints["keypoints3d"][s]
            columns.update(keypoints3d=kps, has_keypoints3d=(kps[..., 3] > 0).any(axis=1))
        if "gender" in hd.meta:
            genders = hd.meta["gender"][s].tolist()
            columns["gender"] = np.array([_GENDERS.get(str(g).strip().lower(), -1) for g in genders], np.int8)
        if hd.smpl is not None or self.fits is not None:
            smpl = hd.smpl or {"global_orient": np.zeros((hd.data_len, 3), np.float32),
                               "body_pose": np.zeros((hd.data_len, 69), np.float32),
                               "betas": np.zeros((hd.data_len, 10), np.float32)}
            betas = smpl["betas"][s]
            if betas.shape[1] < 10:
                raise ValueError(f"{self.path}: key 'smpl.betas': expected at least 10 shape coefficients, "
                                 f"got {betas.shape[1]}")
            go, pose = smpl["global_orient"][s], smpl["body_pose"][s].reshape(n, 69)
            transl = smpl["transl"][s] if "transl" in smpl else np.zeros((n, 3), np.float32)
            camera = transl if self.is_gta and "transl" in smpl else _camera_on_axis(n)
            # per-sample flags where the file has them (unreliable fits are not ground truth)
            has_smpl = np.full(n, hd.smpl is not None) if hd.has_smpl is None else hd.has_smpl[s] == 1
            if self.fits is not None:
                if "keypoints2d" not in self.keypoints:
                    raise KeyError(f"{self.path}: key 'keypoints2d': expected 2D keypoints to check static fits against")
                pose72, betas, has_smpl = join_static_fits(
                    self.body, self.fits[s], np.concatenate([go, pose], axis=1), betas[:, :10], has_smpl,
                    self.keypoints["keypoints2d"][s], hd.bbox_xywh[s, :4], counts)
                go, pose = pose72[:, :3], pose72[:, 3:]
            columns.update(smpl_global_orient=go, smpl_body_pose=pose, smpl_betas=betas[:, :10],
                           smpl_transl=transl, has_smpl=has_smpl,
                           self_occluded_ratio=self.body.self_occluded_ratio(betas[:, :10], pose, go, has_smpl),
                           **self.body.smpl_factors(go, camera, pose, has_smpl))
        return chunk_index(columns, keep, {**self.meta, **counts.meta()})


SOURCES = {cls.kind: cls for cls in (GTARawSource, SpinNpzSource, HumanDataSource)}

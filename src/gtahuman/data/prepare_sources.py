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

What the three readers share (chunks, counts, the body model context, image sizes, keypoint
helpers) is in ``prepare_common``; the kinds are registered in :data:`SOURCES`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from gtahuman.body.camera import focal_from_fov
from gtahuman.data import factors
from gtahuman.data.formats.errors import DataFormatError
from gtahuman.data.formats.gta_raw import FRAME_NAME, clean_bbox, intrinsics_from_fov, list_sequences, read_sequence
from gtahuman.data.formats.humandata import humandata_keypoints, load_humandata
from gtahuman.data.formats.spin_npz import bbox_xywh_from_center_scale, read_spin_npz
from gtahuman.data.index import NUM_KEYPOINTS, SampleIndex, encode_categorical, encode_strings
from gtahuman.data.prepare_common import (
    IMAGE_MARGIN,
    BodyContext,
    Chunk,
    Counts,
    ImageSizes,
    check_image_folders,
    chunk_index,
    clip_boxes,
    finite_keypoints,
    folder_sequences,
    project_with_margin,
    row_chunks,
    to_smpl54,
)
from gtahuman.data.static_fits import join_fits, read_static_fits
from gtahuman.registry import Registry
GTA_IMAGE_SIZE = (1920, 1080)
GTA_FOV_DEG = 50.0
_GTA_PATH = re.compile(r"seq_(\d+)/(\d+)\.\w+$")


# The source kinds ``prepare`` reads (``data.<split>.<name>.kind``), each registered where defined.
SOURCES: Registry = Registry("source kind")


# -- GTA-Human raw release ---------------------------------------------------------------------
@SOURCES.register("gta_raw")
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


@SOURCES.register("spin_npz")
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


@SOURCES.register("humandata")
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

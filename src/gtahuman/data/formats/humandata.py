"""mmhuman3d HumanData ``.npz``: reader, writer, and by-name keypoint conversion.

A HumanData file (reference/mmhuman3d.md section 1) is one ``np.savez_compressed`` archive with
one sample per (image, person): ``image_path``, ``bbox_xywh`` (N,5), ``keypoints2d`` (N,K,3),
``keypoints3d`` (N,K,4) with per-joint masks and conventions, an ``smpl`` dict, a ``meta`` dict,
a ``config`` string, and three dunder keys (``__data_len__``, ``__key_strict__``,
``__keypoints_compressed__``). Dicts and strings are stored as 0-d object arrays (pickles),
read back by the restricted unpickler of :mod:`~gtahuman.data.formats.safe_pickle` (numpy arrays
and plain containers only; loading never runs code from the file). K is 190 (the ``human_data`` convention); a compressed file keeps only the
mask==1 columns, in ascending index order, and is zero-padded back here on load.

GTA files from the public converter carry NaN/inf in the projected OpenPose slots and a mask
that marks joints with no data as present (section 2.3); :func:`humandata_keypoints` therefore
zeroes non-finite values and gives them confidence 0.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gtahuman.body.conventions import convert_keypoints, get_names
from gtahuman.data.formats.safe_pickle import read_npz
from gtahuman.data.formats.errors import (
    DataFormatError,
    as_float32,
    as_str_array,
    atomic_output,
    check_finite,
    check_lengths_agree,
    check_shape,
    describe,
)

__all__ = [
    "HUMAN_DATA_NAMES", "HumanData", "dump_humandata", "humandata_keypoints", "load_humandata",
]

# The 190 joint names every HumanData keypoint array is indexed by (mmhuman3d naming).
HUMAN_DATA_NAMES: tuple[str, ...] = tuple(get_names("human_data"))


@dataclass
class HumanData:
    """The content of one HumanData file as numpy arrays (float data float32).

    ``keypoints`` maps each keypoint key (``keypoints2d``, ``keypoints3d``, ``keypoints2d_gta``,
    ...) to its full, uncompressed (N, K, C) array; ``keypoint_masks`` to its (K,) uint8 mask;
    ``keypoint_conventions`` to its convention name. ``smpl`` holds ``global_orient`` (N,3),
    ``body_pose`` (N,23,3), ``betas`` (N,B) and optionally ``transl`` (N,3). Keys this reader
    does not interpret (``cam_param``, ``misc``, ...) stay in ``extra`` as loaded.
    """

    data_len: int
    image_path: np.ndarray | None = None  # (N,) str, relative to the dataset's image root
    bbox_xywh: np.ndarray | None = None  # (N, 5): x, y, w, h, confidence
    config: str | None = None
    smpl: dict[str, np.ndarray] | None = None
    # (N,) uint8 0/1: which rows' ``smpl`` is ground truth. mmhuman3d's converters write it where a
    # file mixes reliable and unreliable fits (SPIN's MPI-INF-3DHP); absent: every row of ``smpl``.
    has_smpl: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    keypoints: dict[str, np.ndarray] = field(default_factory=dict)
    keypoint_masks: dict[str, np.ndarray] = field(default_factory=dict)
    keypoint_conventions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    key_strict: bool = False
    source: str = "<memory>"  # the file it came from, for error messages


def _is_keypoint_key(key: str) -> bool:
    return "keypoints" in key and not key.endswith(("_mask", "_convention"))


def _unwrap(value: Any) -> Any:
    """0-d arrays (dicts, strings, scalars pickled by savez) back to Python objects."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    return value


_SMPL_WIDTHS = {"global_orient": 3, "body_pose": 69, "transl": 3}
_SMPL_PARAMS = ("global_orient", "body_pose", "betas", "transl")


def _parse_smpl(raw: Any, path: str) -> dict[str, np.ndarray]:
    """SMPL dict with float32 arrays; body_pose (N,69) or (N,23,3) becomes (N,23,3)."""
    if not isinstance(raw, dict):
        raise DataFormatError(path, "smpl", "a dict of SMPL parameter arrays", describe(raw))
    smpl: dict[str, np.ndarray] = {}
    for name, value in raw.items():
        if value is None:
            continue
        key = f"smpl.{name}"
        array = as_float32(value, path, key)
        if name in _SMPL_WIDTHS and array.ndim >= 2:  # (N,1,3) / (N,23,3) -> flat rows
            array = array.reshape(array.shape[0], int(np.prod(array.shape[1:])))
        if name in _SMPL_WIDTHS:
            check_shape(array, (None, _SMPL_WIDTHS[name]), path, key)
        elif name == "betas":
            check_shape(array, (None, None), path, key)
        if name in _SMPL_PARAMS:
            check_finite(array, path, key)
        smpl[name] = array.reshape(-1, 23, 3) if name == "body_pose" else array
    for required in ("global_orient", "body_pose", "betas"):
        if required not in smpl:
            raise DataFormatError(path, f"smpl.{required}", "this SMPL parameter", f"only {sorted(smpl)}")
    return smpl


def _frame_indexed(hd: HumanData) -> dict[str, Any]:
    """Every array whose first axis is the sample axis, keyed by its name for messages."""
    arrays: dict[str, Any] = {}
    if hd.image_path is not None:
        arrays["image_path"] = hd.image_path
    if hd.bbox_xywh is not None:
        arrays["bbox_xywh"] = hd.bbox_xywh
    arrays.update(hd.keypoints)
    for name, value in (hd.smpl or {}).items():
        arrays[f"smpl.{name}"] = value
    if hd.has_smpl is not None:
        arrays["has_smpl"] = hd.has_smpl
    if "gender" in hd.meta:
        arrays["meta.gender"] = hd.meta["gender"]
    return arrays


def load_humandata(path: str | os.PathLike) -> HumanData:
    """Read a HumanData ``.npz``, decompress keypoints and check every frame-indexed length."""
    path = Path(path)
    raw = {key: _unwrap(value) for key, value in read_npz(path, "HumanData file").items()}
    raw = {key: value for key, value in raw.items() if value is not None}
    source = str(path)

    data_len = int(raw.pop("__data_len__", -1))
    key_strict = bool(raw.pop("__key_strict__", False))
    compressed = bool(raw.pop("__keypoints_compressed__", False))
    hd = HumanData(data_len=data_len, key_strict=key_strict, source=source)

    for key in [k for k in raw if _is_keypoint_key(k)]:
        values = as_float32(raw.pop(key), source, key)
        if values.ndim != 3:
            raise DataFormatError(source, key, "keypoints of shape (N, K, C)", f"shape {values.shape}")
        mask = raw.pop(f"{key}_mask", None)
        if mask is not None:
            mask = (as_float32(mask, source, f"{key}_mask", (None,)) == 1).astype(np.uint8)
            if compressed:
                values = _decompress(values, mask, source, key)
            elif values.shape[1] != len(mask):
                expected = f"{len(mask)} joints (length of {key}_mask)"
                raise DataFormatError(source, key, expected, f"{values.shape[1]}")
            hd.keypoint_masks[key] = mask
        hd.keypoints[key] = values
        hd.keypoint_conventions[key] = str(raw.pop(f"{key}_convention", "human_data"))

    if "image_path" in raw:
        hd.image_path = as_str_array(raw.pop("image_path"), source, "image_path")
    if "bbox_xywh" in raw:
        bbox = as_float32(raw.pop("bbox_xywh"), source, "bbox_xywh")
        if bbox.ndim == 2 and bbox.shape[1] == 4:  # legacy files: no confidence column
            bbox = np.concatenate([bbox, np.ones((len(bbox), 1), np.float32)], axis=1)
        hd.bbox_xywh = check_shape(bbox, (None, 5), source, "bbox_xywh")
    if "config" in raw:
        hd.config = str(raw.pop("config"))
    if "smpl" in raw:
        hd.smpl = _parse_smpl(raw.pop("smpl"), source)
    if "has_smpl" in raw:
        flags = as_float32(raw.pop("has_smpl"), source, "has_smpl", (None,))
        if not np.isin(flags, (0, 1)).all():
            raise DataFormatError(source, "has_smpl", "0/1 flags, one per sample", describe(flags))
        if hd.smpl is None and flags.any():
            raise DataFormatError(source, "has_smpl", "no sample flagged without an 'smpl' dict", "flags set to 1")
        hd.has_smpl = flags.astype(np.uint8)
    if "meta" in raw:
        meta = raw.pop("meta")
        if not isinstance(meta, dict):
            raise DataFormatError(source, "meta", "a dict", describe(meta))
        hd.meta = {k: (np.asarray(v) if isinstance(v, (list, tuple)) else v) for k, v in meta.items()}
        if "gender" in hd.meta:
            hd.meta["gender"] = as_str_array(hd.meta["gender"], source, "meta.gender")
    hd.extra = {key: value for key, value in raw.items() if not key.endswith(("_mask", "_convention"))}

    length = check_lengths_agree(
        _frame_indexed(hd), source, hd.data_len if hd.data_len >= 0 else None, "'__data_len__'"
    )
    hd.data_len = max(length, 0) if hd.data_len < 0 else hd.data_len
    return hd


def _decompress(values: np.ndarray, mask: np.ndarray, path: str, key: str) -> np.ndarray:
    """Put the stored mask==1 columns back into a zero (N, len(mask), C) array."""
    kept = np.flatnonzero(mask)
    if values.shape[1] != len(kept):
        raise DataFormatError(
            path, key, f"{len(kept)} compressed joints (ones in {key}_mask)", f"{values.shape[1]}"
        )
    full = np.zeros((values.shape[0], len(mask), values.shape[2]), dtype=np.float32)
    full[:, kept] = values
    return full


def _object_scalar(value: Any) -> np.ndarray:
    """Wrap a dict (or other object) as the 0-d object array savez would make of it."""
    holder = np.empty((), dtype=object)
    holder[()] = value
    return holder


def dump_humandata(path: str | os.PathLike, hd: HumanData, compress_keypoints: bool = False) -> Path:
    """Write ``hd`` as a HumanData ``.npz`` (atomically); optionally compress keypoints by mask.

    Compression stores, for every keypoint key, only the columns whose mask is 1 in ascending
    joint index order (a key without a mask gets an all-ones mask).
    """
    path = Path(path)
    length = check_lengths_agree(_frame_indexed(hd), path, hd.data_len if hd.data_len >= 0 else None, "'data_len'")
    out: dict[str, Any] = {
        "__data_len__": np.array(max(length, 0) if hd.data_len < 0 else hd.data_len),
        "__key_strict__": np.array(bool(hd.key_strict)),
        "__keypoints_compressed__": np.array(bool(compress_keypoints)),
    }
    if hd.image_path is not None:
        out["image_path"] = np.asarray(hd.image_path, dtype=str)
    if hd.bbox_xywh is not None:
        out["bbox_xywh"] = np.asarray(hd.bbox_xywh, dtype=np.float32)
    if hd.config is not None:
        out["config"] = np.array(hd.config)
    if hd.smpl is not None:
        out["smpl"] = _object_scalar({k: np.asarray(v) for k, v in hd.smpl.items()})
    if hd.has_smpl is not None:
        out["has_smpl"] = np.asarray(hd.has_smpl, dtype=np.uint8)
    if hd.meta:
        out["meta"] = _object_scalar(dict(hd.meta))
    for key, values in hd.keypoints.items():
        values = np.asarray(values, dtype=np.float32)
        mask = hd.keypoint_masks.get(key)
        if mask is None and compress_keypoints:
            mask = np.ones(values.shape[1], np.uint8)
        if mask is not None:
            mask = np.asarray(mask, dtype=np.uint8)
            if len(mask) != values.shape[1]:
                expected = f"{values.shape[1]} entries (joints of {key})"
                raise DataFormatError(path, f"{key}_mask", expected, f"{len(mask)}")
            out[f"{key}_mask"] = mask
            if compress_keypoints:
                values = values[:, np.flatnonzero(mask == 1)]
        out[key] = values
        out[f"{key}_convention"] = np.array(hd.keypoint_conventions.get(key, "human_data"))
    for key, value in hd.extra.items():
        out[key] = _object_scalar(value) if isinstance(value, dict) else value
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **out)
    return path


def humandata_keypoints(
    hd: HumanData, key: str, convention: str, approximate: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints ``hd.keypoints[key]`` in ``convention``, mapped by joint name.

    Returns ``(kps (N, J, C) float32, mask (J,) uint8)``. A target joint absent from the source
    or masked out gets zeros and mask 0; a sample whose coordinates are non-finite gets zeros
    (confidence 0 included) at that joint, while the joint's mask stays as the file says.
    ``approximate`` lets a missing joint borrow from its equivalence group (conventions module).
    """
    if key not in hd.keypoints:
        raise DataFormatError(hd.source, key, "a keypoint key", f"only {sorted(hd.keypoints)}")
    values = hd.keypoints[key]
    source_convention = hd.keypoint_conventions.get(key, "human_data")
    source_mask = hd.keypoint_masks.get(key, np.ones(values.shape[1], np.uint8))
    try:
        out, mask = convert_keypoints(values, source_convention, convention, approximate, source_mask)
    except ValueError as exc:  # joint count does not fit the stored convention
        raise DataFormatError(hd.source, key, f"keypoints in convention '{source_convention}'", str(exc)) from None
    out = out.astype(np.float32, copy=True)
    out[:, mask == 0] = 0.0
    out[~np.isfinite(out).all(axis=2)] = 0.0  # e.g. the converter's projected OpenPose slots
    return out, mask

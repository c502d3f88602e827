"""SPIN-style preprocessed ``.npz`` (one file per dataset split; reference/spin_vibe_hmr2.md 1.3).

Keys: ``imgname`` (N,) paths relative to the dataset root, ``center`` (N,2) and ``scale`` (N,)
of a square box whose side is ``200 * scale`` pixels, ``part`` (N,24,3) 2D joints in the 24-joint
SPIN "GT" order, ``openpose`` (N,25,3), optional ``S`` (N,24,4) root-centred 3D joints in metres,
optional SMPL ``pose`` (N,72) / ``shape`` (N,10) with ``has_smpl`` (N,), optional ``gender``
('m'/'f'), and the LSP-only ``maskname``/``partname``. The defaults for absent keys follow SPIN's
loader: zeros for ``part``/``openpose``; ``has_smpl`` is all ones when ``pose`` exists.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gtahuman.data.formats.safe_pickle import read_npz
from gtahuman.data.formats.errors import (
    DataFormatError,
    as_float32,
    as_str_array,
    atomic_output,
    check_finite,
    check_lengths_agree,
    describe,
)

BOX_PIXELS_PER_SCALE = 200.0  # SPIN's scale unit: box side / 200
GENDER_MALE, GENDER_FEMALE, GENDER_UNKNOWN = 0, 1, -1


@dataclass
class SpinNpz:
    """One SPIN npz as arrays; float data float32, ``has_smpl`` uint8, ``gender`` int8 codes."""

    imgname: np.ndarray  # (N,) str
    center: np.ndarray  # (N, 2) pixels
    scale: np.ndarray  # (N,) box side / 200
    part: np.ndarray  # (N, 24, 3) x, y, visibility
    openpose: np.ndarray  # (N, 25, 3) x, y, confidence (zeros if the file has none)
    S: np.ndarray | None = None  # (N, 24, 4) metres, root-centred, last column = valid
    pose: np.ndarray | None = None  # (N, 72) axis-angle
    shape: np.ndarray | None = None  # (N, 10)
    has_smpl: np.ndarray | None = None  # (N,) 0/1; filled by the reader
    gender: np.ndarray | None = None  # (N,) 0 male, 1 female, -1 unknown; filled by the reader
    maskname: np.ndarray | None = None  # (N,) str, LSP test only
    partname: np.ndarray | None = None  # (N,) str, LSP test only

    def __len__(self) -> int:
        return len(self.imgname)


def bbox_xywh_from_center_scale(center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(N,4) square boxes x, y, w, h from SPIN's centre and scale (side = 200 * scale)."""
    center = np.asarray(center, dtype=np.float32).reshape(-1, 2)
    side = np.asarray(scale, dtype=np.float32).reshape(-1) * BOX_PIXELS_PER_SCALE
    return np.stack([center[:, 0] - side / 2, center[:, 1] - side / 2, side, side], axis=1)


def center_scale_from_bbox_xywh(bbox_xywh: np.ndarray, scale_factor: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`bbox_xywh_from_center_scale`: box centre and ``factor * max(w, h) / 200``.

    ``scale_factor`` is SPIN's padding of a tight keypoint box (1.2 for most datasets).
    """
    box = np.asarray(bbox_xywh, dtype=np.float32).reshape(-1, 4)
    center = box[:, :2] + box[:, 2:4] / 2
    scale = scale_factor * np.maximum(box[:, 2], box[:, 3]) / BOX_PIXELS_PER_SCALE
    return center, scale.astype(np.float32)


def _gender_codes(value: object, path: Path) -> np.ndarray:
    """'m' -> 0, anything else -> 1 (as SPIN's loader); numeric codes are taken as they are."""
    array = np.asarray(value)
    if array.dtype.kind in "iuf":
        codes = array.astype(np.int8)
        if array.ndim != 1 or not np.isin(codes, (GENDER_UNKNOWN, GENDER_MALE, GENDER_FEMALE)).all():
            raise DataFormatError(path, "gender", "codes in {-1, 0, 1} or 'm'/'f' strings", describe(array))
        return codes
    names = as_str_array(array, path, "gender")
    return np.where(np.char.strip(names) == "m", GENDER_MALE, GENDER_FEMALE).astype(np.int8)


def read_spin_npz(path: str | os.PathLike) -> SpinNpz:
    """Read and validate a SPIN npz, filling absent optional keys as SPIN's loader does."""
    path = Path(path)
    raw = read_npz(path, "SPIN npz")
    for key in ("imgname", "center", "scale"):
        if key not in raw:
            raise DataFormatError(path, key, "this key in a SPIN npz", f"only: {', '.join(sorted(raw))}")

    imgname = as_str_array(raw["imgname"], path, "imgname")
    n = len(imgname)
    center = check_finite(as_float32(raw["center"], path, "center", (n, 2)), path, "center")
    scale = check_finite(as_float32(raw["scale"], path, "scale").reshape(-1), path, "scale")

    def optional(key: str, shape: tuple[int, ...]) -> np.ndarray | None:
        return as_float32(raw[key], path, key, (n, *shape)) if key in raw else None

    part = optional("part", (24, 3))
    openpose = optional("openpose", (25, 3))
    pose, shape = optional("pose", (72,)), optional("shape", (10,))
    if (pose is None) != (shape is None):
        raise DataFormatError(path, "shape" if shape is None else "pose", "'pose' and 'shape' together")

    if "has_smpl" in raw:
        has_smpl = as_float32(raw["has_smpl"], path, "has_smpl", (n,))
        if not np.isin(has_smpl, (0, 1)).all():
            raise DataFormatError(path, "has_smpl", "0/1 flags", describe(raw["has_smpl"]))
        has_smpl = has_smpl.astype(np.uint8)
    else:
        has_smpl = np.full(n, 1 if pose is not None else 0, dtype=np.uint8)
    if pose is not None and shape is not None:
        rows = has_smpl == 1  # rows without SMPL may hold anything; zero them
        for key, values in (("pose", pose), ("shape", shape)):
            bad = np.flatnonzero(rows & ~np.isfinite(values).all(axis=1))
            if len(bad):
                raise DataFormatError(path, key, "finite values where has_smpl is 1", f"non-finite row {bad[0]}")
        pose[~rows], shape[~rows] = 0.0, 0.0

    data = SpinNpz(
        imgname=imgname,
        center=center,
        scale=scale,
        part=part if part is not None else np.zeros((n, 24, 3), np.float32),
        openpose=openpose if openpose is not None else np.zeros((n, 25, 3), np.float32),
        S=optional("S", (24, 4)),
        pose=pose,
        shape=shape,
        has_smpl=has_smpl,
        gender=_gender_codes(raw["gender"], path) if "gender" in raw else np.full(n, GENDER_UNKNOWN, np.int8),
        maskname=as_str_array(raw["maskname"], path, "maskname") if "maskname" in raw else None,
        partname=as_str_array(raw["partname"], path, "partname") if "partname" in raw else None,
    )
    check_lengths_agree(_per_sample(data), path, n, "'imgname'")
    return data


def _per_sample(data: SpinNpz) -> dict[str, np.ndarray]:
    names = ("center", "scale", "part", "openpose", "S", "pose", "shape", "has_smpl", "gender", "maskname", "partname")
    return {name: getattr(data, name) for name in names if getattr(data, name) is not None}


def write_spin_npz(path: str | os.PathLike, data: SpinNpz) -> Path:
    """Write ``data`` as a SPIN npz (atomically), in the key layout SPIN itself reads.

    ``gender`` is written as 'm'/'f' strings; it is left out when every code is unknown (-1),
    and a mix of known and unknown is refused because SPIN would read unknown as female.
    """
    path = Path(path)
    check_lengths_agree(_per_sample(data), path, len(data.imgname), "'imgname'")
    out: dict[str, np.ndarray] = {
        "imgname": np.asarray(data.imgname, dtype=str),
        "center": np.asarray(data.center, dtype=np.float32),
        "scale": np.asarray(data.scale, dtype=np.float32),
        "part": np.asarray(data.part, dtype=np.float32),
        "openpose": np.asarray(data.openpose, dtype=np.float32),
    }
    for key in ("S", "pose", "shape"):
        if getattr(data, key) is not None:
            out[key] = np.asarray(getattr(data, key), dtype=np.float32)
    if data.has_smpl is not None:
        out["has_smpl"] = np.asarray(data.has_smpl, dtype=np.float32)
    if data.gender is not None:
        codes = np.asarray(data.gender)
        known = codes != GENDER_UNKNOWN
        if known.any() and not known.all():
            raise DataFormatError(path, "gender", "all genders known or all unknown (SPIN has no unknown code)")
        if known.all() and len(codes):
            out["gender"] = np.where(codes == GENDER_MALE, "m", "f")
    for key in ("maskname", "partname"):
        if getattr(data, key) is not None:
            out[key] = np.asarray(getattr(data, key), dtype=str)
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **out)
    return path

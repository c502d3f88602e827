"""Raw GTA-Human release: one pickled annotation dict and one JPEG folder per sequence.

Layout (reference/mmhuman3d.md section 2.1)::

    <root>/annotations/seq_00000012.pkl
    <root>/images/seq_00000012/00000000.jpeg, 00000001.jpeg, ...

Each pickle holds 15 keys (see :data:`ANNOTATION_KEYS`). The camera is a pinhole with the
vertical field of view ``fov`` (always 50 degrees in the release), principal point at the image
centre and identity extrinsics; SMPL parameters are already in that OpenCV camera frame.
The mini world writes its synthetic sequences with :func:`write_sequence`, and they are read back
by the very same :func:`read_sequence` that reads a real download.
"""
from __future__ import annotations

import math
import os
import pickle
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gtahuman.data.formats.errors import (
    DataFormatError,
    as_float32,
    atomic_output,
    check_finite,
    check_shape,
    describe,
    require_keys,
)
from gtahuman.data.formats.safe_pickle import safe_load_npz, safe_load_pickle, safe_read_npy

ANNOTATION_KEYS = (
    "keypoints_2d", "keypoints_3d", "occ", "self_occ", "fov", "is_male", "weather", "daytime",
    "location_tag", "betas", "body_pose", "global_orient", "transl", "bbox_xywh", "num_frames",
)
NUM_GAME_JOINTS = 100
DEFAULT_IMAGE_SIZE = (1920, 1080)  # (W, H) of every frame in the release
FRAME_NAME = "{:08d}.jpeg"


def intrinsics_from_fov(fov_deg: float, image_size: tuple[int, int]) -> np.ndarray:
    """Pinhole K (3x3, float32) from the vertical field of view and the image size (W, H).

    f = (H/2) / tan(fov/2); 1920x1080 at 50 degrees gives 1158.0337 px, as the converter uses.
    """
    width, height = image_size
    focal = (height / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]], dtype=np.float32)


def clean_bbox(
    bbox_xywh: np.ndarray, image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Clip boxes as mmhuman3d's GTA converter does; return ``(clipped (n,4), keep (n,) bool)``.

    x, y are clamped to >= 0, then w, h to what is left of the image; a box is kept only if
    0 <= x < W, 0 <= y < H, 0 < w < W and 0 < h < H. Two converter quirks are kept on purpose
    so that we select the same frames: w/h are *not* shortened when x/y are clamped up from a
    negative value, and a box exactly as wide (or tall) as the image is dropped. NaN boxes are
    dropped.
    """
    width, height = image_size
    box = np.array(bbox_xywh, dtype=np.float32).reshape(-1, 4)
    x = np.maximum(box[:, 0], 0.0)
    y = np.maximum(box[:, 1], 0.0)
    w = np.minimum(box[:, 2], width - x)
    h = np.minimum(box[:, 3], height - y)
    keep = (x >= 0) & (x < width) & (y >= 0) & (y < height) & (w > 0) & (w < width) & (h > 0) & (h < height)
    return np.stack([x, y, w, h], axis=1), keep


@dataclass
class GTASequence:
    """One sequence of the raw release: the 15 annotation keys plus what follows from them.

    Float data is float32; ``occ``/``self_occ`` are bool. ``image_size`` is (W, H), read from the
    first JPEG's header; ``image_size_source`` says whether it came from a JPEG or is the
    release default because no image was found.
    """

    seq_name: str
    keypoints_2d: np.ndarray  # (n, 100, 3) u, v, 1 in pixels
    keypoints_3d: np.ndarray  # (n, 100, 4) x, y, z, 1 (game units, camera frame)
    occ: np.ndarray  # (n, 100) bool: joint hidden by something else
    self_occ: np.ndarray  # (n, 100) bool: joint hidden by the body itself
    fov: float  # vertical field of view, degrees
    is_male: bool
    weather: str
    daytime: tuple[int, int, int]  # (hour, minute, second)
    location_tag: str
    betas: np.ndarray  # (n, 10)
    body_pose: np.ndarray  # (n, 69) axis-angle
    global_orient: np.ndarray  # (n, 3) axis-angle, camera frame
    transl: np.ndarray  # (n, 3) metres, camera frame
    bbox_xywh: np.ndarray  # (n, 4) full-image pixels
    num_frames: int
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE
    image_size_source: str = "default 1920x1080 (no image read)"

    @property
    def image_paths(self) -> np.ndarray:
        """(n,) paths relative to the release root: ``images/<seq>/<frame:08d>.jpeg``."""
        return np.array([f"images/{self.seq_name}/{FRAME_NAME.format(i)}" for i in range(self.num_frames)])

    @property
    def intrinsics(self) -> np.ndarray:
        """K (3x3) from ``fov`` and ``image_size``."""
        return intrinsics_from_fov(self.fov, self.image_size)

    @property
    def bbox_keep(self) -> np.ndarray:
        """(n,) bool: frames whose box survives :func:`clean_bbox` (the converter keeps only these)."""
        return clean_bbox(self.bbox_xywh, self.image_size)[1]


def list_sequences(root: str | os.PathLike) -> list[str]:
    """Sorted names (``seq_XXXXXXXX``) of the annotation pickles under ``<root>/annotations``."""
    folder = Path(root) / "annotations"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder}: no annotations folder; a GTA-Human root holds annotations/seq_XXXXXXXX.pkl "
            "and images/seq_XXXXXXXX/NNNNNNNN.jpeg"
        )
    return sorted(p.stem for p in folder.glob("seq_*.pkl"))


# What a truncated or foreign file raises while being unpickled / unzipped.
_UNREADABLE = (
    pickle.UnpicklingError, EOFError, zipfile.BadZipFile, zlib.error, ValueError, OSError, AttributeError, ImportError,
    TypeError,
)


def _load_annotation_file(path: Path) -> dict[str, Any]:
    """Unpickle (latin1, as the converter does) or read an npz/npy stored under .pkl.

    Every pickle goes through :mod:`~gtahuman.data.formats.safe_pickle`: numpy arrays and plain
    containers load, anything else raises ``UnsafePickleError`` naming the file and the refused
    global, and no code from the file runs.
    """
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
            f.seek(0)
            if magic.startswith(b"PK"):  # an npz archive saved with a .pkl name
                content: Any = safe_load_npz(f, path)
            elif magic == b"\x93NUMPY":  # a dict saved with np.save
                content = safe_read_npy(f, path)
            else:
                content = safe_load_pickle(f, path)
    except DataFormatError:
        raise
    except _UNREADABLE as exc:
        raise DataFormatError(path, None, "a complete pickled annotation dict", f"unreadable file ({exc!r})") from None
    if isinstance(content, np.ndarray) and content.dtype == object and content.ndim == 0:
        content = content.item()
    if not isinstance(content, dict):
        raise DataFormatError(path, None, "a pickled dict of annotation keys", describe(content))
    # 0-d arrays (npz variant) become Python scalars / objects.
    return {str(k): (v.item() if isinstance(v, np.ndarray) and v.ndim == 0 else v) for k, v in content.items()}


def _as_text(value: Any, path: Path, key: str) -> str:
    if isinstance(value, bytes):
        return value.decode("latin1")
    if isinstance(value, (str, np.str_)):
        return str(value)
    raise DataFormatError(path, key, "a string", describe(value))


def _as_flag_array(value: Any, n: int, path: Path, key: str) -> np.ndarray:
    array = check_shape(as_float32(value, path, key), (n, NUM_GAME_JOINTS), path, key)
    return array != 0


def read_sequence(root: str | os.PathLike, seq_name: str) -> GTASequence:
    """Read and validate ``<root>/annotations/<seq_name>.pkl`` (and the first frame's header).

    Checked: all 15 keys, shapes against ``num_frames``, finite SMPL parameters. Not checked:
    game keypoints (their values are the game's) and boxes (see ``GTASequence.bbox_keep``).
    """
    root = Path(root)
    path = root / "annotations" / f"{seq_name}.pkl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation file not found (expected <root>/annotations/{seq_name}.pkl)")
    ann = _load_annotation_file(path)
    require_keys(ann, ANNOTATION_KEYS, path, "a GTA-Human annotation")

    try:
        n = int(ann["num_frames"])
    except (TypeError, ValueError):
        raise DataFormatError(path, "num_frames", "an integer frame count", describe(ann["num_frames"])) from None
    if n < 0:
        raise DataFormatError(path, "num_frames", "a frame count >= 0", str(n))

    def smpl_param(key: str, width: int) -> np.ndarray:
        array = as_float32(ann[key], path, key)
        if array.ndim == 3 and array.shape[1] * array.shape[2] == width:  # (n, 23, 3) / (n, 1, 3)
            array = array.reshape(len(array), width)
        return check_finite(check_shape(array, (n, width), path, key), path, key)

    try:
        fov = float(ann["fov"])
    except (TypeError, ValueError):
        raise DataFormatError(path, "fov", "a number of degrees", describe(ann["fov"])) from None
    if not 0.0 < fov < 180.0:
        raise DataFormatError(path, "fov", "a vertical field of view in (0, 180) degrees", str(fov))
    daytime = ann["daytime"]
    if not (isinstance(daytime, (tuple, list, np.ndarray)) and len(daytime) == 3):
        raise DataFormatError(path, "daytime", "(hour, minute, second)", describe(daytime))

    image_size, source = _first_frame_size(root, seq_name)
    return GTASequence(
        seq_name=seq_name,
        keypoints_2d=as_float32(ann["keypoints_2d"], path, "keypoints_2d", (n, NUM_GAME_JOINTS, 3)),
        keypoints_3d=as_float32(ann["keypoints_3d"], path, "keypoints_3d", (n, NUM_GAME_JOINTS, 4)),
        occ=_as_flag_array(ann["occ"], n, path, "occ"),
        self_occ=_as_flag_array(ann["self_occ"], n, path, "self_occ"),
        fov=fov,
        is_male=bool(ann["is_male"]),
        weather=_as_text(ann["weather"], path, "weather"),
        daytime=tuple(int(v) for v in daytime),  # type: ignore[arg-type]
        location_tag=_as_text(ann["location_tag"], path, "location_tag"),
        betas=smpl_param("betas", 10),
        body_pose=smpl_param("body_pose", 69),
        global_orient=smpl_param("global_orient", 3),
        transl=smpl_param("transl", 3),
        # Not checked for finiteness: a NaN box is a per-frame problem that bbox_keep reports.
        bbox_xywh=as_float32(ann["bbox_xywh"], path, "bbox_xywh", (n, 4)),
        num_frames=n,
        image_size=image_size,
        image_size_source=source,
    )


def _first_frame_size(root: Path, seq_name: str) -> tuple[tuple[int, int], str]:
    """(W, H) from the first JPEG's header (PIL opens lazily: no pixel decode)."""
    first = root / "images" / seq_name / FRAME_NAME.format(0)
    if not first.is_file():
        return DEFAULT_IMAGE_SIZE, f"default 1920x1080 ({first} not found)"
    try:
        with Image.open(first) as image:
            return (int(image.size[0]), int(image.size[1])), f"header of {first}"
    except (OSError, SyntaxError) as exc:
        raise DataFormatError(first, None, "a readable JPEG frame", repr(exc)) from None


def write_sequence(
    root: str | os.PathLike,
    seq_name: str,
    seq: GTASequence,
    images: Iterable[np.ndarray] | None = None,
    quality: int = 90,
) -> Path:
    """Write ``seq`` as ``<root>/annotations/<seq_name>.pkl`` and, if given, its JPEG frames.

    Frames are written first and the pickle last (each atomically), so an annotation file on
    disk always has its images. Returns the pickle's path.
    """
    root = Path(root)
    path = root / "annotations" / f"{seq_name}.pkl"
    if images is not None:
        folder = root / "images" / seq_name
        folder.mkdir(parents=True, exist_ok=True)
        count = 0
        for index, frame in enumerate(images):
            frame = np.asarray(frame)
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise DataFormatError(folder, f"image {index}", "an HxWx3 uint8 array", describe(frame))
            target = folder / FRAME_NAME.format(index)
            with atomic_output(target) as tmp:
                Image.fromarray(frame).save(tmp, format="JPEG", quality=quality)
            count += 1
        if count != seq.num_frames:
            raise DataFormatError(folder, "images", f"{seq.num_frames} frames (num_frames)", f"{count}")

    annotation = {
        "keypoints_2d": np.asarray(seq.keypoints_2d),
        "keypoints_3d": np.asarray(seq.keypoints_3d),
        "occ": np.asarray(seq.occ),
        "self_occ": np.asarray(seq.self_occ),
        "fov": float(seq.fov),
        "is_male": bool(seq.is_male),
        "weather": str(seq.weather),
        "daytime": tuple(int(v) for v in seq.daytime),
        "location_tag": str(seq.location_tag),
        "betas": np.asarray(seq.betas),
        "body_pose": np.asarray(seq.body_pose),
        "global_orient": np.asarray(seq.global_orient),
        "transl": np.asarray(seq.transl),
        "bbox_xywh": np.asarray(seq.bbox_xywh),
        "num_frames": int(seq.num_frames),
    }
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            pickle.dump(annotation, f, protocol=4)
    return path

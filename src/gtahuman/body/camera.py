"""Camera models: the weak-perspective crop camera of HMR/SPIN and full-image pinhole cameras.

Conventions (SPIN / mmhuman3d):
- The network predicts ``(s, tx, ty)`` for a square crop of ``img_res`` px. It is read as a
  perspective camera with focal ``f`` (5000 px for a 224 crop), principal point at the crop
  centre, identity rotation and translation ``t = (tx, ty, 2 f / (img_res s + 1e-9))``:
  a body at depth tz spans ``s * img_res / 2`` px per metre, as the weak camera says.
- Camera frame is OpenCV: x right, y down, z forward; pixels measured from the top-left.
- Crop keypoints come in two forms: pixels ``[0, img_res]`` from the crop's top-left corner,
  and SPIN's normalised ``x_n = 2 x / img_res - 1`` in ``[-1, 1]`` (0 = crop centre).
  (mmhuman3d divides by ``img_res - 1`` instead; the difference is 0.4 %.)
- GTA-Human frames: 1920x1080, vertical field of view 50 deg, so f = 540 / tan(25 deg)
  = 1158.0337 px, principal point (960, 540), SMPL already in the camera frame.

Functions take torch tensors or numpy arrays (numpy in -> numpy out) with any leading dims.
"""
from __future__ import annotations

import math

import numpy as np
import torch

Array = torch.Tensor | np.ndarray

DEFAULT_FOCAL = 5000.0
DEFAULT_IMG_RES = 224
# Added to the scale before dividing, as in SPIN, so s = 0 gives a huge depth, not inf.
_SCALE_EPS = 1e-9


def _as_tensor(x: Array | float | tuple, like: torch.Tensor | None = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x if like is None else x.to(dtype=like.dtype, device=like.device)
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.require(x, requirements=["C", "W"]))
        return x if like is None else x.to(dtype=like.dtype, device=like.device)
    if like is None:
        return torch.as_tensor(x, dtype=torch.get_default_dtype())
    return torch.as_tensor(x, dtype=like.dtype, device=like.device)


def _out(x: torch.Tensor, numpy_in: bool) -> Array:
    return x.numpy() if numpy_in else x


def _check_last_dim(x: torch.Tensor, size: int, what: str) -> None:
    if x.ndim < 1 or x.shape[-1] != size:
        raise ValueError(f"{what} must have shape (..., {size}); got {tuple(x.shape)}")


def _pair(value: Array | float | tuple, like: torch.Tensor, what: str) -> torch.Tensor:
    """A focal length or principal point as ``(..., 2)``: a scalar, ``(fx, fy)``, or a
    tensor whose last dim is 1 (shared fx = fy) or 2."""
    t = _as_tensor(value, like)
    if t.ndim == 0:
        t = t.expand(2)
    if t.shape[-1] not in (1, 2):
        raise ValueError(f"{what} must be a scalar or have shape (..., 1) or (..., 2); "
                         f"got {tuple(t.shape)}")
    return t.expand(*t.shape[:-1], 2)


def weak_perspective_to_translation(
    cam: Array, focal: float = DEFAULT_FOCAL, img_res: int = DEFAULT_IMG_RES
) -> Array:
    """Weak-perspective ``(..., 3)`` = (s, tx, ty) -> translation ``(..., 3)`` =
    (tx, ty, 2 f / (img_res s + 1e-9))."""
    numpy_in = isinstance(cam, np.ndarray)
    cam_t = _as_tensor(cam)
    _check_last_dim(cam_t, 3, "weak-perspective camera (s, tx, ty)")
    depth = 2.0 * focal / (img_res * cam_t[..., 0] + _SCALE_EPS)
    return _out(torch.stack([cam_t[..., 1], cam_t[..., 2], depth], dim=-1), numpy_in)


def translation_to_weak_perspective(
    translation: Array, focal: float = DEFAULT_FOCAL, img_res: int = DEFAULT_IMG_RES
) -> Array:
    """Inverse of `weak_perspective_to_translation`: s = (2 f / tz - 1e-9) / img_res."""
    numpy_in = isinstance(translation, np.ndarray)
    t = _as_tensor(translation)
    _check_last_dim(t, 3, "translation")
    scale = (2.0 * focal / t[..., 2] - _SCALE_EPS) / img_res
    return _out(torch.stack([scale, t[..., 0], t[..., 1]], dim=-1), numpy_in)


def perspective_projection(
    points: Array,
    translation: Array,
    focal: Array | float,
    principal_point: Array | tuple[float, float] = (0.0, 0.0),
    rotation: Array | None = None,
) -> Array:
    """Pinhole projection of ``points (..., J, 3)`` to pixels ``(..., J, 2)``.

    Camera coordinates are ``R X + t`` (``rotation (..., 3, 3)``, identity if None;
    ``translation (..., 3)``), then ``u = f * x / z + c``. ``focal`` and
    ``principal_point`` are scalars, pairs, or tensors ``(..., 1|2)`` per sample. No
    clamping of z: points at or behind the camera give inf/garbage, as in SPIN.
    """
    numpy_in = isinstance(points, np.ndarray)
    pts = _as_tensor(points)
    _check_last_dim(pts, 3, "points")
    t = _as_tensor(translation, pts)
    _check_last_dim(t, 3, "translation")
    if rotation is not None:
        pts = pts @ _as_tensor(rotation, pts).transpose(-1, -2)
    cam_points = pts + t[..., None, :]
    focal_xy = _pair(focal, pts, "focal")[..., None, :]
    centre_xy = _pair(principal_point, pts, "principal_point")[..., None, :]
    pixels = focal_xy * cam_points[..., :2] / cam_points[..., 2:3] + centre_xy
    return _out(pixels, numpy_in)


def project_to_crop(
    points: Array, cam: Array, focal: float = DEFAULT_FOCAL, img_res: int = DEFAULT_IMG_RES
) -> tuple[Array, Array]:
    """Project body-frame ``points (..., J, 3)`` with the weak camera ``cam (..., 3)``.

    Returns ``(pixels, normalised)``, both ``(..., J, 2)``: crop pixels from the top-left
    corner, and SPIN's normalised form ``2 * pixels / img_res - 1`` (= centred px / 112).
    """
    numpy_in = isinstance(points, np.ndarray)
    pts = _as_tensor(points)
    translation = weak_perspective_to_translation(_as_tensor(cam, pts), focal, img_res)
    centred = perspective_projection(pts, translation, focal)
    half = img_res / 2.0
    return _out(centred + half, numpy_in), _out(centred / half, numpy_in)


def crop_pixels_to_normalized(pixels: Array, img_res: int = DEFAULT_IMG_RES) -> Array:
    """Crop pixels (top-left origin) -> SPIN normalised ``2 x / img_res - 1``."""
    return 2.0 * pixels / img_res - 1.0


def normalized_to_crop_pixels(normalized: Array, img_res: int = DEFAULT_IMG_RES) -> Array:
    """Inverse of `crop_pixels_to_normalized`."""
    return (normalized + 1.0) * (img_res / 2.0)


def focal_from_fov(fov_deg: float, image_height: float) -> float:
    """Focal length in px from the vertical field of view: ``(H / 2) / tan(fov / 2)``."""
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"field of view must be in (0, 180) degrees; got {fov_deg}")
    return (image_height / 2.0) / math.tan(math.radians(fov_deg) / 2.0)


def intrinsics_from_fov(fov_deg: float, width: float, height: float) -> np.ndarray:
    """3x3 float64 intrinsics: fx = fy from the vertical fov, principal point at the
    image centre (W/2, H/2)."""
    focal = focal_from_fov(fov_deg, height)
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


GTA_IMAGE_WIDTH, GTA_IMAGE_HEIGHT, GTA_FOV_DEG = 1920, 1080, 50.0
GTA_FOCAL: float = focal_from_fov(GTA_FOV_DEG, GTA_IMAGE_HEIGHT)
GTA_INTRINSICS: np.ndarray = intrinsics_from_fov(GTA_FOV_DEG, GTA_IMAGE_WIDTH, GTA_IMAGE_HEIGHT)
GTA_INTRINSICS.flags.writeable = False


def full_image_projection(points: Array, intrinsics: Array) -> Array:
    """Project camera-frame ``points (..., J, 3)`` with ``intrinsics`` ``(3, 3)`` or
    ``(..., 3, 3)`` to full-image pixels ``(..., J, 2)``."""
    numpy_in = isinstance(points, np.ndarray)
    pts = _as_tensor(points)
    _check_last_dim(pts, 3, "points")
    k = _as_tensor(intrinsics, pts)
    if k.shape[-2:] != (3, 3):
        raise ValueError(f"intrinsics must have shape (..., 3, 3); got {tuple(k.shape)}")
    homogeneous = pts @ k.transpose(-1, -2)
    return _out(homogeneous[..., :2] / homogeneous[..., 2:3], numpy_in)


def estimate_translation(
    joints3d: Array,
    joints2d: Array,
    conf: Array | None,
    focal: Array | float,
    center: Array | tuple[float, float],
) -> Array:
    """Camera translation ``(..., 3)`` that best projects ``joints3d (..., J, 3)`` onto
    ``joints2d (..., J, 2)`` (pixels) with focal ``focal`` and principal point ``center``.

    With p = X + t, projection u = f px / pz + c is linear in t once multiplied out:
        f tx - (u - cx) tz = (u - cx) Z - f X,   f ty - (v - cy) tz = (v - cy) Z - f Y.
    These 2J equations, weighted by ``conf (..., J)`` (None = all 1, 0 = ignore), are
    solved in the least-squares sense through the 3x3 normal equations. Needs at least two
    joints with positive weight per sample; otherwise raises ValueError.
    """
    numpy_in = isinstance(joints3d, np.ndarray)
    x3 = _as_tensor(joints3d)
    _check_last_dim(x3, 3, "joints3d")
    x2 = _as_tensor(joints2d, x3)
    _check_last_dim(x2, 2, "joints2d")
    weights = torch.ones_like(x3[..., 0]) if conf is None else _as_tensor(conf, x3)
    weights = torch.broadcast_to(weights, x3.shape[:-1])
    if (weights < 0).any():
        raise ValueError("conf must be non-negative")
    usable = (weights > 0).sum(-1)
    if (usable < 2).any():
        bad = torch.nonzero(usable.reshape(-1) < 2).flatten()[:10].tolist()
        raise ValueError(f"estimate_translation needs >= 2 joints with conf > 0 per sample; "
                         f"samples (flattened index) {bad} have fewer")
    f = _pair(focal, x3, "focal")[..., None, :]  # (..., 1, 2)
    c = _pair(center, x3, "center")[..., None, :]
    offset = x2 - c  # (..., J, 2): u - cx, v - cy
    # Rows for the x and y equations of each joint: coefficients of (tx, ty, tz) and rhs.
    zeros = torch.zeros_like(offset[..., 0])
    fx, fy = f[..., 0].expand_as(zeros), f[..., 1].expand_as(zeros)
    rows_x = torch.stack([fx, zeros, -offset[..., 0]], dim=-1)
    rows_y = torch.stack([zeros, fy, -offset[..., 1]], dim=-1)
    rhs_x = offset[..., 0] * x3[..., 2] - fx * x3[..., 0]
    rhs_y = offset[..., 1] * x3[..., 2] - fy * x3[..., 1]
    a = torch.cat([rows_x, rows_y], dim=-2)  # (..., 2J, 3)
    b = torch.cat([rhs_x, rhs_y], dim=-1)  # (..., 2J)
    w = torch.cat([weights, weights], dim=-1)
    normal = a.transpose(-1, -2) @ (w[..., None] * a)  # (..., 3, 3)
    moment = (a.transpose(-1, -2) @ (w * b)[..., None])[..., 0]  # (..., 3)
    return _out(torch.linalg.solve(normal, moment), numpy_in)

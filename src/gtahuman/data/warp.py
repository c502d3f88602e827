"""Affine crop geometry and the bilinear image warp behind the training/test transforms.

Pixel convention (used by every function here and by `gtahuman.data.transforms`):
continuous coordinates with the origin at the image's top-left *corner*; pixel (row i,
column j) covers ``[j, j+1) x [i, i+1)`` and its value sits at its centre ``(j + 0.5,
i + 0.5)``. So a crop of ``R`` px spans ``[0, R]``, its centre is ``R / 2`` and SPIN's
normalisation ``2 x / R - 1`` maps the crop edges to exactly -1 and 1; a left-right mirror
of a W-wide image is ``x -> W - x``. (mmhuman3d's ``W - 1 - x`` is the same mirror in the
pixel-index convention; the half pixel never matters for training, only for exact tests.)

Affines are 2x3 float64 arrays ``A`` acting on column vectors: ``p' = A[:, :2] p + A[:, 2]``.

Two warps: `warp_image`, the reference (torch ``grid_sample`` in float32, exact bilinear), and
`warp_image_uint8`, the training path (OpenCV ``warpAffine`` on uint8: ~10x faster per sample on
one core; its bilinear weights are fixed-point, 1/32 px, and it rounds to uint8, so it differs
from the reference by at most a few grey levels at sharp edges: tests/test_transforms.py states
the tolerance).
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

# A loader's worker (or the training process itself) is one core's worth of work: OpenCV's own
# thread pool would compete with torch's threads and the other workers (gtahuman.threads).
cv2.setNumThreads(1)
# OpenCV's index convention puts pixel (i, j)'s value at (j, i); ours at (j + 0.5, i + 0.5).
_INDEX_FROM_CONTINUOUS = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5]])
_CONTINUOUS_FROM_INDEX = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]])


def _as_3x3(affine: np.ndarray) -> np.ndarray:
    return np.vstack([np.asarray(affine, np.float64), [0.0, 0.0, 1.0]])


def compose_affines(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 affine ``outer ∘ inner`` (apply ``inner`` first)."""
    return (_as_3x3(outer) @ _as_3x3(inner))[:2]


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """Inverse of an invertible 2x3 affine."""
    return np.linalg.inv(_as_3x3(affine))[:2]


def crop_affine(
    center: np.ndarray | tuple[float, float], scale: float, rot_deg: float, out_res: int
) -> tuple[np.ndarray, np.ndarray]:
    """Affine taking the square window of side ``scale`` px centred at ``center`` and
    rotated by ``rot_deg`` to an ``out_res x out_res`` crop; returns ``(A, A_inv)``.

        crop = (out_res / scale) * Rot(-rot) @ (p - center) + out_res / 2,
        Rot(a) = [[cos a, -sin a], [sin a, cos a]]   (in y-down image coordinates)

    A positive ``rot_deg`` turns the image content counter-clockwise as displayed (SPIN's
    imrotate, mmhuman3d's get_affine_transform); the 3D targets then turn with
    ``rotation_about_z(-rot_deg)``, the same matrix lifted to 3D.
    """
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"crop scale must be a positive number of pixels; got {scale}")
    if out_res <= 0:
        raise ValueError(f"crop resolution must be positive; got {out_res}")
    cx, cy = (float(v) for v in np.asarray(center, np.float64).reshape(2))
    zoom = out_res / float(scale)
    rad = math.radians(rot_deg)
    cos, sin = math.cos(rad), math.sin(rad)
    linear = zoom * np.array([[cos, sin], [-sin, cos]])  # zoom * Rot(-rot)
    offset = np.array([out_res / 2.0, out_res / 2.0]) - linear @ np.array([cx, cy])
    affine = np.hstack([linear, offset[:, None]])
    return affine, invert_affine(affine)


def mirror_affine(width: float) -> np.ndarray:
    """Left-right mirror of an image ``width`` px wide: ``x -> width - x``."""
    return np.array([[-1.0, 0.0, float(width)], [0.0, 1.0, 0.0]])


def transform_points(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to ``points (..., 2)``; float64 out."""
    pts = np.asarray(points, np.float64)
    return pts @ affine[:, :2].T + affine[:, 2]


def _source_window(
    inverse: np.ndarray, out_res: int, width: int, height: int
) -> tuple[int, int, int, int] | None:
    """Integer pixel window ``(x0, y0, x1, y1)`` of the source image that the bilinear
    sampler can touch, clipped to the image; None if it misses the image entirely.
    Converting only this window to float keeps a 1920x1080 frame as cheap as a crop."""
    corners = transform_points(inverse, np.array(
        [[0.0, 0.0], [out_res, 0.0], [0.0, out_res], [out_res, out_res]]))
    # Bilinear at p reads pixel indices floor(p - 0.5) and floor(p - 0.5) + 1; one spare px.
    x0 = max(math.floor(corners[:, 0].min() - 0.5) - 1, 0)
    y0 = max(math.floor(corners[:, 1].min() - 0.5) - 1, 0)
    x1 = min(math.floor(corners[:, 0].max() - 0.5) + 3, width)
    y1 = min(math.floor(corners[:, 1].max() - 0.5) + 3, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def warp_image(image: np.ndarray, affine: np.ndarray, out_res: int) -> np.ndarray:
    """Warp ``image (H, W, C)`` (uint8 or float) with ``affine`` (source px -> output px)
    into a float32 ``(out_res, out_res, C)`` array on the input's value scale.

    Each output pixel centre is mapped back through the inverse affine and sampled
    bilinearly (torch ``grid_sample``, ``align_corners=False``, which uses the same
    pixel-centre convention); outside the image is black, as cv2.warpAffine's constant
    border. No anti-aliasing, as the reference pipelines: strong downscaling aliases.
    """
    if image.ndim != 3:
        raise ValueError(f"image must have shape (H, W, C); got {image.shape}")
    height, width, channels = image.shape
    inverse = invert_affine(affine)
    out = np.zeros((out_res, out_res, channels), np.float32)
    window = _source_window(inverse, out_res, width, height)
    if window is None:
        return out
    x0, y0, x1, y1 = window
    patch = torch.from_numpy(np.ascontiguousarray(image[y0:y1, x0:x1], dtype=np.float32))
    patch = patch.permute(2, 0, 1)[None]  # (1, C, h, w)
    patch_h, patch_w = y1 - y0, x1 - x0

    # grid_sample works in normalised coordinates (align_corners=False: -1 and 1 are the
    # outer edges, so pixel centres match the convention above). The sampling grid is the
    # affine  output-normalised -> output px -> source px -> window-normalised.
    output_from_normalised = np.array([[out_res / 2.0, 0.0, out_res / 2.0],
                                       [0.0, out_res / 2.0, out_res / 2.0]])
    window_normalised_from_source = np.array([[2.0 / patch_w, 0.0, -2.0 * x0 / patch_w - 1.0],
                                              [0.0, 2.0 / patch_h, -2.0 * y0 / patch_h - 1.0]])
    theta = compose_affines(window_normalised_from_source,
                            compose_affines(inverse, output_from_normalised))
    grid = F.affine_grid(torch.from_numpy(theta.astype(np.float32))[None],
                         [1, channels, out_res, out_res], align_corners=False)
    sampled = F.grid_sample(patch, grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
    return sampled[0].permute(1, 2, 0).numpy()


def warp_image_uint8(image: np.ndarray, affine: np.ndarray, out_res: int) -> np.ndarray:
    """`warp_image` for uint8 ``image (H, W, C)`` on OpenCV: a uint8 ``(out_res, out_res, C)``
    crop, bilinear, black outside the image (the same geometry; values within the tolerance the
    module doc gives)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 of shape (H, W, C); got {image.dtype} {image.shape}")
    # output index -> output continuous -> source continuous -> source index
    source_index_from_output_index = compose_affines(
        _INDEX_FROM_CONTINUOUS, compose_affines(invert_affine(affine), _CONTINUOUS_FROM_INDEX))
    crop = cv2.warpAffine(np.ascontiguousarray(image), source_index_from_output_index, (out_res, out_res),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)
    return crop.reshape(out_res, out_res, image.shape[2])

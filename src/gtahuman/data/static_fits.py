"""SPIN's static fits: SMPL parameters fitted by SMPLify to keypoint-only datasets, and the rule
that decides which of them may supervise a sample.

SPIN released ``static_fits/<dataset>_fits.npy`` for LSP, LSPET, MPII, COCO and MPI-INF-3DHP: an
(N, 82) float array whose row i is [72 axis-angle pose | 10 betas] for row i of that dataset's SPIN
npz (mmhuman3d's ``spin_*`` HumanData conversions keep the row order). The GTA-Human paper's HMR+
is HMR supervised by these fits where a dataset has no SMPL of its own (issue 19: without them an
"HMR+" row is HMR without the adversary).

SPIN does not trust every fit. Before a fit supervises a sample, its trainer places the fitted body
with the camera translation that best explains the sample's 2D keypoints (weighted least squares,
focal length 5,000 px, on the 224 px crop), measures SMPLify's reprojection term per joint —
conf² x Geman-McClure(residual, sigma = 100 px), summed over x and y — averages it over its 49
joints (the 25 OpenPose joints carry weight 0, so only the 24 "GT" joints count) and keeps the fit
when that mean is below 100 (``smplify_threshold``). `fit_validity` applies the same rule once, on
the unaugmented crop; SPIN applies it per augmented sample, so a fit near the threshold may count
here and not there, or the reverse.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gtahuman.body.conventions import get_names
from gtahuman.data.formats.errors import DataFormatError, describe

FIT_COLUMNS = 82  # 72 axis-angle pose + 10 betas
SPIN_FOCAL_LENGTH = 5000.0
SPIN_CROP = 224
SPIN_SIGMA = 100.0  # Geman-McClure scale, pixels of the 224 px crop
SPIN_THRESHOLD = 100.0  # smplify_threshold
SPIN_JOINTS = 49  # the mean runs over SPIN's 49 joints; its 25 OpenPose joints weigh 0
# SPIN's 24 "GT" joints, as smpl_54 indices (the joints whose labels the validity rule reads)
GT_JOINTS = np.array([get_names("smpl_54").index(n) for n in get_names("smpl_24")])


def read_static_fits(path: str | os.PathLike, rows: int) -> np.ndarray:
    """(rows, 82) float32 fits from a SPIN ``*_fits.npy``; its length must equal the dataset's rows
    (the fits are joined by row number). Loading never unpickles (``allow_pickle=False``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: static fits not found (SPIN's static_fits/<dataset>_fits.npy)")
    try:
        fits = np.load(path, allow_pickle=False)
    except ValueError as err:  # object arrays, or not an .npy
        raise DataFormatError(path, None, "a float (N, 82) .npy of SPIN static fits", f"unreadable ({err})") from None
    if not isinstance(fits, np.ndarray) or fits.dtype.kind != "f" or fits.shape != (rows, FIT_COLUMNS):
        raise DataFormatError(path, None, f"a float ({rows}, {FIT_COLUMNS}) array: one fit per dataset row "
                              "(72 pose + 10 betas)", describe(fits))
    if not np.isfinite(fits).all():
        bad = int(np.flatnonzero(~np.isfinite(fits).all(axis=1))[0])
        raise DataFormatError(path, None, "finite fits", f"a non-finite value in row {bad}")
    return fits.astype(np.float32)


def crop_keypoints(keypoints2d: np.ndarray, bbox_xywh: np.ndarray, crop: int = SPIN_CROP) -> np.ndarray:
    """(N, K, 3) image-pixel keypoints -> pixels of the square ``crop`` around each box (side
    max(w, h), same centre), confidence kept."""
    box = np.asarray(bbox_xywh, np.float64).reshape(-1, 4)
    side = np.maximum(box[:, 2], box[:, 3])
    corner = box[:, :2] + box[:, 2:4] / 2 - side[:, None] / 2
    out = np.array(keypoints2d, np.float64, copy=True)
    out[..., :2] = (out[..., :2] - corner[:, None]) * (crop / side)[:, None, None]
    return out


def estimate_translation(joints: np.ndarray, keypoints2d: np.ndarray, focal: float = SPIN_FOCAL_LENGTH,
                         centre: float = SPIN_CROP / 2) -> np.ndarray:
    """(N, 3) camera translation t minimising the conf-weighted squared residuals of
    u = focal (X + tx) / (Z + tz) + centre (and v alike) after multiplying out the depth:
    focal tx - (u - centre) tz = (u - centre) Z - focal X. NaN where fewer than two joints are
    labelled (no unique solution)."""
    joints, keypoints2d = np.asarray(joints, np.float64), np.asarray(keypoints2d, np.float64)
    weight = keypoints2d[..., 2]  # sqrt(conf) per equation row, so conf in the normal equations
    rows, targets = [], []
    for axis in (0, 1):
        offset = keypoints2d[..., axis] - centre
        coefficients = np.zeros(joints.shape[:2] + (3,))
        coefficients[..., axis] = focal
        coefficients[..., 2] = -offset
        rows.append(coefficients)
        targets.append(offset * joints[..., 2] - focal * joints[..., axis])
    a, b = np.concatenate(rows, axis=1), np.concatenate(targets, axis=1)  # (N, 2K, 3), (N, 2K)
    w = np.concatenate([weight, weight], axis=1)
    normal = np.einsum("nki,nk,nkj->nij", a, w, a)
    rhs = np.einsum("nki,nk,nk->ni", a, w, b)
    enough = (weight > 0).sum(axis=1) >= 2
    out = np.full((len(joints), 3), np.nan)
    if enough.any():
        out[enough] = np.linalg.solve(normal[enough], rhs[enough][..., None])[..., 0]
    return out


def geman_mcclure(residual: np.ndarray, sigma: float = SPIN_SIGMA) -> np.ndarray:
    """sigma² r² / (sigma² + r²): quadratic for small residuals, bounded by sigma² for outliers."""
    squared = np.square(residual)
    return sigma**2 * squared / (sigma**2 + squared)


def fit_loss(joints54: np.ndarray, keypoints2d_crop: np.ndarray) -> np.ndarray:
    """(N,) SPIN's per-sample fit loss (module docstring) of posed smpl_54 joints (N, 54, 3), in
    metres and the camera frame of the crop, against labels (N, 54, 3) in 224 px crop pixels;
    inf where the translation is undetermined."""
    joints = np.asarray(joints54, np.float64)[:, GT_JOINTS]
    labels = np.asarray(keypoints2d_crop, np.float64)[:, GT_JOINTS]
    translation = estimate_translation(joints, labels)
    placed = joints + translation[:, None]
    projected = SPIN_FOCAL_LENGTH * placed[..., :2] / placed[..., 2:3] + SPIN_CROP / 2
    per_joint = labels[..., 2] ** 2 * geman_mcclure(projected - labels[..., :2]).sum(axis=-1)
    loss = per_joint.sum(axis=1) / SPIN_JOINTS
    return np.where(np.isfinite(loss), loss, np.inf)


def fit_validity(joints54: np.ndarray, keypoints2d_crop: np.ndarray,
                 threshold: float = SPIN_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """(loss (N,), valid (N,) bool): SPIN's rule, loss < threshold."""
    loss = fit_loss(joints54, keypoints2d_crop)
    return loss, loss < threshold


def join_fits(joints54: Callable[..., np.ndarray], fits: np.ndarray, pose72: np.ndarray, betas: np.ndarray,
              has_smpl: np.ndarray, keypoints2d: np.ndarray, bbox_xywh: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Rows without SMPL of their own take their fit where `fit_validity` accepts it; rows with SMPL
    keep theirs. ``joints54(betas, body_pose, global_orient, transl)`` poses a body (the source's
    body model). Returns (pose (N, 72), betas (N, 10), has_smpl, fits used, fits rejected)."""
    pose72, betas, has_smpl = np.array(pose72, np.float32), np.array(betas[:, :10], np.float32), has_smpl.copy()
    rows = np.flatnonzero(~has_smpl)
    if not rows.size:
        return pose72, betas, has_smpl, 0, 0
    fit_pose, fit_betas = fits[rows, :72], fits[rows, 72:]
    joints = joints54(fit_betas, fit_pose[:, 3:], fit_pose[:, :3], np.zeros((rows.size, 3), np.float32))
    _, valid = fit_validity(joints, crop_keypoints(keypoints2d[rows], bbox_xywh[rows]))
    pose72[rows], betas[rows], has_smpl[rows] = fit_pose, fit_betas, valid
    return pose72, betas, has_smpl, int(valid.sum()), int((~valid).sum())

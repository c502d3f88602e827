"""Regularisers of the 3D SMPLify fit: robust data penalty, pose and shape priors, smoothness.

* `gmof`: SMPLify's Geman-McClure penalty ``s^2 d^2 / (s^2 + d^2)`` of a squared distance:
  quadratic below the scale ``s``, bounded above it, so a few wrong keypoints cannot drag
  the whole body.
* `GaussianPosePrior`: squared Mahalanobis distance of the 69 body-pose axis-angle numbers
  to a mean, with a covariance *fitted from poses at hand* (`fit`: any (N, 69) array, e.g.
  GT poses of a dataset or an earlier annotation run; shrunk towards a scaled identity so a
  few hundred frames suffice). `GaussianPosePrior.standard()` is mean 0, identity.
* `bend_penalty`: SMPLify's joint-angle limit for the hinge joints, which only penalises
  knees and elbows bending the wrong way. SMPL axes (canonical frame: y up, facing +z, left
  on +x): knee flexion is positive about x, left elbow flexion negative about y and right
  elbow flexion positive about y (the signs `gtahuman.miniworld.motion` documents).
* `shape_prior`: betas ~ N(0, I).
* `acceleration_penalty`: mean squared second difference over time (rotation matrices or
  translations), the temporal smoothness that lowers jitter between frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gtahuman.atomic import atomic_output

NUM_BODY_POSE = 69
# (body-pose joint index = SMPL joint - 1, axis, sign of a wrong-way bend)
WRONG_WAY_BENDS: tuple[tuple[int, int, float], ...] = (
    (3, 0, -1.0),  # left knee: negative about x
    (4, 0, -1.0),  # right knee
    (17, 1, 1.0),  # left elbow: positive about y
    (18, 1, -1.0),  # right elbow: negative about y
)


def rotation_log(rotmats: Tensor) -> Tensor:
    """Axis-angle (..., 3) of rotation matrices (..., 3, 3), cheap enough for every energy
    evaluation: ``theta / (2 sin theta) * vee(R - R^T)``, with theta = atan2(sin, cos).

    Exact and smooth for angles below ~3 rad, where body joints live; towards pi the axis is
    ill-defined and the value only approximate (exact conversions: `body.rotations`)."""
    vee = torch.stack([rotmats[..., 2, 1] - rotmats[..., 1, 2], rotmats[..., 0, 2] - rotmats[..., 2, 0],
                       rotmats[..., 1, 0] - rotmats[..., 0, 1]], dim=-1)
    cos = 0.5 * (rotmats.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0)
    sin_sq = 0.25 * vee.square().sum(-1)
    sin = torch.sqrt(sin_sq + 1e-20)  # the epsilon keeps the gradient finite at the identity
    theta = torch.atan2(sin, cos)
    # theta / sin -> 1 + theta^2 / 6 near 0 (series), avoiding 0 / 0
    scale = torch.where(sin > 1e-4, theta / sin.clamp_min(1e-4), 1.0 + theta.square() / 6.0)
    return 0.5 * scale.unsqueeze(-1) * vee


def gmof(squared_distance: Tensor, scale: float) -> Tensor:
    """Geman-McClure of a squared distance, in the distance's squared units."""
    scale_sq = scale * scale
    return scale_sq * squared_distance / (scale_sq + squared_distance)


@dataclass
class GaussianPosePrior:
    """``(pose - mean)^T precision (pose - mean)`` per frame for (..., 69) axis-angle poses."""

    mean: Tensor  # (69,)
    precision: Tensor  # (69, 69)

    @classmethod
    def standard(cls) -> GaussianPosePrior:
        return cls(torch.zeros(NUM_BODY_POSE), torch.eye(NUM_BODY_POSE))

    @classmethod
    def fit(cls, poses: np.ndarray | Tensor, shrinkage: float = 0.1, floor: float = 1e-3) -> GaussianPosePrior:
        """Mean and covariance of (N, 69) axis-angle poses, the covariance shrunk towards
        ``trace/69 * I`` by ``shrinkage`` and floored at ``floor`` rad^2 per axis."""
        poses = torch.as_tensor(np.asarray(poses), dtype=torch.float64).reshape(-1, NUM_BODY_POSE)
        if len(poses) < 2:
            raise ValueError(f"GaussianPosePrior.fit needs at least 2 poses of {NUM_BODY_POSE} numbers; "
                             f"got {len(poses)}")
        if not 0.0 <= shrinkage <= 1.0:
            raise ValueError(f"shrinkage must be in [0, 1]; got {shrinkage}")
        mean = poses.mean(0)
        covariance = torch.cov(poses.T)
        target = covariance.trace() / NUM_BODY_POSE * torch.eye(NUM_BODY_POSE, dtype=torch.float64)
        covariance = (1 - shrinkage) * covariance + shrinkage * target + floor * torch.eye(NUM_BODY_POSE,
                                                                                         dtype=torch.float64)
        return cls(mean.float(), torch.linalg.inv(covariance).float())

    def __call__(self, body_pose: Tensor) -> Tensor:
        centred = body_pose.reshape(*body_pose.shape[:-1], NUM_BODY_POSE) - self.mean.to(body_pose)
        return torch.einsum("...i,ij,...j->...", centred, self.precision.to(body_pose), centred)

    def save(self, path: str | Path) -> None:
        with atomic_output(Path(path)) as tmp, open(tmp, "wb") as f:
            np.savez(f, mean=self.mean.numpy(), precision=self.precision.numpy())

    @classmethod
    def load(cls, path: str | Path) -> GaussianPosePrior:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: pose prior file not found (written by GaussianPosePrior.save)")
        with np.load(path) as data:
            for key, shape in (("mean", (NUM_BODY_POSE,)), ("precision", (NUM_BODY_POSE, NUM_BODY_POSE))):
                if key not in data.files:
                    raise KeyError(f"{path}: key '{key}' missing; a pose prior holds 'mean' {shape} and 'precision'")
                if data[key].shape != shape:
                    raise ValueError(f"{path}: key '{key}' has shape {data[key].shape}, expected {shape}")
            return cls(torch.as_tensor(data["mean"]).float(), torch.as_tensor(data["precision"]).float())


def bend_penalty(body_pose: Tensor) -> Tensor:
    """Sum over the hinge joints of the squared wrong-way bend (radians^2), per frame."""
    pose = body_pose.reshape(*body_pose.shape[:-1], NUM_BODY_POSE // 3, 3)
    total = torch.zeros(pose.shape[:-2], dtype=pose.dtype, device=pose.device)
    for joint, axis, sign in WRONG_WAY_BENDS:
        total = total + torch.relu(sign * pose[..., joint, axis]).square()
    return total


def shape_prior(betas: Tensor) -> Tensor:
    return betas.square().sum(-1)


def acceleration_penalty(values: Tensor, segment_ends: Tensor | None = None) -> Tensor:
    """Mean over time of the squared second difference of ``values`` (T, ...), summed over the
    other dimensions. ``segment_ends`` (T,) bool marks each sequence's last frame when several
    sequences are stacked, so no difference spans two sequences. 0 for fewer than 3 frames."""
    if values.shape[0] < 3:
        return values.new_zeros(())
    second = values[2:] - 2 * values[1:-1] + values[:-2]
    per_frame = second.reshape(second.shape[0], -1).square().sum(-1)
    if segment_ends is not None:
        crosses = segment_ends[:-2] | segment_ends[1:-1]  # the triple (t, t+1, t+2) spans a boundary
        per_frame = per_frame * (~crosses).to(per_frame)
    return per_frame.mean()

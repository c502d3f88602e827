"""The adversarial prior's real samples (variant 'hmr'): SMPL poses and shapes from an npz.

``train.write_prior_poses`` writes the file from the train sources named in
``model.prior_sources``; the discriminator sees random rows of it as "real" each step.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from gtahuman.body.rotations import axis_angle_to_matrix


def load_prior_poses(path: str | None) -> tuple[Tensor, Tensor]:
    """(body_pose (N, 69) axis-angle, betas (N, 10)) as float32 tensors, checked by key and shape."""
    if path is None:
        raise ValueError("variant 'hmr' needs prior_poses_path: an npz with body_pose (N, 69) "
                         "and betas (N, 10), the discriminator's real samples")
    with np.load(path, allow_pickle=False) as data:
        for key, width in (("body_pose", 69), ("betas", 10)):
            if key not in data.files:
                raise KeyError(f"{path}: key '{key}' missing; expected {key} (N, {width}); has {data.files}")
            if data[key].ndim != 2 or data[key].shape[1] != width:
                raise ValueError(f"{path}: key '{key}': expected (N, {width}), got {data[key].shape}")
        pose, betas = data["body_pose"], data["betas"]
    if pose.shape[0] != betas.shape[0] or pose.shape[0] == 0:
        raise ValueError(f"{path}: body_pose has {pose.shape[0]} rows, betas {betas.shape[0]}; "
                         "expected the same non-zero number")
    return torch.as_tensor(pose, dtype=torch.float32), torch.as_tensor(betas, dtype=torch.float32)


def sample_prior(prior: tuple[Tensor, Tensor], n: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """n random prior rows as (body rotations (n, 23, 3, 3), betas (n, 10)) on ``device``."""
    pose, betas = prior
    index = torch.randint(pose.shape[0], (n,))
    rotmat = axis_angle_to_matrix(pose[index].reshape(n, 23, 3))
    return rotmat.to(device), betas[index].to(device)

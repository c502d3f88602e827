"""HMR regressor head: iterative error feedback (IEF) from a pooled image feature to SMPL.

Same as SPIN's regressor and mmhuman3d's ``HMRHead``: starting from the mean parameters, each
of ``n_iter`` iterations feeds [feature, pose 6D (144), betas (10), cam (3)] through
fc1 -> dropout -> fc2 -> dropout (no nonlinearity in between, as in the reference) and adds
the outputs of three small decoders as residuals. The decoders start at Xavier-uniform with
gain 0.01, so an untrained head predicts almost exactly the mean parameters.

Layer and buffer names (fc1, fc2, decpose, decshape, deccam, init_pose, init_shape, init_cam)
follow the reference so its checkpoints' head weights load by name.

Pose is 24 joints x 6D in SPIN's layout (the first two columns of R read row-major), global
orientation first; :func:`gtahuman.body.rotations.rot6d_to_matrix` turns it into matrices.
The camera is weak perspective (s, tx, ty) in crop space.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gtahuman.body.rotations import rot6d_to_matrix

NUM_JOINTS = 24
POSE_DIM = NUM_JOINTS * 6  # 144
BETAS_DIM = 10
CAM_DIM = 3
MEAN_PARAM_SIZES = {"pose": POSE_DIM, "shape": BETAS_DIM, "cam": CAM_DIM}

# Used only when no mean-params file is given. Global orientation is 180 degrees about x
# (diag(1,-1,-1): SMPL is y-up, the camera y-down, so this is an upright person facing the
# camera, as in SPIN's data); body joints identity; cam scale 0.9 as in SPIN's file.
_ROT_X_180_6D = (1.0, 0.0, 0.0, -1.0, 0.0, 0.0)
_IDENTITY_6D = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)


class MeanParamsError(ValueError):
    """A mean-parameters file (or dict) lacks a key or has a wrongly sized entry."""


def _validate_mean_params(values: Mapping[str, Any], source: str) -> dict[str, np.ndarray]:
    params: dict[str, np.ndarray] = {}
    for key, size in MEAN_PARAM_SIZES.items():
        if key not in values:
            present = ", ".join(sorted(map(str, values))) or "(nothing)"
            raise MeanParamsError(
                f"{source}: key '{key}': missing; expected {size} values (file has: {present})"
            )
        array = np.asarray(values[key], dtype=np.float64).reshape(-1)
        if array.shape != (size,):
            raise MeanParamsError(
                f"{source}: key '{key}': expected {size} values, got shape {np.shape(values[key])}"
            )
        if not np.all(np.isfinite(array)):
            raise MeanParamsError(f"{source}: key '{key}': expected finite values, found NaN/inf")
        params[key] = array.astype(np.float32)
    return params


def load_mean_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read SPIN's ``smpl_mean_params.npz``: ``pose`` (144), ``shape`` (10), ``cam`` (3),
    returned as float32 vectors. Errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mean-params file not found: {path} (expected smpl_mean_params.npz)")
    with np.load(path, allow_pickle=False) as data:
        return _validate_mean_params({k: data[k] for k in data.files}, str(path))


def default_mean_params() -> dict[str, np.ndarray]:
    """Mean parameters used when none are given (see the module constants)."""
    pose = np.array(_ROT_X_180_6D + _IDENTITY_6D * (NUM_JOINTS - 1), dtype=np.float32)
    return {"pose": pose, "shape": np.zeros(BETAS_DIM, np.float32), "cam": np.array([0.9, 0, 0], np.float32)}


@dataclass
class HMROutput:
    """Head predictions; leading dims are (B,) for image input or (B, T) for video input."""

    pose_6d: torch.Tensor  # (..., 144)
    rotmat: torch.Tensor  # (..., 24, 3, 3), global orientation first
    betas: torch.Tensor  # (..., 10)
    cam: torch.Tensor  # (..., 3) weak perspective (s, tx, ty)
    iterations: list[HMROutput] | None = None  # one per IEF iteration, last == this one


class HMRHead(nn.Module):
    """Iterative-error-feedback SMPL regressor on top of a (B, F) or (B, T, F) feature."""

    def __init__(
        self,
        feature_dim: int,
        mean_params: Mapping[str, Any] | str | os.PathLike | None = None,
        n_iter: int = 3,
        hidden: int = 1024,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if n_iter < 1:
            raise ValueError(f"HMRHead: n_iter must be >= 1, got {n_iter}")
        self.feature_dim = feature_dim
        self.n_iter = n_iter
        if mean_params is None:
            params = default_mean_params()
        elif isinstance(mean_params, Mapping):
            params = _validate_mean_params(mean_params, "mean_params dict")
        else:
            params = load_mean_params(mean_params)

        self.fc1 = nn.Linear(feature_dim + POSE_DIM + BETAS_DIM + CAM_DIM, hidden)
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, hidden)
        self.drop2 = nn.Dropout(dropout)
        self.decpose = nn.Linear(hidden, POSE_DIM)
        self.decshape = nn.Linear(hidden, BETAS_DIM)
        self.deccam = nn.Linear(hidden, CAM_DIM)
        for decoder in (self.decpose, self.decshape, self.deccam):
            nn.init.xavier_uniform_(decoder.weight, gain=0.01)

        # Stored as (1, D) buffers so they travel with the checkpoint and the device.
        self.register_buffer("init_pose", torch.from_numpy(params["pose"])[None])
        self.register_buffer("init_shape", torch.from_numpy(params["shape"])[None])
        self.register_buffer("init_cam", torch.from_numpy(params["cam"])[None])

    def _start(self, override: torch.Tensor | None, buffer: torch.Tensor, n: int) -> torch.Tensor:
        if override is None:
            return buffer.expand(n, -1)
        return override.reshape(n, buffer.shape[1])

    def forward(
        self,
        features: torch.Tensor,
        init_pose: torch.Tensor | None = None,
        init_betas: torch.Tensor | None = None,
        init_cam: torch.Tensor | None = None,
        n_iter: int | None = None,
        return_iterations: bool = False,
    ) -> HMROutput:
        """``features`` (B, F) or (B, T, F); optional starting values with the same leading
        dims replace the mean parameters (e.g. to refine a previous estimate)."""
        if features.ndim not in (2, 3) or features.shape[-1] != self.feature_dim:
            raise ValueError(
                f"HMRHead: expected features (B, {self.feature_dim}) or (B, T, {self.feature_dim}), "
                f"got {tuple(features.shape)}"
            )
        lead = features.shape[:-1]
        flat = features.reshape(-1, self.feature_dim)
        n = flat.shape[0]
        pose = self._start(init_pose, self.init_pose, n)
        betas = self._start(init_betas, self.init_shape, n)
        cam = self._start(init_cam, self.init_cam, n)

        steps: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for _ in range(self.n_iter if n_iter is None else n_iter):
            x = torch.cat([flat, pose, betas, cam], dim=1)
            x = self.drop2(self.fc2(self.drop1(self.fc1(x))))
            pose = pose + self.decpose(x)
            betas = betas + self.decshape(x)
            cam = cam + self.deccam(x)
            steps.append((pose, betas, cam))

        def package(p: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> HMROutput:
            rotmat = rot6d_to_matrix(p.reshape(n, NUM_JOINTS, 6))
            return HMROutput(
                pose_6d=p.reshape(*lead, POSE_DIM),
                rotmat=rotmat.reshape(*lead, NUM_JOINTS, 3, 3),
                betas=b.reshape(*lead, BETAS_DIM),
                cam=c.reshape(*lead, CAM_DIM),
            )

        if not steps:  # n_iter=0: the starting values themselves
            return package(pose, betas, cam)
        final = package(*steps[-1])
        if return_iterations:
            final.iterations = [package(*s) for s in steps[:-1]] + [
                HMROutput(final.pose_6d, final.rotmat, final.betas, final.cam)
            ]
        return final

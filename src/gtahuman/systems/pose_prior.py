"""HMR's adversarial SMPL prior as one component (``model.variant='hmr'``).

What the prior brings to a run lives here, so that nothing else names the variant:

* `AdversarialPrior`: the pose discriminator (`SMPLPoseDiscriminator`, whose parameter names it
  keeps, so checkpoints and the mmhuman3d importer read it as before), the real poses it scores
  (SMPL poses and shapes from an npz the run writes from ``model.prior_sources``) and its two
  LSGAN losses;
* `uses_adversarial_prior`: what the prior asks of a run. A system with the prior optimises
  manually (discriminator step, then generator step: `OPTIMISER_STEPS_PER_BATCH` optimiser steps
  per batch), so it clips its own gradients (Lightning clips automatic optimisation only), and
  the run writes the prior's poses before training.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from gtahuman.body.rotations import axis_angle_to_matrix
from gtahuman.models import SMPLPoseDiscriminator, lsgan_discriminator_loss, lsgan_generator_loss

ADVERSARIAL_VARIANTS = frozenset({"hmr"})
OPTIMISER_STEPS_PER_BATCH = 2  # with the prior: the discriminator's step, then the generator's


def uses_adversarial_prior(variant: str) -> bool:
    """Whether a model variant trains with the adversarial prior (and so optimises manually)."""
    return variant in ADVERSARIAL_VARIANTS


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


class AdversarialPrior(SMPLPoseDiscriminator):
    """The discriminator with the real poses it is shown and its losses.

    The poses are read on first use (or by `load`, which the system calls when fitting starts, so
    a missing file fails before the first step) and are not part of the state dict: a checkpoint
    holds the discriminator's weights and the file's path, as a hyper-parameter of the system.
    """

    def __init__(self, prior_poses_path: str | None) -> None:
        super().__init__()
        self.prior_poses_path = prior_poses_path
        self._poses: tuple[Tensor, Tensor] | None = None

    def load(self) -> None:
        if self._poses is None:
            self._poses = load_prior_poses(self.prior_poses_path)

    def real_samples(self, n: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """n random prior samples as (body rotations (n, 23, 3, 3), betas (n, 10))."""
        self.load()
        assert self._poses is not None
        return sample_prior(self._poses, n, device)

    def discriminator_loss(self, fake_rotmat: Tensor, fake_betas: Tensor) -> Tensor:
        """LSGAN loss of the discriminator: as many prior poses (real; at least one) as there are
        predictions (fake, detached here: this step trains the discriminator only). A batch
        without valid predictions trains it on the real half alone."""
        real_rotmat, real_betas = self.real_samples(max(int(fake_rotmat.shape[0]), 1), fake_rotmat.device)
        real_scores = self(real_rotmat, real_betas)
        if fake_rotmat.shape[0] == 0:
            return ((real_scores - 1.0) ** 2).mean()
        return lsgan_discriminator_loss(real_scores, self(fake_rotmat.detach(), fake_betas.detach()))

    def generator_loss(self, fake_rotmat: Tensor, fake_betas: Tensor) -> Tensor:
        """LSGAN loss of the generator: the predictions should be scored as real. A batch without
        valid predictions gives a zero that is still part of the generator's graph."""
        if fake_rotmat.shape[0] == 0:
            return fake_betas.sum() * 0.0
        return lsgan_generator_loss(self(fake_rotmat, fake_betas))

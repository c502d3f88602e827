"""SMPLify from 2D keypoints and a camera: static fits for keypoint-only datasets, made as SPIN made its own.

SPIN supervised LSP, LSPET, MPII and COCO with SMPL fitted to their 2D keypoints (its "static
fits"; `gtahuman.data.static_fits` reads them and applies SPIN's validity rule). `SMPLify2D` fits
them for any set of 2D keypoints. Per image the unknowns are the global orientation, the body pose
(axis-angle), the betas and the camera translation, under SPIN's crop camera: the person's box as
a 224 px square, focal length 5,000 px, principal point at its centre. Energy per image:

    E = sum_k conf_k^2 sum_{x,y} gmof(projection - label, 100 px)     SPIN's data term (and its validity rule's)
      + pose_prior * GaussianPosePrior(body_pose) + bend * bend_penalty(body_pose) + shape * |betas|^2

the priors of `gtahuman.fitting.priors` (SPIN uses a mixture of Gaussians fitted to CMU motion
capture; a Gaussian fitted to poses at hand, or the standard one, stands in for it). Two stages,
as SPIN's SMPLify: (1) the camera translation and the global orientation from the torso joints
(hips and shoulders), the start's pose held; (2) every unknown. Adam, batched over images, on the
device of the tensors (CPU or GPU).

A person's facing is what a 2D fit most often gets wrong: a body seen from the back projects like
one seen from the front with its sides swapped, and descent does not turn a body round. Every
image is therefore fitted from two starts, the mean pose facing the camera and facing away, and
keeps the one of lower energy (`SMPLify2D.fit`'s ``facing`` says which won).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from gtahuman.body.conventions import get_names
from gtahuman.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle, rot6d_to_axis_angle
from gtahuman.body.smpl import BodyModel
from gtahuman.data.static_fits import GT_JOINTS, SPIN_CROP, SPIN_FOCAL_LENGTH, SPIN_SIGMA, estimate_translation
from gtahuman.fitting.body_points import BodyPoints
from gtahuman.fitting.keypoint_map import NUM_MODEL_POINTS
from gtahuman.fitting.priors import GaussianPosePrior, bend_penalty, gmof, shape_prior

# The torso joints of stage 1, as positions in SPIN's 24 GT joints (smpl_24 order).
TORSO = ("left_hip_extra", "right_hip_extra", "left_shoulder", "right_shoulder")


@dataclass
class Fit2DSettings:
    """Weights (energies in squared crop pixels) and optimiser settings."""

    # The defaults were chosen on the mini world's wild_val (96 rows, true SMPL known, prior fitted
    # to the studio's training poses), not on the sets the fits are reported for: PA-MPJPE 24.5 mm
    # against 82.6 for the mean pose; 100 iterations gave 37.6, a pose prior of 10 or 100 32.8 / 31.2.
    camera_iterations: int = 40  # stage 1: translation and global orientation
    iterations: int = 300  # stage 2: everything (SPIN: 100, from a regressor's estimate)
    learning_rate: float = 0.01  # Adam (SPIN's)
    sigma: float = SPIN_SIGMA  # Geman-McClure scale, crop pixels
    pose_prior: float = 30.0
    bend: float = 1000.0
    shape: float = 10.0
    two_facings: bool = True

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ValueError(f"Fit2DSettings.{name} must be >= 0; got {value}")


@dataclass
class ImageFits:
    """Fits of N images: SPIN's (N, 82) rows [72 pose | 10 betas], the camera translation, the data
    term per image (SPIN's loss before its mean over joints) and which start won (0 facing the camera)."""

    pose: np.ndarray  # (N, 72) axis-angle, global orientation first (crop camera frame)
    betas: np.ndarray  # (N, 10)
    transl: np.ndarray  # (N, 3) metres, crop camera
    data_energy: np.ndarray  # (N,) sum over joints of conf^2 x gmof, crop px^2
    facing: np.ndarray  # (N,) int8: 0 the start facing the camera won, 1 the one facing away

    @property
    def rows(self) -> np.ndarray:
        """SPIN's static-fits layout (N, 82) float32."""
        return np.concatenate([self.pose, self.betas], axis=1).astype(np.float32)


def mean_start(mean_params_file: str) -> tuple[np.ndarray, np.ndarray]:
    """(72,) axis-angle pose and (10,) betas of a body directory's ``smpl_mean_params.npz``
    (HMR's start: the mean pose, facing the camera upright in a y-down camera)."""
    with np.load(mean_params_file, allow_pickle=False) as data:
        if "pose" not in data.files or data["pose"].size != 144 or "shape" not in data.files:
            raise ValueError(f"{mean_params_file}: expected 'pose' (144, SPIN's 6D) and 'shape' (10)")
        pose6d = torch.as_tensor(np.asarray(data["pose"], np.float64).reshape(24, 6))
        return rot6d_to_axis_angle(pose6d).reshape(72).numpy(), np.asarray(data["shape"], np.float64).reshape(-1)[:10]


def _turned_away(orient: np.ndarray) -> np.ndarray:
    """The global orientation turned half round the camera's vertical axis."""
    half_turn = torch.tensor([0.0, np.pi, 0.0], dtype=torch.float64)
    turned = axis_angle_to_matrix(half_turn) @ axis_angle_to_matrix(torch.as_tensor(orient, dtype=torch.float64))
    return matrix_to_axis_angle(turned).numpy()


class SMPLify2D:
    """``fit(keypoints (N, 24, 3) in 224 px crop pixels, SPIN's GT joint order) -> ImageFits``."""

    def __init__(self, body_model: BodyModel, start_pose: np.ndarray, start_betas: np.ndarray,
                 settings: Fit2DSettings | None = None, pose_prior: GaussianPosePrior | None = None) -> None:
        self.settings = settings or Fit2DSettings()
        mix = np.zeros((len(GT_JOINTS), NUM_MODEL_POINTS))
        mix[np.arange(len(GT_JOINTS)), GT_JOINTS] = 1.0
        self.points = BodyPoints(body_model, mix)
        self.device = body_model.smpl.v_template.device  # the fit runs where the body model lives
        prior = pose_prior or GaussianPosePrior.standard()
        self.prior = GaussianPosePrior(prior.mean.to(self.device), prior.precision.to(self.device))
        self.start_pose = np.asarray(start_pose, np.float64).reshape(72)
        self.start_betas = np.asarray(start_betas, np.float64).reshape(-1)[: self.points.num_betas]
        names = get_names("smpl_24")
        self.torso = torch.as_tensor([names.index(n) for n in TORSO], device=self.device)

    def _project(self, pose: Tensor, betas: Tensor, transl: Tensor) -> Tensor:
        rotmats = axis_angle_to_matrix(pose.reshape(-1, 24, 3))
        joints = self.points(rotmats, betas, transl).targets  # (N, 24, 3)
        depth = joints[..., 2:3].clamp(min=0.1)
        return SPIN_FOCAL_LENGTH * joints[..., :2] / depth + SPIN_CROP / 2

    def _data(self, pose: Tensor, betas: Tensor, transl: Tensor, keypoints: Tensor, joints: Tensor | None = None) -> Tensor:
        residual = self._project(pose, betas, transl) - keypoints[..., :2]
        weight = keypoints[..., 2].square()
        if joints is not None:
            weight = weight[:, joints]
            residual = residual[:, joints]
        return (weight * gmof(residual.square(), self.settings.sigma).sum(-1)).sum(-1)

    def _energy(self, pose: Tensor, betas: Tensor, transl: Tensor, keypoints: Tensor) -> tuple[Tensor, Tensor]:
        data = self._data(pose, betas, transl, keypoints)
        body = pose[:, 3:]
        s = self.settings
        total = data + s.pose_prior * self.prior(body) + s.bend * bend_penalty(body) + s.shape * shape_prior(betas)
        return total, data

    def _start_translation(self, pose: np.ndarray, betas: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            rotmats = axis_angle_to_matrix(torch.as_tensor(pose, dtype=torch.float32, device=self.device).reshape(-1, 24, 3))
            betas_t = torch.as_tensor(betas, dtype=torch.float32, device=self.device)
            joints = self.points(rotmats, betas_t).targets.double().cpu().numpy()
        transl = estimate_translation(joints, keypoints)
        fallback = np.array([0.0, 0.0, 2 * SPIN_FOCAL_LENGTH / SPIN_CROP])  # a body of ~1 m across the crop
        return np.where(np.isfinite(transl), transl, fallback)

    def _fit_from(self, orient: np.ndarray, keypoints: np.ndarray) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        count = len(keypoints)
        start = np.tile(self.start_pose, (count, 1))
        start[:, :3] = orient
        betas0 = np.tile(self.start_betas, (count, 1))
        transl0 = self._start_translation(start, betas0, keypoints)
        target = torch.as_tensor(keypoints, dtype=torch.float32, device=self.device)
        pose = torch.tensor(start, dtype=torch.float32, device=self.device, requires_grad=True)
        betas = torch.tensor(betas0, dtype=torch.float32, device=self.device, requires_grad=True)
        transl = torch.tensor(transl0, dtype=torch.float32, device=self.device, requires_grad=True)
        s = self.settings
        # stage 1: where the camera is and which way the torso faces, the pose held
        orient_t = pose[:, :3].detach().clone().requires_grad_(True)
        optimiser = torch.optim.Adam([orient_t, transl], lr=s.learning_rate)
        for _ in range(s.camera_iterations):
            optimiser.zero_grad()
            full = torch.cat([orient_t, pose[:, 3:].detach()], dim=1)
            self._data(full, betas.detach(), transl, target, self.torso).sum().backward()
            optimiser.step()
        with torch.no_grad():
            pose[:, :3] = orient_t
        # stage 2: everything
        optimiser = torch.optim.Adam([pose, betas, transl], lr=s.learning_rate)
        for _ in range(s.iterations):
            optimiser.zero_grad()
            self._energy(pose, betas, transl, target)[0].sum().backward()
            optimiser.step()
        with torch.no_grad():
            total, data = self._energy(pose, betas, transl, target)
        return pose.detach(), betas.detach(), transl.detach(), total, data

    def fit(self, keypoints: np.ndarray) -> ImageFits:
        """Fit N images at once; ``keypoints`` (N, 24, 3) = (u, v, conf) in 224 px crop pixels."""
        keypoints = np.asarray(keypoints, np.float64)
        if keypoints.ndim != 3 or keypoints.shape[1:] != (len(GT_JOINTS), 3):
            raise ValueError(f"SMPLify2D.fit: keypoints must be (N, {len(GT_JOINTS)}, 3) in crop pixels, "
                             f"got {keypoints.shape}")
        starts = [self.start_pose[:3]] + ([_turned_away(self.start_pose[:3])] if self.settings.two_facings else [])
        results = [self._fit_from(orient, keypoints) for orient in starts]
        totals = torch.stack([r[3] for r in results])  # (starts, N)
        best = totals.argmin(dim=0)
        columns = torch.arange(len(keypoints), device=self.device)

        def pick(k: int) -> np.ndarray:
            return torch.stack([r[k] for r in results])[best, columns].double().cpu().numpy()

        return ImageFits(pose=pick(0), betas=pick(1), transl=pick(2), data_energy=pick(4),
                         facing=best.cpu().numpy().astype(np.int8))

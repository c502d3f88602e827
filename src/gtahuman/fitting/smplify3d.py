"""SMPLify with a 3D keypoint loss over whole sequences (the GTA-Human SMPL annotator).

Unknowns of a sequence of T frames: per-frame rotations of the 24 joints (SPIN-layout 6D),
**one betas for the sequence**, per-frame translation. Energy::

    E = mean_t sum_k w_tk gmof(|x_tk - m_k(pose_t, betas) - transl_t|^2, sigma)     data
      + pose_prior * mean_t GaussianPosePrior(body_pose_t)  + bend * mean_t bend_penalty
      + shape * mean_sequences |betas|^2
      + smooth_rotation * accel(R_t)  + smooth_translation * accel(transl_t)      temporal

x are the 3D keypoints (metres), m the body-model points of a `KeypointMap` (computed by
`BodyPoints` without posing every vertex), w the map's weights times the keypoints'
confidence, R_t the local joint rotations (SMPL's pose). The optimiser moves *global* joint
rotations (local ones follow as G_parent^T G): every bone's direction then depends on one
unknown, which conditions the problem well and needs no sequential tree walk. The fit starts
from `init` (closed-form shape, per-joint Kabsch, computed on keypoints lightly smoothed in
time), so a few dozen L-BFGS iterations are enough where the original SMPLify runs hundreds
of Adam steps from the mean pose. The result holds axis-angle parameters (the boundary
format) and the per-frame fit error: the weighted mean keypoint distance in metres. Noisy
keypoints need more iterations (~100) for the smoothness terms to take full effect.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d
from torch import Tensor

from gtahuman.body.rotations import (
    matrix_to_axis_angle,
    matrix_to_rot6d,
    rot6d_to_matrix,
)
from gtahuman.body.smpl import BodyModel
from gtahuman.fitting.body_points import BodyPoints
from gtahuman.fitting.init import attachments, estimate_betas, initial_pose
from gtahuman.fitting.keypoint_map import NUM_KINEMATIC, KeypointMap
from gtahuman.fitting.priors import (
    GaussianPosePrior,
    acceleration_penalty,
    bend_penalty,
    gmof,
    rotation_log,
    shape_prior,
)


@dataclass
class FitSettings:
    """Weights and optimiser settings (energies in metres^2 per frame; see module docstring)."""

    iterations: int = 30  # L-BFGS iterations (each ~1.2 energy evaluations)
    optimizer: str = "lbfgs"  # lbfgs | adam
    learning_rate: float = 1.0  # L-BFGS step scale; for Adam ~0.01
    robust_scale: float = 0.1  # GMoF sigma, metres
    pose_prior: float = 1e-6
    bend: float = 1e-3
    shape: float = 1e-5
    smooth_rotation: float = 1e-2
    smooth_translation: float = 1.0
    init_shape_prior: float = 1e-4  # ridge of the closed-form betas (m^2 per unit beta^2)
    init_smoothing: float = 1.0  # Gaussian sigma (frames) of the keypoints the start is computed from

    def __post_init__(self) -> None:
        if self.optimizer not in ("lbfgs", "adam"):
            raise ValueError(f"FitSettings.optimizer must be 'lbfgs' or 'adam'; got {self.optimizer!r}")
        if self.iterations < 0:
            raise ValueError(f"FitSettings.iterations must be >= 0; got {self.iterations}")
        for name, value in asdict(self).items():
            if isinstance(value, float) and value < 0:
                raise ValueError(f"FitSettings.{name} must be >= 0; got {value}")


@dataclass
class SequenceFit:
    """The annotation of one sequence (axis-angle, metres, camera frame of the keypoints)."""

    global_orient: np.ndarray  # (T, 3)
    body_pose: np.ndarray  # (T, 69)
    betas: np.ndarray  # (10,) one shape for the whole sequence
    transl: np.ndarray  # (T, 3)
    fit_error: np.ndarray  # (T,) weighted mean keypoint distance, metres (NaN: no keypoint)
    init_error: np.ndarray  # (T,) the same before optimisation
    seconds: float
    energy: list[float] = field(default_factory=list)  # after init, then after the fit

    @property
    def num_frames(self) -> int:
        return len(self.transl)


def _as_targets(keypoints: np.ndarray | Tensor, confidence: np.ndarray | Tensor | None,
                keypoint_map: KeypointMap) -> tuple[Tensor, Tensor]:
    """Source keypoints (T, J, 3 or 4) -> map targets (T, K, 3) and confidence (T, K).

    A 4th channel (GTA's homogeneous 1, or a confidence) multiplies ``confidence``; non-finite
    keypoints get confidence 0."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim != 3 or keypoints.shape[-1] not in (3, 4):
        raise ValueError(f"keypoints must be (T, J, 3) or (T, J, 4); got {keypoints.shape}")
    selected = keypoint_map.select(keypoints)
    conf = np.ones(selected.shape[:2]) if confidence is None else keypoint_map.select(
        np.asarray(confidence, dtype=np.float64)[..., None])[..., 0]
    if selected.shape[-1] == 4:
        conf = conf * selected[..., 3]
    xyz = selected[..., :3]
    finite = np.isfinite(xyz).all(-1) & np.isfinite(conf)
    conf = np.where(finite, np.clip(conf, 0.0, None), 0.0)
    return torch.as_tensor(np.where(finite[..., None], xyz, 0.0)), torch.as_tensor(conf)


def _smoothed(targets: Tensor, confidence: Tensor, sigma: float) -> Tensor:
    """Targets low-passed over time (confidence-weighted Gaussian, sigma in frames): a start
    without the keypoints' frame-to-frame jitter, which the optimiser would otherwise spend
    its iterations removing. The data term still sees the raw keypoints."""
    if sigma <= 0 or targets.shape[0] < 2:
        return targets
    weights = confidence.numpy()[..., None]
    num = gaussian_filter1d(targets.numpy() * weights, sigma, axis=0, mode="nearest")
    den = gaussian_filter1d(weights, sigma, axis=0, mode="nearest")
    return torch.as_tensor(np.where(den > 1e-9, num / np.maximum(den, 1e-9), targets.numpy()))


class SMPLify3D:
    """Fits SMPL sequences of one body model (one gender) to 3D keypoints of one convention."""

    def __init__(self, body_model: BodyModel, keypoint_map: KeypointMap, settings: FitSettings | None = None,
                 pose_prior: GaussianPosePrior | None = None) -> None:
        self.body_model = body_model
        self.keypoint_map = keypoint_map
        self.settings = settings or FitSettings()
        self.pose_prior = pose_prior or GaussianPosePrior.standard()
        self.points = BodyPoints(body_model, keypoint_map.model_mix)
        self.attached = attachments(self.points)
        self.kinematic = keypoint_map.kinematic_targets()
        self._map_weights = torch.as_tensor(keypoint_map.weights, dtype=torch.float32)

    def initialise(self, targets: Tensor, confidence: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Closed-form start: local rotations (T, 24, 3, 3), betas (1, B), transl (T, 3)."""
        frames = targets.shape[0]
        observed = torch.zeros(frames, NUM_KINEMATIC, 3, dtype=torch.float64)
        valid = torch.zeros(frames, NUM_KINEMATIC, dtype=torch.bool)
        for joint, row in self.kinematic.items():
            observed[:, joint], valid[:, joint] = targets[:, row], confidence[:, row] > 0
        betas = estimate_betas(observed, valid, self.points, prior=self.settings.init_shape_prior)
        rotmats, transl = initial_pose(targets, confidence, self.keypoint_map, self.points, betas, self.attached)
        return rotmats, betas, transl

    def energy_terms(self, rotations: Tensor, betas: Tensor, transl: Tensor, targets: Tensor,
                     weights: Tensor, segment: Tensor | None = None,
                     segment_ends: Tensor | None = None) -> dict[str, Tensor]:
        """Each term of E (already weighted) for *global* joint rotations (T, 24, 3, 3).
        Several stacked sequences: ``betas`` (S, B),
        ``segment`` (T,) each frame's sequence, ``segment_ends`` (T,) each sequence's last frame;
        frame terms are means over all frames, the shape term a mean over sequences, so a
        stack weighs its terms as one sequence does."""
        s = self.settings
        frame_betas = betas if segment is None else betas[segment]
        posed = self.points(rotations, frame_betas, transl, global_rotations=True)
        squared = (posed.targets - targets).square().sum(-1)
        terms = {"data": (weights * gmof(squared, s.robust_scale)).sum(-1).mean()}
        if s.pose_prior > 0 or s.bend > 0:
            body_pose = rotation_log(posed.local[:, 1:]).reshape(-1, 69)
            terms["pose_prior"] = s.pose_prior * self.pose_prior(body_pose).mean()
            terms["bend"] = s.bend * bend_penalty(body_pose).mean()
        terms["shape"] = s.shape * shape_prior(betas).mean()
        terms["smooth_rotation"] = s.smooth_rotation * acceleration_penalty(posed.local, segment_ends)
        terms["smooth_translation"] = s.smooth_translation * acceleration_penalty(transl, segment_ends)
        return terms

    def fit(self, keypoints: np.ndarray | Tensor, confidence: np.ndarray | Tensor | None = None) -> SequenceFit:
        """Fit one sequence: ``keypoints`` (T, J, 3|4) of the map's convention, metres;
        ``confidence`` (T, J) optional per-keypoint weights (0 = missing)."""
        return self.fit_many([keypoints], None if confidence is None else [confidence])[0]

    def fit_many(self, keypoints: list[np.ndarray | Tensor],
                 confidences: list[np.ndarray | Tensor | None] | None = None) -> list[SequenceFit]:
        """Fit several sequences in one optimisation (independent unknowns, one betas each).

        Stacking amortises the per-operation overhead that dominates small CPU problems; the
        result equals fitting them one by one up to the shared L-BFGS line search. Each fit's
        ``seconds`` is its frames' share of the whole."""
        start = time.perf_counter()
        confidences = confidences or [None] * len(keypoints)
        if len(confidences) != len(keypoints):
            raise ValueError(f"fit_many: {len(keypoints)} keypoint sequences but {len(confidences)} confidences")
        prepared = [_as_targets(k, c, self.keypoint_map) for k, c in zip(keypoints, confidences)]
        for index, (targets, _) in enumerate(prepared):
            if targets.shape[0] == 0:
                raise ValueError(f"SMPLify3D: sequence {index} has no frames")
        starts = [self.initialise(_smoothed(t, c, self.settings.init_smoothing), c) for t, c in prepared]
        lengths = [t.shape[0] for t, _ in prepared]
        segment = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
        segment_ends = torch.zeros(len(segment), dtype=torch.bool)
        segment_ends[torch.cumsum(torch.tensor(lengths), 0) - 1] = True
        targets = torch.cat([t for t, _ in prepared]).float()
        weights = torch.cat([c for _, c in prepared]).float() * self._map_weights
        betas0 = torch.cat([b for _, b, _ in starts]).float()
        transl0 = torch.cat([t for _, _, t in starts]).float()
        # The fit moves global rotations: each bone's direction then hangs on one unknown.
        global0 = self.points.forward_kinematics(torch.cat([r for r, _, _ in starts]).float(),
                                                 self.points.rest_joints(betas0[segment]))[0]
        rot6d = matrix_to_rot6d(global0).clone().requires_grad_(True)
        betas = betas0.clone().requires_grad_(True)
        transl = transl0.clone().requires_grad_(True)

        def energy() -> Tensor:
            terms = self.energy_terms(rot6d_to_matrix(rot6d), betas, transl, targets, weights, segment, segment_ends)
            return sum(terms.values())

        with torch.no_grad():
            energies = [float(energy())]
            init_error = self._frame_errors(global0, betas0[segment], transl0, targets, weights)
        if self.settings.iterations > 0:
            self._optimise([rot6d, betas, transl], energy)
        with torch.no_grad():
            rotations = rot6d_to_matrix(rot6d)
            energies.append(float(energy()))
            errors = self._frame_errors(rotations, betas[segment], transl, targets, weights)
            axis_angle = matrix_to_axis_angle(self.points.local_from_global(rotations)).numpy().astype(np.float32)
            transl_np, betas_np = transl.numpy().astype(np.float32), betas.numpy().astype(np.float32)
        seconds = time.perf_counter() - start
        fits, first = [], 0
        for index, length in enumerate(lengths):
            frames = slice(first, first + length)
            fits.append(SequenceFit(
                global_orient=axis_angle[frames, 0], body_pose=axis_angle[frames, 1:].reshape(length, 69),
                betas=betas_np[index], transl=transl_np[frames], fit_error=errors[frames],
                init_error=init_error[frames], seconds=seconds * length / len(segment), energy=energies))
            first += length
        return fits

    def _optimise(self, params: list[Tensor], energy) -> None:
        s = self.settings
        if s.optimizer == "lbfgs":
            optimizer = torch.optim.LBFGS(params, lr=s.learning_rate, max_iter=s.iterations,
                                          history_size=20, line_search_fn="strong_wolfe",
                                          tolerance_grad=1e-10, tolerance_change=1e-14)

            def closure() -> Tensor:
                optimizer.zero_grad()
                value = energy()
                value.backward()
                return value

            optimizer.step(closure)
            return
        optimizer = torch.optim.Adam(params, lr=s.learning_rate)
        for _ in range(s.iterations):
            optimizer.zero_grad()
            energy().backward()
            optimizer.step()

    def _frame_errors(self, rotations: Tensor, betas: Tensor, transl: Tensor, targets: Tensor,
                      weights: Tensor) -> np.ndarray:
        """(T,) weighted mean keypoint distance for global rotations; NaN without keypoints."""
        distance = (self.points(rotations, betas, transl, global_rotations=True).targets - targets).norm(dim=-1)
        total = weights.sum(-1)
        mean = (weights * distance).sum(-1) / total.clamp_min(1e-12)
        return torch.where(total > 0, mean, torch.full_like(mean, float("nan"))).numpy().astype(np.float64)

"""The best constant predictor: one pose and one betas, from the training data, for every image.

Why. A trained model must at least beat what it could score without looking at the image. The
SMPL mean parameters (the head's ``init_pose``/``init_shape``, the old "mean pose" baseline)
are a weak such floor: an upright pose facing the camera, whatever the data look like. The
honest floor is the constant that is best *for this training data*: under the squared chordal
(Frobenius) distance, the best single rotation per joint is the projection onto SO(3) of the
mean rotation matrix, and the best single betas is the mean betas. The project's bar is "at
most 0.8x this constant on MPJPE and PA-MPJPE".

Which samples and how often. The training data are what the train sampler draws, not the
sources' raw contents: a mixture 1:1 of a small real set and a large synthetic one draws the
real samples far more often than their share of rows. So the constant is averaged over the
draws of the sampler's epoch-0 plan (repeats count each time; other epochs draw the same shares
in another order). Only draws whose sample has SMPL labels (``has_smpl``) count. Labels are the
stored ones (the index's ``smpl_global_orient`` in the camera frame, ``smpl_body_pose``,
``smpl_betas``), not augmented ones: test images are not flipped or rotated either. In DA mode
(``source`` and ``target`` samplers) the draws of both count: both are supervised.

Files. A run writes the constant to ``constant_prediction.npz`` (``pose`` (24, 3) axis-angle,
``betas`` (10,), ``draws`` and per-source draw counts) and to metrics.json under
``constant_prediction``; `load_run_constant` reads either back.
"""
from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gtahuman.atomic import atomic_output
from gtahuman.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from gtahuman.data.index import SampleIndex
from gtahuman.metrics import kabsch_rotation
from gtahuman.rundir import METRICS_FILE

log = logging.getLogger(__name__)

CONSTANT_FILE = "constant_prediction.npz"
NUM_JOINTS = 24  # root (global orientation) + 23 body joints
_CHUNK = 65536  # rows converted to rotation matrices at once (24 x 9 float64 each: ~110 MB)

Columns = Mapping[str, Any]  # a SampleIndex, or any mapping of column name -> (N, ...) array


def project_to_so3(matrices: np.ndarray) -> np.ndarray:
    """Nearest rotation in Frobenius norm to each (..., 3, 3) matrix M: the proper rotation that
    best maps the basis onto M's columns, i.e. `metrics.kabsch_rotation` of the cross-covariance
    Mᵀ (U Z Vᵀ for M = U S Vᵀ; Z flips the smallest singular axis when M is nearer a reflection)."""
    matrices = np.asarray(matrices, dtype=np.float64)
    flat = torch.from_numpy(matrices.reshape(-1, 3, 3))
    return kabsch_rotation(flat.mT)[0].numpy().reshape(matrices.shape)


def weighted_rotation_mean(rotations: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Chordal L2 mean of (N, ..., 3, 3) rotations with (N,) non-negative weights -> (..., 3, 3).

    The minimiser of sum_i w_i ||R_i - R||_F^2 over rotations R, i.e. the SO(3) projection of the
    weighted mean matrix (the same mean as scipy's ``Rotation.mean(weights=...)``). Two rotations
    about one axis by a and b give the rotation about that axis by atan2(sum w sin, sum w cos),
    not the weighted average angle."""
    rotations = np.asarray(rotations, dtype=np.float64)
    weights = np.ones(len(rotations)) if weights is None else np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(rotations),) or np.any(weights < 0) or not weights.sum() > 0:
        raise ValueError(f"weights: expected {len(rotations)} non-negative values with a positive sum, "
                         f"got shape {weights.shape}")
    return project_to_so3(np.tensordot(weights / weights.sum(), rotations, axes=1))


@dataclass(frozen=True)
class ConstantPrediction:
    """One pose (24, 3) axis-angle (joint 0 = global orientation) and betas (10,) for every image,
    with how many drawn samples it averages (``draws``, and per train source)."""

    pose: np.ndarray
    betas: np.ndarray
    draws: int
    draws_by_source: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if np.shape(self.pose) != (NUM_JOINTS, 3) or np.ndim(self.betas) != 1:
            raise ValueError(f"ConstantPrediction: pose must be ({NUM_JOINTS}, 3) axis-angle and betas 1-D, "
                             f"got {np.shape(self.pose)} and {np.shape(self.betas)}")

    def rotmat(self) -> torch.Tensor:
        """(24, 3, 3) float32 rotation matrices, as the model predicts them."""
        return axis_angle_to_matrix(torch.as_tensor(np.asarray(self.pose), dtype=torch.float64)).float()

    def betas_tensor(self) -> torch.Tensor:
        return torch.as_tensor(np.asarray(self.betas), dtype=torch.float32)

    def as_estimate(self) -> dict[str, list]:
        """``{'pose': (24, 3), 'betas': (10,)}`` as plain lists: `HMRSystem`'s ``initial_estimate``
        (a hyper-parameter, so it travels in the checkpoint as numbers)."""
        return {"pose": np.asarray(self.pose, np.float64).tolist(), "betas": np.asarray(self.betas, np.float64).tolist()}

    def to_json(self) -> dict[str, Any]:
        return {"pose_axis_angle": np.asarray(self.pose).tolist(), "betas": np.asarray(self.betas).tolist(),
                "draws": int(self.draws), "draws_by_source": dict(self.draws_by_source)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "constant_prediction") -> ConstantPrediction:
        missing = [k for k in ("pose_axis_angle", "betas", "draws") if k not in data]
        if missing:
            raise KeyError(f"{where}: lacks {missing}; expected pose_axis_angle (24x3), betas, draws")
        return cls(np.asarray(data["pose_axis_angle"], np.float64), np.asarray(data["betas"], np.float64),
                   int(data["draws"]), dict(data.get("draws_by_source", {})))

    def save(self, path: str | Path) -> None:
        with atomic_output(Path(path)) as tmp, open(tmp, "wb") as file:
            np.savez(file, pose=np.asarray(self.pose), betas=np.asarray(self.betas), draws=self.draws,
                     draws_by_source=json.dumps(self.draws_by_source))

    @classmethod
    def load(cls, path: str | Path) -> ConstantPrediction:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("pose", "betas", "draws") if k not in data.files]
            if missing:
                raise KeyError(f"{path}: lacks {missing}; expected pose (24, 3), betas (10,), draws")
            by_source = json.loads(str(data["draws_by_source"])) if "draws_by_source" in data.files else {}
            return cls(data["pose"].astype(np.float64), data["betas"].astype(np.float64), int(data["draws"]),
                       by_source)


# ---------------------------------------------------------------------------------- from a plan
def constant_from_plans(groups: Sequence[tuple[Sequence[tuple[str, Columns]], np.ndarray]]) -> ConstantPrediction:
    """The constant of the draws of one or more plans.

    Each group is (sources, plan): ``sources`` = [(name, columns)] in concatenation order (columns:
    a SampleIndex or a mapping with ``has_smpl``, ``smpl_global_orient`` (N, 3), ``smpl_body_pose``
    (N, 69), ``smpl_betas`` (N, 10)); ``plan`` = global indices into that concatenation, repeats
    allowed (each draw is one unit of weight). Raises ValueError when no draw has SMPL labels."""
    rotation_sum, betas_sum = np.zeros((NUM_JOINTS, 3, 3)), None
    by_source: dict[str, int] = {}
    for sources, plan in groups:
        sizes = [len(columns["has_smpl"]) for _, columns in sources]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        plan = np.asarray(plan, dtype=np.int64)
        if plan.size and (plan.min() < 0 or plan.max() >= offsets[-1]):
            raise ValueError(f"plan: indices must lie in 0..{offsets[-1] - 1} (sources "
                             f"{[name for name, _ in sources]} hold {sizes} samples), got {plan.min()}..{plan.max()}")
        counts = np.bincount(plan, minlength=int(offsets[-1]))
        for (name, columns), start, stop in zip(sources, offsets[:-1], offsets[1:]):
            drawn = counts[start:stop]
            rows = np.flatnonzero((drawn > 0) & np.asarray(columns["has_smpl"], bool))
            by_source[name] = by_source.get(name, 0) + int(drawn[rows].sum())
            for begin in range(0, rows.size, _CHUNK):
                chunk = rows[begin:begin + _CHUNK]
                weight = drawn[chunk].astype(np.float64)
                pose = np.concatenate([np.asarray(columns["smpl_global_orient"])[chunk],
                                       np.asarray(columns["smpl_body_pose"])[chunk]], axis=1)
                rotations = axis_angle_to_matrix(pose.astype(np.float64).reshape(-1, NUM_JOINTS, 3))
                rotation_sum += np.tensordot(weight, rotations, axes=1)
                betas = weight @ np.asarray(columns["smpl_betas"])[chunk].astype(np.float64)
                betas_sum = betas if betas_sum is None else betas_sum + betas
    draws = sum(by_source.values())
    if draws == 0 or betas_sum is None:
        raise ValueError(f"no drawn training sample has SMPL labels (has_smpl) in sources {sorted(by_source)}; "
                         "the constant predictor needs some")
    pose = matrix_to_axis_angle(project_to_so3(rotation_sum / draws))
    return ConstantPrediction(pose, betas_sum / draws, draws, by_source)


def constant_from_plan(sources: Sequence[tuple[str, Columns]], plan: np.ndarray) -> ConstantPrediction:
    """`constant_from_plans` of one (sources, plan) group."""
    return constant_from_plans([(sources, plan)])


def epoch_plan(sampler: Any, epoch: int = 0) -> np.ndarray:
    """A sampler's global plan of ``epoch``, leaving the sampler itself untouched (a shallow
    copy is moved to that epoch: a sampler mid-training keeps its epoch and position)."""
    other = copy.copy(sampler)
    other.set_epoch(epoch)
    return np.asarray(other.global_plan())


def constant_from_datamodule(dm: Any) -> ConstantPrediction | None:
    """The constant of a `MixedDataModule`'s train samplers' epoch-0 draws; None (and a warning)
    when none of the drawn samples has SMPL labels (a keypoints-only training mix).

    The samplers are new ones (``dm.plan_samplers()``), not the ones training iterates: building
    those before the Trainer attaches would fix a single-process layout, and a DDP resume would
    restore its checkpointed position into samplers that are then replaced.

    A plan's index g is a position in the sampler's group concatenation: the source is
    ``sampler.sources[g]`` (sources end to end in ``sampler.source_names`` order, as the train
    ConcatIndexDataset puts them) and the row is g minus that source's first position."""
    specs = {spec.name: spec for spec in dm.train_sources}
    groups = []
    for key, sampler in dm.plan_samplers().items():
        sources = []
        for k, name in enumerate(sampler.source_names):
            index = SampleIndex.load(specs[name].index_dir, mmap=True)
            if len(index) != int(sampler.source_sizes[k]):
                raise ValueError(f"train sampler '{key}': source '{name}' has {sampler.source_sizes[k]} samples, "
                                 f"its index {specs[name].index_dir} holds {len(index)}")
            sources.append((name, index))
        groups.append((sources, epoch_plan(sampler, 0)))
    try:
        return constant_from_plans(groups)
    except ValueError as err:
        if "no drawn training sample" not in str(err):
            raise
        log.warning("no constant-predictor baseline: %s", err)
        return None


def load_run_constant(run_dir: str | Path) -> ConstantPrediction | None:
    """The constant a run saved: ``constant_prediction.npz``, else metrics.json's
    ``constant_prediction``; None for runs from before the constant baseline."""
    run_dir = Path(run_dir)
    if (run_dir / CONSTANT_FILE).is_file():
        return ConstantPrediction.load(run_dir / CONSTANT_FILE)
    metrics_path = run_dir / METRICS_FILE
    if metrics_path.is_file():
        saved = json.loads(metrics_path.read_text()).get("constant_prediction")
        if saved:
            return ConstantPrediction.from_json(saved, f"{metrics_path}: key 'constant_prediction'")
    return None


__all__ = ["CONSTANT_FILE", "ConstantPrediction", "constant_from_datamodule", "constant_from_plan",
           "constant_from_plans", "epoch_plan", "load_run_constant", "project_to_so3", "weighted_rotation_mean"]

"""Named evaluation protocols: which joints, which root, which gender, which units.

A protocol works on 17 joints in the H36M order of `J_regressor_h36m.npy` (metres). Callers
produce them with the body model (`BodyOutput.joints_h36m`: neutral model for predictions,
the GT-gender model where the protocol says `gt_gender="gendered"`), or take stored GT
keypoints converted *by joint name* to that order (H36M, MPI-INF-3DHP). This module does not
import the body model: it takes joint arrays, so it is testable with hand-made numbers.

Typical use inside a LightningModule::

    protocol = get_protocol("3dpw")
    errors = evaluate_joints(protocol, pred_j17, gt_j17, pred_verts, gt_verts)   # (B,) each, mm
    per_sample.update(sample_ids, **errors)        # metric_modules.PerSampleErrors(protocol.metrics)
    summary = summarize(per_sample.compute())      # at epoch end; DDP-gathered, deduplicated

See docs/EVALUATION.md for each protocol and how it differs from SPIN/VIBE/mmhuman3d.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import torch
from torch import Tensor

from gtahuman import metrics as M

# Output order of J_regressor_h36m.npy (mmhuman3d 'h36m' convention).
H36M_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "left_knee", "left_ankle", "right_hip", "right_knee", "right_ankle",
    "spine", "thorax", "head", "headtop", "left_shoulder", "left_elbow", "left_wrist",
    "right_shoulder", "right_elbow", "right_wrist",
)
H36M_PELVIS = 0
# LSP-style 14 joints: R ankle, R knee, R hip, L hip, L knee, L ankle, R wrist, R elbow,
# R shoulder, L shoulder, L elbow, L wrist, thorax (neck), headtop (joint 10 of the H36M
# regressor; SPIN's 'head (H36M)' slot, not the annotated LSP head top).
H36M_TO_J14: tuple[int, ...] = (6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10)
# SPIN's 17-joint set for MPI-INF-3DHP: J14 + pelvis, spine, head.
H36M_TO_J17: tuple[int, ...] = H36M_TO_J14 + (0, 7, 9)
# The official MPI-INF-3DHP test order; MPI_INF_3DHP_TO_H36M[i] is the test-set index of
# H36M joint i (same names up to 'neck' = thorax, 'head_top' = headtop).
MPI_INF_3DHP_TEST_JOINT_NAMES: tuple[str, ...] = (
    "head_top", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
    "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip",
    "left_knee", "left_ankle", "pelvis", "spine", "head",
)
MPI_INF_3DHP_TO_H36M: tuple[int, ...] = (14, 11, 12, 13, 8, 9, 10, 15, 1, 16, 0, 5, 6, 7, 2, 3, 4)

KNOWN_METRICS = ("mpjpe", "pa_mpjpe", "pve", "pck", "auc")
_PERCENT_METRICS = ("pck", "auc")


@dataclass(frozen=True)
class Protocol:
    """One benchmark's evaluation rules. Joint indices refer to the 17 H36M joints."""

    name: str
    description: str
    pred_joints: str  # how predicted joints are produced
    gt_joints: str  # where GT joints come from
    eval_joint_indices: tuple[int, ...]
    gt_gender: str  # "gendered" | "neutral" | "keypoints" (no body model involved)
    split: str
    metrics: tuple[str, ...]
    root_index: int = H36M_PELVIS  # subtracted before joint selection
    pred_gender: str = "neutral"
    unit: str = "mm"
    unit_scale: float = 1000.0  # metres -> unit
    pck_threshold: float = 0.15  # metres
    toy_body_model: bool = False

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in KNOWN_METRICS]
        if unknown:
            raise ValueError(f"protocol '{self.name}': unknown metrics {unknown}; known: {list(KNOWN_METRICS)}")
        if not all(0 <= i < len(H36M_JOINT_NAMES) for i in (*self.eval_joint_indices, self.root_index)):
            raise ValueError(f"protocol '{self.name}': joint indices must lie in 0..16")

    @property
    def eval_joint_names(self) -> tuple[str, ...]:
        return tuple(H36M_JOINT_NAMES[i] for i in self.eval_joint_indices)

    def prepare_joints(self, joints17: Tensor, name: str = "joints") -> Tensor:
        """Subtract the root joint, then select the evaluation joints: (B, 17, 3) -> (B, K, 3)."""
        if joints17.ndim != 3 or joints17.shape[1:] != (len(H36M_JOINT_NAMES), 3):
            raise ValueError(
                f"{name}: protocol '{self.name}' expects (B, 17, 3) joints in H36M regressor order, "
                f"got {tuple(joints17.shape)}"
            )
        centred = joints17 - joints17[:, self.root_index : self.root_index + 1]
        return centred[:, list(self.eval_joint_indices)]


_REGRESSED = "neutral SMPL (predicted pose and betas, no translation) -> J_regressor_h36m, 17 joints"
_GENDERED_GT = "GT pose and betas on the GT-gender SMPL ('m' -> male, else female), no translation -> J_regressor_h36m"

PROTOCOLS: MappingProxyType[str, Protocol] = MappingProxyType({
    p.name: p
    for p in (
        Protocol(
            name="3dpw",
            description="3DPW test: 14 LSP joints after subtracting the regressed H36M pelvis (SPIN/mmhuman3d)",
            pred_joints=_REGRESSED,
            gt_joints=_GENDERED_GT,
            eval_joint_indices=H36M_TO_J14,
            gt_gender="gendered",
            split="3DPW test, every campose-valid (person, frame) crop (35,515 samples)",
            metrics=("mpjpe", "pa_mpjpe", "pve"),
        ),
        Protocol(
            name="h36m_p2",
            description="Human3.6M protocol 2: 14 joints, stored GT keypoints, PA-MPJPE primary",
            pred_joints=_REGRESSED,
            gt_joints="stored 3D keypoints (17 H36M joints, metres, root-centred), mapped by name",
            eval_joint_indices=H36M_TO_J14,
            gt_gender="keypoints",
            split="subjects S9 and S11, every 5th frame, front camera 60457274 only",
            metrics=("mpjpe", "pa_mpjpe"),
        ),
        Protocol(
            name="mpi_inf_3dhp",
            description="MPI-INF-3DHP test: the 17 test joints in H36M order, pelvis root",
            pred_joints=_REGRESSED,
            gt_joints="annotated 3D keypoints (17 test joints) reordered by MPI_INF_3DHP_TO_H36M",
            eval_joint_indices=H36M_TO_J17,
            gt_gender="keypoints",
            split="MPI-INF-3DHP test set (TS1-TS6), valid frames",
            metrics=("mpjpe", "pa_mpjpe", "pck", "auc"),
        ),
        Protocol(
            name="miniworld",
            description="procedural mini world, wild-test set: 3dpw rules on the TOY body model",
            pred_joints="neutral toy body model -> its h36m regressor, 17 joints",
            gt_joints="GT pose and betas on the GT-gender toy body model -> its h36m regressor",
            eval_joint_indices=H36M_TO_J14,
            gt_gender="gendered",
            split="mini world wild-test set",
            metrics=("mpjpe", "pa_mpjpe", "pve"),
            toy_body_model=True,
        ),
    )
})


class UnknownProtocolError(KeyError):
    def __str__(self) -> str:  # KeyError would print the message with quotes
        return str(self.args[0])


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise UnknownProtocolError(
            f"unknown evaluation protocol '{name}'; valid names: {', '.join(sorted(PROTOCOLS))}"
        ) from None


def evaluate_joints(
    protocol: Protocol,
    pred_joints17: Tensor,
    gt_joints17: Tensor,
    pred_vertices: Tensor | None = None,
    gt_vertices: Tensor | None = None,
) -> dict[str, Tensor]:
    """Per-sample errors, each (B,): lengths in `protocol.unit`, PCK/AUC in percent.

    Root subtraction and joint selection happen here. PVE is returned when both vertex sets
    are given (it is skipped otherwise, e.g. H36M has no GT mesh); vertices are compared as
    produced by the body models (no translation), without alignment, as in mmhuman3d.
    """
    if pred_joints17.shape != gt_joints17.shape:
        raise ValueError(
            f"pred_joints17 and gt_joints17: shapes differ, {tuple(pred_joints17.shape)} vs {tuple(gt_joints17.shape)}"
        )
    pred = protocol.prepare_joints(pred_joints17, "pred_joints17")
    gt = protocol.prepare_joints(gt_joints17, "gt_joints17")
    scale = protocol.unit_scale
    out: dict[str, Tensor] = {}
    for metric in protocol.metrics:
        if metric == "mpjpe":
            out[metric] = M.mpjpe(pred, gt) * scale
        elif metric == "pa_mpjpe":
            out[metric] = M.pa_mpjpe(pred, gt) * scale
        elif metric == "pck":
            out[metric] = M.pck(pred, gt, threshold=protocol.pck_threshold)
        elif metric == "auc":
            out[metric] = M.auc(pred, gt, max_threshold=protocol.pck_threshold)
        elif metric == "pve":
            if (pred_vertices is None) != (gt_vertices is None):
                raise ValueError("pred_vertices and gt_vertices: give both or neither")
            if pred_vertices is not None:
                if pred_vertices.shape[0] != pred.shape[0]:
                    raise ValueError(
                        f"pred_vertices: expected {pred.shape[0]} samples like the joints, got {pred_vertices.shape[0]}"
                    )
                out[metric] = M.pve(pred_vertices, gt_vertices) * scale
    return out


# Summarised by their median, not their mean: the root-orientation error is bimodal (most samples
# a few degrees off, a few turned ~180 degrees, e.g. facing away), so a mean says mostly how many
# flips there are; the median says how well a typical sample's root is recovered.
MEDIAN_METRICS = ("orient_deg",)


def summarize(per_sample: dict[str, Tensor]) -> dict[str, float]:
    """Per metric over samples, NaN entries ignored ('sample_id' skipped): the mean, except for
    `MEDIAN_METRICS` (``orient_deg``: the median, the average of the two middle values for an
    even count). NaN when no sample has a value.

    With the same joints for every sample the mean equals mmhuman3d's global mean over
    (sample, joint) entries.
    """
    summary: dict[str, float] = {}
    for key, values in per_sample.items():
        if key == "sample_id":
            continue
        values = torch.as_tensor(values, dtype=torch.float64)
        if key in MEDIAN_METRICS:
            finite = values[~torch.isnan(values)].cpu().numpy()
            summary[key] = float(np.median(finite)) if finite.size else math.nan
        else:
            summary[key] = float(values.nanmean()) if values.numel() else math.nan
    return summary


def format_report(protocol: Protocol, summary: dict[str, float]) -> str:
    """Human-readable lines; toy-body-model numbers are labelled as such on every report."""
    lines = [f"protocol: {protocol.name} ({protocol.description})"]
    if protocol.toy_body_model:
        lines.append("NOTE: computed with the TOY body model, not SMPL; not comparable to published numbers")
    for key, value in summary.items():
        unit = "%" if key in _PERCENT_METRICS else "deg" if key == "orient_deg" else protocol.unit
        lines.append(f"{key}: {value:.2f} {unit}")
    return "\n".join(lines)

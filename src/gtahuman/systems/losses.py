"""Training losses of HMR/SPIN as small pure functions with explicit per-sample masks.

Every function takes a ``sample_mask`` (B,) (bool or 0/1): a sample contributes only where it
is set. The mean is taken over the contributing samples only, so masking a sample out changes
neither the numerator nor the denominator of the others' mean. When no sample qualifies the
loss is an exact 0 that is still attached to the prediction's graph, so ``backward()`` works
and nothing becomes NaN (not even a NaN inside a masked-out sample).

Reductions follow SPIN (reference/spin_vibe_hmr2.md 1.7): element-wise squared error times
the GT confidence, then a plain mean over every element (confidence 0 elements count in the
denominator, as in SPIN's ``(conf * mse).mean()``). The keypoint terms also take mmhuman3d's
element loss, ``kind='smooth_l1'`` (its SmoothL1Loss at the default beta of 1: 0.5 d^2 below 1,
|d| - 0.5 above), and its reduction, ``reduction='confident'``: the sum of conf x loss divided
by the number of elements whose confidence is positive (the body-model estimator of mmhuman3d's
later releases; its earlier ones averaged over every element, as SPIN).
"""
from __future__ import annotations

import torch
from torch import Tensor

from gtahuman.body import conventions
from gtahuman.body.rotations import axis_angle_to_matrix
from gtahuman.metrics import kabsch_rotation

# 3D keypoints are compared after centring both sets at the mid-hip point of the extra
# regressor's hips (mmhuman3d 3.5; SPIN uses the same two joints of its J24 set).
_SMPL54_RIGHT_HIP = conventions.joint_index("smpl_54", "right_hip_extra")
_SMPL54_LEFT_HIP = conventions.joint_index("smpl_54", "left_hip_extra")
KEYPOINT_LOSSES = ("mse", "smooth_l1")  # element loss of the 2D / 3D keypoint terms (SPIN's, mmhuman3d's)
KEYPOINT_REDUCTIONS = ("all", "confident")  # their mean: over every element (SPIN) | confident ones (mmhuman3d)
SMOOTH_L1_BETA = 1.0  # mmhuman3d's SmoothL1Loss default, which its GTA-Human configs keep


def keypoint_element_loss(difference: Tensor, kind: str) -> Tensor:
    """Element-wise loss of a keypoint difference: ``mse`` (d^2, SPIN) or ``smooth_l1``."""
    if kind == "mse":
        return difference ** 2
    if kind == "smooth_l1":
        absolute = difference.abs()
        return torch.where(absolute < SMOOTH_L1_BETA, 0.5 * difference ** 2 / SMOOTH_L1_BETA,
                           absolute - 0.5 * SMOOTH_L1_BETA)
    raise ValueError(f"keypoint loss must be one of {KEYPOINT_LOSSES}, got {kind!r}")


def _as_mask(sample_mask: Tensor, batch: int, name: str) -> Tensor:
    mask = torch.as_tensor(sample_mask).reshape(-1)
    if mask.shape[0] != batch:
        raise ValueError(f"{name}: sample mask has {mask.shape[0]} entries for a batch of {batch}")
    return mask > 0


def _masked_mean(per_element: Tensor, sample_mask: Tensor, name: str, confidence: Tensor | None = None) -> Tensor:
    """Mean of ``per_element`` (B, ...) over the samples where the mask is set; with
    ``confidence`` (broadcastable to it), over their elements of positive confidence only.

    Written without a data-dependent branch (no GPU sync); ``torch.where`` rather than a
    product keeps a NaN in a masked-out sample from leaking into the result.
    """
    mask = _as_mask(sample_mask, per_element.shape[0], name).to(per_element.device)
    per_sample_shape = (-1,) + (1,) * (per_element.ndim - 1)
    kept = torch.where(mask.reshape(per_sample_shape), per_element, per_element.new_zeros(()))
    if confidence is not None:
        counted = (confidence > 0).expand_as(per_element) & mask.reshape(per_sample_shape)
        return kept.sum() / counted.sum().clamp(min=1)
    elements_per_sample = per_element[0].numel() if per_element.shape[0] else 1
    count = mask.sum().clamp(min=1) * elements_per_sample
    return kept.sum() / count


def _check_reduction(reduction: str) -> None:
    if reduction not in KEYPOINT_REDUCTIONS:
        raise ValueError(f"keypoint reduction must be one of {KEYPOINT_REDUCTIONS}, got {reduction!r}")


def keypoint_2d_loss(pred_keypoints2d: Tensor, gt_keypoints2d: Tensor, sample_mask: Tensor,
                     kind: str = "mse", reduction: str = "all") -> Tensor:
    """SPIN's 2D loss: mean of conf * (pred - gt)^2 over (sample, joint, xy) (``kind``: the
    element loss, `keypoint_element_loss`; ``reduction='confident'``: over the elements of
    positive confidence only, as mmhuman3d).

    ``pred_keypoints2d`` (B, J, 2) and ``gt_keypoints2d`` (B, J, 3) = (x, y, conf), both in the
    same normalised crop coordinates (SPIN: 2 x / img_res - 1).
    """
    if pred_keypoints2d.shape[:-1] != gt_keypoints2d.shape[:-1] or pred_keypoints2d.shape[-1] != 2 \
            or gt_keypoints2d.shape[-1] != 3:
        raise ValueError(f"keypoint_2d_loss: expected pred (B, J, 2) and gt (B, J, 3); "
                         f"got {tuple(pred_keypoints2d.shape)} and {tuple(gt_keypoints2d.shape)}")
    _check_reduction(reduction)
    conf = gt_keypoints2d[..., 2:3]
    per_element = conf * keypoint_element_loss(pred_keypoints2d - gt_keypoints2d[..., :2], kind)
    return _masked_mean(per_element, sample_mask, "keypoint_2d_loss", conf if reduction == "confident" else None)


def keypoint_2d_l1_loss(pred_keypoints2d: Tensor, gt_keypoints2d: Tensor, sample_mask: Tensor) -> Tensor:
    """Integral regression's 2D loss: mean of conf * |pred - gt| over (sample, joint, xy); the
    prediction may hold fewer joints than the labels (the first J are compared)."""
    count = pred_keypoints2d.shape[1]
    if pred_keypoints2d.shape[0] != gt_keypoints2d.shape[0] or gt_keypoints2d.shape[1] < count \
            or pred_keypoints2d.shape[-1] != 2 or gt_keypoints2d.shape[-1] != 3:
        raise ValueError(f"keypoint_2d_l1_loss: expected pred (B, J, 2) and gt (B, >=J, 3); "
                         f"got {tuple(pred_keypoints2d.shape)} and {tuple(gt_keypoints2d.shape)}")
    gt = gt_keypoints2d[:, :count]
    absolute = gt[..., 2:3] * (pred_keypoints2d - gt[..., :2]).abs()
    return _masked_mean(absolute, sample_mask, "keypoint_2d_l1_loss")


def centre_at_mid_hip(joints54: Tensor) -> Tensor:
    """Subtract the midpoint of smpl_54's right_hip_extra and left_hip_extra."""
    mid_hip = 0.5 * (joints54[:, _SMPL54_RIGHT_HIP] + joints54[:, _SMPL54_LEFT_HIP])
    return joints54 - mid_hip[:, None]


def keypoint_3d_loss(pred_joints54: Tensor, gt_keypoints3d: Tensor, sample_mask: Tensor,
                     kind: str = "mse", reduction: str = "all") -> Tensor:
    """SPIN's 3D loss in the smpl_54 convention: both sets centred at the mid-hip point, then the
    mean of conf * (pred - gt)^2 over (sample, joint, xyz) (``kind``: `keypoint_element_loss`;
    ``reduction``: as `keypoint_2d_loss`).

    ``pred_joints54`` (B, 54, 3) metres; ``gt_keypoints3d`` (B, 54, 4) = (x, y, z, conf). Pass
    ``has_keypoints3d & valid`` as the mask.
    """
    if pred_joints54.shape[1:] != (54, 3) or gt_keypoints3d.shape[1:] != (54, 4) \
            or pred_joints54.shape[0] != gt_keypoints3d.shape[0]:
        raise ValueError(f"keypoint_3d_loss: expected pred (B, 54, 3) and gt (B, 54, 4) in smpl_54; "
                         f"got {tuple(pred_joints54.shape)} and {tuple(gt_keypoints3d.shape)}")
    _check_reduction(reduction)
    conf = gt_keypoints3d[..., 3:4]
    pred = centre_at_mid_hip(pred_joints54)
    gt = centre_at_mid_hip(gt_keypoints3d[..., :3])
    return _masked_mean(conf * keypoint_element_loss(pred - gt, kind), sample_mask, "keypoint_3d_loss",
                        conf if reduction == "confident" else None)


def best_rotation(source: Tensor, target: Tensor, weights: Tensor) -> Tensor:
    """Per sample, the rotation R (B, 3, 3) minimising sum_j w_j |R source_j - target_j|^2 for
    centred point sets (B, J, 3) and weights (B, J) (Kabsch; a proper rotation, never a reflection)."""
    return kabsch_rotation((weights[..., None] * source).mT @ target)[0]  # K = sum_j w_j s_j t_j^T


def keypoint_3d_aligned_loss(pred_joints54: Tensor, gt_keypoints3d: Tensor, sample_mask: Tensor) -> Tensor:
    """The 3D keypoint loss after rotating each prediction onto its ground truth: both sets
    centred at the mid-hip point, the prediction turned by the best rotation (fitted to the
    confidence-weighted joints, with the prediction detached so no gradient flows through the
    SVD), then conf * (R pred - gt)^2 averaged like `keypoint_3d_loss`.

    Not part of SPIN's recipe. It measures articulation only (the global orientation is factored
    out, as PA-MPJPE does, without its scale), so a short from-scratch run gets a signal for the
    limbs that the root's large early error does not drown out.
    """
    if pred_joints54.shape[1:] != (54, 3) or gt_keypoints3d.shape[1:] != (54, 4) \
            or pred_joints54.shape[0] != gt_keypoints3d.shape[0]:
        raise ValueError(f"keypoint_3d_aligned_loss: expected pred (B, 54, 3) and gt (B, 54, 4) in smpl_54; "
                         f"got {tuple(pred_joints54.shape)} and {tuple(gt_keypoints3d.shape)}")
    conf = gt_keypoints3d[..., 3]
    pred = centre_at_mid_hip(pred_joints54)
    gt = centre_at_mid_hip(gt_keypoints3d[..., :3])
    usable = torch.isfinite(pred.detach()).all(dim=(1, 2)) & torch.isfinite(gt).all(dim=(1, 2))
    safe_gt = torch.where(usable[:, None, None], gt, gt.new_zeros(()))
    safe_pred = torch.where(usable[:, None, None], pred.detach(), pred.new_zeros(()))
    eye = torch.eye(3, dtype=pred.dtype, device=pred.device).expand(pred.shape[0], 3, 3)
    # Samples without 3 confident joints have no defined rotation: identity (the mask drops them).
    enough = (conf > 0).sum(dim=1) >= 3
    rot = torch.where((usable & enough)[:, None, None], best_rotation(safe_pred, safe_gt, conf * enough[:, None]), eye)
    aligned = pred @ rot.mT
    return _masked_mean(conf[..., None] * (aligned - gt) ** 2, sample_mask, "keypoint_3d_aligned_loss")


def smpl_pose_loss(pred_rotmat: Tensor, gt_pose_axis_angle: Tensor, sample_mask: Tensor) -> Tensor:
    """MSE between predicted rotation matrices (B, 24, 3, 3) and Rodrigues(GT axis-angle)
    (B, 72), all 24 joints including the global orientation; mean over the masked samples'
    elements (pass ``has_smpl & valid``)."""
    batch = pred_rotmat.shape[0]
    if pred_rotmat.shape[1:] != (24, 3, 3) or gt_pose_axis_angle.reshape(batch, -1).shape[1] != 72:
        raise ValueError(f"smpl_pose_loss: expected pred (B, 24, 3, 3) and gt axis-angle (B, 72); "
                         f"got {tuple(pred_rotmat.shape)} and {tuple(gt_pose_axis_angle.shape)}")
    gt_rotmat = axis_angle_to_matrix(gt_pose_axis_angle.reshape(batch, 24, 3).to(pred_rotmat.dtype))
    return _masked_mean((pred_rotmat - gt_rotmat) ** 2, sample_mask, "smpl_pose_loss")


def betas_loss(pred_betas: Tensor, gt_betas: Tensor, sample_mask: Tensor) -> Tensor:
    """MSE of the shape coefficients (B, 10), mean over the masked samples' elements."""
    if pred_betas.shape != gt_betas.shape:
        raise ValueError(f"betas_loss: shapes differ, {tuple(pred_betas.shape)} vs {tuple(gt_betas.shape)}")
    return _masked_mean((pred_betas - gt_betas.to(pred_betas.dtype)) ** 2, sample_mask, "betas_loss")


def vertex_loss(pred_vertices: Tensor, gt_vertices: Tensor, sample_mask: Tensor) -> Tensor:
    """L1 between predicted and GT vertices (B, V, 3), mean over the masked samples' elements."""
    if pred_vertices.shape != gt_vertices.shape:
        raise ValueError(f"vertex_loss: shapes differ, {tuple(pred_vertices.shape)} vs {tuple(gt_vertices.shape)}")
    return _masked_mean((pred_vertices - gt_vertices.to(pred_vertices.dtype)).abs(), sample_mask, "vertex_loss")


def camera_prior(pred_cam: Tensor, sample_mask: Tensor) -> Tensor:
    """SPIN's camera regulariser mean((exp(-10 s))^2): pushes the weak-perspective scale
    s = cam[:, 0] to positive values (a negative scale puts the body behind the camera)."""
    if pred_cam.ndim != 2 or pred_cam.shape[1] != 3:
        raise ValueError(f"camera_prior: expected cam (B, 3), got {tuple(pred_cam.shape)}")
    return _masked_mean(torch.exp(-10.0 * pred_cam[:, 0]) ** 2, sample_mask, "camera_prior")

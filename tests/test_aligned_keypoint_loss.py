"""The rotation-aligned 3D keypoint loss against an independent (scipy) alignment."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from gtahuman.body import conventions
from gtahuman.systems.losses import keypoint_3d_aligned_loss, keypoint_3d_loss

RIGHT_HIP = conventions.joint_index("smpl_54", "right_hip_extra")
LEFT_HIP = conventions.joint_index("smpl_54", "left_hip_extra")


def joints(seed: int, batch: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    pred = rng.normal(size=(batch, 54, 3))
    conf = (rng.random((batch, 54, 1)) > 0.2).astype(np.float64)
    gt = np.concatenate([rng.normal(size=(batch, 54, 3)), conf], axis=-1)
    return torch.tensor(pred), torch.tensor(gt)


def reference(pred: np.ndarray, gt: np.ndarray) -> float:
    """Per sample: centre at the mid-hip point, best rotation by scipy (weighted by conf), squared
    error times conf, then the mean over every element of every sample."""
    total = []
    for p, g in zip(pred, gt):
        conf, points = g[:, 3], g[:, :3]
        p = p - 0.5 * (p[RIGHT_HIP] + p[LEFT_HIP])
        points = points - 0.5 * (points[RIGHT_HIP] + points[LEFT_HIP])
        rot, _ = Rotation.align_vectors(points[conf > 0], p[conf > 0])  # rotates p onto points
        total.append(conf[:, None] * (rot.apply(p) - points) ** 2)
    return float(np.mean(total))


def test_equals_scipy_alignment_and_zero_for_a_rotated_copy():
    pred, gt = joints(0)
    mask = torch.ones(4)
    got = keypoint_3d_aligned_loss(pred, gt, mask).item()
    assert got == pytest.approx(reference(pred.numpy(), gt.numpy()), rel=1e-9)
    assert got < keypoint_3d_loss(pred, gt, mask).item()  # the alignment can only help
    turned = torch.tensor(Rotation.from_rotvec([0.3, -1.2, 0.7]).apply(gt[0, :, :3].numpy()))
    copy = turned[None] + torch.tensor([1.0, 2.0, 3.0])  # any rotation and offset of the GT
    assert keypoint_3d_aligned_loss(copy, gt[:1], torch.ones(1)).item() == pytest.approx(0.0, abs=1e-20)


def test_gradient_treats_the_rotation_as_constant():
    pred, gt = joints(1, batch=2)
    pred.requires_grad_(True)
    keypoint_3d_aligned_loss(pred, gt, torch.ones(2)).backward()
    # d/dp of mean(conf (R (p - m) - g)^2) with R fixed, from a hand-written expression
    with torch.no_grad():
        conf = gt[..., 3:]
        centred = pred - 0.5 * (pred[:, RIGHT_HIP] + pred[:, LEFT_HIP])[:, None]
        g = gt[..., :3] - 0.5 * (gt[:, RIGHT_HIP, :3] + gt[:, LEFT_HIP, :3])[:, None]
        rots = []
        for c, p_, q in zip(conf[..., 0].numpy(), centred.numpy(), g.numpy()):
            rots.append(Rotation.align_vectors(q[c > 0], p_[c > 0])[0].as_matrix())
        rot = torch.tensor(np.stack(rots))
        residual = centred @ rot.mT - g
        d_centred = 2 * conf * residual @ rot / residual.numel()
        expected = d_centred.clone()
        hip_share = d_centred.sum(dim=1) * 0.5  # the mid-hip point is subtracted from every joint
        expected[:, RIGHT_HIP] -= hip_share
        expected[:, LEFT_HIP] -= hip_share
    torch.testing.assert_close(pred.grad, expected, atol=1e-12, rtol=1e-9)


def test_masked_and_degenerate_samples_stay_finite():
    pred, gt = joints(2, batch=3)
    gt[1, :, 3] = 0.0  # no confident joint: no rotation can be fitted
    pred[2] = float("nan")  # a diverged prediction, masked out
    pred.requires_grad_(True)
    loss = keypoint_3d_aligned_loss(pred, gt, torch.tensor([1.0, 1.0, 0.0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad[:2]).all()
    with pytest.raises(ValueError, match="smpl_54"):
        keypoint_3d_aligned_loss(pred[:, :20], gt, torch.ones(3))

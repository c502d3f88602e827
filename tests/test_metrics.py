"""Metric arithmetic against hand-computed values and an independent per-sample NumPy Procrustes."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from gtahuman import metric_modules as MM
from gtahuman import metrics as M


def numpy_procrustes(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Textbook similarity Procrustes on one (J, 3) sample, written with column vectors."""
    a, b = pred.T, gt.T  # (3, J)
    mu_a, mu_b = a.mean(axis=1, keepdims=True), b.mean(axis=1, keepdims=True)
    a0, b0 = a - mu_a, b - mu_b
    u, _, vt = np.linalg.svd(a0 @ b0.T)
    d = np.sign(np.linalg.det(u @ vt))
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    s = np.trace(rot @ a0 @ b0.T) / np.sum(a0**2)
    return (s * rot @ a + (mu_b - s * rot @ mu_a)).T


def random_rotations(n: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(Rotation.random(n, random_state=seed).as_matrix())


def test_similarity_transform_of_skeleton_gives_zero_pa_mpjpe():
    gen = torch.Generator().manual_seed(0)
    skeleton = torch.randn(8, 14, 3, generator=gen, dtype=torch.float64) * 0.3
    rot = random_rotations(8, seed=1)
    scale = torch.linspace(0.5, 2.0, 8, dtype=torch.float64)[:, None, None]
    shift = torch.randn(8, 1, 3, generator=gen, dtype=torch.float64)
    gt = scale * skeleton @ rot.mT + shift
    assert M.pa_mpjpe(skeleton, gt).max() < 1e-6
    assert M.pa_mpjpe(gt, skeleton).max() < 1e-6
    assert M.mpjpe(skeleton, gt).min() > 1e-2  # the unaligned error is not small


def test_mpjpe_hand_worked_three_joints():
    gt = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])
    # errors: joint0 (3,4,0) -> 5; joint1 (0,0,0) -> 0; joint2 (1,2,2) -> 3; mean = 8/3
    pred = gt + torch.tensor([[[3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [1.0, 2.0, 2.0]]])
    assert M.mpjpe(pred, gt).item() == pytest.approx(8.0 / 3.0, abs=1e-6)
    metric = MM.MPJPE(unit_scale=1000.0)
    metric.update(pred, gt)
    assert metric.compute().item() == pytest.approx(8000.0 / 3.0, rel=1e-9)


def test_batched_procrustes_matches_numpy_loop_including_reflections():
    rng = np.random.default_rng(3)
    pred = rng.normal(size=(64, 14, 3))
    gt = pred @ Rotation.random(64, random_state=4).as_matrix() * 1.3 + rng.normal(size=(64, 14, 3)) * 0.2
    gt[:16, :, 0] *= -1.0  # mirrored targets: the unconstrained optimum would be a reflection
    def needs_fix(p: np.ndarray, g: np.ndarray) -> bool:
        u, _, vt = np.linalg.svd((p - p.mean(0)).T @ (g - g.mean(0)))
        return np.linalg.det(u @ vt) < 0

    assert sum(needs_fix(p, g) for p, g in zip(pred, gt)) >= 10  # the fix is really exercised

    aligned = M.similarity_procrustes(torch.from_numpy(pred), torch.from_numpy(gt)).numpy()
    expected = np.stack([numpy_procrustes(p, g) for p, g in zip(pred, gt)])
    np.testing.assert_allclose(aligned, expected, atol=1e-6)

    # The aligned prediction is a proper similarity of the input (det > 0), so a pure mirror
    # image cannot be aligned to zero error.
    mirrored = torch.from_numpy(pred[:1] * np.array([-1.0, 1.0, 1.0]))
    assert M.pa_mpjpe(torch.from_numpy(pred[:1]), mirrored).item() > 1e-2
    out = M.similarity_procrustes(torch.from_numpy(pred[:1]), mirrored)[0].numpy()
    a0, b0 = pred[0] - pred[0].mean(0), out - out.mean(0)
    assert np.linalg.det(np.linalg.lstsq(a0, b0, rcond=None)[0]) > 0


def test_procrustes_float32_and_half_inputs_agree_with_float64():
    gen = torch.Generator().manual_seed(5)
    pred, gt = torch.randn(2, 32, 14, 3, generator=gen, dtype=torch.float64)
    ref = M.pa_mpjpe(pred, gt)
    assert torch.allclose(M.pa_mpjpe(pred.float(), gt.float()).double(), ref, atol=1e-5)
    half = M.pa_mpjpe(pred.half(), gt.half())
    assert half.dtype == torch.float32 and torch.allclose(half.double(), ref, atol=5e-3)


def test_masks_drop_joints_from_error_and_from_alignment():
    gt = torch.zeros(2, 4, 3)
    pred = torch.tensor([[[0.1, 0, 0], [0.2, 0, 0], [0.3, 0, 0], [9.0, 0, 0]],
                         [[0.1, 0, 0], [0.1, 0, 0], [0.1, 0, 0], [0.1, 0, 0]]])
    mask = torch.tensor([[1, 1, 1, 0], [0, 0, 0, 0]])
    per_sample = M.mpjpe(pred, gt, mask)
    assert per_sample[0].item() == pytest.approx(0.2)  # (0.1+0.2+0.3)/3; joint 3 ignored
    assert math.isnan(per_sample[1].item())  # no valid joint
    metric = MM.MPJPE(unit_scale=1.0)
    metric.update(pred, gt, mask)
    assert metric.compute().item() == pytest.approx(0.2)  # global mean over the 3 valid entries

    gen = torch.Generator().manual_seed(6)
    p, g = torch.randn(2, 5, 10, 3, generator=gen, dtype=torch.float64)
    p[:, 7] += 50.0  # an outlier that must not steer the fit when masked
    mask = torch.ones(5, 10, dtype=torch.bool)
    mask[:, 7] = False
    keep = [j for j in range(10) if j != 7]
    torch.testing.assert_close(M.pa_mpjpe(p, g, mask), M.pa_mpjpe(p[:, keep], g[:, keep]))


def test_pck_and_auc_on_hand_made_errors():
    gt = torch.zeros(1, 4, 3, dtype=torch.float64)
    pred = torch.tensor([[[0.012, 0, 0], [0, 0.049, 0], [0, 0, 0.051], [0.2, 0, 0]]], dtype=torch.float64)
    assert M.pck(pred, gt, threshold=0.15).item() == pytest.approx(75.0)
    assert M.pck(pred, gt, threshold=0.05).item() == pytest.approx(50.0)
    # thresholds 0, 5, ..., 150 mm; an error e counts for every threshold > e:
    # 12 mm -> 15..150 (28), 49 -> 50..150 (21), 51 -> 55..150 (20), 200 -> none (0)
    assert M.auc(pred, gt).item() == pytest.approx(100.0 * (28 + 21 + 20 + 0) / 4 / 31)


def test_an_error_exactly_at_the_pck_threshold_is_a_miss():
    # 0.125 and 0.25 are exact in binary: the distances are exactly the thresholds, no rounding
    gt = torch.zeros(1, 2, 3, dtype=torch.float64)
    pred = torch.tensor([[[0.125, 0.0, 0.0], [0.0, 0.25, 0.0]]], dtype=torch.float64)
    assert M.joint_errors(pred, gt).tolist() == [[0.125, 0.25]]
    assert M.pck(pred, gt, threshold=0.125).item() == 0.0  # strictly below, as MPI-INF-3DHP's PCK
    assert M.pck(pred, gt, threshold=0.25).item() == 50.0
    assert M.pck(pred, gt, threshold=0.2500001).item() == 100.0


def quadratic_track(num_frames: int) -> torch.Tensor:
    """x_t = (1.5 t², 2 t², 0) mm for 2 joints: second difference (3, 4, 0) mm, norm 5 mm."""
    t = torch.arange(num_frames, dtype=torch.float64)[:, None]
    joint = torch.cat([1.5 * t**2, 2.0 * t**2, torch.zeros_like(t)], dim=1) / 1000.0
    return torch.stack([joint, joint + 0.1], dim=1)


def linear_track(num_frames: int, offset: float) -> torch.Tensor:
    t = torch.arange(num_frames, dtype=torch.float64)[:, None, None]
    return offset + t * torch.tensor([0.01, -0.02, 0.03], dtype=torch.float64) + torch.zeros(1, 2, 3)


def test_acceleration_error_constant_velocity_zero_and_quadratic_hand_value():
    still = torch.zeros(10, 2, 3, dtype=torch.float64)
    assert M.acceleration(linear_track(10, 0.5)).abs().max() < 1e-12
    assert M.acceleration_error(linear_track(10, 0.5), still).abs().max() < 1e-12
    err = M.acceleration_error(quadratic_track(10), still) * 1000.0
    assert err.shape == (8,) and torch.allclose(err, torch.full((8,), 5.0, dtype=torch.float64))
    visible = torch.ones(10, dtype=torch.bool)
    visible[4] = False  # centre frames 3, 4, 5 (entries 2, 3, 4) lose a neighbour or themselves
    masked = M.acceleration_error(quadratic_track(10), still, visible)
    assert torch.isnan(masked).tolist() == [False, False, True, True, True, False, False, False]


def test_no_acceleration_triplet_crosses_a_sequence_boundary():
    pred = torch.cat([quadratic_track(6), linear_track(5, 3.0)])  # a jump at the boundary
    gt = torch.zeros_like(pred)
    seq = torch.tensor([7] * 6 + [2] * 5)
    vibe_style = M.acceleration_error(pred, gt) * 1000.0
    assert vibe_style[4:6].min() > 100.0  # the concatenated array mixes the two sequences
    within = M.sequence_acceleration_error(pred, gt, seq) * 1000.0
    assert torch.isnan(within).tolist() == [False] * 4 + [True] * 2 + [False] * 3
    # quadratic sequence: 4 triplets at 5 mm; linear: 3 triplets at 0 mm
    assert within.nanmean().item() == pytest.approx(20.0 / 7.0)
    frames = torch.tensor([0, 1, 2, 4, 5, 6] + list(range(5)))  # a gap between frames 2 and 4
    gap = M.sequence_acceleration_error(pred, gt, seq, frame_ids=frames)
    assert torch.isnan(gap).tolist() == [False, True, True, False] + [True] * 2 + [False] * 3


def test_accel_error_metric_sorts_shuffled_frames_across_updates_and_ranks():
    pred = torch.cat([quadratic_track(6), linear_track(5, 3.0)])
    gt = torch.zeros_like(pred)
    seq = torch.tensor([7] * 6 + [2] * 5)
    frames = torch.tensor(list(range(6)) + list(range(5)))
    order = torch.randperm(11, generator=torch.Generator().manual_seed(0))
    rank0, rank1 = MM.AccelError(), MM.AccelError()
    for chunk, metric in ((order[:4], rank0), (order[4:8], rank1), (order[8:], rank0)):
        metric.update(pred[chunk], gt[chunk], seq[chunk], frames[chunk])
    rank1.update(pred[:1], gt[:1], seq[:1], frames[:1])  # sampler padding repeats a frame
    rank0.merge_state(rank1)
    assert rank0.compute().item() == pytest.approx(20.0 / 7.0)


@pytest.mark.parametrize("metric_cls", [MM.MPJPE, MM.PAMPJPE, MM.PVE])
def test_metric_updates_and_merged_ranks_equal_one_call(metric_cls):
    gen = torch.Generator().manual_seed(7)
    pred, gt = torch.randn(2, 30, 14, 3, generator=gen)
    single = metric_cls()
    single.update(pred, gt)
    expected = single.compute().item()
    reference = (M.pve(pred, gt) if metric_cls is MM.PVE else
                 M.pa_mpjpe(pred, gt) if metric_cls is MM.PAMPJPE else M.mpjpe(pred, gt))
    assert expected == pytest.approx(reference.double().mean().item() * 1000.0, rel=1e-6)

    chunked = metric_cls()
    for start in range(0, 30, 7):
        chunked.update(pred[start : start + 7], gt[start : start + 7])
    assert chunked.compute().item() == pytest.approx(expected, rel=1e-9)

    rank0, rank1 = metric_cls(), metric_cls()
    rank0.update(pred[:11], gt[:11])
    rank1.update(pred[11:], gt[11:])
    rank0.merge_state(rank1)
    assert rank0.compute().item() == pytest.approx(expected, rel=1e-9)


def test_per_sample_errors_keep_ids_aligned_sorted_and_deduplicated():
    ids = torch.tensor([30, 10, 20, 40])
    errors = torch.tensor([3.0, 1.0, 2.0, 4.0])  # error = id / 10, so alignment is checkable
    rank0, rank1 = MM.PerSampleErrors(["mpjpe", "pa_mpjpe"]), MM.PerSampleErrors(["mpjpe", "pa_mpjpe"])
    rank0.update(ids[:2], mpjpe=errors[:2], pa_mpjpe=errors[:2] / 2)
    rank1.update(ids[2:], mpjpe=errors[2:], pa_mpjpe=errors[2:] / 2)
    rank1.update(ids[:1], mpjpe=errors[:1], pa_mpjpe=errors[:1] / 2)  # padded repeat of id 30
    rank0.merge_state(rank1)
    out = rank0.compute()
    assert out["sample_id"].tolist() == [10, 20, 30, 40]
    assert out["mpjpe"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert out["pa_mpjpe"].tolist() == [0.5, 1.0, 1.5, 2.0]
    with pytest.raises(KeyError, match="pa_mpjpe"):
        rank0.update(ids, mpjpe=errors)


def test_procrustes_keeps_finite_samples_when_one_diverged():
    # a NaN prediction (diverged network) gives a NaN error for that sample only, no crash
    gen = torch.Generator().manual_seed(3)
    gt = torch.randn(3, 14, 3, generator=gen, dtype=torch.float64)
    pred = gt.clone() * 2.0 + 1.0  # scaled and shifted: PA error 0
    pred[1, 4] = float("nan")
    errors = M.pa_mpjpe(pred, gt)
    assert torch.isnan(errors[1])
    assert torch.allclose(errors[[0, 2]], torch.zeros(2, dtype=torch.float64), atol=1e-9)


def _svd_rotation_and_trace(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Independent reference: NumPy SVD per matrix, Z = diag(1, 1, sign det(U Vᵀ)), R = V Z Uᵀ."""
    rots, traces = [], []
    for m in k.numpy():
        u, s, vt = np.linalg.svd(m)
        d = np.sign(np.linalg.det(u @ vt))
        rots.append(vt.T @ np.diag([1.0, 1.0, d]) @ u.T)
        traces.append(s[0] + s[1] + d * s[2])
    return torch.from_numpy(np.stack(rots)), torch.tensor(traces, dtype=torch.float64)


def test_procrustes_rotation_equals_the_svd_solution_on_every_kind_of_matrix():
    gen = torch.Generator().manual_seed(11)
    general = torch.randn(200, 3, 3, generator=gen, dtype=torch.float64)  # about half det < 0
    u, _, vh = torch.linalg.svd(torch.randn(3, 3, 3, generator=gen, dtype=torch.float64))
    ill = u @ torch.diag_embed(torch.tensor([[1.0, 1e-2, 1e-5], [1.0, 1.0, 1e-7], [5.0, 1e-3, 1e-3]],
                                            dtype=torch.float64)) @ vh
    planar = torch.randn(2, 6, 3, generator=gen, dtype=torch.float64)
    planar[..., 2] = 0.0  # points in a plane: K has rank 2, det 0
    planar_k = planar.mT @ torch.randn(2, 6, 3, generator=gen, dtype=torch.float64)
    k = torch.cat([general, ill, planar_k, torch.zeros(1, 3, 3, dtype=torch.float64),
                   1e6 * general[:4], 1e-6 * general[4:8]])
    rot, trace = M.procrustes_rotation(k)
    ref_rot, ref_trace = _svd_rotation_and_trace(k)
    # both paths are exercised: det > 0 rows iterate, the others fall back to the SVD
    det = torch.linalg.det(k)
    assert int((det > 0).sum()) >= 80 and int((det <= 0).sum()) >= 80
    np.testing.assert_allclose(trace.numpy(), ref_trace.numpy(), rtol=1e-10, atol=1e-12)
    well_posed = torch.ones(len(k), dtype=torch.bool)
    well_posed[200:203] = False  # the smallest singular value decides little there: compare R K only
    well_posed[203:] = False  # rank 2 or 0: the rotation is not unique
    np.testing.assert_allclose(rot[well_posed].numpy(), ref_rot[well_posed].numpy(), atol=1e-9)
    np.testing.assert_allclose(torch.linalg.det(rot).numpy(), 1.0, atol=1e-12)  # never a reflection
    np.testing.assert_allclose((rot.mT @ rot).numpy(), np.broadcast_to(np.eye(3), rot.shape), atol=1e-12)


def test_procrustes_rotation_keeps_the_input_dtype_and_its_gradient_matches_finite_differences():
    gen = torch.Generator().manual_seed(12)
    gt = torch.randn(4, 14, 3, generator=gen, dtype=torch.float64)
    pred = (gt @ random_rotations(4, seed=13).mT + 0.2 * torch.randn(4, 14, 3, generator=gen,
                                                                        dtype=torch.float64))
    rot32, trace32 = M.procrustes_rotation(torch.randn(5, 3, 3, generator=gen))
    assert rot32.dtype == trace32.dtype == torch.float32
    pred.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: M.pa_mpjpe(p, gt), (pred,))

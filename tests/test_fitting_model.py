"""Keypoint map (by name), fast body points, closed-form initialisation and the priors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gtahuman.body.conventions import UnknownConventionError, get_names
from gtahuman.body.joint_names import SMPL, SMPL_54, SMPL_PARENTS
from gtahuman.body.rotations import axis_angle_to_matrix
from gtahuman.body.smpl import BodyModel
from gtahuman.fitting.body_points import BodyPoints, tree_levels
from gtahuman.fitting.init import align_vectors, estimate_betas, initial_pose, kabsch
from gtahuman.fitting.keypoint_map import keypoint_map
from gtahuman.fitting.priors import (
    GaussianPosePrior,
    acceleration_penalty,
    bend_penalty,
    gmof,
    rotation_log,
)


@pytest.fixture(scope="module")
def male(toy_body_dir) -> BodyModel:
    return BodyModel(toy_body_dir, "male")


def _row(table, name: str) -> int:
    return table.names.index(name)


def test_gta_map_exact_names_and_game_bone_approximations() -> None:
    table = keypoint_map("gta", approximate_weight=0.4)
    exact = {n for n, e in zip(table.names, table.exact) if e}
    # the 22 game joints that carry an SMPL-family name, nothing else
    assert exact == {n for n in get_names("gta") if n in SMPL_54}
    assert len(exact) == 22
    knee = table.model_mix[_row(table, "left_knee")]
    assert knee[SMPL_54.index("left_knee")] == 1.0 and knee.sum() == 1.0
    clavicle = _row(table, "gta_left_clavicle")
    assert not table.exact[clavicle] and table.weights[clavicle] == 0.4
    assert table.model_mix[clavicle, SMPL_54.index("left_collar")] == 1.0
    roll = table.model_mix[_row(table, "gta_RB_L_ForeArmRoll")]  # the middle of its bone
    assert roll[SMPL_54.index("left_elbow")] == roll[SMPL_54.index("left_wrist")] == 0.5
    # where a game rig puts fingers and the facial rig is unknown: the annotator leaves them out
    assert not {"left_index_1", "gta_FB_Jaw_000", "gta_spine1"} & set(table.names)
    # every kinematic joint is reachable, and the exact 'pelvis' beats the game root bones
    kinematic = table.kinematic_targets()
    assert sorted(kinematic) == list(range(24))
    assert table.names[kinematic[0]] == "pelvis"
    assert table.names[kinematic[13]] == "gta_left_clavicle"
    strict = keypoint_map("gta", approximate=False)
    assert set(strict.names) == exact and strict.exact.all()


def test_other_conventions_map_by_name() -> None:
    coco = keypoint_map("coco")
    assert coco.names == tuple(get_names("coco")) and coco.exact.all()
    openpose = keypoint_map("openpose_25")  # only approximate groups (neck_openpose ~ neck ...)
    row = _row(openpose, "neck_openpose")
    assert not openpose.exact[row] and openpose.model_mix[row, SMPL_54.index("neck")] == 1.0
    with pytest.raises(UnknownConventionError, match="valid conventions"):
        keypoint_map("no_such_convention")


def test_body_points_match_the_full_body_model(male: BodyModel) -> None:
    torch.manual_seed(0)
    table = keypoint_map("gta")
    points = BodyPoints(male, table.model_mix)
    assert points.num_vertices_used < 200  # only what the targets read
    frames = 5
    pose, betas, transl = torch.randn(frames, 24, 3) * 0.5, torch.randn(1, 10), torch.randn(frames, 3)
    out = points(axis_angle_to_matrix(pose), betas, transl)
    reference = male(betas, pose[:, 1:].reshape(frames, 69), pose[:, 0], transl)
    expected = torch.einsum("kj,tjc->tkc", torch.as_tensor(table.model_mix, dtype=torch.float32), reference.joints54)
    assert torch.allclose(out.targets, expected, atol=1e-5)
    assert torch.allclose(out.joints, reference.joints, atol=1e-5)
    # the fit's parametrisation: global rotations give the same body, and local ones back
    same = points(out.rotations, betas, transl, global_rotations=True)
    assert torch.allclose(same.targets, out.targets, atol=1e-5)
    assert torch.allclose(same.local, axis_angle_to_matrix(pose), atol=1e-5)


def test_tree_levels_follow_the_parents() -> None:
    levels = tree_levels(np.array(SMPL_PARENTS))
    assert len(levels) == 9 and levels[0].tolist() == [0]
    assert levels[-1].tolist() == [SMPL.index("left_hand"), SMPL.index("right_hand")]
    for depth in range(1, len(levels)):
        assert all(SMPL_PARENTS[j] in levels[depth - 1] for j in levels[depth])


def test_kabsch_and_align_vectors_recover_known_rotations() -> None:
    rotation = axis_angle_to_matrix(torch.tensor([[0.3, -1.2, 0.5]], dtype=torch.float64))
    rest = torch.tensor([[[1.0, 0, 0], [0, 2.0, 0], [0, 0, 0.5], [1.0, 1.0, 1.0]]], dtype=torch.float64)
    solved, spread = kabsch(rest, rest @ rotation.transpose(-1, -2), torch.ones(1, 4, dtype=torch.float64))
    assert torch.allclose(solved, rotation, atol=1e-10) and spread.item() > 0.1
    _, parallel = kabsch(rest[:, :1], rest[:, :1] @ rotation.transpose(-1, -2), torch.ones(1, 1, dtype=torch.float64))
    assert parallel.item() < 1e-6  # one direction: flagged as degenerate
    a = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0]], dtype=torch.float64)
    turn = align_vectors(a, b)
    assert torch.allclose((turn @ a[..., None])[..., 0], b, atol=1e-9)
    # smallest rotation: x -> y is a quarter turn about z
    assert torch.allclose(turn[0], torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64), atol=1e-9)
    assert torch.allclose(torch.linalg.det(turn), torch.ones(2, dtype=torch.float64))


def test_initialisation_from_exact_keypoints(male: BodyModel) -> None:
    torch.manual_seed(1)
    table = keypoint_map("gta")
    points = BodyPoints(male, table.model_mix)
    frames = 4
    betas = torch.randn(1, 10)
    pose = torch.randn(frames, 24, 3) * 0.3
    transl = torch.tensor([0.2, -0.1, 4.0]).expand(frames, 3)
    truth = points(axis_angle_to_matrix(pose), betas, transl)
    kinematic = table.kinematic_targets()
    observed = torch.stack([truth.targets[:, kinematic[j]] for j in range(24)], 1).double()
    estimated = estimate_betas(observed, torch.ones(frames, 24, dtype=torch.bool), points)
    # bone lengths (what the joints reveal) come back, not necessarily every beta (girth is invisible)
    def bones(b: torch.Tensor) -> torch.Tensor:
        rest = points.rest_joints(b.float())[0]
        return (rest[1:] - rest[list(SMPL_PARENTS[1:])]).norm(dim=-1)

    assert (bones(estimated) - bones(betas)).abs().max().item() < 3e-3  # mm-level; the ridge pulls a little
    rotmats, transl0 = initial_pose(truth.targets.double(), torch.ones(frames, table.model_mix.shape[0]),
                                    table, points, estimated)
    start = points(rotmats.float(), estimated.float(), transl0.float())
    assert (start.joints - truth.joints).norm(dim=-1).mean().item() < 0.02


def test_gmof_bend_and_gaussian_prior_by_hand() -> None:
    assert gmof(torch.tensor(0.01), 0.1).item() == pytest.approx(0.005)  # d = sigma: half of d^2
    assert gmof(torch.tensor(1e6), 0.1).item() == pytest.approx(0.01, rel=1e-6)  # bounded by sigma^2
    pose = torch.zeros(69).reshape(23, 3)
    pose[3, 0] = -0.2  # left knee bent backwards
    pose[17, 1] = 0.3  # left elbow the wrong way
    pose[18, 1] = 0.3  # right elbow flexing the right way: free
    pose[4, 0] = 1.0  # right knee flexed: free
    assert bend_penalty(pose.reshape(69)).item() == pytest.approx(0.04 + 0.09)
    assert GaussianPosePrior.standard()(torch.full((69,), 0.1)).item() == pytest.approx(0.69)
    rng = np.random.default_rng(0)
    poses = rng.normal(0.2, 0.3, (400, 69))
    prior = GaussianPosePrior.fit(poses, shrinkage=0.0, floor=0.0)
    assert torch.allclose(prior.mean, torch.as_tensor(poses.mean(0), dtype=torch.float32), atol=1e-6)
    assert prior(prior.mean).item() == pytest.approx(0.0, abs=1e-6)
    # mean Mahalanobis distance of the fitting poses = dimensions * (N-1)/N
    assert prior(torch.as_tensor(poses, dtype=torch.float32)).mean().item() == pytest.approx(69 * 399 / 400, rel=1e-3)


def test_rotation_log_inverts_rodrigues() -> None:
    torch.manual_seed(2)
    axis = torch.nn.functional.normalize(torch.randn(200, 3, dtype=torch.float64), dim=-1)
    axis_angle = axis * torch.rand(200, 1, dtype=torch.float64) * 3.0  # body joints stay below ~3 rad
    axis_angle = torch.cat([axis_angle, torch.zeros(1, 3, dtype=torch.float64)]).requires_grad_(True)
    recovered = rotation_log(axis_angle_to_matrix(axis_angle))
    assert torch.allclose(recovered, axis_angle, atol=1e-9)
    recovered.square().sum().backward()  # finite gradient at the identity too
    assert torch.isfinite(axis_angle.grad).all()


def test_acceleration_penalty_by_hand() -> None:
    line = torch.arange(6, dtype=torch.float64)[:, None] * torch.tensor([1.0, 2.0])
    assert acceleration_penalty(line).item() == pytest.approx(0.0)
    bump = torch.tensor([[0.0], [0.0], [1.0], [0.0], [0.0]])
    # second differences 1, -2, 1 -> squares 1, 4, 1, mean 2
    assert acceleration_penalty(bump).item() == pytest.approx(2.0)
    two_lines = torch.tensor([[0.0], [1.0], [2.0], [10.0], [10.0], [10.0]])
    ends = torch.tensor([False, False, True, False, False, True])
    assert acceleration_penalty(two_lines, ends).item() == pytest.approx(0.0)
    assert acceleration_penalty(two_lines).item() > 1.0
    assert math.isclose(acceleration_penalty(torch.zeros(2, 3)).item(), 0.0)

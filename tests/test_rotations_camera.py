"""Rotations (axis-angle, matrices, SPIN 6D) and cameras (weak perspective, pinhole, GTA)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from gtahuman.body.camera import (
    GTA_FOCAL,
    GTA_INTRINSICS,
    crop_pixels_to_normalized,
    estimate_translation,
    focal_from_fov,
    full_image_projection,
    intrinsics_from_fov,
    normalized_to_crop_pixels,
    perspective_projection,
    project_to_crop,
    translation_to_weak_perspective,
    weak_perspective_to_translation,
)
from gtahuman.body.rotations import (
    axis_angle_to_matrix,
    geodesic_angle,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    rot6d_to_axis_angle,
    rot6d_to_matrix,
    rotation_about_axis,
    rotation_about_z,
)


def random_rotvecs(n: int, seed: int, max_angle: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    axes = rng.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    return axes * rng.uniform(0.0, max_angle, size=(n, 1))


# --- rotations ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_axis_angle_to_matrix_agrees_with_scipy_and_round_trips(dtype, tol):
    rotvecs = random_rotvecs(200, seed=0)
    aa = torch.tensor(rotvecs, dtype=dtype).reshape(10, 20, 3)  # arbitrary leading dims
    matrices = axis_angle_to_matrix(aa)
    assert matrices.shape == (10, 20, 3, 3) and matrices.dtype == dtype
    expected = Rotation.from_rotvec(rotvecs).as_matrix().reshape(10, 20, 3, 3)
    np.testing.assert_allclose(matrices.numpy(), expected, atol=tol)
    np.testing.assert_allclose(matrix_to_axis_angle(matrices).numpy(), aa.numpy(),
                               atol=10 * tol)


def test_zero_rotation_and_angle_pi():
    zero = torch.zeros(4, 3, dtype=torch.float64, requires_grad=True)
    identity = axis_angle_to_matrix(zero)
    torch.testing.assert_close(identity, torch.eye(3, dtype=torch.float64).expand(4, 3, 3))
    identity[:, 1, 0].sum().backward()  # dR10/dz = 1 at the identity
    np.testing.assert_allclose(zero.grad.numpy(), [[0, 0, 1]] * 4)
    assert matrix_to_axis_angle(torch.eye(3)).abs().max() == 0
    # angle pi about z: diag(-1, -1, 1); back to +-pi z
    half_turn = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi], dtype=torch.float64))
    np.testing.assert_allclose(half_turn.numpy(), np.diag([-1.0, -1.0, 1.0]), atol=1e-15)
    back = matrix_to_axis_angle(half_turn).numpy()
    np.testing.assert_allclose(np.abs(back), [0, 0, math.pi], atol=1e-12)
    # near pi about an oblique axis, the matrix round trip still holds
    axis = np.array([1.0, -2.0, 0.5]) / np.linalg.norm([1.0, -2.0, 0.5])
    near_pi = torch.tensor(axis * (math.pi - 1e-7))
    rotation = axis_angle_to_matrix(near_pi)
    np.testing.assert_allclose(axis_angle_to_matrix(matrix_to_axis_angle(rotation)).numpy(),
                               rotation.numpy(), atol=1e-12)


def test_rot6d_layout_is_spin_row_major():
    matrix = Rotation.from_rotvec([0.3, -0.4, 1.1]).as_matrix()
    six = matrix_to_rot6d(torch.tensor(matrix)).numpy()
    expected = [matrix[0, 0], matrix[0, 1], matrix[1, 0], matrix[1, 1], matrix[2, 0],
                matrix[2, 1]]
    np.testing.assert_array_equal(six, expected)
    np.testing.assert_allclose(rot6d_to_matrix(torch.tensor(six)).numpy(), matrix, atol=1e-12)


def test_rot6d_gram_schmidt_hand_computed():
    # a1 = (0, 0, 3), a2 = (0, 2, 1): b1 = z, b2 = y (after removing the z part),
    # b3 = z x y = -x.  Interleaved: (a1x, a2x, a1y, a2y, a1z, a2z).
    six = torch.tensor([0.0, 0.0, 0.0, 2.0, 3.0, 1.0])
    expected = [[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    np.testing.assert_allclose(rot6d_to_matrix(six).numpy(), expected, atol=1e-7)
    # scaled, non-orthogonal identity columns
    np.testing.assert_allclose(rot6d_to_matrix(np.array([2.0, 1.0, 0.0, 1.0, 0.0, 0.0])),
                               np.eye(3), atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rot6d_of_random_input_is_a_rotation_matching_numpy_gram_schmidt(dtype):
    six = torch.randn(3, 50, 6, generator=torch.Generator().manual_seed(0), dtype=dtype)
    matrices = rot6d_to_matrix(six)
    assert matrices.dtype == dtype and matrices.shape == (3, 50, 3, 3)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    eye = torch.eye(3, dtype=dtype).expand_as(matrices)
    torch.testing.assert_close(matrices.transpose(-1, -2) @ matrices, eye, atol=tol, rtol=0)
    torch.testing.assert_close(torch.linalg.det(matrices), torch.ones(3, 50, dtype=dtype),
                               atol=tol, rtol=0)
    # independent numpy Gram-Schmidt on the interleaved columns
    x = six.numpy().reshape(-1, 6).astype(np.float64)
    a1, a2 = x[:, 0::2], x[:, 1::2]
    b1 = a1 / np.linalg.norm(a1, axis=1, keepdims=True)
    b2 = a2 - np.sum(b1 * a2, axis=1, keepdims=True) * b1
    b2 /= np.linalg.norm(b2, axis=1, keepdims=True)
    expected = np.stack([b1, b2, np.cross(b1, b2)], axis=-1)
    np.testing.assert_allclose(matrices.numpy().reshape(-1, 3, 3), expected, atol=10 * tol)
    # R -> 6D -> R is exact for rotations
    torch.testing.assert_close(rot6d_to_matrix(matrix_to_rot6d(matrices)), matrices,
                               atol=tol, rtol=0)


def test_rot6d_to_axis_angle_matches_scipy():
    rotvecs = random_rotvecs(20, seed=1)
    six = matrix_to_rot6d(Rotation.from_rotvec(rotvecs).as_matrix())
    np.testing.assert_allclose(rot6d_to_axis_angle(six), rotvecs, atol=1e-10)


def test_rotation_about_z_and_axis():
    angles = np.array([0.0, 0.5, -1.2, math.pi])
    expected = Rotation.from_euler("z", angles[:, None]).as_matrix()
    np.testing.assert_allclose(rotation_about_z(angles), expected, atol=1e-15)
    np.testing.assert_allclose(rotation_about_z(torch.tensor(30.0, dtype=torch.float64),
                                                degrees=True).numpy(),
                               Rotation.from_euler("z", 30, degrees=True).as_matrix(),
                               atol=1e-15)
    assert rotation_about_z(0.1).dtype == torch.get_default_dtype()
    # rotating x by +90 deg about z gives y (right-hand rule)
    np.testing.assert_allclose(rotation_about_z(np.array(math.pi / 2)) @ [1.0, 0.0, 0.0],
                               [0.0, 1.0, 0.0], atol=1e-15)
    axis = np.array([1.0, 2.0, -2.0])
    np.testing.assert_allclose(rotation_about_axis(axis, 0.7),
                               Rotation.from_rotvec(axis / 3.0 * 0.7).as_matrix(), atol=1e-15)


def test_geodesic_angle_agrees_with_scipy_including_near_zero_and_pi():
    r1 = Rotation.from_rotvec(random_rotvecs(100, seed=2))
    r2 = Rotation.from_rotvec(random_rotvecs(100, seed=3))
    angles = geodesic_angle(r1.as_matrix(), r2.as_matrix())
    np.testing.assert_allclose(angles, (r1.inv() * r2).magnitude(), atol=1e-12)
    base = Rotation.from_rotvec([0.2, 0.1, -0.3])
    for delta in (1e-9, 1.0, math.pi - 1e-9, math.pi):
        other = base * Rotation.from_rotvec(np.array([0.6, 0.0, 0.8]) * delta)
        angle = geodesic_angle(torch.tensor(base.as_matrix()), torch.tensor(other.as_matrix()))
        assert abs(angle.item() - delta) < 1e-8


def test_bad_rotation_shapes_raise():
    with pytest.raises(ValueError, match=r"\(\.\.\., 6\)"):
        rot6d_to_matrix(torch.zeros(4, 9))
    with pytest.raises(ValueError, match=r"3, 3"):
        matrix_to_axis_angle(torch.zeros(4, 3))


# --- cameras -----------------------------------------------------------------------------
def test_gta_focal_and_intrinsics():
    assert abs(focal_from_fov(50.0, 1080) - 1158.0337) < 1e-3
    assert abs(GTA_FOCAL - 1158.0337) < 1e-3
    np.testing.assert_allclose(intrinsics_from_fov(50.0, 1920, 1080), GTA_INTRINSICS)
    assert tuple(GTA_INTRINSICS[:2, 2]) == (960.0, 540.0)
    with pytest.raises(ValueError, match="field of view"):
        focal_from_fov(180.0, 1080)


def test_weak_perspective_translation_hand_computed_and_round_trip():
    cam = torch.tensor([[0.9, 0.1, -0.2], [1.3, -0.05, 0.3]], dtype=torch.float64)
    t = weak_perspective_to_translation(cam)
    np.testing.assert_allclose(t[0].numpy(), [0.1, -0.2, 2 * 5000 / (224 * 0.9 + 1e-9)],
                               rtol=1e-14)
    torch.testing.assert_close(translation_to_weak_perspective(t), cam, rtol=1e-12, atol=0)
    t256 = weak_perspective_to_translation(cam.numpy(), focal=1000.0, img_res=256)
    assert isinstance(t256, np.ndarray)
    np.testing.assert_allclose(translation_to_weak_perspective(t256, 1000.0, 256), cam.numpy())


def test_perspective_projection_hand_computed():
    points = torch.tensor([[[0.5, -0.25, 2.0], [0.0, 0.0, 0.0]]], dtype=torch.float64)
    translation = torch.tensor([[0.0, 0.0, 3.0]], dtype=torch.float64)
    uv = perspective_projection(points, translation, 1000.0, (960.0, 540.0))
    np.testing.assert_allclose(uv.numpy(), [[[1060.0, 490.0], [960.0, 540.0]]])
    # rotation by +90 deg about z maps (0.5, -0.25, 2) to (0.25, 0.5, 2)
    uv_rot = perspective_projection(points, translation, torch.tensor([[1000.0, 500.0]]),
                                    rotation=rotation_about_z(np.array(math.pi / 2)))
    np.testing.assert_allclose(uv_rot[0, 0].numpy(), [1000 * 0.25 / 5, 500 * 0.5 / 5],
                               atol=1e-12)
    # full_image_projection with K = perspective projection of camera-frame points
    cam_points = np.array([[0.3, -0.4, 5.0], [-1.0, 0.2, 12.0]])
    np.testing.assert_allclose(
        full_image_projection(cam_points, GTA_INTRINSICS),
        perspective_projection(cam_points, np.zeros(3), GTA_FOCAL, (960.0, 540.0)))
    np.testing.assert_allclose(full_image_projection(cam_points, GTA_INTRINSICS)[0],
                               [960 + GTA_FOCAL * 0.06, 540 - GTA_FOCAL * 0.08])


def test_project_to_crop_matches_weak_perspective():
    # Origin of the body frame lands at centred px f tx / tz = tx s res / 2, i.e. at
    # normalised s * tx (the weak-perspective relation), crop px that + res / 2.
    cam = torch.tensor([0.8, 0.25, -0.1], dtype=torch.float64)
    points = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.2, 0.0]], dtype=torch.float64)
    pixels, normalised = project_to_crop(points, cam)
    np.testing.assert_allclose(normalised[0].numpy(), [0.8 * 0.25, 0.8 * -0.1], rtol=1e-9)
    np.testing.assert_allclose(normalised[1].numpy(), [0.8 * 0.35, 0.8 * 0.1], rtol=1e-9)
    np.testing.assert_allclose(pixels.numpy(), (normalised.numpy() + 1) * 112, rtol=1e-12)
    np.testing.assert_allclose(crop_pixels_to_normalized(pixels), normalised)
    np.testing.assert_allclose(normalized_to_crop_pixels(normalised), pixels)


@pytest.mark.parametrize("per_sample_focal", [False, True])
def test_estimate_translation_recovers_known_translation(per_sample_focal):
    rng = np.random.default_rng(5)
    joints = rng.normal(scale=0.4, size=(6, 24, 3))
    truth = np.stack([rng.uniform(-0.5, 0.5, 6), rng.uniform(-0.5, 0.5, 6),
                      rng.uniform(4.0, 30.0, 6)], axis=1)
    focal = rng.uniform(800, 1500, size=(6, 1)) if per_sample_focal else GTA_FOCAL
    center = np.array([960.0, 540.0])
    uv = perspective_projection(joints, truth, focal, center)
    conf = rng.uniform(0.2, 1.0, size=(6, 24))
    conf[:, :5] = 0.0
    uv[:, :5] = 1e4  # garbage on zero-confidence joints must be ignored
    found = estimate_translation(joints, uv, conf, focal, center)
    assert isinstance(found, np.ndarray) and found.shape == (6, 3)
    np.testing.assert_allclose(found, truth, atol=1e-6, rtol=0)
    # torch input, unit weights
    found_t = estimate_translation(torch.tensor(joints[:, 5:]), torch.tensor(uv[:, 5:]), None,
                                   focal if not per_sample_focal else torch.tensor(focal),
                                   torch.tensor(center))
    np.testing.assert_allclose(found_t.numpy(), truth, atol=1e-6, rtol=0)


def test_estimate_translation_needs_two_joints():
    joints = np.ones((2, 5, 3))
    conf = np.zeros((2, 5))
    conf[0] = 1.0
    conf[1, 2] = 1.0
    with pytest.raises(ValueError, match=r"\[1\]"):
        estimate_translation(joints, np.zeros((2, 5, 2)), conf, 1000.0, (0.0, 0.0))

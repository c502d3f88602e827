"""Factors of the data-scarcity analyses, checked on hand-made cases and an independent FK."""
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from gtahuman.data.factors import (
    SMPL_PARENTS,
    camera_angles,
    daytime_hours,
    encode_poses,
    forward_kinematics,
    mean_pose_joints,
    occlusion_ratios,
    pose_distances,
    smpl_factors,
    truncation,
)


def orient_from_axes(left, up, front) -> np.ndarray:
    """Axis-angle of the rotation whose columns are the body's x (left), y (up), z (front)
    axes written in OpenCV camera coordinates."""
    matrix = np.stack([left, up, front], axis=1).astype(float)
    assert np.isclose(np.linalg.det(matrix), 1.0)
    return Rotation.from_matrix(matrix).as_rotvec()


def angles(orient, transl, root_offset=None):
    elevation, azimuth = camera_angles(np.array([orient], float), np.array([transl], float), root_offset)
    return float(elevation[0]), float(azimuth[0])


# -- camera angle ------------------------------------------------------------------------------
def test_upright_person_facing_opencv_camera_is_level_and_frontal():
    # 180 degrees about x: body up -> camera -y (image up), body front -> camera -z (toward it)
    assert angles([math.pi, 0, 0], [0, 0, 5]) == pytest.approx((0.0, 0.0), abs=1e-4)


def test_raised_camera_sees_person_lower_in_the_image():
    elevation, azimuth = angles([math.pi, 0, 0], [0, 1, 3])
    assert elevation == pytest.approx(math.degrees(math.atan(1 / 3)), abs=1e-4)  # 18.43 degrees, looking down
    assert azimuth == pytest.approx(0.0, abs=1e-4)
    # measured from the given root: an offset that cancels the height makes it level again
    assert angles([math.pi, 0, 0], [0, 1, 3], root_offset=[0, -1, 0])[0] == pytest.approx(0.0, abs=1e-4)


def test_camera_straight_above_has_elevation_90():
    # lying on the back, body up pointing at the camera (camera -z), feet toward image top
    lying = orient_from_axes(left=[1, 0, 0], up=[0, 0, -1], front=[0, 1, 0])
    assert angles(lying, [0, 0, 5])[0] == pytest.approx(90.0, abs=1e-4)
    # equivalently an upright person 5 m straight below the camera
    assert angles([math.pi, 0, 0], [0, 5, 0])[0] == pytest.approx(90.0, abs=1e-4)
    assert angles([math.pi, 0, 0], [0, -5, 0])[0] == pytest.approx(-90.0, abs=1e-4)


def test_canonical_body_with_camera_on_its_front_side():
    # identity orientation: the body faces camera +z, so a camera in front sits at body +z
    assert angles([0, 0, 0], [0, 0, -5]) == pytest.approx((0.0, 0.0), abs=1e-4)


def test_camera_on_left_and_behind():
    # upright, turned so its left side faces the camera and it looks toward image left
    side_on = orient_from_axes(left=[0, 0, -1], up=[0, -1, 0], front=[-1, 0, 0])
    assert angles(side_on, [0, 0, 5]) == pytest.approx((0.0, 90.0), abs=1e-4)
    right_on = orient_from_axes(left=[0, 0, 1], up=[0, -1, 0], front=[1, 0, 0])
    assert angles(right_on, [0, 0, 5]) == pytest.approx((0.0, -90.0), abs=1e-4)
    back_on = orient_from_axes(left=[-1, 0, 0], up=[0, -1, 0], front=[0, 0, 1])
    assert abs(angles(back_on, [0, 0, 5])[1]) == pytest.approx(180.0, abs=1e-4)


def test_random_orientations_recover_the_placed_camera():
    rng = np.random.default_rng(0)
    n = 200
    elevation = rng.uniform(-80, 80, n)
    azimuth = rng.uniform(-179, 179, n)
    el, az = np.radians(elevation), np.radians(azimuth)
    to_camera_body = np.stack([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)], axis=1)
    rotations = Rotation.random(n, random_state=1)
    distance = rng.uniform(1, 20, (n, 1))
    transl = -rotations.apply(to_camera_body) * distance  # camera at the origin
    got_el, got_az = camera_angles(rotations.as_rotvec(), transl)
    np.testing.assert_allclose(got_el, elevation, atol=1e-3)
    np.testing.assert_allclose(got_az, azimuth, atol=1e-3)


# -- forward kinematics and pose distance --------------------------------------------------------
def reference_fk(rotmats: np.ndarray, rest: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """Independent FK: chain 4x4 transforms per sample and joint, as the SMPL paper writes it."""
    out = np.zeros((len(rotmats), len(parents), 3))
    for n in range(len(rotmats)):
        transforms = []
        for j, p in enumerate(parents):
            local = np.eye(4)
            local[:3, :3] = rotmats[n, j]
            local[:3, 3] = rest[j] - (rest[p] if p >= 0 else 0)
            transforms.append(local if p < 0 else transforms[p] @ local)
            out[n, j] = transforms[j][:3, 3]
    return out


def test_forward_kinematics_matches_loop_over_joints():
    rng = np.random.default_rng(2)
    rest = rng.normal(0, 0.3, (24, 3))
    rotmats = Rotation.random(5 * 24, random_state=3).as_matrix().reshape(5, 24, 3, 3)
    expected = reference_fk(rotmats, rest, SMPL_PARENTS)
    np.testing.assert_allclose(forward_kinematics(rotmats, rest, SMPL_PARENTS), expected, atol=1e-12)
    identity = np.broadcast_to(np.eye(3), (1, 24, 3, 3))
    np.testing.assert_allclose(forward_kinematics(identity, rest, SMPL_PARENTS)[0], rest, atol=1e-12)


def test_forward_kinematics_rejects_bad_skeleton():
    with pytest.raises(ValueError, match="parents"):
        forward_kinematics(np.zeros((1, 3, 3, 3)), np.zeros((3, 3)), np.array([-1, 2, 0]))
    with pytest.raises(ValueError, match="rotmats"):
        forward_kinematics(np.zeros((1, 23, 3, 3)), np.zeros((24, 3)), SMPL_PARENTS)


def arm_skeleton() -> np.ndarray:
    """A rest skeleton with the left arm along +x: elbow, wrist, hand at x = 0.5, 0.75, 0.85."""
    rest = np.random.default_rng(4).normal(0, 0.3, (24, 3))
    rest[16] = [0.2, 0.4, 0.0]  # left shoulder
    rest[18] = [0.5, 0.4, 0.0]  # left elbow
    rest[20] = [0.75, 0.4, 0.0]  # left wrist
    rest[22] = [0.85, 0.4, 0.0]  # left hand
    return rest


def bent_left_elbow(axis) -> np.ndarray:
    pose = np.zeros((1, 69))
    pose[0, (18 - 1) * 3:(18 - 1) * 3 + 3] = np.radians(90) * np.asarray(axis, float)  # joint 18, minus root
    return pose


def test_tpose_is_at_distance_zero_from_itself():
    rest = arm_skeleton()
    assert pose_distances(np.zeros((3, 69)), rest, SMPL_PARENTS) == pytest.approx(np.zeros(3), abs=1e-9)
    np.testing.assert_allclose(encode_poses(np.zeros((1, 69)), rest, SMPL_PARENTS)[0], rest - rest[0], atol=1e-12)


def test_bent_elbow_moves_wrist_and_hand_by_hand_computed_amount():
    rest = arm_skeleton()
    # 90 degrees about y: wrist (0.25 m from the elbow) and hand (0.35 m) each move by r * sqrt(2)
    expected_mm = 1000 * (0.25 + 0.35) * math.sqrt(2) / 24  # 35.36 mm, averaged over 24 joints
    assert pose_distances(bent_left_elbow([0, 1, 0]), rest, SMPL_PARENTS)[0] == pytest.approx(expected_mm, rel=1e-5)
    # the same distance measured the other way round, with the bent arm as the reference
    back = pose_distances(np.zeros((1, 69)), rest, SMPL_PARENTS, bent_left_elbow([0, 1, 0])[0])
    assert back[0] == pytest.approx(expected_mm, rel=1e-5)
    # a twist about the bone itself moves no joint
    assert pose_distances(bent_left_elbow([1, 0, 0]), rest, SMPL_PARENTS)[0] == pytest.approx(0.0, abs=1e-6)


def test_data_mean_pose_and_chunking():
    rest = arm_skeleton()
    poses = np.random.default_rng(5).normal(0, 0.3, (10, 69))
    mean = mean_pose_joints(poses, rest, SMPL_PARENTS, chunk=3)
    np.testing.assert_allclose(mean, encode_poses(poses, rest, SMPL_PARENTS).mean(axis=0), atol=1e-12)
    by_hand = 1000 * np.linalg.norm(encode_poses(poses, rest, SMPL_PARENTS) - mean, axis=-1).mean(axis=1)
    got = pose_distances(poses, rest, SMPL_PARENTS, reference_joints=mean, chunk=4)
    np.testing.assert_allclose(got, by_hand, rtol=1e-5)
    factors = smpl_factors(np.zeros((10, 3)), np.tile([0.0, 0.0, -3.0], (10, 1)), poses, rest, chunk=4)
    np.testing.assert_allclose(factors["pose_dist_mean"], by_hand, rtol=1e-5)
    np.testing.assert_allclose(factors["pose_dist_tpose"], pose_distances(poses, rest, SMPL_PARENTS), rtol=1e-5)
    np.testing.assert_allclose(factors["cam_elevation"], 0.0, atol=1e-4)


# -- occlusion, truncation, time of day ----------------------------------------------------------
def test_occlusion_ratios_count_valid_joints_only():
    occ = np.array([[1, 0, 0, 1], [1, 1, 0, 0], [1, 1, 1, 1]])
    self_occ = np.array([[0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]])
    valid = np.array([[1, 1, 1, 1], [1, 0, 1, 1], [0, 0, 0, 0]])
    occluded, self_occluded = occlusion_ratios(occ, self_occ, valid)
    np.testing.assert_allclose(occluded[:2], [0.5, 1 / 3])
    np.testing.assert_allclose(self_occluded[:2], [0.25, 1 / 3])
    assert np.isnan(occluded[2]) and np.isnan(self_occluded[2])
    np.testing.assert_allclose(occlusion_ratios(occ, self_occ)[0], [0.5, 0.5, 1.0])


def test_truncation_is_fraction_of_annotated_joints_outside_image():
    keypoints = np.array([
        [[10, 10, 1], [-5, 10, 1], [10, 500, 1], [3000, 3000, 0]],  # one of three annotated is out (x < 0), one unannotated
        [[100, 1080, 1], [1920, 0, 1], [1921, 5, 1], [5, 1081, 1]],  # on the border is inside
        [[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]],
    ], dtype=float)
    got = truncation(keypoints, np.array([1920, 1080]))
    np.testing.assert_allclose(got[:2], [1 / 3, 0.5])
    assert np.isnan(got[2])


def test_daytime_hours():
    hours = daytime_hours(np.array([[13, 30, 0], [0, 0, 36], [23, 59, 60]]))
    np.testing.assert_allclose(hours, [13.5, 0.01, 0.0], atol=1e-5)

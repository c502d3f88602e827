"""Mini-world motion: SMPL sign conventions via forward kinematics, limits, smoothness."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from gtahuman.miniworld.clips import generate_sequence
from gtahuman.miniworld.motion import (
    ACTIONS,
    JOINT,
    JOINT_LIMITS,
    SMPL_PARENTS,
    SMPL_REST_JOINTS,
    clip_pose_to_limits,
    euler_to_pose,
    forward_kinematics,
    mean_pose,
    pose_to_euler,
    soft_clip_angles,
    t_pose,
    to_camera_frame,
)

SEEDS = (0, 1, 2)


def posed_joints(pose: np.ndarray, translation: np.ndarray | None = None) -> np.ndarray:
    mats = Rotation.from_rotvec(pose.reshape(-1, 3)).as_matrix().reshape(pose.shape + (3,))
    joints = forward_kinematics(SMPL_PARENTS, SMPL_REST_JOINTS, mats)
    return joints if translation is None else joints + translation[:, None]


def single_joint(name: str, axis: int, angle: float) -> np.ndarray:
    """Joints of the rest skeleton with one local rotation (angle about x/y/z)."""
    pose = np.zeros((24, 3))
    pose[JOINT[name], axis] = angle
    return posed_joints(pose)


def body_frame(joints: np.ndarray, heading: np.ndarray) -> np.ndarray:
    """Undo the yaw so the body faces +z in every frame."""
    undo = Rotation.from_euler("y", -heading[:, None]).as_matrix()  # (T, 3, 3)
    return np.einsum("tab,tjb->tja", undo, joints)


def test_forward_kinematics_matches_hand_computed_chain():
    parents = np.array([-1, 0, 1])
    rest = np.array([[1.0, 2.0, 3.0], [1.0, 3.0, 3.0], [2.0, 3.0, 3.0]])
    rotmats = np.tile(np.eye(3), (3, 1, 1))
    rotmats[0] = Rotation.from_euler("z", 90, degrees=True).as_matrix()  # +y -> -x
    rotmats[1] = Rotation.from_euler("x", 90, degrees=True).as_matrix()  # then nothing on +x
    joints = forward_kinematics(parents, rest, rotmats)
    # root stays; child 1 offset (0,1,0) -> (-1,0,0); child 2 offset (1,0,0) rotated by Rz*Rx -> (0,1,0)
    np.testing.assert_allclose(joints, [[1, 2, 3], [0, 2, 3], [0, 3, 3]], atol=1e-12)


@pytest.mark.parametrize(
    "name, axis, angle, child, check",
    [
        ("left_knee", 0, np.pi / 2, "left_ankle", lambda d: d[2] < -0.3),  # shin goes back
        ("right_knee", 0, np.pi / 2, "right_ankle", lambda d: d[2] < -0.3),
        ("left_hip", 0, -np.pi / 2, "left_knee", lambda d: d[2] > 0.3),  # thigh forward
        ("right_hip", 0, -np.pi / 2, "right_knee", lambda d: d[2] > 0.3),
        ("left_elbow", 1, -np.pi / 2, "left_wrist", lambda d: d[2] > 0.2),  # forearm forward
        ("right_elbow", 1, np.pi / 2, "right_wrist", lambda d: d[2] > 0.2),
        ("left_shoulder", 2, -np.pi / 2, "left_elbow", lambda d: d[1] < -0.2),  # arm lowered
        ("right_shoulder", 2, np.pi / 2, "right_elbow", lambda d: d[1] < -0.2),
        ("spine_1", 0, 0.5, "head", lambda d: d[2] > 0.15),  # lean forward
    ],
)
def test_smpl_sign_conventions(name, axis, angle, child, check):
    rest = single_joint(name, axis, 0.0)
    posed = single_joint(name, axis, angle)
    parent = JOINT[name]
    assert check(posed[JOINT[child]] - posed[parent]), (posed[JOINT[child]], rest[JOINT[child]])


def test_lowered_arms_swing_forward_with_negative_x():
    pose = np.zeros((24, 3))
    angles = pose_to_euler(pose)
    angles[JOINT["left_shoulder"]] = [-1.2, 0.0, -1.3]
    angles[JOINT["right_shoulder"]] = [-1.2, 0.0, 1.3]
    joints = posed_joints(euler_to_pose(angles))
    for side in ("left", "right"):
        assert joints[JOINT[f"{side}_wrist"], 2] > joints[JOINT[f"{side}_shoulder"], 2] + 0.3


def test_t_pose_and_mean_pose():
    np.testing.assert_array_equal(t_pose(), 0.0)
    joints = posed_joints(mean_pose())
    for side in ("left", "right"):
        assert joints[JOINT[f"{side}_hand"], 1] < joints[JOINT["pelvis"], 1] + 0.15  # hands by the hips
    assert joints[JOINT["left_hand"], 0] > 0 > joints[JOINT["right_hand"], 0]


def test_walking_feet_below_pelvis_knees_forward_hands_below_head():
    clip = generate_sequence("walk", 80, np.random.default_rng(4))
    joints = body_frame(posed_joints(clip.pose, clip.root_translation), clip.heading)
    pelvis, head = joints[:, JOINT["pelvis"]], joints[:, JOINT["head"]]
    for side in ("left", "right"):
        hip, knee, ankle = (joints[:, JOINT[f"{side}_{j}"]] for j in ("hip", "knee", "ankle"))
        assert np.all(ankle[:, 1] < pelvis[:, 1] - 0.5)
        # Knee in front of the hip-ankle line (at the knee's height) whenever it is bent.
        t = (hip[:, 1] - knee[:, 1]) / (hip[:, 1] - ankle[:, 1])
        line_z = hip[:, 2] + t * (ankle[:, 2] - hip[:, 2])
        bent = np.linalg.norm(ankle - hip, axis=1) < 0.95 * np.linalg.norm(SMPL_REST_JOINTS[JOINT[f"{side}_ankle"]] - SMPL_REST_JOINTS[JOINT[f"{side}_hip"]])
        assert bent.any()
        assert np.all(knee[bent, 2] > line_z[bent])
        assert np.all(joints[:, JOINT[f"{side}_hand"], 1] < head[:, 1] - 0.3)


@pytest.mark.parametrize("action", ACTIONS)
def test_joint_limits_hold_on_every_frame(action):
    for seed in SEEDS:
        clip = generate_sequence(action, 80, np.random.default_rng(seed))
        assert clip.pose.shape == (80, 24, 3) and clip.pose.dtype == np.float32
        assert clip.root_translation.shape == (80, 3) and clip.heading.shape == (80,)
        angles = pose_to_euler(clip.pose)
        assert np.all(angles >= JOINT_LIMITS[..., 0] - 1e-4), action
        assert np.all(angles <= JOINT_LIMITS[..., 1] + 1e-4), action


@pytest.mark.parametrize("action", ACTIONS)
def test_sequences_are_smooth(action):
    """Second differences stay small, and accelerations (second difference * fps^2) do not
    grow when sampling 4x finer: a kink or jump would make them grow with the frame rate."""
    for seed in SEEDS:
        coarse = generate_sequence(action, 60, np.random.default_rng(seed), fps=30.0)
        fine = generate_sequence(action, 240, np.random.default_rng(seed), fps=120.0)
        np.testing.assert_allclose(coarse.pose, fine.pose[::4], atol=1e-4)  # same motion, sampled finer
        accelerations = []
        for clip in (coarse, fine):
            joints = posed_joints(clip.pose, clip.root_translation)
            second = np.linalg.norm(joints[2:] - 2 * joints[1:-1] + joints[:-2], axis=-1)
            accelerations.append(second.max() * clip.fps**2)
        assert accelerations[0] < 0.15 * 30.0**2  # < 0.15 m per frame^2 at 30 fps
        assert accelerations[1] < 1.3 * accelerations[0] + 1.0, (action, accelerations)


def test_generation_is_deterministic_per_seed():
    first = generate_sequence("run", 50, np.random.default_rng(11))
    second = generate_sequence("run", 50, np.random.default_rng(11))
    other = generate_sequence("run", 50, np.random.default_rng(12))
    np.testing.assert_array_equal(first.pose, second.pose)
    np.testing.assert_array_equal(first.root_translation, second.root_translation)
    assert not np.allclose(first.pose, other.pose)


def test_actions_do_what_their_names_say():
    rng = np.random.default_rng
    walk = generate_sequence("walk", 60, rng(0), initial_heading=0.5)
    travel = walk.root_translation[-1] - walk.root_translation[0]
    assert np.dot(travel, [np.sin(0.5), 0.0, np.cos(0.5)]) > 0.8 * 2.0 * 1.0  # >= ~1 m/s for 2 s
    for action, min_range in (("crouch", 0.25), ("sit", 0.25), ("jump", 0.12)):
        height = generate_sequence(action, 80, rng(1)).root_translation[:, 1]
        assert np.ptp(height) > min_range, action
    turn = generate_sequence("turn", 80, rng(2))
    change = np.angle(np.exp(1j * (turn.heading[-1] - turn.heading[0])))
    assert abs(change) > np.pi / 2 - 0.05
    wave = generate_sequence("wave", 80, rng(3))
    joints = posed_joints(wave.pose)[-1]
    assert max(joints[JOINT["left_wrist"], 1], joints[JOINT["right_wrist"], 1]) > joints[JOINT["neck"], 1]
    reach = generate_sequence("reach", 80, rng(5), initial_heading=0.0)
    joints = posed_joints(reach.pose)[-1]
    assert max(joints[JOINT["left_wrist"], 2], joints[JOINT["right_wrist"], 2]) > joints[JOINT["neck"], 2] + 0.2


def test_feet_stay_on_the_ground_when_standing():
    clip = generate_sequence("idle", 40, np.random.default_rng(0), foot_clearance=0.04)
    joints = posed_joints(clip.pose, clip.root_translation)
    feet = joints[:, [JOINT["left_foot"], JOINT["right_foot"]], 1]
    assert np.all(np.abs(feet.min(axis=1) - 0.04) < 0.03)


def test_hard_clip_and_euler_round_trip():
    rng = np.random.default_rng(0)
    inside = rng.uniform(JOINT_LIMITS[..., 0] * 0.95, JOINT_LIMITS[..., 1] * 0.95)
    np.testing.assert_allclose(pose_to_euler(euler_to_pose(inside)), inside, atol=1e-9)
    np.testing.assert_allclose(clip_pose_to_limits(euler_to_pose(inside)), euler_to_pose(inside), atol=1e-9)
    broken = np.zeros((24, 3))
    broken[JOINT["left_knee"], 0] = 3.0  # beyond the 2.6 rad knee limit
    fixed = pose_to_euler(clip_pose_to_limits(broken))
    assert fixed[JOINT["left_knee"], 0] == pytest.approx(JOINT_LIMITS[JOINT["left_knee"], 0, 1])


def test_soft_clip_is_smooth_and_strictly_inside():
    x = np.linspace(-4.0, 4.0, 8001)
    angles = np.zeros((len(x), 24, 3))
    angles[:, JOINT["left_knee"], 0] = x
    y = soft_clip_angles(angles)[:, JOINT["left_knee"], 0]
    lo, hi = JOINT_LIMITS[JOINT["left_knee"], 0]
    assert y.min() >= lo and y.max() <= hi
    middle = (x > lo + 0.3) & (x < hi - 0.3)
    np.testing.assert_array_equal(y[middle], x[middle])
    slope = np.diff(y) / np.diff(x)
    assert np.abs(np.diff(slope)).max() < 0.01  # no jump in the first derivative


def test_unknown_action_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown action 'dance'.*walk"):
        generate_sequence("dance", 30, np.random.default_rng(0))


def test_to_camera_frame_moves_the_body_rigidly():
    clip = generate_sequence("jump", 20, np.random.default_rng(0))
    rotation = Rotation.from_euler("xyz", [3.0, 0.4, -0.2]).as_matrix()
    translation = np.array([0.3, 1.2, 6.0])
    pose_cam, transl_cam = to_camera_frame(clip.pose, clip.root_translation, rotation, translation,
                                           SMPL_REST_JOINTS[0])
    expected = posed_joints(clip.pose, clip.root_translation) @ rotation.T + translation
    np.testing.assert_allclose(posed_joints(pose_cam, transl_cam), expected, atol=1e-5)
    np.testing.assert_array_equal(pose_cam[:, 1:], clip.pose[:, 1:])

"""Procedural SMPL motion for the mini world: skeleton, forward kinematics, joint limits, clips.

Pose convention (as SMPL): axis-angle (T, 24, 3), joint 0 = global orientation, the others
local rotations relative to the parent, in the canonical frame (y up, facing +z, the body's
left on +x, T-pose rest). Signs of the main degrees of freedom, checked with
`forward_kinematics` in the tests:

* hip flexion (thigh forward) is negative about x, knee flexion positive about x;
* spine / neck flexion (lean forward) is positive about x;
* shoulders lower the arms from the T-pose about z (left negative, right positive); with the
  arms lowered, swinging them forward is negative about x for both sides;
* elbow flexion (forearm forward) is about y: negative on the left, positive on the right.

Joint limits (`JOINT_LIMITS`, radians) are boxes on Tait-Bryan angles: each joint has an
intrinsic Euler order (`JOINT_EULER_ORDER`, scipy notation) chosen so that its large
degree of freedom is never the middle axis; the middle angle stays inside (-pi/2, pi/2), so
decomposing a rotation inside its box gives back the same three angles. Generated motion is
limited with a smooth saturation (`soft_clip_angles`, C1, so the clip keeps accelerations
finite); `clip_pose_to_limits` hard-clips any given pose (decompose, clip each angle,
recompose). The root's heading (y) is unlimited and wrapped to [-pi, pi].

The action library (walk, run, ...) lives in `motion_actions.py`; `clips.generate_sequence` turns
its Euler-angle curves into a `MotionClip` with a grounded root trajectory.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from gtahuman.body.joint_names import SMPL as SMPL_JOINT_NAMES
from gtahuman.body.joint_names import SMPL_PARENTS as _PARENTS

NUM_JOINTS = 24
JOINT = {name: index for index, name in enumerate(SMPL_JOINT_NAMES)}
SMPL_PARENTS = np.array(_PARENTS, dtype=np.int64)

# Approximate rest joints of the mean SMPL body (metres, canonical frame). Only used for
# motion generation and sign checks; pass a body's own rest joints where you have them.
SMPL_REST_JOINTS = np.array([
    [0.000, -0.223, 0.028], [0.070, -0.314, 0.024], [-0.068, -0.315, 0.022],
    [-0.003, -0.109, 0.002], [0.104, -0.676, 0.037], [-0.106, -0.684, 0.032],
    [0.006, 0.025, 0.032], [0.089, -1.085, -0.014], [-0.092, -1.087, -0.015],
    [0.002, 0.080, 0.029], [0.120, -1.143, 0.109], [-0.118, -1.142, 0.111],
    [-0.004, 0.287, -0.015], [0.079, 0.194, -0.010], [-0.082, 0.192, -0.013],
    [0.003, 0.376, 0.037], [0.173, 0.222, -0.019], [-0.175, 0.223, -0.027],
    [0.425, 0.212, -0.039], [-0.427, 0.208, -0.044], [0.670, 0.220, -0.037],
    [-0.672, 0.218, -0.045], [0.754, 0.211, -0.051], [-0.758, 0.210, -0.057],
], dtype=np.float32)

# Intrinsic Euler order per joint: the root turns about y first (heading), the elbows flex
# about y first; every other joint has its small twist on the middle axis.
JOINT_EULER_ORDER: tuple[str, ...] = tuple(
    "YXZ" if name in ("pelvis", "left_elbow", "right_elbow") else "XYZ" for name in SMPL_JOINT_NAMES
)

_PI = float(np.pi)
# (lo, hi) about x, y, z per joint, radians. Left/right mirror: y and z limits swap sign.
_LEFT_LIMITS: dict[str, tuple[tuple[float, float], ...]] = {
    "pelvis": ((-0.6, 1.2), (-_PI, _PI), (-0.5, 0.5)),
    "left_hip": ((-2.3, 0.7), (-0.7, 0.7), (-0.5, 1.0)),
    "spine_1": ((-0.5, 0.8), (-0.6, 0.6), (-0.5, 0.5)),
    "left_knee": ((-0.05, 2.6), (-0.2, 0.2), (-0.1, 0.1)),
    "spine_2": ((-0.5, 0.8), (-0.6, 0.6), (-0.5, 0.5)),
    "left_ankle": ((-0.9, 0.9), (-0.4, 0.4), (-0.4, 0.4)),
    "spine_3": ((-0.5, 0.8), (-0.6, 0.6), (-0.5, 0.5)),
    "left_foot": ((-0.5, 0.5), (-0.2, 0.2), (-0.2, 0.2)),
    "neck": ((-0.6, 0.8), (-0.8, 0.8), (-0.5, 0.5)),
    "left_collar": ((-0.3, 0.3), (-0.3, 0.3), (-0.3, 0.4)),
    "head": ((-0.5, 0.6), (-0.8, 0.8), (-0.4, 0.4)),
    "left_shoulder": ((-2.8, 1.2), (-1.0, 1.0), (-1.6, 1.4)),
    "left_elbow": ((-0.6, 0.6), (-2.6, 0.05), (-0.3, 0.3)),
    "left_wrist": ((-1.0, 1.0), (-0.8, 0.8), (-1.0, 1.0)),
    "left_hand": ((-0.3, 0.3), (-0.3, 0.3), (-0.3, 0.3)),
}


def _build_limits() -> np.ndarray:
    limits = np.zeros((NUM_JOINTS, 3, 2), dtype=np.float64)
    for name, index in JOINT.items():
        if name.startswith("right_"):
            (xl, xh), (yl, yh), (zl, zh) = _LEFT_LIMITS["left_" + name[len("right_"):]]
            limits[index] = ((xl, xh), (-yh, -yl), (-zh, -zl))
        else:
            limits[index] = _LEFT_LIMITS[name]
    return limits


JOINT_LIMITS: np.ndarray = _build_limits()  # (24, 3 axes x/y/z, lo/hi)


@dataclass(frozen=True)
class MotionClip:
    """One generated sequence.

    pose: (T, 24, 3) float32 axis-angle, root orientation in the ground frame (y up).
    root_translation: (T, 3) float32 metres, SMPL `transl` in the ground frame: with the rest
        joints used for generation, the lowest foot joint sits `foot_clearance` above y = 0.
    heading: (T,) float32 radians, yaw about +y; the body faces (sin h, 0, cos h).
    """

    action: str
    pose: np.ndarray
    root_translation: np.ndarray
    heading: np.ndarray
    fps: float


def forward_kinematics(
    parents: np.ndarray, rest_joints: np.ndarray, rotmats: np.ndarray
) -> np.ndarray:
    """Posed joint positions (..., J, 3) from local rotations (..., J, 3, 3).

    Like SMPL without translation: the root joint stays at its rest position and every
    other joint hangs off its parent by the rest offset, rotated by the parent's global
    rotation. Parents must precede their children.
    """
    parents = np.asarray(parents)
    rest = np.asarray(rest_joints, dtype=np.float64)
    rotmats = np.asarray(rotmats, dtype=np.float64)
    num = len(parents)
    if rotmats.shape[-3:] != (num, 3, 3) or rest.shape[-2:] != (num, 3):
        raise ValueError(
            f"forward_kinematics: expected rotmats (..., {num}, 3, 3) and rest_joints "
            f"(..., {num}, 3), got {rotmats.shape} and {rest.shape}"
        )
    batch = rotmats.shape[:-3]
    global_rot: list[np.ndarray] = []
    positions: list[np.ndarray] = []
    for j, parent in enumerate(parents):
        if parent < 0:
            global_rot.append(rotmats[..., j, :, :])
            positions.append(np.broadcast_to(rest[..., j, :], batch + (3,)))
            continue
        if parent >= j:
            raise ValueError(f"forward_kinematics: parent {parent} of joint {j} must come first")
        offset = rest[..., j, :] - rest[..., parent, :]
        positions.append(positions[parent] + np.einsum("...ab,...b->...a", global_rot[parent], offset))
        global_rot.append(global_rot[parent] @ rotmats[..., j, :, :])
    return np.stack(positions, axis=-2)


def _order_permutation(order: str) -> list[int]:
    return ["XYZ".index(axis) for axis in order]


def euler_to_rotmats(angles: np.ndarray) -> np.ndarray:
    """(..., 24, 3) angles about (x, y, z), composed in each joint's order -> (..., 24, 3, 3)."""
    angles = np.asarray(angles, dtype=np.float64)
    out = np.empty(angles.shape[:-1] + (3, 3))
    for order in set(JOINT_EULER_ORDER):
        idx = [j for j, o in enumerate(JOINT_EULER_ORDER) if o == order]
        sub = angles[..., idx, :][..., _order_permutation(order)]
        mats = Rotation.from_euler(order, sub.reshape(-1, 3)).as_matrix()
        out[..., idx, :, :] = mats.reshape(sub.shape[:-1] + (3, 3))
    return out


def rotmats_to_euler(rotmats: np.ndarray) -> np.ndarray:
    """Inverse of `euler_to_rotmats`: (..., 24, 3, 3) -> angles about (x, y, z)."""
    rotmats = np.asarray(rotmats, dtype=np.float64)
    out = np.empty(rotmats.shape[:-2] + (3,))
    for order in set(JOINT_EULER_ORDER):
        idx = [j for j, o in enumerate(JOINT_EULER_ORDER) if o == order]
        sub = rotmats[..., idx, :, :]
        ordered = Rotation.from_matrix(sub.reshape(-1, 3, 3)).as_euler(order)
        angles = np.empty_like(ordered)
        angles[:, _order_permutation(order)] = ordered
        out[..., idx, :] = angles.reshape(sub.shape[:-2] + (3,))
    return out


def pose_to_euler(pose: np.ndarray) -> np.ndarray:
    """Axis-angle (..., 24, 3) -> per-joint angles about (x, y, z) in `JOINT_EULER_ORDER`."""
    pose = np.asarray(pose, dtype=np.float64)
    mats = Rotation.from_rotvec(pose.reshape(-1, 3)).as_matrix().reshape(pose.shape + (3,))
    return rotmats_to_euler(mats)


def euler_to_pose(angles: np.ndarray) -> np.ndarray:
    """Per-joint angles about (x, y, z) -> axis-angle (..., 24, 3)."""
    mats = euler_to_rotmats(angles)
    return Rotation.from_matrix(mats.reshape(-1, 3, 3)).as_rotvec().reshape(mats.shape[:-2] + (3,))


def _unlimited(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return (hi - lo) >= 2 * np.pi - 1e-9


def soft_clip_angles(angles: np.ndarray, limits: np.ndarray = JOINT_LIMITS) -> np.ndarray:
    """Smoothly saturate (..., 24, 3) angles into their limits (C1; identity well inside).

    Within `margin` of a bound the curve bends exponentially towards it, so the result is
    strictly inside the box and its first derivative stays continuous. Unlimited axes
    (range 2 pi) are wrapped to [-pi, pi] instead.
    """
    lo, hi = limits[..., 0], limits[..., 1]
    margin = np.minimum(0.2, 0.15 * (hi - lo))
    x = np.asarray(angles, dtype=np.float64)
    upper, lower = hi - margin, lo + margin
    # np.minimum/maximum keep exp() finite on the branch np.where discards.
    above = hi - margin * np.exp(-np.maximum(x - upper, 0.0) / margin)
    below = lo + margin * np.exp(-np.maximum(lower - x, 0.0) / margin)
    out = np.where(x > upper, above, np.where(x < lower, below, x))
    wrapped = (x + np.pi) % (2 * np.pi) - np.pi
    return np.where(_unlimited(lo, hi), wrapped, out)


def clip_pose_to_limits(pose: np.ndarray, limits: np.ndarray = JOINT_LIMITS) -> np.ndarray:
    """Hard-clip an axis-angle pose (..., 24, 3): decompose, clip every angle, recompose."""
    angles = pose_to_euler(pose)
    clipped = np.clip(angles, limits[..., 0], limits[..., 1])
    return euler_to_pose(clipped).astype(np.asarray(pose).dtype, copy=False)


def t_pose() -> np.ndarray:
    """(24, 3) zeros: SMPL's rest pose."""
    return np.zeros((NUM_JOINTS, 3), dtype=np.float32)


def relaxed_standing_angles() -> np.ndarray:
    """(24, 3) Euler angles of a relaxed stance: arms down, elbows and knees slightly bent."""
    angles = np.zeros((NUM_JOINTS, 3))
    for side, sign in (("left", 1.0), ("right", -1.0)):
        angles[JOINT[f"{side}_shoulder"], 2] = -sign * 1.2
        angles[JOINT[f"{side}_elbow"], 1] = -sign * 0.3
        angles[JOINT[f"{side}_hip"], 2] = sign * 0.05
        angles[JOINT[f"{side}_knee"], 0] = 0.05
    return angles


def mean_pose() -> np.ndarray:
    """(24, 3) float32 axis-angle of the relaxed stance, identity root (canonical frame).

    Our stand-in for a dataset's mean pose (SPIN's mean has the root turned by pi about x
    because it lives in the camera frame; this one does not)."""
    return euler_to_pose(relaxed_standing_angles()).astype(np.float32)


def soft_minimum(values: np.ndarray, temperature: float, axis: int = -1) -> np.ndarray:
    """Smooth minimum (-t log sum exp(-v/t)): differentiable, at most t*log(n) below min."""
    shifted = values.min(axis=axis, keepdims=True)
    summed = np.exp(-(values - shifted) / temperature).sum(axis=axis)
    return np.squeeze(shifted, axis=axis) - temperature * np.log(summed)


FOOT_JOINTS = tuple(JOINT[n] for n in ("left_ankle", "right_ankle", "left_foot", "right_foot"))


def to_camera_frame(
    pose: np.ndarray, root_translation: np.ndarray, rotation: np.ndarray, translation: np.ndarray,
    pelvis_rest: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """SMPL parameters from the ground frame to a camera with x_cam = rotation @ x + translation.

    SMPL turns the body about its rest pelvis J0, then adds `transl`, so the new root is
    rotation @ R0 and the new `transl` is rotation @ (J0 + transl) + translation - J0 (J0 of
    the body with its betas). Returns (pose (T, 24, 3) with the new root, transl (T, 3)).
    """
    rotation = np.asarray(rotation, dtype=np.float64)
    pelvis = np.asarray(pelvis_rest, dtype=np.float64)
    root = Rotation.from_matrix(rotation) * Rotation.from_rotvec(np.asarray(pose, dtype=np.float64)[:, 0])
    pose_cam = np.array(pose, copy=True)
    pose_cam[:, 0] = root.as_rotvec()
    transl = (np.asarray(root_translation, dtype=np.float64) + pelvis) @ rotation.T + translation - pelvis
    return pose_cam, transl.astype(np.asarray(root_translation).dtype)


ACTIONS: tuple[str, ...] = ("walk", "run", "reach", "crouch", "sit", "wave", "jump", "turn", "idle")

"""Per-sample factors for the data-scarcity analyses (paper Fig. 5 and Fig. 9).

Everything here is batched numpy over N samples, so ``prepare`` can compute the factors of
1.4 M GTA-Human frames in seconds and store them as index columns:

- camera angle (elevation, azimuth) of the camera as seen from the body, from the SMPL global
  orientation and translation in the OpenCV camera frame;
- pose distance: a body pose encoded as its 24 joints' 3D coordinates (forward kinematics over a
  fixed neutral rest skeleton, global orientation removed, root-relative), compared with a
  reference pose (the mean pose, and the T-pose) by the mean per-joint distance, in mm;
- occlusion and self-occlusion ratios from per-joint flags, truncation from 2D keypoints, and
  the in-game time of day in hours.

Frames: SMPL's canonical body frame is y up, facing +z, the body's left on +x. The camera frame
is OpenCV's (x right, y down, z forward) with the camera at the origin; ``global_orient`` maps
body -> camera. An upright person facing the camera therefore has global_orient = 180 degrees
about x.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from gtahuman.body.joint_names import SMPL_PARENTS as _PARENTS

SMPL_PARENTS = np.array(_PARENTS)  # parent of each SMPL kinematic joint (body/joint_names.SMPL order)
NUM_SMPL_JOINTS = 24
_CHUNK = 32768  # poses per batch: bounds memory (~20 MB of rotation matrices per batch)


def _rows(name: str, array: np.ndarray, width: int) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != width:
        raise ValueError(f"{name}: expected shape (N, {width}), got {array.shape}")
    return array


def axis_angle_to_matrix(axis_angle: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle -> (..., 3, 3) rotation matrices (float64)."""
    axis_angle = np.asarray(axis_angle, dtype=np.float64)
    flat = Rotation.from_rotvec(axis_angle.reshape(-1, 3)).as_matrix()
    return flat.reshape(*axis_angle.shape[:-1], 3, 3)


# -- camera angle -----------------------------------------------------------------------------
def camera_angles(
    global_orient_aa: np.ndarray, transl: np.ndarray, root_offset: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Direction of the camera seen from the body's root: (elevation_deg, azimuth_deg), float32.

    The body's root sits at ``transl`` (+ ``root_offset``, e.g. the rest pelvis J0 of the body
    model, for the exact pelvis: SMPL rotates about J0). Elevation is the angle above the body's
    horizontal plane (+90 = camera straight above the body's up axis, looking down); azimuth is
    0 with the camera in front of the body (its +z side), +90 on the body's left, +-180 behind.
    At elevation +-90 the azimuth is undefined and reported as whatever atan2 gives (0 if exact).
    """
    rotation = axis_angle_to_matrix(_rows("global_orient_aa", global_orient_aa, 3))
    root = _rows("transl", transl, 3)
    if root_offset is not None:
        root = root + np.asarray(root_offset, dtype=np.float64)
    if len(rotation) != len(root):
        raise ValueError(f"global_orient_aa has {len(rotation)} rows, transl {len(root)}")
    # Body-to-camera vector in camera coordinates is -root; R^T takes it into the body frame.
    to_camera = np.einsum("nji,nj->ni", rotation, -root)
    x, y, z = to_camera[:, 0], to_camera[:, 1], to_camera[:, 2]
    elevation = np.degrees(np.arctan2(y, np.hypot(x, z)))
    azimuth = np.degrees(np.arctan2(x, z))
    return elevation.astype(np.float32), azimuth.astype(np.float32)


# -- pose distance ----------------------------------------------------------------------------
def _check_skeleton(rest_joints: np.ndarray, parents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rest_joints = np.asarray(rest_joints, dtype=np.float64)
    parents = np.asarray(parents, dtype=np.int64)
    if rest_joints.ndim != 2 or rest_joints.shape[1] != 3 or parents.shape != (len(rest_joints),):
        raise ValueError(f"rest_joints (J, 3) and parents (J,) disagree: {rest_joints.shape} vs {parents.shape}")
    if parents[0] != -1 or np.any(parents[1:] < 0) or np.any(parents[1:] >= np.arange(1, len(parents))):
        raise ValueError(f"parents must be -1 for the root and list every parent before its child, got {parents.tolist()}")
    return rest_joints, parents


def _posed_joints(
    root_rot: np.ndarray | None, child_rot: np.ndarray, rest_joints: np.ndarray, parents: np.ndarray
) -> np.ndarray:
    """Joint-major forward kinematics: root (N, 3, 3) or None (identity), the other joints'
    local rotations (J-1, N, 3, 3) -> positions (J, N, 3).

    Joint-major arrays keep each joint's batch contiguous, which makes the batched 3x3 products
    several times faster than slicing (N, J, 3, 3); leaves' rotations are never accumulated.
    """
    offsets = rest_joints - rest_joints[np.maximum(parents, 0)]
    has_children = np.zeros(len(parents), dtype=bool)
    has_children[parents[1:]] = True
    joints = np.empty((len(parents), child_rot.shape[1], 3), dtype=np.float64)
    joints[0] = rest_joints[0]  # the root rotates about its own rest position
    global_rot: dict[int, np.ndarray | None] = {0: root_rot}
    for j in range(1, len(parents)):
        p = parents[j]
        parent_rot = global_rot[p]
        joints[j] = joints[p] + (offsets[j] if parent_rot is None else parent_rot @ offsets[j])
        if has_children[j]:
            global_rot[j] = child_rot[j - 1] if parent_rot is None else parent_rot @ child_rot[j - 1]
    return joints


def forward_kinematics(rotmats: np.ndarray, rest_joints: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """Posed joint positions (N, J, 3) from local rotations (N, J, 3, 3) over a rest skeleton.

    As in SMPL: the root rotates about its rest position, and each joint hangs from its parent
    by its rest offset rotated by the parent's accumulated rotation. No translation.
    """
    rest_joints, parents = _check_skeleton(rest_joints, parents)
    rotmats = np.asarray(rotmats, dtype=np.float64)
    if rotmats.ndim != 4 or rotmats.shape[1:] != (len(parents), 3, 3):
        raise ValueError(f"rotmats: expected shape (N, {len(parents)}, 3, 3), got {rotmats.shape}")
    child_rot = np.ascontiguousarray(np.moveaxis(rotmats[:, 1:], 1, 0))
    return np.moveaxis(_posed_joints(rotmats[:, 0], child_rot, rest_joints, parents), 0, 1)


def _encode_joint_major(body_pose_aa: np.ndarray, rest_joints: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """(N, 3*(J-1)) checked body poses -> (J, N, 3) root-relative joints, root unrotated."""
    n = len(body_pose_aa)
    axis_angle = np.ascontiguousarray(body_pose_aa.reshape(n, -1, 3).transpose(1, 0, 2))
    child_rot = axis_angle_to_matrix(axis_angle)  # (J-1, N, 3, 3)
    joints = _posed_joints(None, child_rot, rest_joints, parents)
    return joints - joints[:1]


def encode_poses(body_pose_aa: np.ndarray, rest_joints: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """Body poses (N, 3*(J-1)) -> root-relative joint coordinates (N, J, 3) with the root unrotated
    (global orientation removed): the pose encoding of the paper's Fig. 9 c-d."""
    rest_joints, parents = _check_skeleton(rest_joints, parents)
    body_pose_aa = _rows("body_pose_aa", body_pose_aa, 3 * (len(parents) - 1))
    return np.moveaxis(_encode_joint_major(body_pose_aa, rest_joints, parents), 0, 1)


def _distances_to_references(
    body_pose_aa: np.ndarray, rest_joints: np.ndarray, parents: np.ndarray, references: np.ndarray, chunk: int
) -> np.ndarray:
    """(N, K) mean per-joint distance in mm from each encoded pose to each of K encoded references."""
    body_pose_aa = _rows("body_pose_aa", body_pose_aa, 3 * (len(parents) - 1))
    out = np.empty((len(body_pose_aa), len(references)), dtype=np.float32)
    for start in range(0, len(body_pose_aa), chunk):
        joints = _encode_joint_major(body_pose_aa[start:start + chunk], rest_joints, parents)  # (J, n, 3)
        for k, reference in enumerate(references):
            gaps = np.linalg.norm(joints - reference[:, None], axis=-1)  # (J, n)
            out[start:start + chunk, k] = 1000.0 * gaps.mean(axis=0)
    return out


def pose_distances(
    body_pose_aa: np.ndarray,
    rest_joints: np.ndarray,
    parents: np.ndarray = SMPL_PARENTS,
    reference_body_pose: np.ndarray | None = None,
    *,
    reference_joints: np.ndarray | None = None,
    chunk: int = _CHUNK,
) -> np.ndarray:
    """(N,) float32: mean over the J joints (root included, always 0) of the distance in mm
    between each pose and the reference, both encoded by :func:`encode_poses`.

    The reference is ``reference_body_pose`` (axis-angle; None = T-pose, all zeros), or already
    encoded ``reference_joints`` (J, 3), e.g. :func:`mean_pose_joints` of the data.
    """
    rest_joints, parents = _check_skeleton(rest_joints, parents)
    if reference_joints is not None and reference_body_pose is not None:
        raise ValueError("give reference_body_pose or reference_joints, not both")
    if reference_joints is None:
        if reference_body_pose is None:
            reference_body_pose = np.zeros(3 * (len(parents) - 1))
        reference_joints = encode_poses(np.reshape(reference_body_pose, (1, -1)), rest_joints, parents)[0]
    reference_joints = np.asarray(reference_joints, dtype=np.float64)
    if reference_joints.shape != rest_joints.shape:
        raise ValueError(f"reference_joints: expected shape {rest_joints.shape}, got {reference_joints.shape}")
    return _distances_to_references(body_pose_aa, rest_joints, parents, reference_joints[None], chunk)[:, 0]


def mean_pose_joints(
    body_pose_aa: np.ndarray, rest_joints: np.ndarray, parents: np.ndarray = SMPL_PARENTS, chunk: int = _CHUNK
) -> np.ndarray:
    """The data's mean pose in the joint encoding: (J, 3) mean of the encoded poses."""
    rest_joints, parents = _check_skeleton(rest_joints, parents)
    body_pose_aa = _rows("body_pose_aa", body_pose_aa, 3 * (len(parents) - 1))
    if len(body_pose_aa) == 0:
        raise ValueError("mean_pose_joints needs at least one pose")
    total = np.zeros_like(rest_joints)
    for start in range(0, len(body_pose_aa), chunk):
        total += _encode_joint_major(body_pose_aa[start:start + chunk], rest_joints, parents).sum(axis=1)
    return total / len(body_pose_aa)


# -- occlusion, truncation, time of day ------------------------------------------------------
def occlusion_ratios(
    occ: np.ndarray, self_occ: np.ndarray, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fractions of valid joints flagged occluded (by other objects) and self-occluded, float32.

    The two flags are counted independently. Rows without a valid joint give NaN (unknown).
    """
    occ, self_occ = np.asarray(occ).astype(bool), np.asarray(self_occ).astype(bool)
    valid = np.ones(occ.shape, dtype=bool) if valid is None else np.asarray(valid).astype(bool)
    if occ.ndim != 2 or self_occ.shape != occ.shape or valid.shape != occ.shape:
        raise ValueError(
            f"occ, self_occ and valid must share one (N, J) shape: {occ.shape}, {self_occ.shape}, {valid.shape}"
        )
    count = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        occluded = np.where(count > 0, (occ & valid).sum(axis=1) / count, np.nan)
        self_occluded = np.where(count > 0, (self_occ & valid).sum(axis=1) / count, np.nan)
    return occluded.astype(np.float32), self_occluded.astype(np.float32)


def truncation(keypoints2d: np.ndarray, image_size: np.ndarray) -> np.ndarray:
    """(N,) float32 fraction of annotated joints (conf > 0) outside [0, W] x [0, H]; NaN if none.

    ``image_size`` is (N, 2) or one (2,) (W, H) for all rows.
    """
    keypoints2d = np.asarray(keypoints2d, dtype=np.float64)
    if keypoints2d.ndim != 3 or keypoints2d.shape[2] != 3:
        raise ValueError(f"keypoints2d: expected shape (N, J, 3), got {keypoints2d.shape}")
    size = np.broadcast_to(np.asarray(image_size, dtype=np.float64), (len(keypoints2d), 2))[:, None, :]
    xy, annotated = keypoints2d[..., :2], keypoints2d[..., 2] > 0
    outside = ((xy < 0) | (xy > size)).any(axis=-1) & annotated
    count = annotated.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, outside.sum(axis=1) / count, np.nan).astype(np.float32)


def daytime_hours(daytime_hms: np.ndarray) -> np.ndarray:
    """(N, 3) (hour, minute, second) -> (N,) float32 hours in [0, 24)."""
    hms = _rows("daytime_hms", daytime_hms, 3)
    return (np.mod(hms[:, 0] + hms[:, 1] / 60.0 + hms[:, 2] / 3600.0, 24.0)).astype(np.float32)


def smpl_factors(
    global_orient_aa: np.ndarray,
    transl: np.ndarray,
    body_pose_aa: np.ndarray,
    rest_joints: np.ndarray,
    mean_body_pose: np.ndarray | None = None,
    parents: np.ndarray = SMPL_PARENTS,
    root_offset: np.ndarray | None = None,
    chunk: int = _CHUNK,
) -> dict[str, np.ndarray]:
    """The SMPL-derived factor columns of the sample index, keyed by column name.

    ``mean_body_pose`` (3*(J-1),) axis-angle, e.g. SPIN's mean params converted; None = the
    data's own mean pose (:func:`mean_pose_joints`). Each pose is encoded only once.
    """
    rest_joints, parents = _check_skeleton(rest_joints, parents)
    elevation, azimuth = camera_angles(global_orient_aa, transl, root_offset)
    if mean_body_pose is None:
        mean_joints = mean_pose_joints(body_pose_aa, rest_joints, parents, chunk)
    else:
        mean_joints = encode_poses(np.reshape(mean_body_pose, (1, -1)), rest_joints, parents)[0]
    tpose_joints = rest_joints - rest_joints[0]
    distances = _distances_to_references(body_pose_aa, rest_joints, parents, np.stack([mean_joints, tpose_joints]), chunk)
    return {"cam_elevation": elevation, "cam_azimuth": azimuth,
            "pose_dist_mean": distances[:, 0], "pose_dist_tpose": distances[:, 1]}

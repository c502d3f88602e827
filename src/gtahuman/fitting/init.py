"""A good starting point for the fit, computed in closed form from the 3D keypoints.

1. **Shape** (`estimate_betas`): rest-pose kinematic joints are linear in the betas, so bone
   lengths are smooth functions of them; a few Gauss-Newton steps match the model's bone
   lengths to the sequence's median observed lengths (with a ridge towards betas = 0).
2. **Pose** (`initial_pose`), frame by frame and joint by joint down the kinematic tree: each
   joint's global rotation best maps the rest-pose vectors from the joint to the points that
   move rigidly with it (its child joints and the targets attached to it) onto the observed
   vectors (weighted Kabsch). When those vectors are all (nearly) parallel, as for a limb seen
   through its one child, the twist about them is unknown and the joint takes the smallest
   rotation away from its parent's orientation instead. The root's rotation and the
   translation come from the same Kabsch on the root's points, with centroids.

Which targets "move rigidly with" a joint (`attachments`) is found numerically: the deepest
joint whose own rotation moves the target. Everything here is torch float64 without autograd.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from gtahuman.fitting.body_points import BodyPoints
from gtahuman.fitting.keypoint_map import NUM_KINEMATIC, KeypointMap

PARALLEL_TOLERANCE = 0.05  # second singular value / first below this: one direction only
_EPS = 1e-9


def attachments(points: BodyPoints) -> np.ndarray:
    """(K,) for each target, the deepest kinematic joint whose rotation moves it."""
    with torch.no_grad():
        betas = torch.zeros(1, points.num_betas)
        rest = points(torch.eye(3).expand(1, NUM_KINEMATIC, 3, 3), betas).targets[0]
        turn = torch.as_tensor(_rodrigues(np.array([0.3, 0.5, 0.4])), dtype=torch.float32)
        rotmats = torch.eye(3).repeat(NUM_KINEMATIC, NUM_KINEMATIC, 1, 1)
        rotmats[torch.arange(NUM_KINEMATIC), torch.arange(NUM_KINEMATIC)] = turn
        moved = (points(rotmats, betas).targets - rest).norm(dim=-1) > 1e-5  # (joint, K)
    depth = np.array([len(_ancestors(points.parents, j)) for j in range(NUM_KINEMATIC)])
    movement = moved.numpy()
    return np.array([int(np.flatnonzero(movement[:, k])[np.argmax(depth[movement[:, k]])])
                     if movement[:, k].any() else 0 for k in range(movement.shape[1])])


def _ancestors(parents: np.ndarray, joint: int) -> list[int]:
    chain = []
    while parents[joint] >= 0:
        joint = int(parents[joint])
        chain.append(joint)
    return chain


def _rodrigues(axis_angle: np.ndarray) -> np.ndarray:
    angle = np.linalg.norm(axis_angle)
    k = axis_angle / angle
    skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew


def kabsch(rest: Tensor, observed: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Rotations R (T, 3, 3) minimising sum_i w_i |R rest_i - observed_i|^2, and the ratio of
    the second to the first singular value (T,) (small: the vectors are nearly parallel).

    ``rest`` (T or 1, N, 3), ``observed`` (T, N, 3), ``weights`` (T, N)."""
    covariance = torch.einsum("tn,tni,tnj->tij", weights, observed, rest.expand_as(observed))
    u, s, vh = torch.linalg.svd(covariance)
    fix = torch.ones_like(s)
    fix[:, 2] = torch.sign(torch.linalg.det(u @ vh))
    rotation = u @ torch.diag_embed(fix) @ vh
    return rotation, s[:, 1] / s[:, 0].clamp_min(_EPS)


def align_vectors(source: Tensor, target: Tensor) -> Tensor:
    """Smallest rotations (T, 3, 3) turning directions ``source`` (T, 3) onto ``target`` (T, 3)."""
    a = source / source.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    b = target / target.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    cross, cos = torch.linalg.cross(a, b), (a * b).sum(-1)
    skew = torch.zeros(*a.shape[:-1], 3, 3, dtype=a.dtype)
    skew[..., 0, 1], skew[..., 0, 2], skew[..., 1, 2] = -cross[..., 2], cross[..., 1], -cross[..., 0]
    skew = skew - skew.transpose(-1, -2)
    # R = I + K + K^2 / (1 + cos); opposite vectors (cos ~ -1) get a half turn about a normal.
    scale = (1.0 / (1.0 + cos).clamp_min(1e-6))[..., None, None]
    rotation = torch.eye(3, dtype=a.dtype) + skew + skew @ skew * scale
    opposite = cos < -1 + 1e-6
    if opposite.any():
        normal = torch.linalg.cross(a[opposite], torch.tensor([1.0, 0.0, 0.0], dtype=a.dtype).expand_as(a[opposite]))
        bad = normal.norm(dim=-1) < 1e-3
        y_axis = torch.tensor([0.0, 1.0, 0.0], dtype=a.dtype).expand(int(bad.sum()), 3)
        normal[bad] = torch.linalg.cross(a[opposite][bad], y_axis)
        normal = normal / normal.norm(dim=-1, keepdim=True)
        rotation[opposite] = 2 * normal[..., :, None] * normal[..., None, :] - torch.eye(3, dtype=a.dtype)
    return rotation


def estimate_betas(observed: Tensor, valid: Tensor, points: BodyPoints, prior: float = 1e-4,
                   steps: int = 4) -> Tensor:
    """(1, B) betas whose rest bone lengths match the median observed ones.

    ``observed`` (T, 24, 3) kinematic joints, ``valid`` (T, 24) bool. ``prior`` (m^2 per
    unit beta^2) weighs the ridge towards the mean shape."""
    template = points.joint_template.double()
    basis = points.joint_shapedirs.double()  # (24, 3, B)
    bones = [(j, int(p)) for j, p in enumerate(points.parents) if p >= 0]
    lengths, usable = [], []
    for child, parent in bones:
        both = valid[:, child] & valid[:, parent]
        if both.any():
            lengths.append((observed[both, child] - observed[both, parent]).norm(dim=-1).median())
            usable.append((child, parent))
    betas = torch.zeros(basis.shape[-1], dtype=torch.float64)
    if not usable:
        return betas[None]
    target = torch.stack(lengths).double()
    child, parent = (torch.tensor(x) for x in zip(*usable))
    for _ in range(steps):
        delta = template[child] - template[parent] + (basis[child] - basis[parent]) @ betas  # (N, 3)
        length = delta.norm(dim=-1)
        jacobian = torch.einsum("nc,ncb->nb", delta / length[:, None], basis[child] - basis[parent])
        lhs = jacobian.T @ jacobian + prior * torch.eye(len(betas), dtype=torch.float64)
        rhs = jacobian.T @ (length - target) + prior * betas
        betas = betas - torch.linalg.solve(lhs, rhs)
    return betas[None]


def _fill_invalid(rotations: Tensor, ok: Tensor) -> Tensor:
    """Frames without a solution take the nearest earlier (else later) solved frame's value."""
    if bool(ok.all()) or not bool(ok.any()):
        return rotations
    index = torch.arange(len(ok))
    last = torch.cummax(torch.where(ok, index, torch.full_like(index, -1)), 0).values
    first_ok = int(torch.nonzero(ok)[0])
    return rotations[torch.where(last >= 0, last, torch.full_like(last, first_ok))]


def initial_pose(targets: Tensor, confidence: Tensor, keypoint_map: KeypointMap, points: BodyPoints,
                 betas: Tensor, attached: np.ndarray | None = None) -> tuple[Tensor, Tensor]:
    """Local rotations (T, 24, 3, 3) and translation (T, 3), float64, from targets (T, K, 3)
    with per-target confidence (T, K) (0 = missing)."""
    targets, confidence = targets.double(), confidence.double()
    frames = targets.shape[0]
    attached = attachments(points) if attached is None else attached
    with torch.no_grad():
        eye = torch.eye(3).expand(1, NUM_KINEMATIC, 3, 3)
        rest_points = points(eye, betas.float())
    rest_targets, rest_joints = rest_points.targets[0].double(), rest_points.joints[0].double()
    parents = points.parents
    kinematic = keypoint_map.kinematic_targets()
    children = {j: [c for c in range(NUM_KINEMATIC) if parents[c] == j and c in kinematic]
                for j in range(NUM_KINEMATIC)}
    weight = confidence * torch.as_tensor(keypoint_map.weights, dtype=torch.float64)
    global_rot = torch.zeros(frames, NUM_KINEMATIC, 3, 3, dtype=torch.float64)
    position = torch.zeros(frames, NUM_KINEMATIC, 3, dtype=torch.float64)
    transl = torch.zeros(frames, 3, dtype=torch.float64)
    for level in points.levels:
        for joint in level.tolist():
            rows = [kinematic[c] for c in children[joint]]
            parent = int(parents[joint])
            # The joint's own target anchors the root's centroid; elsewhere it has no direction.
            rows += [k for k in np.flatnonzero(attached == joint).tolist()
                     if parent < 0 or k != kinematic.get(joint)]
            rest_vec = rest_targets[rows] - rest_joints[joint]
            if parent < 0:  # root: rotation and translation from centroids
                w = weight[:, rows]
                total = w.sum(-1, keepdim=True).clamp_min(_EPS)
                centre_obs = (w[..., None] * targets[:, rows]).sum(1) / total
                centre_rest = (w[..., None] * rest_vec).sum(1) / total
                rotation, _ = kabsch(rest_vec[None] - centre_rest[:, None], targets[:, rows] - centre_obs[:, None], w)
                rotation = _fill_invalid(rotation, w.sum(-1) > _EPS)
                transl = centre_obs - (rotation @ centre_rest[..., None])[..., 0] - rest_joints[0]
                global_rot[:, 0], position[:, 0] = rotation, rest_joints[0] + transl
                continue
            parent_rot = global_rot[:, parent]
            offset = rest_joints[joint] - rest_joints[parent]
            position[:, joint] = position[:, parent] + (parent_rot @ offset)
            if joint in kinematic:  # an observed joint anchors its own vectors
                seen = weight[:, kinematic[joint]] > 0
                position[seen, joint] = targets[seen, kinematic[joint]]
            global_rot[:, joint] = parent_rot
            if not rows:
                continue
            w = weight[:, rows]
            observed = targets[:, rows] - position[:, joint, None]
            rotation, spread = kabsch(rest_vec[None], observed, w)
            # One direction: smallest turn of the parent-carried rest direction onto it.
            carried = parent_rot @ (w[..., None] * rest_vec).sum(1)[..., None]
            single = align_vectors(carried[..., 0], (w[..., None] * observed).sum(1)) @ parent_rot
            rotation = torch.where((spread < PARALLEL_TOLERANCE)[:, None, None], single, rotation)
            has_data = w.sum(-1) > _EPS
            global_rot[:, joint] = torch.where(has_data[:, None, None], rotation, parent_rot)
    local = global_rot.clone()
    for joint in range(1, NUM_KINEMATIC):
        local[:, joint] = global_rot[:, int(parents[joint])].transpose(-1, -2) @ global_rot[:, joint]
    return _bridge_empty_frames(local, transl, weight.sum(-1) > _EPS)


def _bridge_empty_frames(local: Tensor, transl: Tensor, has_data: Tensor) -> tuple[Tensor, Tensor]:
    """Frames without any keypoint: the pose of the nearest earlier (else later) frame with
    data, the translation interpolated linearly between frames with data."""
    if bool(has_data.all()) or not bool(has_data.any()):
        return local, transl
    local = _fill_invalid(local, has_data)
    frames = torch.arange(len(has_data), dtype=torch.float64)
    known = frames[has_data].numpy()
    filled = [np.interp(frames.numpy(), known, transl[has_data, axis].numpy()) for axis in range(3)]
    return local, torch.as_tensor(np.stack(filled, axis=1), dtype=transl.dtype)

"""Which joints a rendered image shows: in view, hidden by the body itself, or hidden by an
object, read from the depth maps `gtahuman.miniworld.render` produces (GTA-Human's per-joint
``occ`` / ``self_occ`` flags, made the way the game would: by depth, not by guess)."""
from __future__ import annotations

import numpy as np

from gtahuman.miniworld.render import NEAR_PLANE, project


def _joint_pixels(joints_cam: np.ndarray, K: np.ndarray, width: int, height: int):
    joints = np.asarray(joints_cam, dtype=np.float64)
    if joints.ndim != 2 or joints.shape[1] != 3:
        raise ValueError(f"joint_visibility: joints_cam must be (J, 3), got {joints.shape}")
    in_front = joints[:, 2] > NEAR_PLANE
    uv = project(np.where(in_front[:, None], joints, [0.0, 0.0, 1.0]), K)
    cols, rows = np.rint(uv[:, 0]).astype(np.int64), np.rint(uv[:, 1]).astype(np.int64)
    in_view = in_front & (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    return in_view, np.where(in_view, rows, 0), np.where(in_view, cols, 0)


def joint_visibility(joints_cam: np.ndarray, depth: np.ndarray, K: np.ndarray,
                     tolerance: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(in_view (J,), occluded (J,)) from a depth map.

    A joint is in view when it is in front of the camera and its projection rounds to a pixel
    of the image; it is occluded when the depth at that pixel is closer than the joint by more
    than `tolerance` metres. Joints sit inside the body, so with the body in `depth` a joint
    behind thick flesh (pelvis, spine seen from the front: ~0.1 m) counts as occluded with the
    default tolerance; raise it to ignore the body's own thickness.
    """
    height, width = depth.shape
    in_view, rows, cols = _joint_pixels(joints_cam, K, width, height)
    surface = depth[rows, cols]
    occluded = in_view & (surface < np.asarray(joints_cam)[:, 2] - tolerance)
    return in_view, occluded


def occlusion_flags(joints_cam: np.ndarray, body_depth: np.ndarray, scene_depth: np.ndarray, K: np.ndarray,
                    tolerance: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(occ, self_occ) per joint, GTA-Human style, from `render_scene`'s two depth maps.

    self_occ: the body alone (`body_depth`) hides the joint (by more than `tolerance`).
    occ: the scene hides the joint and its nearest surface there is not the body (scene depth
    closer than the body's), i.e. an object is in front. A joint can be both; joints out of
    view are neither (check `joint_visibility` for in_view).
    """
    if body_depth.shape != scene_depth.shape:
        raise ValueError(f"occlusion_flags: depth maps differ in shape {body_depth.shape} vs {scene_depth.shape}")
    _, self_occ = joint_visibility(joints_cam, body_depth, K, tolerance)
    in_view, hidden = joint_visibility(joints_cam, scene_depth, K, tolerance)
    _, rows, cols = _joint_pixels(joints_cam, K, scene_depth.shape[1], scene_depth.shape[0])
    by_object = scene_depth[rows, cols] < body_depth[rows, cols]
    return in_view & hidden & by_object, self_occ

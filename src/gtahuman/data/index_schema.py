"""The sample index's schema: every column with its dtype, per-sample shape and fill value,
and the valid ranges of the scalar factors. `gtahuman.data.index` holds the table itself; it
re-exports these names, which most readers import from there."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

KEYPOINT_CONVENTION = "smpl_54"
NUM_KEYPOINTS = 54
CATEGORICAL = ("weather", "location")  # int16 codes into meta["vocabularies"][column]; -1 unknown


@dataclass(frozen=True)
class Column:
    """Schema of one column: dtype ("S" = fixed-width bytes of any width), per-sample shape,
    whether ``prepare`` must supply it, and the value an absent optional column is filled with."""

    dtype: str
    shape: tuple[int, ...]
    required: bool
    description: str
    fill: Any = 0


def _f32(shape: tuple[int, ...], description: str, fill: float = 0.0, required: bool = False) -> Column:
    return Column("float32", shape, required, description, fill)


_NAN = float("nan")
COLUMNS: dict[str, Column] = {
    "image_path": Column("S", (), True, "image file relative to the dataset root, utf-8"),
    "image_size": Column("int32", (2,), True, "full image (W, H) in pixels"),
    "bbox_xywh": _f32((4,), "person box (x, y, w, h), full-image pixels", required=True),
    "keypoints2d": _f32((NUM_KEYPOINTS, 3), "smpl_54 (x, y, conf), full-image pixels; conf 0 = absent"),
    "keypoints3d": _f32((NUM_KEYPOINTS, 4), "smpl_54 (x, y, z, conf), metres, camera frame"),
    "has_keypoints3d": Column("bool", (), False, "keypoints3d is annotated", False),
    "smpl_global_orient": _f32((3,), "axis-angle, body -> OpenCV camera frame"),
    "smpl_body_pose": _f32((69,), "axis-angle of the 23 body joints"),
    "smpl_betas": _f32((10,), "shape coefficients"),
    "smpl_transl": _f32((3,), "metres, camera frame"),
    "has_smpl": Column("bool", (), False, "the smpl_* columns are annotated", False),
    "gender": Column("int8", (), False, "-1 neutral/unknown, 0 male, 1 female", -1),
    "sequence_id": Column("int32", (), False, "video sequence; -1 for still images", -1),
    "frame_id": Column("int32", (), False, "frame within the sequence; -1 for still images", -1),
    "focal_length": _f32((), "pixels, full image; 0 when unknown"),
    "cam_elevation": _f32((), "degrees above the body's horizontal plane", _NAN),
    "cam_azimuth": _f32((), "degrees, 0 in front of the body, +90 on its left", _NAN),
    "pose_dist_mean": _f32((), "mm, mean joint distance to the mean pose", _NAN),
    "pose_dist_tpose": _f32((), "mm, mean joint distance to the T-pose", _NAN),
    "occluded_ratio": _f32((), "fraction of joints occluded by other objects", _NAN),
    "self_occluded_ratio": _f32((), "fraction of joints occluded by the body itself", _NAN),
    "truncation": _f32((), "fraction of annotated joints outside the image", _NAN),
    "weather": Column("int16", (), False, "code into meta vocabularies; -1 unknown", -1),
    "location": Column("int16", (), False, "code into meta vocabularies; -1 unknown", -1),
    "daytime_hours": _f32((), "in-game time of day, hours in [0, 24)", _NAN),
}
SMPL_COLUMNS = ("smpl_global_orient", "smpl_body_pose", "smpl_betas", "smpl_transl")

# (column, half-open valid range) of the scalar factors; NaN means unknown and is allowed.
FACTOR_RANGES = {
    "cam_elevation": (-90.0, 90.0), "cam_azimuth": (-180.0, 180.0),
    "pose_dist_mean": (0.0, np.inf), "pose_dist_tpose": (0.0, np.inf),
    "occluded_ratio": (0.0, 1.0), "self_occluded_ratio": (0.0, 1.0), "truncation": (0.0, 1.0),
    "daytime_hours": (0.0, 24.0),
}

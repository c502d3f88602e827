"""A random but valid sample index, for tests and benchmarks that need one without any data."""
from __future__ import annotations

import numpy as np

from gtahuman.data.index import NUM_KEYPOINTS, SampleIndex, encode_strings

def synthesize_index(
    n: int, rng: np.random.Generator, dataset: str = "synthetic", domain: str = "synthetic"
) -> SampleIndex:
    """A random but valid index of ``n`` samples (1920x1080 frames, sequences of 50 frames)."""
    width, height = 1920, 1080
    f32 = np.float32
    xy = rng.uniform([0, 0], [width / 2, height / 2], size=(n, 2)).astype(f32)
    wh = rng.uniform([50, 100], [width / 2, height / 2], size=(n, 2)).astype(f32)
    unit = rng.random((n, NUM_KEYPOINTS, 2), dtype=f32)
    keypoints2d = np.concatenate([xy[:, None] + unit * wh[:, None], np.ones((n, NUM_KEYPOINTS, 1), f32)], axis=2)
    keypoints3d = rng.normal(0.0, 0.5, size=(n, NUM_KEYPOINTS, 4)).astype(f32)
    keypoints3d[..., 2] += 5.0
    keypoints3d[..., 3] = 1.0
    sequence_id, frame_id = np.divmod(np.arange(n, dtype=np.int32), 50)
    paths = [f"images/seq_{s:08d}/{f:08d}.jpeg" for s, f in zip(sequence_id.tolist(), frame_id.tolist())]
    columns = {
        "image_path": encode_strings(paths),
        "image_size": np.tile(np.array([width, height], np.int32), (n, 1)),
        "bbox_xywh": np.concatenate([xy, wh], axis=1),
        "keypoints2d": keypoints2d, "keypoints3d": keypoints3d,
        "has_keypoints3d": rng.random(n) < 0.9,
        "smpl_global_orient": rng.normal(0, 0.5, (n, 3)).astype(f32),
        "smpl_body_pose": rng.normal(0, 0.2, (n, 69)).astype(f32),
        "smpl_betas": rng.normal(0, 1, (n, 10)).astype(f32),
        "smpl_transl": rng.normal([0, 0, 5], 0.5, (n, 3)).astype(f32),
        "has_smpl": rng.random(n) < 0.8,
        "gender": rng.integers(-1, 2, n).astype(np.int8),
        "sequence_id": sequence_id, "frame_id": frame_id,
        "focal_length": np.full(n, 1158.0337, f32),
        "cam_elevation": rng.uniform(-60, 60, n).astype(f32), "cam_azimuth": rng.uniform(-180, 180, n).astype(f32),
        "pose_dist_mean": rng.gamma(4, 30, n).astype(f32), "pose_dist_tpose": rng.gamma(6, 30, n).astype(f32),
        "occluded_ratio": rng.random(n, dtype=f32), "self_occluded_ratio": rng.random(n, dtype=f32),
        "truncation": rng.random(n, dtype=f32) * 0.2,
        "weather": rng.integers(-1, 3, n).astype(np.int16), "location": rng.integers(-1, 3, n).astype(np.int16),
        "daytime_hours": rng.uniform(0, 24, n).astype(f32) % 24,
    }
    meta = {"dataset": dataset, "domain": domain,
            "vocabularies": {"weather": ["clear", "rain", "snow"], "location": ["city", "beach", "forest"]}}
    return SampleIndex(columns, meta)

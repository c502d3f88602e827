"""Sequences with known SMPL, for checking the annotator without rendering anything.

`synthetic_gta_sequence` poses a body model with the mini world's procedural motion, films it
with a fixed camera 4 m away (camera frame, as GTA-Human stores it) and returns a raw-release
`GTASequence`: the 100 game joints in ``keypoints_3d`` / ``keypoints_2d`` and the generating
SMPL parameters as ground truth. No images, no occlusion (flags all False).

``rig``: the game rig the joints are placed with (`GameRig`, e.g. ``GameRig.draw(rng)``: offsets
from SMPL's joints like the real game's, so a fit has a modelling error to measure); ``None``
places them on their smpl_54 landmarks exactly, which checks convergence, not accuracy.
"""
from __future__ import annotations

import numpy as np
import torch

from gtahuman.body.smpl import BodyModel
from gtahuman.data.formats.gta_raw import GTASequence, intrinsics_from_fov
from gtahuman.miniworld.game_skeleton import GameRig, game_joints, global_rotations
from gtahuman.miniworld.clips import generate_sequence
from gtahuman.miniworld.simulate import look_at, params_in_camera

IMAGE_SIZE = (480, 270)
FOV_DEG = 50.0


def synthetic_gta_sequence(model: BodyModel, name: str, action: str = "walk", frames: int = 24,
                           seed: int = 0, betas: np.ndarray | None = None,
                           camera_distance: float = 4.0, rig: GameRig | None = None) -> GTASequence:
    """A raw-release sequence of ``model`` doing ``action`` (an action of the mini world)."""
    rng = np.random.default_rng(seed)
    betas = rng.normal(0.0, 1.0, 10) if betas is None else np.asarray(betas, dtype=np.float64)
    betas_t = torch.as_tensor(betas, dtype=torch.float32)[None]
    with torch.no_grad():
        rest = model(betas_t, torch.zeros(1, 69), torch.zeros(1, 3)).joints[0].double().numpy()
        clip = generate_sequence(action, frames, rng, rest_joints=rest)
        pose = clip.pose.reshape(frames, 24, 3).astype(np.float64)
        pelvis = rest[0] + clip.root_translation.mean(axis=0)
        eye = pelvis + camera_distance * np.array([np.sin(0.4), 0.25, np.cos(0.4)])
        rotation, translation = look_at(np.tile(eye, (frames, 1)), np.tile(pelvis, (frames, 1)))
        orient, transl = params_in_camera(pose[:, 0], clip.root_translation, rotation, translation, rest[0])
        body_pose = pose[:, 1:].reshape(frames, 69)
        out = model(betas_t.expand(frames, -1), torch.as_tensor(body_pose, dtype=torch.float32),
                    torch.as_tensor(orient, dtype=torch.float32), torch.as_tensor(transl, dtype=torch.float32))
    rotations = None if rig is None else global_rotations(orient, body_pose, model.parents)
    joints = game_joints(out.joints54.double().numpy(), rotations, rig, rng)  # (T, 100, 3) camera frame
    uvw = joints @ intrinsics_from_fov(FOV_DEG, IMAGE_SIZE).astype(np.float64).T
    ones = np.ones((frames, 100, 1))
    return GTASequence(
        seq_name=name, keypoints_2d=np.concatenate([uvw[..., :2] / uvw[..., 2:], ones], -1).astype(np.float32),
        keypoints_3d=np.concatenate([joints, ones], -1).astype(np.float32),
        occ=np.zeros((frames, 100), bool), self_occ=np.zeros((frames, 100), bool), fov=FOV_DEG,
        is_male=model.gender == "male", weather="clear", daytime=(12, 0, 0), location_tag="synthetic",
        betas=np.repeat(betas[None], frames, 0).astype(np.float32), body_pose=body_pose.astype(np.float32),
        global_orient=orient.astype(np.float32), transl=transl.astype(np.float32),
        bbox_xywh=np.tile(np.array([100.0, 20.0, 120.0, 230.0], np.float32), (frames, 1)), num_frames=frames,
        image_size=IMAGE_SIZE)

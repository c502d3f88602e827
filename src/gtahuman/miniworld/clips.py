"""One clip of procedural motion: an action of the library (`motion_actions`) performed by a
random subject style, turned into SMPL poses (`motion`) with a grounded root trajectory."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from gtahuman.miniworld.motion import (
    ACTIONS,
    FOOT_JOINTS,
    NUM_JOINTS,
    SMPL_PARENTS,
    SMPL_REST_JOINTS,
    MotionClip,
    euler_to_rotmats,
    forward_kinematics,
    soft_clip_angles,
    soft_minimum,
)
from gtahuman.miniworld.motion_actions import ACTION_FUNCTIONS, sample_style


def generate_sequence(
    action: str,
    num_frames: int,
    rng: np.random.Generator,
    *,
    fps: float = 30.0,
    rest_joints: np.ndarray | None = None,
    initial_heading: float | None = None,
    foot_clearance: float = 0.04,
    turn_rate: float = 0.0,
) -> MotionClip:
    """Generate one clip of `action` with a random subject style drawn from `rng`.

    ``turn_rate`` (rad/s, >= 0): the person also wanders: on top of the action's own yaw the
    heading drifts at a rate drawn from [-turn_rate, turn_rate] plus a smooth swing of up to
    0.5 rad, so one clip shows the body from many sides (walkers walk curves, as in H36M).

    The root is kept on the ground by a soft minimum over the ankle and foot joints, smoothed
    in time (so no velocity jumps when the supporting foot changes); the horizontal trajectory
    integrates the action's speed along the heading.
    """
    if action not in ACTION_FUNCTIONS:
        raise ValueError(f"generate_sequence: unknown action {action!r}; choose from {ACTIONS}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"generate_sequence: rng must be a numpy Generator (np.random.default_rng(seed)), got {type(rng)}")
    if num_frames < 3:
        raise ValueError(f"generate_sequence: num_frames must be >= 3, got {num_frames}")
    rest = SMPL_REST_JOINTS if rest_joints is None else np.asarray(rest_joints, dtype=np.float64)
    style = sample_style(rng)
    times = np.arange(num_frames) / fps
    curves = ACTION_FUNCTIONS[action](times, style)
    heading0 = rng.uniform(-np.pi, np.pi) if initial_heading is None else float(initial_heading)
    heading = heading0 + curves.yaw
    if turn_rate > 0:  # drawn after everything else, so clips without wandering are unchanged
        rate, swing = rng.uniform(-turn_rate, turn_rate), rng.uniform(0.0, 0.5)
        frequency, phase = rng.uniform(1.0, 3.0), rng.uniform(0.0, 2 * np.pi)
        heading = heading + rate * times + swing * (np.sin(frequency * times + phase) - np.sin(phase))

    angles = curves.angles.copy()
    angles[:, 0, 1] += heading  # the root's y angle is the heading (plus any pelvis sway)
    angles = soft_clip_angles(angles)
    rotmats = euler_to_rotmats(angles)
    pose = Rotation.from_matrix(rotmats.reshape(-1, 3, 3)).as_rotvec().reshape(num_frames, NUM_JOINTS, 3)

    joints = forward_kinematics(SMPL_PARENTS, rest, rotmats)
    foot_height = soft_minimum(joints[:, FOOT_JOINTS, 1], temperature=0.02)
    direction = np.stack([np.sin(heading), np.zeros_like(heading), np.cos(heading)], axis=-1)
    velocity = curves.speed[:, None] * direction
    # Trapezoidal integration keeps the position as smooth as the velocity curve.
    steps = 0.5 * (velocity[1:] + velocity[:-1]) / fps
    translation = np.concatenate([np.zeros((1, 3)), np.cumsum(steps, axis=0)])
    # The pelvis cannot follow a change of supporting foot instantly: smooth over ~40 ms
    # (in seconds, so the curve does not depend on the frame rate).
    grounding = gaussian_filter1d(foot_clearance - foot_height, sigma=0.04 * fps, mode="nearest")
    translation[:, 1] = grounding + curves.lift
    return MotionClip(
        action=action,
        pose=pose.astype(np.float32),
        root_translation=translation.astype(np.float32),
        heading=((heading + np.pi) % (2 * np.pi) - np.pi).astype(np.float32),
        fps=float(fps),
    )

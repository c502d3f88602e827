"""The Data Analyser keeps or drops hand-made sequences as its thresholds say."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gtahuman.body.conventions import get_names
from gtahuman.data.formats.gta_raw import GTASequence
from gtahuman.fitting.analyser import (
    FLAG_OCCLUDED,
    FLAG_OUT_OF_VIEW,
    AnalyserThresholds,
    analyse_gta_sequence,
    analyse_keypoints,
    analysis_report,
    body_joint_indices,
)

FRAMES, JOINTS = 10, 5
ALL = np.arange(JOINTS)


def _walking(speed_m_per_s: float, fps: float = 30.0) -> np.ndarray:
    """Five joints 2 m in front of the camera, all moving sideways at ``speed``."""
    base = np.stack([np.linspace(-0.2, 0.2, JOINTS), np.linspace(-0.8, 0.8, JOINTS), np.full(JOINTS, 2.0)], -1)
    shift = np.arange(FRAMES)[:, None, None] * np.array([speed_m_per_s / fps, 0.0, 0.0])
    return base[None] + shift


def test_joint_speed_keeps_movers_and_drops_stationary() -> None:
    moving = analyse_keypoints("moving", _walking(1.0), ALL)
    assert moving.joint_speed == pytest.approx(1.0)  # 1/30 m per frame at 30 fps
    assert moving.kept and moving.reasons == []
    still = analyse_keypoints("still", _walking(0.0), ALL)
    assert not still.kept and still.joint_speed == 0.0
    assert "slow or stationary" in still.reasons[0]
    slow = _walking(0.04)
    assert not analyse_keypoints("slow", slow, ALL).kept  # 4 cm/s < 5 cm/s
    assert analyse_keypoints("slow", slow, ALL, AnalyserThresholds(min_joint_speed=0.03)).kept
    # the frame rate turns displacement into speed: the same motion at 60 fps is twice as fast
    assert analyse_keypoints("x", _walking(1.0), ALL, AnalyserThresholds(fps=60.0)).joint_speed == pytest.approx(2.0)


def test_severe_occlusion_flags_frames_and_drops_the_sequence() -> None:
    occluded = np.zeros((FRAMES, JOINTS), bool)
    occluded[:8, :3] = True  # 3 of 5 joints (60 %) hidden in 8 of 10 frames
    analysis = analyse_keypoints("hidden", _walking(1.0), ALL, occluded=occluded)
    assert analysis.occluded_ratio == pytest.approx(0.6 * 0.8)
    assert np.array_equal(analysis.frame_flags, np.r_[np.full(8, FLAG_OCCLUDED), np.zeros(2)])
    assert analysis.flagged_fraction == pytest.approx(0.8)
    assert not analysis.kept and "severely occluded" in analysis.reasons[0]
    # thresholds decide: 60 % occluded joints is fine under a 70 % limit, 80 % flagged under a 90 % one
    assert analyse_keypoints("hidden", _walking(1.0), ALL, AnalyserThresholds(max_occluded_ratio=0.7),
                             occluded=occluded).kept
    assert analyse_keypoints("hidden", _walking(1.0), ALL, AnalyserThresholds(max_flagged_fraction=0.9),
                             occluded=occluded).kept
    # only the listed body joints count: occlusion of other joints is ignored
    assert analyse_keypoints("hidden", _walking(1.0), np.array([3, 4]), occluded=occluded).kept


def test_out_of_view_from_2d_keypoints_and_depth() -> None:
    keypoints_3d = _walking(1.0)
    uv = np.tile(np.array([100.0, 100.0]), (FRAMES, JOINTS, 1))
    uv[:, 0, 0] = 700.0  # right of a 640-wide image
    uv[:, 1, 1] = -5.0  # above it
    analysis = analyse_keypoints("edge", keypoints_3d, ALL, keypoints_2d=uv, image_size=(640, 480))
    assert analysis.out_of_view_ratio == pytest.approx(0.4)
    assert (analysis.frame_flags == FLAG_OUT_OF_VIEW).all() and not analysis.kept
    assert "out of view" in analysis.reasons[0]
    relaxed = AnalyserThresholds(max_out_of_view_ratio=0.5)
    assert analyse_keypoints("edge", keypoints_3d, ALL, relaxed, keypoints_2d=uv, image_size=(640, 480)).kept
    behind = keypoints_3d.copy()
    behind[:, :3, 2] = -1.0  # behind the camera, even if the projection lands inside
    inside = np.tile(np.array([100.0, 100.0]), (FRAMES, JOINTS, 1))
    assert analyse_keypoints("behind", behind, ALL, keypoints_2d=inside, image_size=(640, 480)).out_of_view_ratio \
        == pytest.approx(0.6)


def _gta(name: str, keypoints_3d: np.ndarray, occ: np.ndarray) -> GTASequence:
    frames = len(keypoints_3d)
    ones = np.ones((frames, 100, 1), np.float32)
    uv = np.full((frames, 100, 2), 200.0, np.float32)
    zeros = np.zeros((frames, 100), bool)
    return GTASequence(
        seq_name=name, keypoints_2d=np.concatenate([uv, ones], -1),
        keypoints_3d=np.concatenate([keypoints_3d, ones], -1),
        occ=occ, self_occ=zeros, fov=50.0, is_male=True, weather="clear", daytime=(12, 0, 0), location_tag="x",
        betas=np.zeros((frames, 10), np.float32), body_pose=np.zeros((frames, 69), np.float32),
        global_orient=np.zeros((frames, 3), np.float32), transl=np.zeros((frames, 3), np.float32),
        bbox_xywh=np.zeros((frames, 4), np.float32), num_frames=frames, image_size=(640, 480))


def test_gta_sequences_are_judged_by_their_body_joints() -> None:
    body = body_joint_indices("gta")
    names = get_names("gta")
    assert len(body) == 22 and "pelvis" in [names[i] for i in body]
    assert not any(names[i].startswith("gta_") for i in body)
    joints = np.zeros((FRAMES, 100, 3), np.float32)
    joints[..., 2] = 3.0
    joints[..., 0] += np.arange(FRAMES)[:, None] * 0.02  # 0.6 m/s
    facial = np.zeros((FRAMES, 100), bool)
    facial[:, [i for i in range(100) if i not in set(body)]] = True  # every non-body joint hidden
    assert analyse_gta_sequence(_gta("seq_face", joints, facial)).kept
    limbs = np.zeros((FRAMES, 100), bool)
    limbs[:, body[:15]] = True  # 15 of 22 body joints hidden
    report = analysis_report([analyse_gta_sequence(_gta("seq_face", joints, facial)),
                              analyse_gta_sequence(_gta("seq_limbs", joints, limbs))], AnalyserThresholds())
    assert report["kept"] == ["seq_face"] and list(report["dropped"]) == ["seq_limbs"]
    assert report["frames_kept"] == FRAMES and report["frames_total"] == 2 * FRAMES
    assert report["details"][1]["occluded_frames"] == list(range(FRAMES))


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValueError, match="max_occluded_ratio"):
        AnalyserThresholds(max_occluded_ratio=1.5)
    with pytest.raises(ValueError, match="fps"):
        dataclasses.replace(AnalyserThresholds(), fps=0.0)

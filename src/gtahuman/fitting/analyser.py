"""The Data Analyser: keep expressive, visible sequences before spending fitting time on them.

Paper sec. 3.1: joint movement speed is the position difference between consecutive frames;
slow-moving or stationary sequences are dropped; severely occluded or out-of-view subjects
are flagged. Here, per sequence of 3D keypoints (camera frame, metres):

* **joint speed**: mean over body joints and consecutive frame pairs of ``|x_t+1 - x_t| * fps``
  (m/s). Below ``min_joint_speed`` the sequence is dropped as slow/stationary.
* **occlusion ratio** of a frame: the fraction of its body joints hidden by something else
  (GTA's ``occ``; self-occlusion is normal and not counted unless asked).
* **out-of-view ratio** of a frame: the fraction of its body joints projected outside the
  image or behind the camera.
A frame is *flagged* when either ratio exceeds its threshold; a sequence with more than
``max_flagged_fraction`` of its frames flagged is dropped. "Body joints" are the joints that
share a name with an SMPL-family joint (22 of GTA's 100; the facial rig and fingers would
otherwise outvote the limbs). Every decision carries a readable reason.

The paper names these criteria but gives no numbers: every threshold in `AnalyserThresholds` and
the 30 fps are this suite's own choices (GTA-Human's frame rate is not stated either), not the
paper's. Change them with the annotator's options and say so where the fits are used.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from gtahuman.data.formats.gta_raw import GTASequence
from gtahuman.fitting.keypoint_map import keypoint_map

FLAG_OCCLUDED = 1
FLAG_OUT_OF_VIEW = 2


@dataclass
class AnalyserThresholds:
    # All defaults are this suite's choices; the paper gives no thresholds (see the module doc).
    fps: float = 30.0  # frame rate: turns per-frame displacements into m/s
    min_joint_speed: float = 0.05  # m/s; slower sequences are dropped as slow or stationary
    max_occluded_ratio: float = 0.5  # a frame with a larger share of occluded body joints is flagged
    max_out_of_view_ratio: float = 0.3  # a frame with a larger share of body joints out of view is flagged
    max_flagged_fraction: float = 0.5  # a sequence with a larger share of flagged frames is dropped
    min_frames: int = 2  # speed needs two frames
    count_self_occlusion: bool = False

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise ValueError(f"AnalyserThresholds.fps must be > 0; got {self.fps}")
        for name in ("max_occluded_ratio", "max_out_of_view_ratio", "max_flagged_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"AnalyserThresholds.{name} must be in [0, 1]; got {getattr(self, name)}")
        if self.min_joint_speed < 0 or self.min_frames < 1:
            raise ValueError("AnalyserThresholds: min_joint_speed must be >= 0 and min_frames >= 1")


@dataclass
class SequenceAnalysis:
    name: str
    num_frames: int
    kept: bool
    reasons: list[str]  # why it was dropped (empty when kept)
    joint_speed: float  # m/s, mean over body joints and frame pairs
    occluded_ratio: float  # mean over frames
    out_of_view_ratio: float  # mean over frames
    flagged_fraction: float
    frame_flags: np.ndarray = field(repr=False)  # (T,) uint8: FLAG_OCCLUDED | FLAG_OUT_OF_VIEW

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (frame flags as the list of flagged frame indices per kind)."""
        out = asdict(self)
        flags = out.pop("frame_flags")
        out["occluded_frames"] = np.flatnonzero(flags & FLAG_OCCLUDED).tolist()
        out["out_of_view_frames"] = np.flatnonzero(flags & FLAG_OUT_OF_VIEW).tolist()
        return out


def body_joint_indices(convention: str) -> np.ndarray:
    """Indices of the joints of ``convention`` that carry an SMPL-family name."""
    table = keypoint_map(convention, approximate=False)
    return table.source_indices


def out_of_view(keypoints_2d: np.ndarray, depth: np.ndarray | None, image_size: tuple[int, int]) -> np.ndarray:
    """(T, J) bool: outside [0, W) x [0, H), non-finite, or (with ``depth``) behind the camera."""
    width, height = image_size
    u, v = keypoints_2d[..., 0], keypoints_2d[..., 1]
    with np.errstate(invalid="ignore"):
        outside = ~((u >= 0) & (u < width) & (v >= 0) & (v < height))
        if depth is not None:
            outside |= ~(depth > 0)
    return outside


def analyse_keypoints(name: str, keypoints_3d: np.ndarray, joints: np.ndarray,
                      thresholds: AnalyserThresholds | None = None, occluded: np.ndarray | None = None,
                      keypoints_2d: np.ndarray | None = None,
                      image_size: tuple[int, int] | None = None) -> SequenceAnalysis:
    """Analyse one sequence: ``keypoints_3d`` (T, J, >=3) metres, ``joints`` the body-joint
    indices to judge by, ``occluded`` (T, J) bool, ``keypoints_2d`` (T, J, >=2) pixels of an
    image of ``image_size`` (W, H). Missing inputs count as 'not occluded' / 'in view'."""
    t = thresholds or AnalyserThresholds()
    body = np.asarray(keypoints_3d, dtype=np.float64)[:, joints, :3]
    frames = body.shape[0]
    if frames >= 2:
        steps = np.linalg.norm(np.diff(body, axis=0), axis=-1)
        speed = float(np.nanmean(steps) * t.fps) if np.isfinite(steps).any() else 0.0
    else:
        speed = 0.0
    occluded_ratio = (np.zeros(frames) if occluded is None
                      else np.asarray(occluded, dtype=bool)[:, joints].mean(axis=1))
    if keypoints_2d is None or image_size is None:
        view_ratio = np.zeros(frames)
    else:
        view_ratio = out_of_view(np.asarray(keypoints_2d, dtype=np.float64)[:, joints], body[..., 2],
                                 image_size).mean(axis=1)
    flags = ((occluded_ratio > t.max_occluded_ratio) * FLAG_OCCLUDED
             | (view_ratio > t.max_out_of_view_ratio) * FLAG_OUT_OF_VIEW).astype(np.uint8)
    flagged = float((flags > 0).mean()) if frames else 0.0

    reasons = []
    if frames < t.min_frames:
        reasons.append(f"too short: {frames} frames < {t.min_frames}")
    elif speed < t.min_joint_speed:
        reasons.append(f"slow or stationary: joint speed {speed:.3f} m/s < {t.min_joint_speed} m/s")
    if frames and flagged > t.max_flagged_fraction:
        occ_share = float(((flags & FLAG_OCCLUDED) > 0).mean())
        view_share = float(((flags & FLAG_OUT_OF_VIEW) > 0).mean())
        reasons.append(f"flagged frames {flagged:.0%} > {t.max_flagged_fraction:.0%}: {occ_share:.0%} severely "
                       f"occluded (> {t.max_occluded_ratio:.0%} of body joints), {view_share:.0%} out of view "
                       f"(> {t.max_out_of_view_ratio:.0%} of body joints)")
    return SequenceAnalysis(
        name=name, num_frames=frames, kept=not reasons, reasons=reasons, joint_speed=speed,
        occluded_ratio=float(occluded_ratio.mean()) if frames else 0.0,
        out_of_view_ratio=float(view_ratio.mean()) if frames else 0.0,
        flagged_fraction=flagged, frame_flags=flags)


def analyse_gta_sequence(sequence: GTASequence, thresholds: AnalyserThresholds | None = None) -> SequenceAnalysis:
    """`analyse_keypoints` on a raw GTA-Human sequence (its occ flags, 2D keypoints, image size)."""
    t = thresholds or AnalyserThresholds()
    occluded = sequence.occ | sequence.self_occ if t.count_self_occlusion else sequence.occ
    return analyse_keypoints(sequence.seq_name, sequence.keypoints_3d, body_joint_indices("gta"), t,
                             occluded=occluded, keypoints_2d=sequence.keypoints_2d,
                             image_size=sequence.image_size)


def analysis_report(analyses: list[SequenceAnalysis], thresholds: AnalyserThresholds) -> dict[str, Any]:
    """What was kept and why the rest was dropped, as a JSON-ready dict."""
    dropped = [a for a in analyses if not a.kept]
    return {
        "thresholds": asdict(thresholds),
        "sequences": len(analyses),
        "kept": [a.name for a in analyses if a.kept],
        "dropped": {a.name: a.reasons for a in dropped},
        "frames_kept": int(sum(a.num_frames for a in analyses if a.kept)),
        "frames_total": int(sum(a.num_frames for a in analyses)),
        "details": [a.to_dict() for a in analyses],
    }

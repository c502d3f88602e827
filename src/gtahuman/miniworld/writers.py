"""Write rendered mini-world sequences in the real formats, through the real writers.

* SPIN npz (``real_indoor``, ``real_kp``, ``wild``): one row per frame whose person is mostly
  in view (at least `MIN_VISIBLE_JOINTS` of the annotated joints inside the image). ``part``
  holds the body model's smpl_24 joints (mapped by name from smpl_54) projected with the
  domain's pinhole camera, visibility 1 when inside the image; the square box is 1.2 x the
  extent of those joints (SPIN's scaleFactor), ``scale`` = side / 200. ``S`` (real_indoor
  only, like H36M) is root-centred at ``pelvis_extra`` (the H36M pelvis), metres, validity 1.
  ``pose`` puts the camera-frame global orientation first, as 3DPW's file does. The
  keypoint-only subset annotates the 14 LSP joints and 5 face points only, without SMPL.
* Raw GTA-Human: `gta_raw.write_sequence` with the 100 game joints (`game_skeleton`) in
  ``keypoints_3d`` (camera frame, metres) and ``keypoints_2d`` (pixels), ``occ`` / ``self_occ``
  from the renderer's depth tests, the box of the amodal silhouette, fov and scene tags.
Every JPEG frame is written (PIL, fixed quality: same pixels, same bytes), kept or not.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gtahuman.atomic import atomic_output
from gtahuman.body.conventions import convert_keypoints, joint_index
from gtahuman.body.joint_names import SPIN_GT_24
from gtahuman.data.formats import gta_raw
from gtahuman.data.formats.spin_npz import (
    GENDER_FEMALE,
    GENDER_MALE,
    SpinNpz,
    center_scale_from_bbox_xywh,
    write_spin_npz,
)
from gtahuman.miniworld.plan import Job
from gtahuman.miniworld.render import project
from gtahuman.miniworld.simulate import SequenceData

JPEG_QUALITY = 75
MIN_VISIBLE_JOINTS = 12
SPIN_BOX_FACTOR = 1.2
KEYPOINT_ONLY_JOINTS = (
    "right_ankle", "right_knee", "right_hip_extra", "left_hip_extra", "left_knee", "left_ankle",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
    "neck_extra", "headtop", "nose", "left_eye", "right_eye", "left_ear", "right_ear",
)
SPIN_FILES = {  # manifest key -> (kinds, WorldPaths attribute, image root attribute)
    "real_indoor_train": (("real_train",), "real_indoor_train", "real_indoor_root"),
    "real_indoor_val": (("real_val",), "real_indoor_val", "real_indoor_root"),
    "real_kp_train": (("real_kp",), "real_kp_train", "real_indoor_root"),
    "wild_test": (("wild_test",), "wild_test", "wild_root"),
    "wild_val": (("wild_val",), "wild_val", "wild_root"),
}


def write_jpeg(path: Path, image: np.ndarray) -> None:
    with atomic_output(path) as tmp:
        Image.fromarray(image).save(tmp, format="JPEG", quality=JPEG_QUALITY)


def spin_rows(data: SequenceData, imgnames: list[str], *, annotated: tuple[str, ...] = SPIN_GT_24,
              with_smpl: bool = True, with_S: bool = False) -> dict[str, np.ndarray]:
    """SPIN npz columns of the frames of ``data`` with enough joints in view."""
    joints24 = convert_keypoints(data.joints54, "smpl_54", "smpl_24")[0]  # (T, 24, 3) camera frame
    frames = len(joints24)
    uv = project(joints24.reshape(-1, 3), data.K).reshape(frames, 24, 2)
    labelled = np.isin(np.array(SPIN_GT_24), annotated)
    visible = data.in_view24 & labelled
    part = np.where(visible[..., None], np.concatenate([uv, np.ones((frames, 24, 1))], axis=-1), 0.0)
    keep = visible.sum(axis=1) >= min(MIN_VISIBLE_JOINTS, labelled.sum() // 2)
    low = np.where(visible[..., None], uv, np.inf).min(axis=1)
    high = np.where(visible[..., None], uv, -np.inf).max(axis=1)
    box = np.concatenate([low, high - low], axis=1)
    center, scale = center_scale_from_bbox_xywh(np.where(keep[:, None], box, 1.0), SPIN_BOX_FACTOR)
    rows: dict[str, np.ndarray] = {"imgname": np.array(imgnames)[keep], "center": center[keep],
                                   "scale": scale[keep], "part": part[keep].astype(np.float32)}
    if with_smpl:
        rows["pose"] = np.concatenate([data.global_orient, data.body_pose], axis=1)[keep]
        rows["shape"] = np.repeat(data.spec.subject.betas[None], frames, axis=0)[keep]
        rows["has_smpl"] = np.ones(int(keep.sum()), np.float32)
        code = GENDER_MALE if data.spec.subject.gender == "male" else GENDER_FEMALE
        rows["gender"] = np.full(int(keep.sum()), code, np.int8)
    if with_S:
        root = joints24[:, joint_index("smpl_24", "pelvis_extra")]
        S = np.concatenate([joints24 - root[:, None], np.ones((frames, 24, 1))], axis=-1)
        rows["S"] = S[keep].astype(np.float32)
    return rows


def _f32(array: np.ndarray) -> np.ndarray:
    """A float32 copy with numpy's canonical dtype object: pickle memoises dtype objects by
    identity, and an array that came through pickle (from another process) carries a twin
    dtype, which would change the pickled bytes."""
    return np.asarray(array).astype(np.float32)


def _write_gta(data: SequenceData, root: Path) -> dict[str, Any]:
    frames = data.spec.num_frames
    uv = project(data.game_joints.reshape(-1, 3), data.K).reshape(frames, 100, 2)
    ones = np.ones((frames, 100, 1))
    sequence = gta_raw.GTASequence(
        seq_name=data.spec.seq_name,
        keypoints_2d=_f32(np.concatenate([uv, ones], axis=-1)),
        keypoints_3d=_f32(np.concatenate([data.game_joints, ones], axis=-1)),
        occ=data.occ.astype(bool), self_occ=data.self_occ.astype(bool), fov=float(data.spec.style.fov_deg),
        is_male=data.spec.subject.gender == "male", weather=str(data.weather), daytime=data.daytime,
        location_tag=str(data.location_tag), betas=_f32(np.repeat(data.spec.subject.betas[None], frames, axis=0)),
        body_pose=_f32(data.body_pose), global_orient=_f32(data.global_orient), transl=_f32(data.transl),
        bbox_xywh=_f32(data.bbox_xywh), num_frames=frames)
    gta_raw.write_sequence(root / "gta", data.spec.seq_name, sequence, images=data.images, quality=JPEG_QUALITY)
    return {"kind": "gta", "frames": frames, "occluded_joint_ratio": float(data.occ.mean()),
            "boxes_kept": int(gta_raw.clean_bbox(data.bbox_xywh, data.spec.size)[1].sum())}


def write_job(job: Job, data: SequenceData, root: Path) -> dict[str, Any]:
    """Write one rendered sequence; returns its SPIN rows (or the GTA summary)."""
    if job.kind == "gta":
        return _write_gta(data, root)
    seq = data.spec.seq_name
    if job.kind.startswith("real"):
        folder, names = root / "real_indoor", [f"images/{seq}/frame_{i:05d}.jpg" for i in range(len(data.images))]
    else:
        folder, names = root / "wild", [f"imageFiles/{seq}/image_{i:05d}.jpg" for i in range(len(data.images))]
    for name, image in zip(names, data.images):
        write_jpeg(folder / name, image)
    if job.kind == "real_kp":  # the SMPL goes to a truth file of its own, never into the npz
        rows = spin_rows(data, names, annotated=KEYPOINT_ONLY_JOINTS)
        truth = {key: rows.pop(key) for key in ("pose", "shape", "gender")}
        rows.pop("has_smpl")
        return {"kind": job.kind, "frames": len(names), "rows": rows, "truth": truth}
    rows = spin_rows(data, names, with_S=job.kind.startswith("real"))
    return {"kind": job.kind, "frames": len(names), "rows": rows}


def write_spin_files(jobs: list[Job], results: list[dict[str, Any]], paths) -> dict[str, Any]:
    """Concatenate the rows of each split and write its npz with `write_spin_npz`."""
    files: dict[str, Any] = {}
    for key, (kinds, attribute, image_root) in SPIN_FILES.items():
        parts = [r["rows"] for r in results if r["kind"] in kinds]
        if not parts:
            continue
        columns = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        count = len(columns["imgname"])
        data = SpinNpz(imgname=columns["imgname"], center=columns["center"], scale=columns["scale"],
                       part=columns["part"], openpose=np.zeros((count, 25, 3), np.float32), S=columns.get("S"),
                       pose=columns.get("pose"), shape=columns.get("shape"),
                       has_smpl=columns.get("has_smpl", np.zeros(count, np.float32)), gender=columns.get("gender"))
        path = write_spin_npz(getattr(paths, attribute), data)
        truths = [r["truth"] for r in results if r["kind"] in kinds and "truth" in r]
        if truths:
            with atomic_output(paths.real_kp_truth) as tmp, open(tmp, "wb") as handle:
                np.savez(handle, **{name: np.concatenate([t[name] for t in truths]) for name in truths[0]})
        files[key] = {"path": str(path.relative_to(paths.root)),
                      "image_root": str(getattr(paths, image_root).relative_to(paths.root)), "samples": count,
                      "sequences": len(parts),
                      "frames_rendered": sum(r["frames"] for r in results if r["kind"] in kinds)}
    return files


def gta_summary(jobs: list[Job], results: list[dict[str, Any]], paths) -> dict[str, Any]:
    gta = [r for r in results if r["kind"] == "gta"]
    return {"path": str(paths.gta_root.relative_to(paths.root)), "sequences": len(gta),
            "frames_rendered": sum(r["frames"] for r in gta), "boxes_kept": sum(r["boxes_kept"] for r in gta),
            "occluded_joint_ratio": float(np.mean([r["occluded_joint_ratio"] for r in gta])) if gta else 0.0}

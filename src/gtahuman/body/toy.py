"""The toy body model: a generated stand-in for SMPL in SMPL's own file formats.

`write_toy_body_assets(dir)` writes a complete ``body.model_dir`` (neutral/male/female
models, J_regressor_h36m.npy, J_regressor_extra.npy, smpl_mean_params.npz) so that the
whole suite, the mini world included, runs with nothing downloaded. It is **not SMPL**:
every file says so (key ``gtahuman_toy_model`` in model and npz files, a header comment in
the .npy regressors) and `assets.check_body_model_dir` reports ``is_toy``.

What it shares with SMPL: 6890 vertices, the 24-joint kinematic tree, the canonical T-pose
frame (y up, facing +z, left on +x, ~1.7 m tall, pelvis just below the origin), linear
blend skinning, 10 shape components with betas ~ N(0, 1) giving plausible bodies, pose
correctives, and smplx's vertex-picked landmarks at the same vertex indices. Geometry is in
`toy_geometry.py`, skinning and regressors in `toy_rig.py`.

Shape components (one unit of beta):
    0 stature (+4 % all lengths)       5 arm length (+3 %)
    1 girth/weight (+10 % radii)       6 head size (+4 %)
    2 legs +4 %, torso -3 %            7 neck length (+10 %)
    3 shoulder width (+6 %)            8 chest/belly depth (+6 %)
    4 hip width (+7 %)                 9 hand and foot size (+4 %)
"""
from __future__ import annotations

import argparse
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from gtahuman.body.model_files import (TOY_MARKER_KEY, write_chumpy_style_pkl, write_marked_npy,
                                       write_smpl_npz)
from gtahuman.body.toy_geometry import Proportions
from gtahuman.body.toy_rig import (NUM_VERTICES, SMPL_PARENTS, assemble, regressor_vertex_sets,
                                   skinning_and_correctives, vertex_order)

BETA_DIRECTIONS: tuple[dict[str, float], ...] = (
    {"stature": 0.04, "girth": 0.01},
    {"girth": 0.10},
    {"leg_length": 0.04, "torso_length": -0.03},
    {"shoulder_width": 0.06},
    {"hip_width": 0.07},
    {"arm_length": 0.03},
    {"head_size": 0.04},
    {"neck_length": 0.10},
    {"chest_depth": 0.06},
    {"hand_foot_size": 0.04},
)
GENDER_PROPORTIONS: dict[str, dict[str, float]] = {
    "neutral": {},
    "male": {"stature": 1.03, "shoulder_width": 1.06, "hip_width": 0.96, "girth": 1.02,
             "chest_depth": 1.03, "hand_foot_size": 1.04},
    "female": {"stature": 0.965, "shoulder_width": 0.93, "hip_width": 1.05, "girth": 0.97,
               "chest_depth": 0.96, "head_size": 0.98, "hand_foot_size": 0.94},
}
MODEL_FILE_NAMES = {"neutral": "SMPL_NEUTRAL", "male": "SMPL_MALE", "female": "SMPL_FEMALE"}
H36M_ORDER = ("pelvis_extra", "left_hip_extra", "left_knee", "left_ankle", "right_hip_extra",
              "right_knee", "right_ankle", "spine_extra", "neck_extra", "head_extra", "headtop",
              "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow",
              "right_wrist")
EXTRA_ORDER = ("right_hip_extra", "left_hip_extra", "neck_extra", "headtop", "pelvis_extra",
               "thorax_extra", "spine_extra", "jaw_extra", "head_extra")
KINEMATIC_ORDER = ("pelvis", "left_hip", "right_hip", "spine_1", "left_knee", "right_knee",
                   "spine_2", "left_ankle", "right_ankle", "spine_3", "left_foot", "right_foot",
                   "neck", "left_collar", "right_collar", "head", "left_shoulder",
                   "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                   "left_hand", "right_hand")
# SPIN's mean pose, as axis-angle per joint: upright in a y-down camera, arms lowered,
# elbows and knees slightly bent, feet a little apart.
MEAN_POSE_AXIS_ANGLE = {
    0: (np.pi, 0.0, 0.0), 1: (-0.1, 0.0, 0.05), 2: (-0.1, 0.0, -0.05), 4: (0.2, 0.0, 0.0),
    5: (0.2, 0.0, 0.0), 13: (0.0, 0.0, -0.1), 14: (0.0, 0.0, 0.1), 16: (0.0, 0.0, -0.8),
    17: (0.0, 0.0, 0.8), 18: (0.0, -0.4, 0.0), 19: (0.0, 0.4, 0.0),
}


def toy_description(gender: str, seed: int) -> str:
    return (f"gtahuman toy body model (gender={gender}, seed={seed}): a generated capsule body "
            "in SMPL's file format, NOT SMPL; numbers computed with it are not SMPL results")


def _base_proportions(gender: str, seed: int) -> Proportions:
    if gender not in GENDER_PROPORTIONS:
        raise ValueError(f"unknown gender '{gender}'; expected one of {sorted(GENDER_PROPORTIONS)}")
    base = Proportions(**GENDER_PROPORTIONS[gender])
    # The seed jitters every proportion by ~1 % (same jitter for all genders of one seed).
    jitter = np.random.default_rng(seed).normal(0.0, 0.01, size=len(base.__dataclass_fields__))
    return base.shifted(**dict(zip(base.__dataclass_fields__, jitter.tolist())))


def _rest_vertices(p: Proportions) -> np.ndarray:
    return assemble(p)[0]


@lru_cache(maxsize=1)
def _rig() -> dict[str, Any]:
    """Everything that depends only on topology (taken from the neutral body), final order."""
    _, faces, parts = assemble(Proportions())
    weights, posedirs = skinning_and_correctives(parts)
    order = vertex_order()
    natural_to_final = np.argsort(order)

    def regressor(names: tuple[str, ...]) -> np.ndarray:
        sets = regressor_vertex_sets(parts)
        matrix = np.zeros((len(names), NUM_VERTICES))
        for row, name in enumerate(names):
            matrix[row, natural_to_final[sets[name]]] = 1.0 / len(sets[name])
        return matrix

    labels = np.argmax(weights, axis=1)[order]
    return {
        "order": order, "faces": natural_to_final[faces].astype(np.uint32),
        "weights": weights[order], "posedirs": posedirs[order], "part_labels": labels,
        "J_regressor": regressor(KINEMATIC_ORDER), "J_regressor_h36m": regressor(H36M_ORDER),
        "J_regressor_extra": regressor(EXTRA_ORDER),
    }


def build_toy_body_model(gender: str = "neutral", seed: int = 0) -> dict[str, Any]:
    """The arrays of one toy model file (SMPL keys + ``J`` + the toy marker), fresh copies."""
    base = _base_proportions(gender, seed)
    rig = _rig()
    order = rig["order"]
    v_template = _rest_vertices(base)[order]
    # central differences: beta = +-1 moves the proportions by +-BETA_DIRECTIONS[k]
    shapedirs = np.stack([
        (_rest_vertices(base.shifted(**d))
         - _rest_vertices(base.shifted(**{k: -x for k, x in d.items()})))[order] / 2.0
        for d in BETA_DIRECTIONS], axis=2)
    kintree = np.array([[4294967295] + list(SMPL_PARENTS[1:]), list(range(24))], dtype=np.int64)
    return {
        "v_template": v_template, "shapedirs": shapedirs, "posedirs": rig["posedirs"].copy(),
        "J_regressor": rig["J_regressor"].copy(), "weights": rig["weights"].copy(),
        "f": rig["faces"].copy(), "kintree_table": kintree, "J": rig["J_regressor"] @ v_template,
        TOY_MARKER_KEY: toy_description(gender, seed),
    }


def toy_regressors() -> tuple[np.ndarray, np.ndarray]:
    """(J_regressor_h36m (17, 6890), J_regressor_extra (9, 6890)) of the toy body."""
    rig = _rig()
    return rig["J_regressor_h36m"].copy(), rig["J_regressor_extra"].copy()


def toy_part_labels() -> np.ndarray:
    """(6890,) int: the SMPL joint (0..23) whose part each toy vertex belongs to."""
    return _rig()["part_labels"].copy()


def toy_mean_params() -> dict[str, np.ndarray]:
    """SPIN-style mean parameters: pose (144,) 6D (first two columns of R, row-major),
    shape zeros(10) float32, cam [0.9, 0, 0]."""
    axis_angle = np.zeros((24, 3))
    for joint, value in MEAN_POSE_AXIS_ANGLE.items():
        axis_angle[joint] = value
    rotmats = Rotation.from_rotvec(axis_angle).as_matrix()
    return {"pose": rotmats[:, :, :2].reshape(144), "shape": np.zeros(10, np.float32),
            "cam": np.array([0.9, 0.0, 0.0])}


def write_toy_body_assets(out_dir: str | Path, seed: int = 0, fmt: str = "npz") -> Path:
    """Write a complete toy ``body.model_dir`` to ``out_dir``; same seed, same bytes."""
    if fmt not in ("npz", "pkl"):
        raise ValueError(f"fmt must be 'npz' or 'pkl', got {fmt!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for gender, stem in MODEL_FILE_NAMES.items():
        arrays = build_toy_body_model(gender, seed)
        if fmt == "npz":
            write_smpl_npz(out / f"{stem}.npz", arrays)
        else:
            write_chumpy_style_pkl(out / f"{stem}.pkl", arrays)
    marker = f"{TOY_MARKER_KEY}: {toy_description('any', seed)}"
    h36m, extra = toy_regressors()
    write_marked_npy(out / "J_regressor_h36m.npy", h36m, marker)
    write_marked_npy(out / "J_regressor_extra.npy", extra, marker)
    write_smpl_npz(out / "smpl_mean_params.npz",
                   {**toy_mean_params(), TOY_MARKER_KEY: toy_description("any", seed)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the toy body model assets.")
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fmt", choices=("npz", "pkl"), default="npz")
    args = parser.parse_args()
    start = time.perf_counter()
    out = write_toy_body_assets(args.out_dir, args.seed, args.fmt)
    sizes = ", ".join(f"{p.name} {p.stat().st_size / 1e6:.2f} MB" for p in sorted(out.iterdir()))
    print(f"wrote {out} in {time.perf_counter() - start:.1f} s: {sizes}")


if __name__ == "__main__":
    main()

"""The 100-joint GTA-Human game skeleton, synthesised from a body model's smpl_54 joints.

Every game joint is a fixed convex combination of smpl_54 joints (`GAME_FROM_SMPL54`,
rows sum to 1), so it moves with the body and, for a convex-ish body part, lies inside it:

* joints that carry a standard name in the ``gta`` table (head, neck, shoulders, elbows,
  wrists, spine_1/spine_2, pelvis, hips, knees, ankles, feet, eyes, nose) are copied from the
  smpl_54 joint of the same name, the mapping `conventions.convert_keypoints` uses;
* the other game bones are approximations, documented here once:
  head top <- headtop; clavicles <- collars; ``gta_spine1`` <- mid(spine_1, spine_2);
  ``gta_spine4`` <- spine_3; root / SKEL_Pelvis / IK_Root <- pelvis; MH_ elbow / knee helpers
  <- elbow / knee; roll bones <- the mid-point of their bone (arm, forearm, thigh, neck);
  IK_ / PH_ hand targets <- SMPL hand joints, foot targets <- ankles, IK_Head <- head;
  finger joints <- points between the SMPL hand joint and the finger tip (tip fractions
  0.25 / 0.55 / 0.8 for phalanges 1 / 2 / 3, thumb 2 / 3 at 0.45 / 0.75, thumb base
  ``Finger00`` at 0.3 from the wrist); facial-rig points <- mixtures of nose, eyes, ears,
  jaw, head and head top (brows above the eyes, cheekbones between eye, nose and ear, lips
  between nose and jaw).

Unlike the release, joint 99 (``nose``) is the body's nose itself, not the mid-point of the
two cheekbones: it is the joint that maps to the smpl_49 nose.
"""
from __future__ import annotations

import numpy as np

from gtahuman.body.joint_names import GTA, SMPL_54

_FINGER_FRACTIONS = {1: 0.25, 2: 0.55, 3: 0.8}
_THUMB_FRACTIONS = {2: 0.45, 3: 0.75}


def _mix(**weights: float) -> dict[str, float]:
    return weights


def _sided(side: str, recipe_right: dict[str, float]) -> dict[str, float]:
    """A right-side recipe mirrored to ``side`` ('R' or 'L')."""
    if side == "R":
        return recipe_right
    return {name.replace("right_", "left_"): w for name, w in recipe_right.items()}


def _recipes() -> dict[str, dict[str, float]]:
    recipes: dict[str, dict[str, float]] = {
        "gta_head_top": _mix(headtop=1.0),
        "gta_spine1": _mix(spine_1=0.5, spine_2=0.5),
        "gta_spine4": _mix(spine_3=1.0),
        "gta_SKEL_ROOT": _mix(pelvis=1.0), "gta_SKEL_Pelvis": _mix(pelvis=1.0), "gta_IK_Root": _mix(pelvis=1.0),
        "gta_IK_Head": _mix(head=1.0),
        "gta_RB_Neck_1": _mix(neck=0.5, head=0.5),
        "gta_FACIAL_facialRoot": _mix(head=0.5, nose=0.5),
        "gta_FB_Brow_Centre_000": _mix(left_eye=0.35, right_eye=0.35, headtop=0.3),
        "gta_FB_UpperLipRoot_000": _mix(nose=0.7, jaw_extra=0.3),
        "gta_FB_UpperLip_000": _mix(nose=0.6, jaw_extra=0.4),
        "gta_FB_LowerLip_000": _mix(nose=0.35, jaw_extra=0.65),
        "gta_FB_LowerLipRoot_000": _mix(nose=0.25, jaw_extra=0.75),
        "gta_FB_Jaw_000": _mix(jaw_extra=1.0),
        "gta_FB_Tongue_000": _mix(nose=0.3, jaw_extra=0.5, head=0.2),
    }
    for side, full in (("R", "right"), ("L", "left")):
        recipes[f"gta_{full}_clavicle"] = {f"{full}_collar": 1.0}
        recipes[f"gta_MH_{side}_Elbow"] = {f"{full}_elbow": 1.0}
        recipes[f"gta_MH_{side}_Knee"] = {f"{full}_knee": 1.0}
        recipes[f"gta_RB_{side}_ArmRoll"] = {f"{full}_shoulder": 0.5, f"{full}_elbow": 0.5}
        recipes[f"gta_RB_{side}_ForeArmRoll"] = {f"{full}_elbow": 0.5, f"{full}_wrist": 0.5}
        recipes[f"gta_RB_{side}_ThighRoll"] = {f"{full}_hip": 0.5, f"{full}_knee": 0.5}
        recipes[f"gta_IK_{side}_Hand"] = recipes[f"gta_PH_{side}_Hand"] = {f"{full}_hand": 1.0}
        recipes[f"gta_IK_{side}_Foot"] = recipes[f"gta_PH_{side}_Foot"] = {f"{full}_ankle": 1.0}
        recipes[f"gta_SKEL_{side}_Finger00"] = {f"{full}_wrist": 0.7, f"{full}_thumb": 0.3}
        for finger in ("index", "middle", "ring", "pinky"):
            for k, frac in _FINGER_FRACTIONS.items():
                recipes[f"{full}_{finger}_{k}"] = {f"{full}_hand": 1.0 - frac, f"{full}_{finger}": frac}
        for k, frac in _THUMB_FRACTIONS.items():
            recipes[f"{full}_thumb_{k}"] = {f"{full}_wrist": 1.0 - frac, f"{full}_thumb": frac}
        recipes[f"gta_FB_{side}_Brow_Out_000"] = _sided(side, _mix(right_eye=0.6, right_ear=0.2, headtop=0.2))
        recipes[f"gta_FB_{side}_Lid_Upper_000"] = _sided(side, _mix(right_eye=0.85, headtop=0.15))
        recipes[f"gta_FB_{side}_CheekBone_000"] = _sided(side, _mix(right_eye=0.5, nose=0.3, right_ear=0.2))
        recipes[f"gta_FB_{side}_Lip_Top_000"] = _sided(side, _mix(nose=0.55, jaw_extra=0.35, right_eye=0.1))
        recipes[f"gta_FB_{side}_Lip_Corner_000"] = _sided(side, _mix(nose=0.45, jaw_extra=0.45, right_ear=0.1))
        recipes[f"gta_FB_{side}_Lip_Bot_000"] = _sided(side, _mix(nose=0.4, jaw_extra=0.5, right_ear=0.1))
    return recipes


def _build_matrix() -> np.ndarray:
    position = {name: i for i, name in enumerate(SMPL_54)}
    recipes = _recipes()
    matrix = np.zeros((len(GTA), len(SMPL_54)))
    for row, name in enumerate(GTA):
        recipe = {name: 1.0} if name in position else recipes.get(name)
        if recipe is None:
            raise KeyError(f"game_skeleton: no recipe for gta joint '{name}'")
        for source, weight in recipe.items():
            matrix[row, position[source]] += weight
    assert np.allclose(matrix.sum(axis=1), 1.0)
    matrix.flags.writeable = False
    return matrix


GAME_FROM_SMPL54: np.ndarray = _build_matrix()  # (100, 54)


def game_joints(joints54: np.ndarray) -> np.ndarray:
    """(..., 54, 3) smpl_54 joints -> (..., 100, 3) game joints in the same frame."""
    joints54 = np.asarray(joints54, dtype=np.float64)
    if joints54.shape[-2:] != (len(SMPL_54), 3):
        raise ValueError(f"game_joints: expected (..., {len(SMPL_54)}, 3) smpl_54 joints, got {joints54.shape}")
    return np.einsum("gj,...jc->...gc", GAME_FROM_SMPL54, joints54)

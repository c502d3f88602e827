"""The 100-joint GTA-Human game skeleton of the mini world: a rig of its own, not SMPL's joints.

The game animates its own skeleton on its own mesh; the paper fits SMPL to those joints, and the
fit carries a modelling error because the two rigs do not place a knee, a spine or a foot at the
same point. The mini world reproduces that gap (issue 24). A game joint is

    landmark (a fixed mix of the posed body's smpl_54 points, `GAME_LANDMARKS`)
  + G_j @ offset_g          (an offset in the frame of the SMPL bone j it rides on)

where G_j is joint j's global rotation (camera frame) and the offset is written in rest-pose body
axes (x the subject's left, y up, z forward). `GameRig` holds the 100 offsets:

* a systematic part per bone for the skeleton's interior joints (`SYSTEMATIC_OFFSETS`, the game
  rig's conventions as the mini world chooses them): the spine runs 3.5-5 cm behind SMPL's spine
  joints, the knees sit 2 cm in front, the ankles 2 cm lower, the head 3 cm higher, the
  shoulders 2.5 cm higher, the pelvis 3 cm higher and 2 cm back, the hips wider and lower.
  Points on the body's surface (eyes, nose, ears, head top, finger tips, toes, heels) get none:
  the game's lie on its own mesh, and the mini world renders the body model's;
* per subject, that systematic part scaled by one factor in `RigVariation.scale` and every joint
  jittered (`RigVariation.jitter_m`, 2 mm for surface points) per axis (pedestrians are
  different models in the game);
* optionally per frame, marker noise (`RigVariation.marker_noise_m`; 0 in the world: the game's
  joints are exact, it is the rigs that differ).

Landmarks: joints that carry a standard name in the ``gta`` table (head, neck, shoulders, elbows,
wrists, spine_1/spine_2, pelvis, hips, knees, ankles, feet, eyes, nose) start from the smpl_54
point of that name; the other bones from documented approximations (head top <- headtop;
clavicles <- collars; ``gta_spine1`` <- mid(spine_1, spine_2); ``gta_spine4`` <- spine_3; roots
<- pelvis; MH_ helpers <- elbow / knee; roll bones <- the mid-point of their bone; IK / PH hand
targets <- SMPL hands, foot targets <- ankles; fingers <- points between hand and finger tip;
facial rig <- mixtures of nose, eyes, ears, jaw, head and head top).

The annotator (`gtahuman.fitting`) must not read any of this: its correspondence table is its
own (`gtahuman.fitting.keypoint_map`), and a test checks the fit on rigs with other offsets.
``game_joints(joints54)`` without rotations gives the landmarks alone (the exact, SMPL-derived
skeleton: a convergence check for the fitter, not an accuracy one).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

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


GAME_LANDMARKS: np.ndarray = _build_matrix()  # (100, 54): each game joint's landmark as a mix of smpl_54

# The SMPL kinematic joint each smpl_54 point rides on (its frame carries the offset).
_OWNER_OF_EXTRA = {"nose": "head", "right_eye": "head", "left_eye": "head", "right_ear": "head",
                   "left_ear": "head", "headtop": "head", "jaw_extra": "head", "head_extra": "head",
                   "neck_extra": "neck", "pelvis_extra": "pelvis", "thorax_extra": "spine_3",
                   "spine_extra": "spine_2", "right_hip_extra": "right_hip", "left_hip_extra": "left_hip"}
for _side in ("left", "right"):
    _OWNER_OF_EXTRA.update({f"{_side}_bigtoe": f"{_side}_foot", f"{_side}_smalltoe": f"{_side}_foot",
                            f"{_side}_heel": f"{_side}_ankle"})
    _OWNER_OF_EXTRA.update({f"{_side}_{finger}": f"{_side}_hand"
                            for finger in ("thumb", "index", "middle", "ring", "pinky")})

# The game rig's systematic offsets (metres, rest-pose body axes: x the subject's left, y up,
# z forward), per SMPL kinematic joint; right-side joints mirror the left's x.
SYSTEMATIC_OFFSETS: dict[str, tuple[float, float, float]] = {
    "pelvis": (0.0, 0.03, -0.02), "left_hip": (0.015, -0.02, 0.01), "spine_1": (0.0, 0.0, -0.035),
    "left_knee": (0.0, 0.0, 0.02), "spine_2": (0.0, 0.03, -0.04), "left_ankle": (0.0, -0.02, -0.01),
    "spine_3": (0.0, 0.0, -0.035), "left_foot": (0.0, -0.015, 0.02), "neck": (0.0, 0.02, -0.02),
    "left_collar": (0.01, 0.02, 0.0), "head": (0.0, 0.03, 0.01), "left_shoulder": (0.0, 0.025, -0.01),
    "left_elbow": (0.0, 0.0, -0.02), "left_wrist": (0.0, 0.01, 0.0), "left_hand": (0.01, 0.0, 0.0),
}
NUM_KINEMATIC = 24


def _owners() -> np.ndarray:
    """(100,) the SMPL kinematic joint each game joint's offset rides on: the owner of its
    landmark's heaviest smpl_54 point."""
    position = {name: i for i, name in enumerate(SMPL_54)}
    heaviest = np.argmax(GAME_LANDMARKS, axis=1)
    owners = []
    for column in heaviest:
        name = SMPL_54[column]
        owners.append(column if column < NUM_KINEMATIC else position[_OWNER_OF_EXTRA[name]])
    return np.asarray(owners, dtype=np.int64)


def _interior() -> np.ndarray:
    """(100,) whether a game joint is an interior joint of the skeleton (its landmark is mostly
    SMPL kinematic joints) rather than a point on the body's surface (eyes, nose, ears, head top,
    finger tips, toes, heels). A game's surface points lie on its own mesh, which the mini world
    renders as the body model's: they keep the jitter but get no systematic offset."""
    return GAME_LANDMARKS[:, :NUM_KINEMATIC].sum(axis=1) > 0.5


def _systematic_per_kinematic() -> np.ndarray:
    """(24, 3) the systematic offset of every SMPL kinematic joint (right mirrors left)."""
    table = np.zeros((NUM_KINEMATIC, 3))
    for j, name in enumerate(SMPL_54[:NUM_KINEMATIC]):
        if name in SYSTEMATIC_OFFSETS:
            table[j] = SYSTEMATIC_OFFSETS[name]
        elif name.startswith("right_") and name.replace("right_", "left_") in SYSTEMATIC_OFFSETS:
            table[j] = np.array(SYSTEMATIC_OFFSETS[name.replace("right_", "left_")]) * (-1.0, 1.0, 1.0)
    return table


GAME_OWNERS: np.ndarray = _owners()
GAME_INTERIOR: np.ndarray = _interior()
_SYSTEMATIC: np.ndarray = _systematic_per_kinematic()


@dataclass(frozen=True)
class RigVariation:
    """How game rigs differ from SMPL and from each other (see the module doc)."""

    scale: tuple[float, float] = (0.7, 1.3)  # per subject: the systematic offsets times U(scale)
    jitter_m: float = 0.005  # per subject and interior game joint, per axis (normal, metres)
    surface_jitter_m: float = 0.002  # the same for surface points
    marker_noise_m: float = 0.0  # per frame and game joint, per axis (normal, metres)


@dataclass(frozen=True)
class GameRig:
    """One subject's rig: (100, 3) offsets in the frame of each game joint's owner (`GAME_OWNERS`)."""

    offsets: np.ndarray
    marker_noise_m: float = 0.0

    @classmethod
    def exact(cls) -> "GameRig":
        """No offsets: game joints = their landmarks (the SMPL-derived skeleton)."""
        return cls(np.zeros((len(GTA), 3)))

    @classmethod
    def draw(cls, rng: np.random.Generator, variation: RigVariation = RigVariation(),
             systematic: np.ndarray | None = None) -> "GameRig":
        """A subject's rig: ``systematic`` (24, 3) per kinematic joint (default `SYSTEMATIC_OFFSETS`)
        scaled by one draw from ``variation.scale``, plus per-joint jitter."""
        base = _SYSTEMATIC if systematic is None else np.asarray(systematic, dtype=np.float64)
        if base.shape != (NUM_KINEMATIC, 3):
            raise ValueError(f"GameRig.draw: systematic offsets must be ({NUM_KINEMATIC}, 3), got {base.shape}")
        scale = rng.uniform(*variation.scale)
        jitter = np.where(GAME_INTERIOR, variation.jitter_m, variation.surface_jitter_m)[:, None]
        offsets = (scale * base[GAME_OWNERS] * GAME_INTERIOR[:, None]
                   + jitter * rng.standard_normal((len(GTA), 3)))
        return cls(offsets, variation.marker_noise_m)


def global_rotations(global_orient: np.ndarray, body_pose: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """(T, 3) root and (T, 69) body axis-angle -> (T, 24, 3, 3) global joint rotations (forward
    kinematics over ``parents``; the root's parent is -1)."""
    frames = len(global_orient)
    local = Rotation.from_rotvec(np.concatenate([np.reshape(global_orient, (frames, 1, 3)),
                                                 np.reshape(body_pose, (frames, 23, 3))], axis=1)
                                 .reshape(-1, 3)).as_matrix().reshape(frames, NUM_KINEMATIC, 3, 3)
    world = np.empty_like(local)
    for j, parent in enumerate(np.asarray(parents)[:NUM_KINEMATIC]):
        world[:, j] = local[:, j] if parent < 0 else world[:, parent] @ local[:, j]
    return world


def game_joints(joints54: np.ndarray, rotations: np.ndarray | None = None, rig: GameRig | None = None,
                rng: np.random.Generator | None = None) -> np.ndarray:
    """(..., 54, 3) smpl_54 joints -> (..., 100, 3) game joints in the same frame.

    Without ``rig`` the landmarks alone; with it, each landmark moved by its offset turned by
    ``rotations`` (..., 24, 3, 3), the global rotations in that frame (`global_rotations`), plus
    marker noise from ``rng`` when the rig has any."""
    joints54 = np.asarray(joints54, dtype=np.float64)
    if joints54.shape[-2:] != (len(SMPL_54), 3):
        raise ValueError(f"game_joints: expected (..., {len(SMPL_54)}, 3) smpl_54 joints, got {joints54.shape}")
    landmarks = np.einsum("gj,...jc->...gc", GAME_LANDMARKS, joints54)
    if rig is None:
        return landmarks
    if rotations is None or np.shape(rotations) != joints54.shape[:-2] + (NUM_KINEMATIC, 3, 3):
        raise ValueError(f"game_joints: a rig needs global rotations of shape {joints54.shape[:-2] + (24, 3, 3)}, "
                         f"got {None if rotations is None else np.shape(rotations)}")
    turned = np.einsum("...gij,gj->...gi", np.asarray(rotations)[..., GAME_OWNERS, :, :], rig.offsets)
    joints = landmarks + turned
    if rig.marker_noise_m > 0:
        if rng is None:
            raise ValueError("game_joints: a rig with marker noise needs an rng")
        joints = joints + rng.normal(0.0, rig.marker_noise_m, joints.shape)
    return joints

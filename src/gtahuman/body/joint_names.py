"""Joint-name tables of the keypoint conventions, in mmhuman3d naming.

Only data lives here; `conventions.py` holds the logic (registry, name-based conversion,
flipping). Names are what conversion matches on, so the same anatomical point must carry
the same name in every table, and points that only look alike carry different names
(`neck` is the SMPL kinematic joint, `neck_extra` the LSP neck regressed by
J_regressor_extra, `neck_openpose` the OpenPose BODY_25 neck).
"""
from __future__ import annotations

# SMPL kinematic tree, standard order (24).
SMPL: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine_1", "left_knee", "right_knee",
    "spine_2", "left_ankle", "right_ankle", "spine_3", "left_foot", "right_foot",
    "neck", "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand",
)

# Parent of each SMPL kinematic joint, in the order of SMPL above (-1: the root). The one copy;
# the toy body, forward kinematics and the motion generator all read it from here.
SMPL_PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)

# What smplx's SMPL returns: the 24 joints + 21 points picked from vertices.
SMPL_45: tuple[str, ...] = SMPL + (
    "nose", "right_eye", "left_eye", "right_ear", "left_ear",
    "left_bigtoe", "left_smalltoe", "left_heel",
    "right_bigtoe", "right_smalltoe", "right_heel",
    "left_thumb", "left_index", "left_middle", "left_ring", "left_pinky",  # fingertips
    "right_thumb", "right_index", "right_middle", "right_ring", "right_pinky",
)

# The 9 joints of SPIN's J_regressor_extra.npy, in the file's row order.
J_REGRESSOR_EXTRA: tuple[str, ...] = (
    "right_hip_extra", "left_hip_extra", "neck_extra", "headtop",  # LSP
    "pelvis_extra", "thorax_extra",  # MPII
    "spine_extra", "jaw_extra", "head_extra",  # H36M
)

SMPL_54: tuple[str, ...] = SMPL_45 + J_REGRESSOR_EXTRA

# OpenPose BODY_25, each name suffixed so it never matches a model joint by accident.
OPENPOSE_25: tuple[str, ...] = tuple(
    f"{name}_openpose"
    for name in (
        "nose", "neck", "right_shoulder", "right_elbow", "right_wrist",
        "left_shoulder", "left_elbow", "left_wrist", "pelvis",  # pelvis = OpenPose "MidHip"
        "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
        "right_eye", "left_eye", "right_ear", "left_ear",
        "left_bigtoe", "left_smalltoe", "left_heel",
        "right_bigtoe", "right_smalltoe", "right_heel",
    )
)

# SPIN's 24 "GT" joints: a superset of LSP, MPII and H36M, plus face points.
SPIN_GT_24: tuple[str, ...] = (
    "right_ankle", "right_knee", "right_hip_extra", "left_hip_extra", "left_knee",
    "left_ankle", "right_wrist", "right_elbow", "right_shoulder", "left_shoulder",
    "left_elbow", "left_wrist", "neck_extra", "headtop", "pelvis_extra", "thorax_extra",
    "spine_extra", "jaw_extra", "head_extra", "nose", "left_eye", "right_eye",
    "left_ear", "right_ear",
)

# SPIN / EFT layout: OpenPose 25 then the 24 GT joints.
SMPL_49: tuple[str, ...] = OPENPOSE_25 + SPIN_GT_24
SMPL_24: tuple[str, ...] = SMPL_49[25:]

# Output order of J_regressor_h36m.npy.
H36M: tuple[str, ...] = (
    "pelvis_extra", "left_hip_extra", "left_knee", "left_ankle", "right_hip_extra",
    "right_knee", "right_ankle", "spine_extra", "neck_extra", "head_extra", "headtop",
    "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow",
    "right_wrist",
)

# mmhuman3d names the LSP hips and neck without "_extra": they match the SMPL-family
# `*_extra` joints only under approximate conversion.
LSP: tuple[str, ...] = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
    "left_wrist", "neck", "headtop",
)

COCO: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)

MPII: tuple[str, ...] = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "pelvis", "thorax", "neck", "headtop", "right_wrist", "right_elbow",
    "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
)

# The 100 joints of the GTA-Human game skeleton (keypoints_2d / keypoints_3d). Joints with
# a standard name match other conventions; `gta_`-prefixed ones (game bone names: roll
# bones, IK targets, facial rig) match nothing. Comments give the game's own name.
GTA: tuple[str, ...] = (
    "gta_head_top",  # 0, extrapolated from neck -> head
    "head", "neck", "gta_right_clavicle", "right_shoulder", "right_elbow",  # 1-5
    "right_wrist", "gta_left_clavicle", "left_shoulder", "left_elbow", "left_wrist",  # 6-10
    "spine_2",  # 11, game spine0
    "gta_spine1",  # 12
    "spine_1",  # 13, game spine2
    "pelvis",  # 14
    "gta_spine4",  # 15
    "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",  # 16-21
    "gta_SKEL_ROOT", "gta_FB_R_Brow_Out_000",  # 22-23
    "left_foot",  # 24, SKEL_L_Toe0
    "gta_MH_R_Elbow",  # 25
    "left_thumb_2", "left_thumb_3", "left_ring_2", "left_ring_3",  # 26-29, SKEL_L_Finger0x/3x
    "left_pinky_2", "left_pinky_3", "left_index_2", "left_index_3",  # 30-33
    "left_middle_2", "left_middle_3",  # 34-35
    "gta_RB_L_ArmRoll", "gta_IK_R_Hand", "gta_RB_R_ThighRoll",  # 36-38
    "gta_FB_R_Lip_Corner_000", "gta_SKEL_Pelvis", "gta_IK_Head", "gta_MH_R_Knee",  # 39-42
    "gta_FB_LowerLipRoot_000", "gta_FB_R_Lip_Top_000", "gta_FB_R_CheekBone_000",  # 43-45
    "gta_FB_UpperLipRoot_000", "gta_FB_L_Lip_Top_000", "gta_FB_LowerLip_000",  # 46-48
    "right_foot",  # 49, SKEL_R_Toe0
    "gta_FB_L_CheekBone_000", "gta_MH_L_Elbow", "gta_RB_L_ThighRoll",  # 50-52
    "gta_PH_R_Foot",  # 53
    "left_eye",  # 54, FB_L_Eye_000
    "gta_SKEL_L_Finger00",  # 55
    "left_index_1", "left_middle_1", "left_ring_1", "left_pinky_1",  # 56-59
    "right_eye",  # 60, FB_R_Eye_000
    "gta_PH_R_Hand", "gta_FB_L_Lip_Corner_000", "gta_IK_R_Foot", "gta_RB_Neck_1",  # 61-64
    "gta_IK_L_Hand", "gta_RB_R_ArmRoll", "gta_FB_Brow_Centre_000",  # 65-67
    "gta_FB_R_Lid_Upper_000", "gta_RB_R_ForeArmRoll", "gta_FB_L_Lid_Upper_000",  # 68-70
    "gta_MH_L_Knee", "gta_FB_Jaw_000", "gta_FB_L_Lip_Bot_000", "gta_FB_Tongue_000",  # 71-74
    "gta_FB_R_Lip_Bot_000", "gta_IK_Root", "gta_PH_L_Foot", "gta_FB_L_Brow_Out_000",  # 75-78
    "gta_SKEL_R_Finger00",  # 79
    "right_index_1", "right_middle_1", "right_ring_1", "right_pinky_1",  # 80-83
    "gta_PH_L_Hand", "gta_RB_L_ForeArmRoll", "gta_FB_UpperLip_000",  # 84-86
    "right_thumb_2", "right_thumb_3", "right_ring_2", "right_ring_3",  # 87-90
    "right_pinky_2", "right_pinky_3", "right_index_2", "right_index_3",  # 91-94
    "right_middle_2", "right_middle_3",  # 95-96
    "gta_FACIAL_facialRoot", "gta_IK_L_Foot",  # 97-98
    "nose",  # 99, mid-point of the two cheekbones (45, 50)
)

# --- human_data (190): the superset HumanData npz files store keypoints in -------------
_FINGER_JOINTS = tuple(
    f"{side}_{finger}_{k}"
    for side in ("left", "right")
    for finger in ("index", "middle", "pinky", "ring", "thumb")
    for k in (1, 2, 3)
)
_FINGERTIPS = tuple(
    f"{side}_{finger}"
    for side in ("left", "right")
    for finger in ("thumb", "index", "middle", "ring", "pinky")
)
# 68 face landmarks (the 300-W layout), named by side so flipping works by name.
_FACE_68 = (
    tuple(f"right_eyebrow_{k}" for k in range(1, 6))
    + tuple(f"left_eyebrow_{k}" for k in range(5, 0, -1))
    + tuple(f"nosebridge_{k}" for k in range(1, 5))
    + ("right_nose_2", "right_nose_1", "nose_middle", "left_nose_1", "left_nose_2")
    + tuple(f"right_eye_{k}" for k in range(1, 7))
    + ("left_eye_4", "left_eye_3", "left_eye_2", "left_eye_1", "left_eye_6", "left_eye_5")
    + ("right_mouth_1", "right_mouth_2", "right_mouth_3", "mouth_top",
       "left_mouth_3", "left_mouth_2", "left_mouth_1", "left_mouth_5", "left_mouth_4",
       "mouth_bottom", "right_mouth_4", "right_mouth_5")
    + ("right_lip_1", "right_lip_2", "lip_top", "left_lip_2", "left_lip_1", "left_lip_3",
       "lip_bottom", "right_lip_3")
    + tuple(f"right_contour_{k}" for k in range(1, 9))
    + ("contour_middle",)
    + tuple(f"left_contour_{k}" for k in range(8, 0, -1))
)
HUMAN_DATA: tuple[str, ...] = (
    SMPL[:22]
    + ("jaw", "left_eyeball", "right_eyeball")
    + _FINGER_JOINTS  # 25-54
    + SMPL_45[24:35]  # 55-65: nose, eyes, ears, toes, heels
    + _FINGERTIPS  # 66-75
    + _FACE_68  # 76-143
    + J_REGRESSOR_EXTRA  # 144-152
    + OPENPOSE_25  # 153-177
    + ("spine_4_3dhp", "left_clavicle_3dhp", "right_clavicle_3dhp", "left_hand_3dhp",
       "right_hand_3dhp", "left_toe_3dhp", "right_toe_3dhp")  # 178-184
    + ("head_h36m", "headtop_h36m", "head_bottom_pt", "left_hand", "right_hand")  # 185-189
)

# Names that stand for (nearly) the same point; approximate conversion may borrow within a
# group, trying members in the order listed.
APPROXIMATE_GROUPS: tuple[tuple[str, ...], ...] = (
    ("pelvis", "pelvis_openpose", "pelvis_extra"),
    ("left_hip", "left_hip_openpose", "left_hip_extra"),
    ("right_hip", "right_hip_openpose", "right_hip_extra"),
    ("neck", "neck_openpose", "neck_extra"),
    ("jaw", "jaw_extra"),
    ("head_extra", "head_h36m"),
    ("headtop", "headtop_h36m"),
    ("left_hand", "left_hand_3dhp"),
    ("right_hand", "right_hand_3dhp"),
) + tuple(
    (name, f"{name}_openpose")
    for name in (
        "nose", "right_eye", "left_eye", "right_ear", "left_ear",
        "right_shoulder", "left_shoulder", "right_elbow", "left_elbow",
        "right_wrist", "left_wrist", "right_knee", "left_knee", "right_ankle", "left_ankle",
        "left_bigtoe", "left_smalltoe", "left_heel",
        "right_bigtoe", "right_smalltoe", "right_heel",
    )
)

BUILTIN_CONVENTIONS: dict[str, tuple[str, ...]] = {
    "smpl": SMPL,
    "smpl_45": SMPL_45,
    "smpl_54": SMPL_54,
    "smpl_49": SMPL_49,
    "smpl_24": SMPL_24,
    "h36m": H36M,
    "lsp": LSP,
    "coco": COCO,
    "mpii": MPII,
    "gta": GTA,
    "openpose_25": OPENPOSE_25,
    "human_data": HUMAN_DATA,
}

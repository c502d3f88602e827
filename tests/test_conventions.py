"""Keypoint conventions: table sizes and contents, name-based conversion, flipping."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from gtahuman.body.conventions import (
    CONVENTIONS,
    H36M_TO_J14,
    H36M_TO_J17,
    SMPL_POSE_FLIP_PERMUTATION,
    convert_keypoints,
    flip_keypoints,
    flip_permutation,
    flip_smpl_pose,
    get_names,
    joint_index,
    mapping_indices,
    register_convention,
)

EXPECTED_SIZES = {
    "smpl": 24, "smpl_45": 45, "smpl_54": 54, "smpl_49": 49, "smpl_24": 24, "h36m": 17,
    "lsp": 14, "coco": 17, "mpii": 16, "gta": 100, "openpose_25": 25, "human_data": 190,
}

# The 13 (smpl_49 index, gta index) pairs the public GTA-Human converter keeps.
GTA_TO_SMPL49_EXACT = [
    (25, 18), (26, 17), (29, 20), (30, 21), (31, 6), (32, 5), (33, 4),
    (34, 8), (35, 9), (36, 10), (44, 99), (45, 54), (46, 60),
]


@pytest.mark.parametrize("name,size", EXPECTED_SIZES.items())
def test_sizes_and_unique_names(name, size):
    names = get_names(name)
    assert len(names) == size
    assert len(set(names)) == size


def test_known_names_at_known_indices():
    smpl_49 = get_names("smpl_49")
    assert smpl_49[39] == "pelvis_extra"
    assert smpl_49[25] == "right_ankle"
    assert smpl_49[0] == "nose_openpose" and smpl_49[8] == "pelvis_openpose"
    assert smpl_49[38] == "headtop" and smpl_49[43] == "head_extra"
    assert get_names("smpl_24") == smpl_49[25:]
    smpl_54 = get_names("smpl_54")
    assert smpl_54[:45] == get_names("smpl_45") and smpl_54[49] == "pelvis_extra"
    gta = get_names("gta")
    assert (gta[0], gta[1], gta[2], gta[4], gta[14], gta[99]) == (
        "gta_head_top", "head", "neck", "right_shoulder", "pelvis", "nose")
    assert get_names("h36m")[0] == "pelvis_extra" and get_names("h36m")[10] == "headtop"


def test_unknown_convention_lists_valid_ones():
    with pytest.raises(KeyError, match="smpl_49"):
        get_names("smpl_50")
    with pytest.raises(KeyError, match="valid conventions"):
        CONVENTIONS["nope"]
    with pytest.raises(KeyError, match="no joint named"):
        joint_index("coco", "pelvis")


def test_register_convention_rejects_duplicates_and_overwrites():
    with pytest.raises(ValueError, match="repeats"):
        register_convention("test_dup", ["a", "b", "a"])
    with pytest.raises(ValueError, match="already registered"):
        register_convention("smpl", ["x"])


def test_human_data_index_maps_match_reference():
    # Index maps into human_data written down in the mmhuman3d note (section 6.3).
    smpl_49_to_hd = list(range(153, 178)) + [8, 5, 144, 145, 4, 7, 21, 19, 17, 16, 18, 20] + \
        list(range(146, 153)) + [55, 57, 56, 59, 58]
    dst, src = mapping_indices("smpl_49", "human_data")
    assert src.tolist() == sorted(range(49), key=lambda i: smpl_49_to_hd[i])
    assert dst.tolist() == sorted(smpl_49_to_hd)
    h36m_to_hd = [148, 145, 4, 7, 144, 5, 8, 150, 146, 152, 147, 16, 18, 20, 17, 19, 21]
    hd = get_names("human_data")
    assert [hd[i] for i in h36m_to_hd] == get_names("h36m")


def test_gta_to_smpl49_exact_maps_the_13_reference_joints():
    dst, src = mapping_indices("gta", "smpl_49")
    assert list(zip(dst.tolist(), src.tolist())) == GTA_TO_SMPL49_EXACT
    rng = np.random.default_rng(0)
    kps = rng.normal(size=(5, 100, 3))
    out, mask = convert_keypoints(kps, "gta", "smpl_49")
    assert out.shape == (5, 49, 3) and mask.shape == (49,) and mask.dtype == np.uint8
    kept = [d for d, _ in GTA_TO_SMPL49_EXACT]
    for d, s in GTA_TO_SMPL49_EXACT:
        np.testing.assert_array_equal(out[:, d], kps[:, s])
    others = [j for j in range(49) if j not in kept]
    assert not out[:, others].any()
    assert mask.tolist() == [int(j in kept) for j in range(49)]


def test_gta_to_smpl49_approximate_fills_openpose_slots_from_same_named_joints():
    dst, src = mapping_indices("gta", "smpl_49", approximate=True)
    pairs = dict(zip(dst.tolist(), src.tolist()))
    for d, s in GTA_TO_SMPL49_EXACT:  # exact matches are kept
        assert pairs[d] == s
    smpl_49 = get_names("smpl_49")
    expected_openpose = {"nose_openpose": 99, "neck_openpose": 2, "pelvis_openpose": 14,
                         "right_shoulder_openpose": 4, "left_wrist_openpose": 10,
                         "right_hip_openpose": 16, "left_hip_openpose": 19,
                         "right_ankle_openpose": 18, "left_eye_openpose": 54}
    for name, gta_index in expected_openpose.items():
        assert pairs[smpl_49.index(name)] == gta_index
    # The groups also reach the *_extra joints, from the game's own pelvis/hips/neck.
    assert pairs[39] == 14 and pairs[27] == 16 and pairs[28] == 19 and pairs[37] == 2
    # Ears and toes have no game joint, so they stay empty.
    assert smpl_49.index("right_ear_openpose") not in pairs and 47 not in pairs


def test_smpl54_to_smpl49_approximate_uses_kinematic_joints_for_openpose():
    dst, src = mapping_indices("smpl_54", "smpl_49", approximate=True)
    assert dst.tolist() == list(range(49))
    pairs = dict(zip(dst.tolist(), src.tolist()))
    # neck_openpose <- SMPL neck (12) before neck_extra (47); pelvis_openpose <- pelvis (0)
    assert (pairs[0], pairs[1], pairs[8], pairs[9], pairs[12]) == (24, 12, 0, 2, 1)
    assert (pairs[25], pairs[27], pairs[37], pairs[39], pairs[44], pairs[45]) == (
        8, 45, 47, 49, 24, 26)
    exact_dst, _ = mapping_indices("smpl_54", "smpl_49")
    assert exact_dst.tolist() == list(range(25, 49))  # no openpose slot without approximate


def test_torch_and_numpy_agree_and_mask_propagates():
    rng = np.random.default_rng(1)
    kps = rng.normal(size=(2, 3, 100, 4)).astype(np.float32)
    mask = (rng.random(100) > 0.3).astype(np.uint8)
    out_np, mask_np = convert_keypoints(kps, "gta", "smpl_49", approximate=True, mask=mask)
    out_t, mask_t = convert_keypoints(torch.from_numpy(kps), "gta", "smpl_49",
                                      approximate=True, mask=torch.from_numpy(mask))
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    np.testing.assert_array_equal(out_t.numpy(), out_np)
    np.testing.assert_array_equal(mask_t.numpy(), mask_np)
    dst, src = mapping_indices("gta", "smpl_49", approximate=True)
    np.testing.assert_array_equal(mask_np[dst], mask[src])
    # per-sample masks keep their leading dims
    batch_mask = np.stack([mask, 1 - mask])
    _, out_mask = convert_keypoints(kps[0], "gta", "smpl_49", mask=batch_mask)
    assert out_mask.shape == (2, 49)
    np.testing.assert_array_equal(out_mask[1, [25, 44]], 1 - mask[[18, 99]])


def test_conversion_is_by_name_round_trip_through_human_data():
    rng = np.random.default_rng(2)
    kps = rng.normal(size=(4, 49, 3))
    hd, hd_mask = convert_keypoints(kps, "smpl_49", "human_data")
    assert hd_mask.sum() == 49
    back, back_mask = convert_keypoints(hd, "human_data", "smpl_49", mask=hd_mask)
    np.testing.assert_array_equal(back, kps)
    assert back_mask.all()
    # h36m <- smpl_54 picks the regressor joints by name, e.g. h36m 0 = smpl_54 49.
    kps54 = rng.normal(size=(54, 3))
    h36m, _ = convert_keypoints(kps54, "smpl_54", "h36m")
    np.testing.assert_array_equal(h36m[[0, 1, 2, 10]], kps54[[49, 46, 4, 48]])


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="'gta'.*100"):
        convert_keypoints(np.zeros((5, 99, 3)), "gta", "smpl_49")
    with pytest.raises(ValueError, match="mask"):
        convert_keypoints(np.zeros((5, 100, 3)), "gta", "smpl_49", mask=np.ones(49))


def test_evaluation_index_constants():
    h36m = get_names("h36m")
    lsp = get_names("lsp")
    j14 = [h36m[i] for i in H36M_TO_J14]
    # Same order as LSP; the hips/neck are the regressor versions of LSP's joints.
    assert [n.replace("_extra", "") for n in j14] == lsp
    assert [h36m[i] for i in H36M_TO_J17[14:]] == ["pelvis_extra", "spine_extra", "head_extra"]


@pytest.mark.parametrize("name", sorted(EXPECTED_SIZES))
def test_flip_permutation_is_an_involution_that_swaps_sides(name):
    names = get_names(name)
    perm = flip_permutation(name)
    np.testing.assert_array_equal(perm[perm], np.arange(len(names)))
    for i, j in enumerate(perm):
        if names[i].startswith("left_") or "_left_" in names[i]:
            assert names[j] == names[i].replace("left_", "right_"), names[i]
        elif "left" not in names[i] and "right" not in names[i] and "_L_" not in names[i] \
                and "_R_" not in names[i]:
            assert j == i


def test_flip_permutation_matches_spin_tables():
    # SPIN's J49_FLIP_PERM (openpose part, then 25 + J24_FLIP_PERM) and SMPL joint flip.
    openpose = [0, 1, 5, 6, 7, 2, 3, 4, 8, 12, 13, 14, 9, 10, 11, 16, 15, 18, 17,
                22, 23, 24, 19, 20, 21]
    j24 = [5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 12, 13, 14, 15, 16, 17, 18, 19,
           21, 20, 23, 22]
    assert flip_permutation("smpl_49").tolist() == openpose + [25 + j for j in j24]
    assert SMPL_POSE_FLIP_PERMUTATION.tolist() == [
        0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22]
    gta = get_names("gta")
    perm = flip_permutation("gta")
    assert gta[perm[gta.index("gta_IK_L_Hand")]] == "gta_IK_R_Hand"
    assert gta[perm[gta.index("gta_left_clavicle")]] == "gta_right_clavicle"


def test_flip_smpl_pose_hand_computed():
    pose = np.zeros((24, 3))
    pose[0] = [0.1, 0.2, 0.3]  # root: stays, y/z negated
    pose[1] = [0.4, 0.5, 0.6]  # left_hip -> right_hip slot
    pose[17] = [-0.7, 0.8, 0.9]  # right_shoulder -> left_shoulder slot (16)
    flipped = flip_smpl_pose(pose)
    np.testing.assert_allclose(flipped[0], [0.1, -0.2, -0.3])
    np.testing.assert_allclose(flipped[2], [0.4, -0.5, -0.6])
    np.testing.assert_allclose(flipped[16], [-0.7, -0.8, -0.9])
    assert not flipped[[1, 17]].any()
    # flat (..., 72) input keeps its shape; torch agrees; twice is identity
    flat = torch.from_numpy(np.random.default_rng(3).normal(size=(2, 72)))
    once = flip_smpl_pose(flat)
    assert once.shape == (2, 72)
    np.testing.assert_allclose(once.reshape(2, 24, 3).numpy(),
                               flip_smpl_pose(flat.reshape(2, 24, 3).numpy()))
    torch.testing.assert_close(flip_smpl_pose(once), flat, rtol=0, atol=0)


def test_flipped_axis_angle_is_the_mirrored_rotation():
    # Mirroring by M = diag(-1, 1, 1) turns R into M R M; its axis-angle must be the flip.
    rotvecs = np.random.default_rng(4).normal(size=(24, 3))
    flipped = flip_smpl_pose(rotvecs)
    mirror = np.diag([-1.0, 1.0, 1.0])
    for j, k in enumerate(SMPL_POSE_FLIP_PERMUTATION):
        expected = mirror @ Rotation.from_rotvec(rotvecs[k]).as_matrix() @ mirror
        np.testing.assert_allclose(Rotation.from_rotvec(flipped[j]).as_matrix(), expected,
                                   atol=1e-12)


def test_flip_keypoints_mirrors_x_and_swaps_sides():
    kps = np.zeros((2, 17, 3))
    kps[:, 1] = [10.0, 20.0, 0.9]  # left_hip_extra
    kps[:, 0] = [50.0, 60.0, 1.0]  # pelvis_extra
    flipped_2d = flip_keypoints(kps, "h36m", image_width=100)
    np.testing.assert_allclose(flipped_2d[:, 4], [[89.0, 20.0, 0.9]] * 2)  # right_hip_extra
    np.testing.assert_allclose(flipped_2d[:, 0], [[49.0, 60.0, 1.0]] * 2)
    assert not flipped_2d[:, 1, 1:].any()  # the empty right hip moved here (x mirrored)
    flipped_3d = flip_keypoints(torch.from_numpy(kps), "h36m")
    np.testing.assert_allclose(flipped_3d[:, 4].numpy(), [[-10.0, 20.0, 0.9]] * 2)
    torch.testing.assert_close(flip_keypoints(flipped_3d, "h36m"), torch.from_numpy(kps))
    assert kps[0, 1, 0] == 10.0  # input untouched

"""The toy body model: formats, determinism, rig and shape space, checked with plain numpy."""
from __future__ import annotations

import numpy as np
import pytest
from smplx.vertex_ids import vertex_ids

from gtahuman.body.assets import check_body_model_dir
from gtahuman.body.model_files import TOY_MARKER_KEY, load_smpl_model_file, read_npy_header
from gtahuman.body.toy import build_toy_body_model, toy_part_labels, write_toy_body_assets

SMPL_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
L_HIP, L_KNEE, L_ANKLE, L_SHOULDER, L_ELBOW, L_WRIST, L_HAND = 1, 4, 7, 16, 18, 20, 22
R_HIP, R_SHOULDER, R_HAND, HEAD, NECK, PELVIS = 2, 17, 23, 15, 12, 0
LANDMARKS = vertex_ids["smplh"]


@pytest.fixture(scope="module")
def toy_dir(toy_body_dir):
    return toy_body_dir


@pytest.fixture(scope="module")
def neutral(toy_dir):
    return load_smpl_model_file(toy_dir / "SMPL_NEUTRAL.npz")


def shaped(model: dict, beta_index: int, value: float) -> np.ndarray:
    return model["v_template"] + value * model["shapedirs"][:, :, beta_index]


def joints_of(model: dict, vertices: np.ndarray) -> np.ndarray:
    return model["J_regressor"] @ vertices


def test_same_seed_same_bytes_other_seed_other_body(toy_dir, tmp_path):
    again = write_toy_body_assets(tmp_path / "again", seed=0)
    names = sorted(p.name for p in toy_dir.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    for name in names:
        assert (toy_dir / name).read_bytes() == (again / name).read_bytes(), name
    other = build_toy_body_model("neutral", seed=1)["v_template"]
    seed0 = build_toy_body_model("neutral", seed=0)["v_template"]
    assert 1e-4 < np.abs(other - seed0).max() < 0.05  # a different, similar body


def test_every_file_is_marked_toy(toy_dir):
    for gender in ("NEUTRAL", "MALE", "FEMALE"):
        assert "NOT SMPL" in load_smpl_model_file(toy_dir / f"SMPL_{gender}.npz")[TOY_MARKER_KEY]
    for name in ("J_regressor_h36m.npy", "J_regressor_extra.npy"):
        assert TOY_MARKER_KEY in read_npy_header(toy_dir / name)
    with np.load(toy_dir / "smpl_mean_params.npz") as npz:
        assert TOY_MARKER_KEY in npz.files
    assert check_body_model_dir(toy_dir).is_toy


def test_topology_and_kinematic_tree(neutral):
    v, f = neutral["v_template"], neutral["f"]
    assert v.shape == (6890, 3) and f.min() >= 0 and f.max() < 6890
    assert len(np.unique(f)) == 6890  # every vertex is on the surface
    np.testing.assert_array_equal(neutral["kintree_table"][1], np.arange(24))
    assert neutral["kintree_table"][0, 0] == 4294967295
    np.testing.assert_array_equal(neutral["kintree_table"][0, 1:], SMPL_PARENTS[1:])
    # closed, outward-facing surfaces: positive enclosed volume of a human (~60-80 litres)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    volume = np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0
    assert 0.05 < volume < 0.09


def test_canonical_frame_and_proportions(neutral):
    v, J = neutral["v_template"], neutral["J"]
    height = v[:, 1].max() - v[:, 1].min()
    assert 1.65 < height < 1.78
    assert -0.3 < J[PELVIS, 1] < -0.15  # pelvis slightly below the origin, as in SMPL
    assert J[HEAD, 1] > J[NECK, 1] > J[PELVIS, 1] > J[L_KNEE, 1] > J[L_ANKLE, 1]  # y up
    assert J[L_HIP, 0] > 0 > J[R_HIP, 0] and J[L_HAND, 0] > 0.7 and J[R_HAND, 0] < -0.7  # T-pose
    assert abs(J[L_SHOULDER, 1] - J[L_WRIST, 1]) < 0.05  # arms horizontal
    mirrored = J.copy()
    mirrored[:, 0] *= -1
    pairs = [(1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21), (22, 23)]
    for left, right in pairs:  # left/right symmetric
        np.testing.assert_allclose(mirrored[left], J[right], atol=1e-9)


def test_regressor_and_skinning_weights(neutral):
    reg, v, w = neutral["J_regressor"], neutral["v_template"], neutral["weights"]
    assert reg.min() >= 0 and w.min() >= 0
    np.testing.assert_allclose(reg.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(reg @ v, neutral["J"], atol=1e-12)
    # smooth blending: at the elbow, vertices mix upper arm (16) and forearm (18) joints
    mixed = (w[:, L_SHOULDER] > 0.1) & (w[:, L_ELBOW] > 0.1)
    assert mixed.sum() >= 20
    # the mixed ring sits at the elbow joint, not elsewhere
    dist = np.linalg.norm(v[mixed] - neutral["J"][L_ELBOW], axis=1)
    assert dist.max() < 0.1
    # each regressed joint is the centre of its vertex ring: vertices all around it
    for joint in range(24):
        ring = v[reg[joint] > 0]
        assert len(ring) >= 8
        assert np.linalg.norm(ring.mean(0) - neutral["J"][joint]) < 1e-9


def test_beta0_is_stature(neutral):
    def height(vertices):
        return np.ptp(vertices[:, 1])

    assert height(shaped(neutral, 0, 2.0)) > height(neutral["v_template"]) + 0.08
    assert height(shaped(neutral, 0, -2.0)) < height(neutral["v_template"]) - 0.08


def _mean_distance_from_bone(vertices, joints, part, start, end):
    points = vertices[toy_part_labels() == part]
    a, b = joints[start], joints[end]
    axis = (b - a) / np.linalg.norm(b - a)
    rel = points - a
    return np.linalg.norm(rel - np.outer(rel @ axis, axis), axis=1).mean()


def test_beta1_is_girth_at_constant_bone_lengths(neutral):
    base, thick = neutral["v_template"], shaped(neutral, 1, 2.0)
    j0, j1 = joints_of(neutral, base), joints_of(neutral, thick)
    for part, start, end in ((L_HIP, L_HIP, L_KNEE), (L_KNEE, L_KNEE, L_ANKLE),
                             (L_SHOULDER, L_SHOULDER, L_ELBOW), (L_ELBOW, L_ELBOW, L_WRIST)):
        before = _mean_distance_from_bone(base, j0, part, start, end)
        after = _mean_distance_from_bone(thick, j1, part, start, end)
        assert after > before * 1.1, part
    bones = [(c, p) for c, p in enumerate(SMPL_PARENTS) if p >= 0]
    length = lambda j: np.array([np.linalg.norm(j[c] - j[p]) for c, p in bones])  # noqa: E731
    assert np.abs(length(j1) / length(j0) - 1).max() < 0.02


def test_beta2_to_4_legs_shoulders_hips(neutral):
    def measures(vertices):
        j = joints_of(neutral, vertices)
        leg = np.linalg.norm(j[L_HIP] - j[L_KNEE]) + np.linalg.norm(j[L_KNEE] - j[L_ANKLE])
        torso = j[NECK, 1] - j[PELVIS, 1]
        return leg, torso, j[L_SHOULDER, 0] - j[R_SHOULDER, 0], j[L_HIP, 0] - j[R_HIP, 0]

    leg, torso, shoulders, hips = measures(neutral["v_template"])
    leg2, torso2, _, _ = measures(shaped(neutral, 2, 1.0))
    assert leg2 > leg * 1.02 and torso2 < torso * 0.99
    assert measures(shaped(neutral, 3, 1.0))[2] > shoulders * 1.03
    assert measures(shaped(neutral, 4, 1.0))[3] > hips * 1.03


def test_genders_differ_plausibly(toy_dir, neutral):
    male = load_smpl_model_file(toy_dir / "SMPL_MALE.npz")
    female = load_smpl_model_file(toy_dir / "SMPL_FEMALE.npz")
    height = lambda m: np.ptp(m["v_template"][:, 1])  # noqa: E731
    ratio = lambda m: (m["J"][L_HIP, 0] - m["J"][R_HIP, 0]) / (  # noqa: E731
        m["J"][L_SHOULDER, 0] - m["J"][R_SHOULDER, 0])
    assert height(male) > height(neutral) > height(female)
    assert ratio(female) > ratio(neutral) > ratio(male)
    np.testing.assert_array_equal(male["f"], neutral["f"])  # one topology for all genders


def test_smplx_vertex_landmarks_are_anatomical(neutral):
    v, J = neutral["v_template"], neutral["J"]
    nose = v[LANDMARKS["nose"]]
    assert abs(nose[0]) < 0.01 and nose[2] > J[HEAD, 2] + 0.07  # in front of the head
    assert J[NECK, 1] < nose[1] < v[:, 1].max()
    for side, sign in (("l", 1), ("r", -1)):
        eye, ear = v[LANDMARKS[f"{side}eye"]], v[LANDMARKS[f"{side}ear"]]
        assert sign * eye[0] > 0.01 and eye[1] > nose[1] and eye[2] > J[HEAD, 2]
        assert sign * ear[0] > sign * eye[0] and ear[2] < eye[2]
        key, hand = side.upper(), J[L_HAND if sign > 0 else R_HAND]
        big, small, heel = (v[LANDMARKS[f"{key}{n}"]] for n in ("BigToe", "SmallToe", "Heel"))
        assert heel[2] < big[2] - 0.2 and heel[2] < small[2] - 0.15  # heels behind the toes
        assert sign * small[0] > sign * big[0]  # the big toe is medial
        assert max(big[1], small[1], heel[1]) < v[:, 1].min() + 0.03  # on the sole
        for finger in ("thumb", "index", "middle", "ring", "pinky"):
            tip = v[LANDMARKS[f"{side}{finger}"]]
            assert np.linalg.norm(tip - hand) < 0.12, finger  # at the hands
        thumb, index, pinky = (v[LANDMARKS[f"{side}{n}"]] for n in ("thumb", "index", "pinky"))
        assert thumb[2] > index[2] > pinky[2]  # palms down: thumb forward, pinky back
        assert sign * index[0] > sign * hand[0] + 0.05  # fingers point outwards


def test_h36m_and_extra_regressors(toy_dir, neutral):
    v, J = neutral["v_template"], neutral["J"]
    h36m, extra = (np.load(toy_dir / n) for n in ("J_regressor_h36m.npy", "J_regressor_extra.npy"))
    assert h36m.shape == (17, 6890) and extra.shape == (9, 6890)
    for reg in (h36m, extra):
        assert reg.min() >= 0
        np.testing.assert_allclose(reg.sum(axis=1), 1.0, atol=1e-12)
    jh, je = h36m @ v, extra @ v
    # h36m order: pelvis, l hip, l knee, l ankle, r hip, r knee, r ankle, spine, neck, head,
    # headtop, l shoulder, l elbow, l wrist, r shoulder, r elbow, r wrist
    np.testing.assert_allclose(jh[[2, 3, 12, 13]], J[[L_KNEE, L_ANKLE, L_ELBOW, L_WRIST]],
                               atol=1e-9)
    assert jh[1, 0] > 0.03 and jh[4, 0] < -0.03 and abs(jh[0, 0]) < 1e-9
    assert jh[0, 1] < J[PELVIS, 1] and jh[10, 1] > v[:, 1].max() - 0.02  # headtop at the top
    assert J[PELVIS, 1] < jh[7, 1] < jh[8, 1] < jh[9, 1] < jh[10, 1]  # spine < neck < head
    # extra order: r hip, l hip, neck, headtop, pelvis, thorax, spine, jaw, head
    np.testing.assert_allclose(je[[1, 0, 2, 3, 4, 6, 8]], jh[[1, 4, 8, 10, 0, 7, 9]], atol=1e-9)
    assert je[6, 1] < je[5, 1] < je[2, 1] < je[8, 1]  # spine < thorax < neck < head
    assert je[7, 2] > je[8, 2] and je[7, 1] < je[8, 1]  # jaw: in front of and below the head


def test_mean_params_in_spin_layout(toy_dir):
    with np.load(toy_dir / "smpl_mean_params.npz") as npz:
        pose, shape, cam = npz["pose"], npz["shape"], npz["cam"]
    assert pose.shape == (144,) and shape.dtype == np.float32 and not shape.any()
    np.testing.assert_array_equal(cam, [0.9, 0.0, 0.0])
    six = pose.reshape(24, 3, 2)  # SPIN: (r00, r01, r10, r11, r20, r21) = first two columns
    np.testing.assert_allclose(six[0], [[1, 0], [0, -1], [0, 0]], atol=1e-12)  # 180 deg about x
    np.testing.assert_allclose(np.linalg.norm(six, axis=1), 1.0, atol=1e-12)  # unit columns
    left_shoulder = six[16][:, 0]  # R @ x: where the left arm now points (in its parent frame)
    assert left_shoulder[1] < -0.5  # lowered


def test_part_labels_and_pickle_format(tmp_path, neutral):
    labels = toy_part_labels()
    assert labels.shape == (6890,) and set(labels.tolist()) == set(range(24))
    v = neutral["v_template"]
    assert (v[labels == L_HAND, 0] > 0.7).all() and (v[labels == HEAD, 1] > 0.25).all()
    pkl_dir = write_toy_body_assets(tmp_path, seed=0, fmt="pkl")
    assert check_body_model_dir(pkl_dir).model_files["neutral"].suffix == ".pkl"
    from_pkl = load_smpl_model_file(pkl_dir / "SMPL_NEUTRAL.pkl")
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "f"):
        np.testing.assert_array_equal(from_pkl[key], neutral[key])

"""BodyModel / GenderedBodyModel on the toy assets, against hand-written numpy LBS."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from smplx.vertex_ids import vertex_ids

from gtahuman.body.assets import BodyAssetError
from gtahuman.body.conventions import get_names
from gtahuman.body.model_files import load_smpl_model_file
from gtahuman.body.smpl import BodyModel, GenderedBodyModel, gender_codes

L_ELBOW = 18
SMPLX_PICK_ORDER = ("nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel",
                    "RBigToe", "RSmallToe", "RHeel", "lthumb", "lindex", "lmiddle", "lring",
                    "lpinky", "rthumb", "rindex", "rmiddle", "rring", "rpinky")


def rodrigues(axis_angle: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 3, 3), written out independently of the code under test."""
    angle = np.linalg.norm(axis_angle, axis=-1, keepdims=True)[..., None]
    k = axis_angle / np.maximum(np.linalg.norm(axis_angle, axis=-1, keepdims=True), 1e-12)
    zero = np.zeros(k.shape[:-1])
    kx = np.stack([np.stack([zero, -k[..., 2], k[..., 1]], -1),
                   np.stack([k[..., 2], zero, -k[..., 0]], -1),
                   np.stack([-k[..., 1], k[..., 0], zero], -1)], -2)
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


@pytest.fixture(scope="module")
def toy_dir(toy_body_dir):
    return toy_body_dir


@pytest.fixture(scope="module")
def model(toy_dir):
    return BodyModel(toy_dir, "neutral")


@pytest.fixture(scope="module")
def arrays(toy_dir):
    return load_smpl_model_file(toy_dir / "SMPL_NEUTRAL.npz")


def zeros(batch=1):
    return torch.zeros(batch, 10), torch.zeros(batch, 69), torch.zeros(batch, 3)


def test_rest_pose_gives_the_template(model, arrays):
    out = model(*zeros(2))
    assert model.is_toy and model.faces.shape[1] == 3 and list(model.parents[:4]) == [-1, 0, 0, 0]
    np.testing.assert_allclose(out.vertices[1].numpy(), arrays["v_template"], atol=1e-6)
    np.testing.assert_allclose(out.joints[0].numpy(), arrays["J_regressor"] @ arrays["v_template"],
                               atol=1e-5)


def test_single_elbow_rotation_matches_hand_written_lbs(model, arrays):
    angle = np.pi / 2
    R = np.array([[np.cos(-angle), 0, np.sin(-angle)], [0, 1, 0],  # -90 deg about y: forearm
                  [-np.sin(-angle), 0, np.cos(-angle)]])  # (along +x) swings forward to +z
    body_pose = torch.zeros(1, 23, 3)
    body_pose[0, L_ELBOW - 1, 1] = -angle
    out = model(torch.zeros(1, 10), body_pose, torch.zeros(1, 3)).vertices[0].double().numpy()

    v, w = arrays["v_template"], arrays["weights"]
    elbow = arrays["J_regressor"][L_ELBOW] @ v
    moved = np.zeros(24, bool)
    moved[[18, 20, 22]] = True  # the elbow and everything below it
    # fully forearm/hand weighted vertices: a rigid rotation about the elbow joint
    rigid = w[:, moved].sum(1) == 1.0
    expected = (v[rigid] - elbow) @ R.T + elbow
    np.testing.assert_allclose(out[rigid], expected, atol=2e-5)
    forearm = w[:, L_ELBOW] == 1.0
    assert forearm.sum() > 100 and (out[forearm, 2] - v[forearm, 2]).mean() > 0.05
    still = w[:, moved].sum(1) == 0.0
    np.testing.assert_allclose(out[still], v[still], atol=1e-5)
    # all vertices, blend zone included: v' = sum_j w_j G_j (v + pose corrective)
    feature = np.zeros(207)
    feature[(L_ELBOW - 1) * 9:(L_ELBOW - 1) * 9 + 9] = (R - np.eye(3)).reshape(-1)
    v_posed = v + arrays["posedirs"] @ feature
    share = w[:, moved].sum(1, keepdims=True)
    expected_all = share * ((v_posed - elbow) @ R.T + elbow) + (1 - share) * v_posed
    np.testing.assert_allclose(out, expected_all, atol=2e-5)


def test_axis_angle_and_rotation_matrices_agree(model):
    rng = np.random.default_rng(0)
    pose = rng.normal(scale=0.4, size=(3, 24, 3))
    betas = torch.tensor(rng.normal(size=(3, 10)), dtype=torch.float32)
    aa = model(betas, torch.tensor(pose[:, 1:].reshape(3, 69), dtype=torch.float32),
               torch.tensor(pose[:, 0], dtype=torch.float32))
    mats = torch.tensor(rodrigues(pose), dtype=torch.float32)
    rm = model(betas, mats[:, 1:], mats[:, 0])
    rm4 = model(betas, mats[:, 1:], mats[:, :1])  # (B, 1, 3, 3) root
    for other in (rm, rm4):
        torch.testing.assert_close(aa.vertices, other.vertices, atol=1e-5, rtol=0)
        torch.testing.assert_close(aa.joints54, other.joints54, atol=1e-5, rtol=0)


def test_extra_joints_and_h36m_joints(model, toy_dir):
    rng = np.random.default_rng(1)
    out = model(torch.tensor(rng.normal(size=(2, 10)), dtype=torch.float32),
                torch.tensor(rng.normal(scale=0.3, size=(2, 23, 3)), dtype=torch.float32),
                torch.tensor(rng.normal(scale=0.3, size=(2, 3)), dtype=torch.float32),
                transl=torch.tensor([[0.1, -0.2, 3.0], [0.0, 0.0, 5.0]]))
    verts = out.vertices.double().numpy()
    h36m = np.load(toy_dir / "J_regressor_h36m.npy")
    extra = np.load(toy_dir / "J_regressor_extra.npy")
    np.testing.assert_allclose(out.joints_h36m.numpy(), np.einsum("jv,bvc->bjc", h36m, verts),
                               atol=1e-5)
    np.testing.assert_allclose(out.joints54[:, 45:].numpy(),
                               np.einsum("jv,bvc->bjc", extra, verts), atol=1e-5)
    picked = [vertex_ids["smplh"][name] for name in SMPLX_PICK_ORDER]
    np.testing.assert_allclose(out.joints54[:, 24:45].numpy(), verts[:, picked], atol=1e-6)
    assert torch.equal(out.joints, out.joints54[:, :24])


def test_translation_shifts_everything(model):
    betas, body, root = zeros(1)
    shift = torch.tensor([[0.3, -0.1, 4.0]])
    base, moved = model(betas, body, root), model(betas, body, root, transl=shift)
    for key in ("vertices", "joints", "joints54", "joints_h36m"):
        torch.testing.assert_close(getattr(moved, key), getattr(base, key) + shift[:, None])


def test_keypoints_by_convention_name(model):
    out = model(*zeros(1))
    assert torch.equal(out.keypoints("h36m"), out.joints_h36m)
    spin24 = out.keypoints("smpl_24")
    names = get_names("smpl_24")
    torch.testing.assert_close(spin24[:, names.index("left_knee")], out.joints[:, 4])
    torch.testing.assert_close(spin24[:, names.index("nose")], out.joints54[:, 24])
    torch.testing.assert_close(spin24[:, names.index("headtop")], out.joints54[:, 48])
    mask49 = out.keypoints_mask("smpl_49")
    assert mask49[:25].sum() == 0 and mask49[25:].all()  # OpenPose slots are not produced


def test_gendered_model_picks_each_samples_gender(toy_dir):
    gendered = GenderedBodyModel(toy_dir)
    rng = np.random.default_rng(2)
    betas = torch.tensor(rng.normal(size=(5, 10)), dtype=torch.float32)
    pose = torch.tensor(rng.normal(scale=0.2, size=(5, 69)), dtype=torch.float32)
    root = torch.tensor(rng.normal(scale=0.2, size=(5, 3)), dtype=torch.float32)
    codes = torch.tensor([0, 1, -1, 1, 0])
    out = gendered(betas, pose, root, codes)
    for i, name in enumerate(["male", "female", "neutral", "female", "male"]):
        single = BodyModel(toy_dir, name)(betas[i:i + 1], pose[i:i + 1], root[i:i + 1])
        torch.testing.assert_close(out.vertices[i:i + 1], single.vertices)
        torch.testing.assert_close(out.joints_h36m[i:i + 1], single.joints_h36m)
    assert not torch.allclose(out.vertices[0], out.vertices[2], atol=1e-3)  # genders differ
    assert gender_codes(["m", "f", "neutral"]).tolist() == [0, 1, -1]
    assert gender_codes(["m", "f", "x"], mapping="3dpw").tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="gender codes"):
        gendered(betas, pose, root, torch.tensor([0, 1, 2, 1, 0]))


def test_gradients_flow(model):
    betas = torch.zeros(2, 10, requires_grad=True)
    pose = torch.full((2, 69), 0.1, requires_grad=True)
    root = torch.zeros(2, 3, requires_grad=True)
    out = model(betas, pose, root)
    (out.vertices.square().sum() + out.joints54.sum()).backward()
    for tensor in (betas, pose, root):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all()
        assert tensor.grad.abs().sum() > 0


def test_bad_inputs_and_mixed_assets(model, toy_dir, tmp_path):
    betas, body, root = zeros(2)
    with pytest.raises(ValueError, match="body_pose"):
        model(betas, torch.zeros(2, 70), root)
    with pytest.raises(ValueError, match="betas"):
        model(torch.zeros(2, 11), body, root)
    for item in toy_dir.iterdir():
        (tmp_path / item.name).write_bytes(item.read_bytes())
    np.save(tmp_path / "J_regressor_h36m.npy", np.load(toy_dir / "J_regressor_h36m.npy"))
    np.save(tmp_path / "J_regressor_extra.npy", np.load(toy_dir / "J_regressor_extra.npy"))
    np.savez(tmp_path / "smpl_mean_params.npz", **{k: v for k, v in np.load(
        toy_dir / "smpl_mean_params.npz").items() if k in ("pose", "shape", "cam")})
    with pytest.raises(BodyAssetError, match="toy"):  # toy model + unmarked files
        BodyModel(tmp_path, "neutral")

"""Tests for gtahuman.systems: the HMR losses and the HMRSystem LightningModule.

Everything runs on the generated toy body model (tmp dir) with B=4 random 64 px images whose
GT comes from random SMPL parameters through the toy body (nothing is rendered).
"""
from __future__ import annotations

import math
from dataclasses import asdict

import lightning as L
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from gtahuman.body.camera import project_to_crop
from gtahuman.body.conventions import joint_index
from gtahuman.body.rotations import rot6d_to_matrix
from gtahuman.body.smpl import BodyModel, GenderedBodyModel
from gtahuman.evaluation import H36M_TO_J14, get_protocol
from gtahuman.systems import HMRSystem, effective_learning_rate
from gtahuman.config_schema import LossWeights
from gtahuman.systems import losses as Lf

IMG_RES = 64
FOCAL = 5000.0 * IMG_RES / 224


@pytest.fixture(scope="module", autouse=True)
def one_thread(single_thread):
    yield


@pytest.fixture(scope="module")
def body_dir(toy_body_dir) -> str:
    return str(toy_body_dir)


@pytest.fixture(scope="module")
def prior_path(tmp_path_factory) -> str:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("prior") / "prior.npz"
    np.savez(path, body_pose=(0.2 * rng.standard_normal((64, 69))).astype(np.float32),
             betas=rng.standard_normal((64, 10)).astype(np.float32))
    return str(path)


def make_batch(body_dir: str, n: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random images with the GT of random SMPL parameters (upright, facing the camera)."""
    g = torch.Generator().manual_seed(seed)
    rotation = Rotation.from_rotvec([np.pi, 0.0, 0.0]) * Rotation.from_rotvec(
        0.3 * torch.randn(n, 3, generator=g).numpy())
    global_orient = torch.tensor(rotation.as_rotvec(), dtype=torch.float32)
    body_pose = 0.3 * torch.randn(n, 69, generator=g)
    betas = torch.randn(n, 10, generator=g)
    with torch.no_grad():
        joints54 = BodyModel(body_dir)(betas, body_pose, global_orient).joints54
    cam = torch.stack([0.8 + 0.2 * torch.rand(n, generator=g), 0.1 * torch.randn(n, generator=g),
                       0.1 * torch.randn(n, generator=g)], dim=1)
    _, keypoints2d = project_to_crop(joints54, cam, FOCAL, IMG_RES)
    conf = torch.ones(n, 54, 1)
    return {
        "img": torch.randn(n, 3, IMG_RES, IMG_RES, generator=g),
        "keypoints2d": torch.cat([keypoints2d, conf], -1), "keypoints3d": torch.cat([joints54, conf], -1),
        "smpl_global_orient": global_orient, "smpl_body_pose": body_pose, "smpl_betas": betas,
        "has_smpl": torch.ones(n), "has_keypoints3d": torch.ones(n),
        "gender": torch.tensor([0, 1, -1, -1] * (n // 4) + [-1] * (n % 4)),
        "sample_id": torch.arange(n), "source": torch.zeros(n, dtype=torch.long), "valid": torch.ones(n),
    }


def make_system(body_dir: str, **kwargs) -> HMRSystem:
    torch.manual_seed(0)
    kwargs = {"backbone": "resnet10t", "img_res": IMG_RES, "lr": 1e-4, **kwargs}
    return HMRSystem(body_dir, **kwargs)


def trainer(**kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, num_sanity_val_steps=0, **kwargs)


def loader(*batches: dict) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(list(batches), batch_size=None)


# ----------------------------------------------------------------------------- losses by hand


def test_keypoint_2d_loss_hand_values_and_masks() -> None:
    pred = torch.tensor([[[0.0, 0.0], [1.0, 1.0]], [[0.5, 0.0], [0.0, 0.0]]], requires_grad=True)
    gt = torch.tensor([[[1.0, 0.0, 1.0], [1.0, 3.0, 0.5]], [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]])
    # sample 0: (1*1 + 0) + 0.5*(0 + 4) = 3 over 4 elements; sample 1: 0.25 over 4 elements.
    assert Lf.keypoint_2d_loss(pred, gt, torch.ones(2)).item() == pytest.approx(3.25 / 8)
    assert Lf.keypoint_2d_loss(pred, gt, torch.tensor([1, 0])).item() == pytest.approx(3.0 / 4)
    none = Lf.keypoint_2d_loss(pred, gt, torch.zeros(2))
    none.backward()
    assert none.item() == 0.0 and torch.equal(pred.grad, torch.zeros_like(pred))


def test_smooth_l1_keypoint_loss_hand_values() -> None:
    # mmhuman3d's SmoothL1 at beta 1: 0.5 d^2 for |d| < 1, |d| - 0.5 beyond; conf weights it as the MSE.
    assert Lf.keypoint_element_loss(torch.tensor([0.5, -0.5, 2.0, -3.0, 1.0]), "smooth_l1").tolist() == \
        pytest.approx([0.125, 0.125, 1.5, 2.5, 0.5])
    pred = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])
    gt = torch.tensor([[[0.5, 0.0, 1.0], [1.0, 4.0, 0.5]]])
    # 0.125 + 0 + 0.5 * (0 + (3 - 0.5)) = 1.375 over 4 elements; the MSE gives 0.25 + 0.5 * 9 = 4.75
    assert Lf.keypoint_2d_loss(pred, gt, torch.ones(1), "smooth_l1").item() == pytest.approx(1.375 / 4)
    assert Lf.keypoint_2d_loss(pred, gt, torch.ones(1)).item() == pytest.approx(4.75 / 4)
    gt3 = torch.zeros(1, 54, 4)
    gt3[..., 3] = 1.0
    pred3 = gt3[..., :3].clone()
    pred3[0, 0, 1] = 2.0  # one joint 2 m off in y, away from the hips that centre both sets
    assert Lf.keypoint_3d_loss(pred3, gt3, torch.ones(1), "smooth_l1").item() == pytest.approx(1.5 / (54 * 3))
    with pytest.raises(ValueError, match="mse, smooth_l1|'mse', 'smooth_l1'"):
        Lf.keypoint_2d_loss(pred, gt, torch.ones(1), "huber")


def test_confident_reduction_divides_by_the_confident_elements_only() -> None:
    """mmhuman3d's mean: sum of conf x loss over the elements of positive confidence (hand values);
    SPIN's counts every element of the kept samples."""
    pred = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [3.0, 3.0]], [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    gt = torch.tensor([[[1.0, 0.0, 1.0], [1.0, 3.0, 0.5], [0.0, 0.0, 0.0]],
                       [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    # sample 0: 1 + 0.5 * 4 = 3 over 4 confident elements (joint 2 has conf 0); sample 1: 1 over 2
    both = torch.ones(2)
    assert Lf.keypoint_2d_loss(pred, gt, both, reduction="confident").item() == pytest.approx(4.0 / 6)
    assert Lf.keypoint_2d_loss(pred, gt, both).item() == pytest.approx(4.0 / 12)
    # a masked-out sample leaves both its loss and its confident elements out
    assert Lf.keypoint_2d_loss(pred, gt, torch.tensor([1, 0]), reduction="confident").item() == pytest.approx(3.0 / 4)
    # nothing confident: an exact 0, no NaN
    assert Lf.keypoint_2d_loss(pred, torch.zeros_like(gt), both, reduction="confident").item() == 0.0
    gt3 = torch.zeros(1, 54, 4)
    gt3[0, :10, 3] = 1.0  # ten confident joints
    pred3 = gt3[..., :3].clone()
    pred3[0, 0, 1] = 2.0
    assert Lf.keypoint_3d_loss(pred3, gt3, torch.ones(1), reduction="confident").item() == pytest.approx(4.0 / 30)
    assert Lf.keypoint_3d_loss(pred3, gt3, torch.ones(1)).item() == pytest.approx(4.0 / (54 * 3))
    with pytest.raises(ValueError, match="keypoint reduction"):
        Lf.keypoint_2d_loss(pred, gt, both, reduction="sum")


def test_keypoint_3d_loss_centres_at_the_extra_regressors_hips_only() -> None:
    # only the two centring joints move: centred at the mid-point of right_hip_extra and
    # left_hip_extra, the other 52 joints shift by half the move; centred on any other joints
    # (e.g. SMPL's own right_hip / left_hip) the loss would see only the two moved joints
    right, left = joint_index("smpl_54", "right_hip_extra"), joint_index("smpl_54", "left_hip_extra")
    gt = torch.zeros(1, 54, 4)
    gt[..., 3] = 1.0
    pred = gt[..., :3].clone()
    pred[0, right, 0] += 0.2
    pred[0, left, 0] += 0.2  # both hips 0.2 m along x: the mid-hip moves 0.2, every other joint is off by 0.2
    assert Lf.keypoint_3d_loss(pred, gt, torch.ones(1)).item() == pytest.approx(52 * 0.04 / (54 * 3))


def test_keypoint_3d_loss_centres_at_mid_hip() -> None:
    right, left = joint_index("smpl_54", "right_hip_extra"), joint_index("smpl_54", "left_hip_extra")
    gt = torch.zeros(1, 54, 4)
    gt[..., 3] = 1.0
    gt[0, right, :3] = torch.tensor([1.0, 0.0, 0.0])
    gt[0, left, :3] = torch.tensor([-1.0, 0.0, 0.0])
    pred = gt[..., :3].clone() + torch.tensor([5.0, -2.0, 7.0])  # translated: no loss
    assert Lf.keypoint_3d_loss(pred, gt, torch.ones(1)).item() == pytest.approx(0.0, abs=1e-10)
    pred[0, 0] += torch.tensor([0.0, 0.3, 0.0])  # one joint off by 0.3 m in y
    assert Lf.keypoint_3d_loss(pred, gt, torch.ones(1)).item() == pytest.approx(0.09 / (54 * 3))
    gt[0, 0, 3] = 0.0  # zero confidence removes it again
    assert Lf.keypoint_3d_loss(pred, gt, torch.ones(1)).item() == pytest.approx(0.0, abs=1e-10)


def test_smpl_losses_hand_values() -> None:
    angle = 0.7
    gt_pose = torch.zeros(2, 72)
    gt_pose[0, 3 * 5 + 2] = angle  # joint 5 turned about z
    pred = torch.eye(3).expand(2, 24, 3, 3)
    # |Rz(a) - I|_F^2 = 4 (1 - cos a), over the 24 * 9 elements of the one qualifying sample.
    mask = torch.tensor([True, False])
    assert Lf.smpl_pose_loss(pred, gt_pose, mask).item() == pytest.approx(4 * (1 - math.cos(angle)) / 216, rel=1e-5)
    assert Lf.betas_loss(torch.ones(2, 10), torch.zeros(2, 10), mask).item() == pytest.approx(1.0)
    vertices = torch.zeros(2, 5, 3)
    assert Lf.vertex_loss(vertices + torch.tensor([0.1, -0.2, 0.0]), vertices, mask).item() == pytest.approx(0.1)
    cam = torch.tensor([[0.0, 1.0, 1.0], [0.1, 0.0, 0.0]])
    assert Lf.camera_prior(cam, torch.ones(2)).item() == pytest.approx((1.0 + math.exp(-2.0)) / 2)
    for value in (Lf.smpl_pose_loss(pred, gt_pose, torch.zeros(2)), Lf.camera_prior(cam, torch.zeros(2))):
        assert value.item() == 0.0 and not torch.isnan(value)


# ----------------------------------------------------------------------------- system


def test_output_shapes_rotations_and_body(body_dir: str) -> None:
    system = make_system(body_dir).eval()
    batch = make_batch(body_dir)
    with torch.no_grad():
        output, features = system(batch["img"])
        body = system.predict_body(output)
    assert features.shape == (4, system.backbone.feature_dim)
    assert output.rotmat.shape == (4, 24, 3, 3) and output.betas.shape == (4, 10) and output.cam.shape == (4, 3)
    torch.testing.assert_close(output.rotmat @ output.rotmat.transpose(-1, -2), torch.eye(3).expand(4, 24, 3, 3),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(output.rotmat), torch.ones(4, 24), atol=1e-5, rtol=0)
    assert body.vertices.shape == (4, 6890, 3) and body.joints54.shape == (4, 54, 3)
    assert body.joints_h36m.shape == (4, 17, 3)
    assert system.focal_length == pytest.approx(5000.0 * 64 / 224)


def test_masks_remove_samples_from_training_losses(body_dir: str) -> None:
    system = make_system(body_dir).eval()
    batch = make_batch(body_dir)
    with torch.no_grad():
        output, _ = system(batch["img"])
        full = system.compute_losses(batch, output)
        masked = system.compute_losses({**batch, "valid": torch.tensor([1, 1, 0, 1.0]),
                                        "has_smpl": torch.tensor([1, 0, 1, 1.0])}, output)
        keep = [0, 3]  # sample 1: no SMPL, sample 2: invalid image
        sub = {k: v[keep] for k, v in batch.items()}
        sub_output = type(output)(output.pose_6d[keep], output.rotmat[keep], output.betas[keep], output.cam[keep])
        expected = system.compute_losses(sub, sub_output)
    for term in ("pose", "betas"):
        assert masked[term].item() == pytest.approx(expected[term].item(), rel=1e-5)
        assert masked[term].item() != pytest.approx(full[term].item(), rel=1e-3)
    nothing = {**batch, "valid": torch.zeros(4)}
    with torch.no_grad():
        zero = system.compute_losses(nothing, output)
    assert all(v.item() == 0.0 for v in zero.values())


def test_the_synthetic_translation_the_run_gives_sees_only_the_synthetic_rows(body_dir: str) -> None:
    """sim2real online: HMRSystem applies the callable it is given (it imports no CycleGAN) to the
    rows of the synthetic sources, and keeps it out of its hyperparameters."""
    seen = []

    def translation(img: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
        seen.append(synthetic.clone())
        return torch.where(synthetic.view(-1, 1, 1, 1), torch.zeros_like(img), img)

    system = make_system(body_dir, sim2real_source_ids=[1], synthetic_translation=translation)
    batch = make_batch(body_dir)
    batch["source"] = torch.tensor([0, 1, 1, 0])
    captured = {}
    original = system.forward
    system.forward = lambda img: (captured.setdefault("img", img.clone()), original(img))[1]
    system._objective(batch)
    assert seen and seen[0].tolist() == [False, True, True, False]
    assert (captured["img"][1:3] == 0).all() and torch.equal(captured["img"][[0, 3]], batch["img"][[0, 3]])
    assert "synthetic_translation" not in system.hparams


def test_loss_weights_are_typed_in_the_system_plain_in_its_hyper_parameters(body_dir: str) -> None:
    system = make_system(body_dir, loss_weights={"smpl_pose": 3.0, "parts": 0.0})
    assert system.loss_weights.smpl_pose == 3.0 and system.loss_weights.keypoints2d == 300.0  # the rest: defaults
    assert system.hparams.loss_weights == {**asdict(LossWeights()), "smpl_pose": 3.0, "parts": 0.0}
    assert type(system.hparams.loss_weights) is dict  # a checkpoint's loader reads it without running code
    # a checkpoint written before LossWeights passes loss_<term>=w: read into the same weights
    legacy = make_system(body_dir, loss_pose=3.0, loss_parts=0.0)
    assert legacy.loss_weights == system.loss_weights and "loss_pose" not in legacy.hparams
    with pytest.raises(ValueError, match="no loss term 'pose'; the terms: keypoints2d"):
        make_system(body_dir, loss_weights={"pose": 1.0})
    with pytest.raises(TypeError, match="unexpected keyword argument 'loss_motion'"):
        make_system(body_dir, loss_motion=1.0)


def test_the_systems_keypoint_terms_use_the_configured_element_loss(body_dir: str) -> None:
    batch = make_batch(body_dir)
    batch["keypoints3d"][..., :3] *= 3.0  # errors beyond SmoothL1's beta of 1 m, where the two losses part
    terms = {}
    for kind in ("mse", "smooth_l1"):
        system = make_system(body_dir, keypoint_loss=kind).eval()
        with torch.no_grad():
            output, _ = system(batch["img"])
            terms[kind] = system.compute_losses(batch, output)
            joints = system.predict_joints54(output)
            _, projected = project_to_crop(joints, output.cam, system.focal_length, IMG_RES)
        mask = torch.ones(4)
        assert terms[kind]["keypoints3d"].item() == pytest.approx(
            Lf.keypoint_3d_loss(joints, batch["keypoints3d"], mask, kind).item(), rel=1e-5)
        assert terms[kind]["keypoints2d"].item() == pytest.approx(
            Lf.keypoint_2d_loss(projected, batch["keypoints2d"], mask, kind).item(), rel=1e-5)
    assert terms["smooth_l1"]["keypoints3d"].item() < 0.9 * terms["mse"]["keypoints3d"].item()
    with pytest.raises(ValueError, match="keypoint_loss must be one of"):
        make_system(body_dir, keypoint_loss="huber")
    # the reduction reaches both terms too: with a third of the keypoints unlabelled, the confident
    # mean is the plain one times 3/2
    batch["keypoints2d"][:, ::3, 2] = 0.0
    batch["keypoints3d"][:, ::3, 3] = 0.0
    plain, confident = (make_system(body_dir, keypoint_reduction=r).eval() for r in ("all", "confident"))
    with torch.no_grad():
        output, _ = plain(batch["img"])
        a, b = plain.compute_losses(batch, output), confident.compute_losses(batch, output)
    for term in ("keypoints2d", "keypoints3d"):
        assert b[term].item() == pytest.approx(a[term].item() * 54 / 36, rel=1e-5)
    with pytest.raises(ValueError, match="keypoint_reduction must be one of"):
        make_system(body_dir, keypoint_reduction="sum")


@pytest.mark.parametrize("supervision, off, on", [
    ("keypoints", ("smpl_body_pose", "smpl_betas"), ("keypoints2d", "keypoints3d")),
    ("smpl", ("keypoints2d", "keypoints3d"), ("smpl_body_pose", "smpl_betas")),
])
def test_supervision_toggles_zero_the_right_gradients(body_dir: str, supervision: str, off, on) -> None:
    system = make_system(body_dir, supervision=supervision, loss_weights={"vertices": 1.0}).eval()
    batch = make_batch(body_dir)
    for key in off + on:
        batch[key] = batch[key].clone().requires_grad_(True)
    with torch.no_grad():
        output, _ = system(batch["img"])
    output.betas.requires_grad_(True)
    losses = system.compute_losses(batch, output)
    losses["total"].backward()
    for key in off:
        assert batch[key].grad is None or torch.count_nonzero(batch[key].grad) == 0, key
    for key in on:
        assert batch[key].grad is not None and batch[key].grad.abs().sum() > 0, key
    if supervision == "keypoints":
        assert set(losses) == {"keypoints2d", "keypoints3d", "pose", "betas", "vertices", "camera", "total"}
        assert losses["pose"].item() == 0.0 and losses["vertices"].item() == 0.0
    # Restricting the toggle to another source code leaves these samples fully supervised.
    system.hparams.supervision_sources = [7]
    both = system.compute_losses(batch, output)
    assert all(both[k].item() > 0 for k in ("keypoints2d", "keypoints3d", "pose", "betas", "vertices"))


def _measure(system: HMRSystem, batch: dict) -> tuple[float, float]:
    system.eval()
    with torch.no_grad():
        output, _ = system(batch["img"])
        loss = system.compute_losses(batch, output)["total"].item()
        errors = system.evaluate_prediction(batch, output.rotmat, output.betas, get_protocol("miniworld"))
    return loss, errors["mpjpe"].mean().item()


@pytest.mark.parametrize("variant", ["hmr_plus", "hmr"])
def test_short_optimisation_fits_a_fixed_batch(body_dir: str, prior_path: str, variant: str) -> None:
    """One epoch of 40 steps on one fixed batch (lr 1e-4, Adam): the eval-mode training loss
    must drop below 25 % and the MPJPE below 50 % of their starting values (measured: ~11-13 %
    and ~32-36 %)."""
    system = make_system(body_dir, variant=variant, prior_poses_path=prior_path)
    batch = make_batch(body_dir)
    loss_before, mpjpe_before = _measure(system, batch)
    system.train()
    t = trainer(max_epochs=1)
    t.fit(system, loader(*[batch] * 40), loader(batch))
    assert system.global_step == 40 * (2 if variant == "hmr" else 1)  # manual: each optimizer steps
    loss_after, mpjpe_after = _measure(system, batch)
    assert loss_after < 0.25 * loss_before, (loss_before, loss_after)
    assert mpjpe_after < 0.5 * mpjpe_before, (mpjpe_before, mpjpe_after)
    # The end-of-epoch validation saw the same weights: its logged error is the same number.
    assert t.callback_metrics["val/set0/mpjpe"].item() == pytest.approx(mpjpe_after, rel=1e-4)
    assert t.callback_metrics["val/pa_mpjpe"].item() == pytest.approx(system.val_summaries["set0"]["pa_mpjpe"])


def test_learning_rate_scaling(body_dir: str) -> None:
    # Paper: batch 2048 (32 GPUs x 64) = 4 x SPIN's 512 gives 4 x SPIN's lr 5e-5 = 2e-4.
    assert effective_learning_rate(5e-5, 64, world_size=32, accumulate=1, base_batch_size=512) == pytest.approx(2e-4)
    assert effective_learning_rate(1e-4, 8, world_size=2, accumulate=3, base_batch_size=16) == pytest.approx(3e-4)
    assert effective_learning_rate(1e-4, None, base_batch_size=None) == 1e-4
    with pytest.raises(ValueError, match="batch_size"):
        effective_learning_rate(1e-4, None, base_batch_size=64)
    system = make_system(body_dir, variant="hmr", lr=2e-4, disc_lr=1e-4, batch_size=8, base_batch_size=16)
    system.trainer = trainer(accumulate_grad_batches=1, max_steps=1)
    generator, discriminator = system.configure_optimizers()
    assert generator.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert discriminator.param_groups[0]["lr"] == pytest.approx(5e-5)
    plus = make_system(body_dir, lr=2e-4, batch_size=8, base_batch_size=16)
    plus.trainer = trainer(accumulate_grad_batches=4, max_steps=1)
    assert plus.configure_optimizers().param_groups[0]["lr"] == pytest.approx(4e-4)


def test_optimizers_and_schedulers_without_a_trainer_follow_the_cosine_schedule(body_dir: str) -> None:
    """What benchmarks/train_step.py steps by hand: warm-up (step + 1) / 4, then a cosine to 0 at step 10."""
    system = make_system(body_dir, lr=1e-3, schedule="cosine", warmup_steps=4)
    [optimizer], [config] = system.optimizers_and_schedulers(10)
    assert config["interval"] == "step"
    seen = []
    for _ in range(10):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        config["scheduler"].step()
    expected = [1e-3 * f for f in (0.25, 0.5, 0.75, 1.0)] + [1e-3 * 0.5 * (1 + np.cos(np.pi * k / 6)) for k in range(6)]
    assert seen == pytest.approx(expected)


def _np_pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
    """Similarity Procrustes (Umeyama) for one sample, written independently of gtahuman."""
    mu_p, mu_g = pred.mean(0), gt.mean(0)
    x, y = pred - mu_p, gt - mu_g
    u, _, vt = np.linalg.svd(x.T @ y)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    z = np.diag([1.0, 1.0, d])
    rotation = vt.T @ z @ u.T
    scale = np.trace(rotation @ x.T @ y) / (x**2).sum()
    aligned = scale * x @ rotation.T + mu_g
    return float(np.linalg.norm(aligned - gt, axis=1).mean())


def test_mean_pose_baseline_matches_hand_computation(body_dir: str) -> None:
    system = make_system(body_dir)
    batches = [make_batch(body_dir, seed=1), make_batch(body_dir, seed=2)]
    baseline = system.mean_pose_baseline(batches, protocol="miniworld")
    mean_params = np.load(f"{body_dir}/smpl_mean_params.npz")
    rotmat = rot6d_to_matrix(torch.tensor(mean_params["pose"]).reshape(24, 6)).float()
    betas = torch.tensor(mean_params["shape"], dtype=torch.float32)[None]
    neutral, gendered = BodyModel(body_dir), GenderedBodyModel(body_dir)
    mpjpe, pa, pve = [], [], []
    with torch.no_grad():
        for batch in batches:
            n = batch["smpl_betas"].shape[0]
            pred = neutral(betas.expand(n, 10), rotmat[1:].expand(n, 23, 3, 3), rotmat[:1].expand(n, 1, 3, 3))
            gt = gendered(batch["smpl_betas"], batch["smpl_body_pose"], batch["smpl_global_orient"], batch["gender"])
            for i in range(n):
                p = pred.joints_h36m[i].numpy().astype(np.float64)
                t = gt.joints_h36m[i].numpy().astype(np.float64)
                p, t = (p - p[0])[list(H36M_TO_J14)], (t - t[0])[list(H36M_TO_J14)]
                mpjpe.append(np.linalg.norm(p - t, axis=1).mean() * 1000)
                pa.append(_np_pa_mpjpe(p, t) * 1000)
                pve.append(np.linalg.norm(pred.vertices[i].numpy() - gt.vertices[i].numpy(), axis=1).mean() * 1000)
    assert baseline["mpjpe"] == pytest.approx(np.mean(mpjpe), rel=1e-4)
    assert baseline["pa_mpjpe"] == pytest.approx(np.mean(pa), rel=1e-3)
    assert baseline["pve"] == pytest.approx(np.mean(pve), rel=1e-4)
    np.testing.assert_allclose(baseline["per_sample"]["mpjpe"], mpjpe, rtol=1e-4)
    # root orientation: angle between the mean root and each GT root, summarised by the median
    orient = np.concatenate([(Rotation.from_matrix(rotmat[0].double().numpy()).inv()
                              * Rotation.from_rotvec(b["smpl_global_orient"].double().numpy())).magnitude()
                             for b in batches])
    np.testing.assert_allclose(baseline["per_sample"]["orient_deg"], np.degrees(orient), atol=1e-3)
    assert baseline["orient_deg"] == pytest.approx(np.median(np.degrees(orient)), abs=1e-3)
    # constant_baseline scores any constant the same way: the mean params give the same numbers
    same = system.constant_baseline(batches, rotmat, betas[0], protocol="miniworld")
    assert same["mpjpe"] == pytest.approx(baseline["mpjpe"], rel=1e-9)


def test_ground_truth_prediction_scores_zero_only_with_the_right_gender(body_dir: str) -> None:
    system = make_system(body_dir)
    batch = make_batch(body_dir)  # genders 0, 1, -1, -1
    from gtahuman.body.rotations import axis_angle_to_matrix
    gt_rotmat = axis_angle_to_matrix(torch.cat([batch["smpl_global_orient"], batch["smpl_body_pose"]], 1).reshape(4, 24, 3))
    errors = system.evaluate_prediction(batch, gt_rotmat, batch["smpl_betas"], get_protocol("3dpw"))
    # Predictions use the neutral model: exact for the neutral samples, not for male/female.
    assert errors["mpjpe"][2:].max() < 1e-3 and errors["pve"][2:].max() < 1e-3
    assert errors["pve"][:2].min() > 1.0
    assert errors["orient_deg"].abs().max() < 1e-2  # the root is right whatever the gender
    # H36M-style protocol: GT from keypoints3d (smpl_54 -> h36m by name); an invalid sample is NaN.
    errors = system.evaluate_prediction({**batch, "valid": torch.tensor([1, 1, 1, 0.0])}, gt_rotmat,
                                        batch["smpl_betas"], get_protocol("h36m_p2"))
    assert set(errors) == {"mpjpe", "pa_mpjpe", "orient_deg"} and torch.isnan(errors["mpjpe"][3])
    assert errors["mpjpe"][2].item() == pytest.approx(0.0, abs=1e-3)
    # orient_deg needs SMPL GT: NaN for the invalid sample and for one without has_smpl
    turned = gt_rotmat.clone()
    thirty = torch.tensor(Rotation.from_rotvec([0.0, 0.0, np.pi / 6]).as_matrix(), dtype=torch.float32)
    turned[:, 0] = turned[:, 0] @ thirty
    errors = system.evaluate_prediction({**batch, "valid": torch.tensor([1, 1, 1, 0.0]),
                                         "has_smpl": torch.tensor([1, 0, 1, 1.0])}, turned,
                                        batch["smpl_betas"], get_protocol("3dpw"))
    assert torch.isnan(errors["orient_deg"][[1, 3]]).all()
    np.testing.assert_allclose(errors["orient_deg"][[0, 2]].numpy(), 30.0, atol=1e-3)


def test_validation_and_test_results_per_set(body_dir: str) -> None:
    system = make_system(body_dir, eval_sets=["miniworld_val", "h36m_p2"], feature_samples=3)
    first, second = make_batch(body_dir, seed=3), make_batch(body_dir, seed=4)
    repeated = {**second, "sample_id": torch.tensor([2, 3, 4, 5])}  # ids 2, 3 repeat (DDP padding)
    t = trainer(max_steps=1)
    t.test(system, [loader(first, repeated), loader(second)], verbose=False)
    results = system.test_results
    assert set(results) == {"miniworld_val", "h36m_p2"}
    rows = results["miniworld_val"]
    np.testing.assert_array_equal(rows["sample_id"], [0, 1, 2, 3, 4, 5])
    assert rows["pred_pose"].shape == (6, 72) and rows["features"].shape == (3, system.backbone.feature_dim)
    system.eval()
    with torch.no_grad():
        output, _ = system(first["img"])
        expected = system.evaluate_prediction(first, output.rotmat, output.betas, get_protocol("miniworld"))
    np.testing.assert_allclose(rows["pa_mpjpe"][:4], expected["pa_mpjpe"].numpy(), rtol=1e-4)
    logged = t.callback_metrics
    assert logged["test/miniworld_val/pa_mpjpe"].item() == pytest.approx(rows["pa_mpjpe"].mean(), rel=1e-5)
    assert logged["test/pa_mpjpe"].item() == pytest.approx(rows["pa_mpjpe"].mean(), rel=1e-5)
    assert rows["orient_deg"].shape == (6,) and np.isfinite(rows["orient_deg"]).all()
    assert logged["test/miniworld_val/orient_deg"].item() == pytest.approx(np.median(rows["orient_deg"]), rel=1e-5)
    assert system.test_summaries["miniworld_val"]["evaluated"] == 6.0
    assert "pve" not in results["h36m_p2"] and "test/h36m_p2/mpjpe" in logged


def test_load_from_checkpoint_rebuilds_identical_system(body_dir: str, prior_path: str, tmp_path) -> None:
    system = make_system(body_dir, variant="hmr", prior_poses_path=prior_path, n_iter=2)
    batch = make_batch(body_dir)
    t = trainer(max_steps=2)
    t.fit(system, loader(batch, batch), loader(batch))
    path = tmp_path / "two_steps.ckpt"
    t.save_checkpoint(path)
    restored = HMRSystem.load_from_checkpoint(path)
    assert restored.hparams.variant == "hmr" and restored.head.n_iter == 2
    system.eval()
    restored.eval()
    images = make_batch(body_dir, seed=5)["img"]
    with torch.no_grad():
        (a, fa), (b, fb) = system(images), restored(images)
        real = torch.eye(3).expand(4, 23, 3, 3), torch.zeros(4, 10)
        torch.testing.assert_close(system.discriminator(*real), restored.discriminator(*real), rtol=0, atol=0)
    for x, y in ((a.rotmat, b.rotmat), (a.betas, b.betas), (a.cam, b.cam), (fa, fb)):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    # Body models are rebuilt from body_model_dir, never stored in the checkpoint.
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    assert not any("smpl" in key or "J_regressor" in key for key in state)


class MeanFeatureGap(torch.nn.Module):
    """A stand-in DA objective: squared distance of the two domains' mean features, times a
    learnable scale (so its parameters must reach the optimiser)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(1.0))
        self.calls: list[tuple] = []

    def forward(self, source_features, target_features, source_params, target_params, step):
        self.calls.append((source_features.shape, target_features.shape, source_params.shape,
                           target_params.shape, step))
        gap = self.scale * (source_features.mean(0) - target_features.mean(0)).pow(2).sum()
        return gap, {"gap": gap.detach()}


def test_adaptation_hook_gets_both_domains_and_adds_its_loss(body_dir: str) -> None:
    hook = MeanFeatureGap()
    system = make_system(body_dir, adaptation=hook, loss_adaptation=0.5).eval()
    assert "adaptation" not in system.hparams  # a module is not a hyper-parameter
    source, target = make_batch(body_dir, n=4, seed=6), make_batch(body_dir, n=2, seed=7)
    target["has_smpl"] = torch.zeros(2)  # unlabelled target: only its keypoints supervise
    with torch.no_grad():
        total, output, _, logs = system._objective({"source": source, "target": target})
        merged = {k: torch.cat([source[k], target[k]]) for k in source}
        supervised = system.compute_losses(merged, output)["total"]
    assert hook.calls[0] == ((4, 512), (2, 512), (4, 157), (2, 157), 0)
    assert total.item() == pytest.approx(supervised.item() + 0.5 * logs["train/adaptation/gap"].item(), rel=1e-6)
    optimizer = system.configure_optimizers()
    assert any(p is hook.scale for group in optimizer.param_groups for p in group["params"])
    with pytest.raises(ValueError, match="source"):
        system._objective(source)


@pytest.mark.parametrize("variant", ["hmr_plus", "hmr"])
def test_step_schedule_decays_at_the_milestone(body_dir: str, prior_path: str, variant: str) -> None:
    system = make_system(body_dir, variant=variant, prior_poses_path=prior_path, lr=1e-4, disc_lr=1e-4,
                         schedule="step", milestones=[1], gamma=0.1)
    batch = make_batch(body_dir)
    t = trainer(max_epochs=2)
    t.fit(system, loader(batch), loader(batch))
    lrs = [opt.param_groups[0]["lr"] for opt in t.optimizers]
    assert lrs == pytest.approx([1e-5] * (2 if variant == "hmr" else 1))


def _gather_worker(rank: int, port: int, out_dir: str) -> None:
    import os

    import torch.distributed as dist

    from gtahuman.systems.results import EvalResultsCollector

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        # Uneven shards; rank 1 ends with repeats of ids 0 and 1 (DistributedSampler padding).
        ids = [torch.tensor([0, 2, 4]), torch.tensor([1, 3, 5, 0, 1])][rank]
        collector = EvalResultsCollector(feature_samples=3)
        collector.add(features=ids[:, None].float().expand(-1, 4), sample_id=ids, mpjpe=ids.double() * 10,
                      pred_pose=ids[:, None].float().expand(-1, 72))
        np.savez(f"{out_dir}/rank{rank}.npz", **collector.finish())
    finally:
        dist.destroy_process_group()


def test_eval_results_are_gathered_across_two_processes(tmp_path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # fork: the children reuse the imported modules (spawn would re-import torch, lightning...).
    torch.multiprocessing.start_processes(_gather_worker, args=(port, str(tmp_path)), nprocs=2, start_method="fork")
    for rank in (0, 1):  # every rank ends with the same, complete, deduplicated rows
        rows = np.load(tmp_path / f"rank{rank}.npz")
        np.testing.assert_array_equal(rows["sample_id"], [0, 1, 2, 3, 4, 5])
        np.testing.assert_array_equal(rows["mpjpe"], [0, 10, 20, 30, 40, 50])
        np.testing.assert_array_equal(rows["pred_pose"][:, 0], [0, 1, 2, 3, 4, 5])
        np.testing.assert_array_equal(rows["feature_sample_id"], [0, 1, 2])
        np.testing.assert_array_equal(rows["features"][:, 0], [0, 1, 2])


@pytest.mark.parametrize("clip", [None, 0.5])
def test_manual_optimisation_clips_the_generator_gradient(body_dir: str, prior_path: str, clip) -> None:
    """variant 'hmr' optimises manually, so the system clips the generator's gradient itself."""
    system = make_system(body_dir, variant="hmr", prior_poses_path=prior_path, manual_clip_norm=clip)
    batch = make_batch(body_dir)
    trainer(max_steps=2).fit(system, loader(batch))  # one batch: two optimiser steps
    grads = [p.grad for name, p in system.named_parameters()
             if not name.startswith("discriminator.") and p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item()
    if clip is None:
        assert norm > 0.5  # so that the clipped case below is a real test
    else:
        assert norm == pytest.approx(clip, rel=1e-4)


def test_initial_estimate_is_where_the_regressor_starts(body_dir: str, tmp_path) -> None:
    """With its residual decoders at zero the IEF head returns its start: the given estimate
    (not the SMPL mean parameters), which survives a checkpoint round trip; the "SMPL mean
    params" baseline still reads the body directory's file."""
    rng = np.random.default_rng(3)
    pose = Rotation.random(24, random_state=4).as_rotvec() * 0.5
    betas = rng.normal(0.0, 1.0, 10)
    system = make_system(body_dir, initial_estimate={"pose": pose.tolist(), "betas": betas.tolist()})
    with torch.no_grad():
        for decoder in (system.head.decpose, system.head.decshape, system.head.deccam):
            decoder.weight.zero_()
            decoder.bias.zero_()
    system.eval()
    with torch.no_grad():
        output, _ = system(make_batch(body_dir, n=2)["img"])
    expected = torch.tensor(Rotation.from_rotvec(pose).as_matrix(), dtype=torch.float32)
    torch.testing.assert_close(output.rotmat, expected.expand(2, 24, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(output.betas, torch.tensor(betas, dtype=torch.float32).expand(2, 10))
    mean_params = np.load(f"{body_dir}/smpl_mean_params.npz")
    file_rotmat = rot6d_to_matrix(torch.tensor(mean_params["pose"]).reshape(24, 6)).float()
    torch.testing.assert_close(system.smpl_mean_params()[0], file_rotmat)
    torch.testing.assert_close(output.cam[0], torch.tensor(mean_params["cam"], dtype=torch.float32))
    # the start travels in the checkpoint (hyper-parameter and buffers)
    path = tmp_path / "start.ckpt"
    trainer(max_steps=0).strategy.connect(system)
    torch.save({"state_dict": system.state_dict(), "hyper_parameters": dict(system.hparams),
                "pytorch-lightning_version": L.__version__}, path)
    rebuilt = HMRSystem.load_from_checkpoint(path, map_location="cpu")
    torch.testing.assert_close(rebuilt.head.init_pose, system.head.init_pose)
    with pytest.raises(ValueError, match="initial_estimate"):
        make_system(body_dir, initial_estimate={"pose": pose[:5].tolist(), "betas": betas.tolist()})

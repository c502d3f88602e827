"""The temporal model: residual path, head taken from the frame model, causality, losses and
masks, the optional motion discriminator, and evaluation of windows. Toy body model, random
features (nothing rendered)."""
from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from gtahuman.body.camera import project_to_crop
from gtahuman.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from gtahuman.models import HMRHead
from gtahuman.systems import HMRSystem
from gtahuman.video.motion_discriminator import MotionDiscriminator, body_motion
from gtahuman.video.system import TemporalSystem
from gtahuman.video.temporal import TemporalEncoder, TemporalRegressor

B, T, F, IMG_RES = 2, 5, 32, 64


@pytest.fixture(scope="module", autouse=True)
def one_thread(single_thread):
    yield


def trained_looking_head(feature_dim: int, seed: int = 0) -> HMRHead:
    """A head whose output depends clearly on its input (decoders far from their 0.01 init)."""
    torch.manual_seed(seed)
    head = HMRHead(feature_dim)
    with torch.no_grad():
        for decoder in (head.decpose, head.decshape, head.deccam):
            decoder.weight.normal_(0.0, 0.05)
    return head.eval()


def features(seed: int = 1) -> torch.Tensor:
    return torch.randn(B, T, F, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_zero_gru_contribution_gives_the_frame_models_output(bidirectional: bool) -> None:
    head = trained_looking_head(F)
    x = features()
    expected = head(x.reshape(B * T, F))
    for zero_init in (True, False):
        model = TemporalRegressor(F, hidden_size=16, num_layers=2, bidirectional=bidirectional, zero_init=zero_init)
        model.load_frame_head(head.state_dict())
        model.eval()
        if not zero_init:  # VIBE's random start: switch the GRU path off by hand
            torch.nn.init.zeros_(model.encoder.linear.weight)
            torch.nn.init.zeros_(model.encoder.linear.bias)
        with torch.no_grad():
            assert model.encoder.temporal_contribution(x).abs().max() == 0
            output, encoded = model(x)
        torch.testing.assert_close(encoded, x, rtol=0, atol=0)
        torch.testing.assert_close(output.rotmat.reshape(B * T, 24, 3, 3), expected.rotmat)
        torch.testing.assert_close(output.betas.reshape(B * T, 10), expected.betas)
        torch.testing.assert_close(output.cam.reshape(B * T, 3), expected.cam)
    # a non-zero GRU path does change the result (the check above could fail)
    torch.nn.init.normal_(model.encoder.linear.weight, std=0.1)
    with torch.no_grad():
        assert (model(x)[0].betas.reshape(B * T, 10) - expected.betas).abs().max() > 1e-3


def test_without_residual_the_output_is_the_gru_path_alone() -> None:
    encoder = TemporalEncoder(F, hidden_size=8, num_layers=1, residual=False, zero_init=False).eval()
    x = features()
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), encoder.temporal_contribution(x))


def test_unidirectional_gru_only_looks_back_bidirectional_looks_both_ways() -> None:
    x = features()
    later = x.clone()
    later[:, 3:] += 1.0  # change frames 3 and 4 only
    for bidirectional, past_changes in ((False, False), (True, True)):
        torch.manual_seed(0)
        encoder = TemporalEncoder(F, hidden_size=8, num_layers=2, bidirectional=bidirectional, zero_init=False).eval()
        with torch.no_grad():
            change = (encoder(later) - encoder(x)).abs().amax(dim=(0, 2))
        assert bool((change[:3] > 1e-6).any()) == past_changes
        assert (change[3:] > 1e-6).all()


def test_a_head_of_another_width_is_refused() -> None:
    model = TemporalRegressor(F, hidden_size=8, num_layers=1)
    with pytest.raises(ValueError, match="fc1.weight"):
        model.load_frame_head(HMRHead(F + 1).state_dict())


def test_temporal_system_starts_as_the_frame_system(toy_body_dir) -> None:
    torch.manual_seed(0)
    frame = HMRSystem(str(toy_body_dir), backbone="mobilenetv3_small_050", img_res=IMG_RES).eval()
    with torch.no_grad():
        frame.head.decpose.weight.normal_(0.0, 0.05)
        images = torch.randn(B * T, 3, IMG_RES, IMG_RES)
        frame_out, feats = frame(images)
    system = TemporalSystem(str(toy_body_dir), feature_dim=frame.backbone.feature_dim, img_res=IMG_RES,
                            hidden_size=16, num_layers=1)
    system.init_from_frame_model(frame)
    system.eval()
    with torch.no_grad():
        out, _ = system(feats.reshape(B, T, -1))
    torch.testing.assert_close(out.rotmat.reshape(B * T, 24, 3, 3), frame_out.rotmat)
    torch.testing.assert_close(out.cam.reshape(B * T, 3), frame_out.cam)


def window_batch(system: TemporalSystem, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """GT = the system's own (eval-mode) prediction of ``x``: every loss term is then zero."""
    with torch.no_grad():
        out, _ = system(x)
        rotmat, betas, cam = out.rotmat.reshape(-1, 24, 3, 3), out.betas.reshape(-1, 10), out.cam.reshape(-1, 3)
        joints = system._body("neutral", x.device)(betas, rotmat[:, 1:], rotmat[:, :1]).joints54
        _, kp2d = project_to_crop(joints, cam, system.focal_length, IMG_RES)
    n, ones = B * T, torch.ones(B * T, 54, 1)
    pose = matrix_to_axis_angle(rotmat).reshape(n, 72)
    flat = {"features": x.reshape(n, F), "keypoints2d": torch.cat([kp2d, ones], -1),
            "keypoints3d": torch.cat([joints, ones], -1), "smpl_global_orient": pose[:, :3],
            "smpl_body_pose": pose[:, 3:], "smpl_betas": betas, "has_smpl": torch.ones(n),
            "has_keypoints3d": torch.ones(n), "valid": torch.ones(n), "gender": torch.full((n,), -1),
            "frame_pose_6d": out.pose_6d.reshape(n, 144), "frame_betas": betas, "frame_cam": cam,
            "sample_id": torch.arange(n), "sequence_id": torch.arange(n) // T, "frame_id": torch.arange(n) % T,
            "track_id": torch.arange(n) // T, "scored": torch.ones(n, dtype=torch.bool)}
    return {k: v.reshape(B, T, *v.shape[1:]) for k, v in flat.items()}


def make_system(toy_body_dir, **kwargs) -> TemporalSystem:
    torch.manual_seed(0)
    system = TemporalSystem(str(toy_body_dir), feature_dim=F, img_res=IMG_RES, hidden_size=16, num_layers=1,
                            loss_weights={"camera": 0.0}, **kwargs)
    system.regressor.load_frame_head(trained_looking_head(F).state_dict())
    return system.eval()


@torch.no_grad()
def losses(system: TemporalSystem, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    out, _ = system(batch["features"])
    frames = {k: v.reshape(B * T, *v.shape[2:]) for k, v in batch.items()}
    terms = system.compute_losses(frames, out.rotmat.reshape(-1, 24, 3, 3), out.betas.reshape(-1, 10),
                                  out.cam.reshape(-1, 3))
    return {k: float(v) for k, v in terms.items()}


def test_losses_vanish_on_own_prediction_and_follow_the_masks(toy_body_dir) -> None:
    system = make_system(toy_body_dir)
    batch = window_batch(system, features())
    base = losses(system, batch)
    assert set(base) == {"keypoints2d", "keypoints3d", "pose", "betas", "total"}
    assert all(v < 1e-8 for v in base.values()), base
    wrong = {k: v.clone() for k, v in batch.items()}
    wrong["smpl_betas"][0, 2] += 1.0
    wrong["keypoints3d"][0, 2, 5, :3] += 0.1  # one joint (a shift of all would cancel: mid-hip centred)
    # SPIN's means over every element: 10 betas of 1 in 10 frames x 10; 3 coordinates of 0.1 in
    # 10 frames x 54 joints x 3
    assert losses(system, wrong)["betas"] == pytest.approx(10 * 1.0**2 / (B * T * 10), rel=1e-5)
    assert losses(system, wrong)["keypoints3d"] == pytest.approx(3 * 0.1**2 / (B * T * 54 * 3), rel=1e-3)
    wrong["has_smpl"][0, 2] = 0.0  # frame (0, 2) loses its SMPL label: betas term back to zero
    wrong["has_keypoints3d"][0, 2] = 0.0
    assert losses(system, wrong)["betas"] < 1e-8 and losses(system, wrong)["keypoints3d"] < 1e-8
    wrong["keypoints2d"][1, 4, :, :2] += 0.3
    assert losses(system, wrong)["keypoints2d"] == pytest.approx(54 * 2 * 0.3**2 / (B * T * 54 * 2), rel=1e-3)
    wrong["valid"][1, 4] = 0.0  # an unreadable frame counts nowhere
    assert losses(system, wrong)["keypoints2d"] < 1e-8


def test_body_motion_is_the_body_pose_axis_angle() -> None:
    aa = 0.5 * torch.randn(B, T, 24, 3, generator=torch.Generator().manual_seed(2))
    motion = body_motion(axis_angle_to_matrix(aa))
    torch.testing.assert_close(motion, aa[:, :, 1:].reshape(B, T, 69), atol=1e-5, rtol=1e-5)
    for pooling in ("attention", "concat"):
        assert MotionDiscriminator(hidden_size=16, pooling=pooling)(motion).shape == (B, 1)


@pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`")
def test_motion_discriminator_is_optional_and_trains_when_on(toy_body_dir, tmp_path) -> None:
    off = make_system(toy_body_dir)
    assert off.discriminator is None and off.automatic_optimization
    with pytest.raises(ValueError, match="motion_bank_path"):
        make_system(toy_body_dir, motion_discriminator=True)
    bank = tmp_path / "motion.npz"
    np.savez(bank, body_pose=(0.2 * np.random.default_rng(0).standard_normal((8, T, 69))).astype(np.float32))
    on = make_system(toy_body_dir, motion_discriminator=True, motion_bank_path=str(bank), lr=1e-3)
    batch = window_batch(on, features())
    on.train()
    before = {k: v.clone() for k, v in on.state_dict().items()}
    L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False).fit(on, torch.utils.data.DataLoader([batch], batch_size=None))
    moved = {k for k, v in on.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.startswith("discriminator.") for k in moved) and any(k.startswith("regressor.") for k in moved)
    assert on.global_step == 2


def test_evaluation_of_windows_scores_each_scored_frame_and_matches_the_frame_model(toy_body_dir) -> None:
    system = make_system(toy_body_dir, eval_sets=["clip"])
    batch = window_batch(system, features())
    with torch.no_grad():  # GT: a different pose, so errors are non-zero
        batch["smpl_body_pose"] = batch["smpl_body_pose"] + 0.2
    batch["scored"][1, 3:] = False  # padding: not reported
    L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False).test(
        system, torch.utils.data.DataLoader([batch], batch_size=None), verbose=False)
    rows, summary = system.test_results["clip"], system.test_summaries["clip"]
    assert sorted(rows["sample_id"].tolist()) == list(range(B * T - 2)) and summary["evaluated"] == B * T - 2
    frame_summary = system.frame_summaries["test"]["clip"]
    for metric in ("mpjpe", "pa_mpjpe", "pve", "accel", "accel_error"):  # untrained = the frame model
        assert summary[metric] == pytest.approx(frame_summary[metric], rel=1e-9, abs=1e-9)
    assert summary["mpjpe"] > 1.0 and np.isfinite(summary["accel_error"])
    # track 1 has frames 0..2 scored: one inner frame; track 0 frames 0..4: three
    assert np.isfinite(rows["accel_error"]).sum() == 3 + 1

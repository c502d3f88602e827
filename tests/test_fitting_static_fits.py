"""Static fits from 2D keypoints (issue 24): SMPLify2D recovers known bodies under SPIN's crop
camera, the CLI writes SPIN's (N, 82) layout and its validity losses, and resumes after a stop."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gtahuman.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from gtahuman.body.smpl import BodyModel
from gtahuman.data.formats.spin_npz import SpinNpz, write_spin_npz
from gtahuman.data.static_fits import GT_JOINTS, SPIN_CROP, SPIN_FOCAL_LENGTH, fit_validity, read_static_fits
from gtahuman.fitting import static_fits
from gtahuman.fitting.priors import WRONG_WAY_BENDS, GaussianPosePrior
from gtahuman.fitting.smplify2d import Fit2DSettings, SMPLify2D, mean_start
from gtahuman.metrics import orientation_error_deg, pa_mpjpe

ROWS = 6
DEPTH = 45.0  # metres: a 1.7 m body spans ~190 px of SPIN's 224 px crop at focal 5,000


@pytest.fixture(scope="module")
def neutral(toy_body_dir) -> BodyModel:
    return BodyModel(toy_body_dir, "neutral")


@pytest.fixture(scope="module")
def scene(toy_body_dir, neutral):
    """Known neutral bodies (mean pose plus noise, turned about the vertical by up to +-60 deg, two
    of them facing away) and their 24 GT joints projected by SPIN's crop camera."""
    rng = np.random.default_rng(0)
    start_pose, _ = mean_start(str(toy_body_dir / "smpl_mean_params.npz"))
    pose = np.tile(start_pose, (ROWS, 1)) + np.r_[np.zeros(3), np.ones(69)] * rng.normal(0, 0.15, (ROWS, 72))
    for joint, axis, sign in WRONG_WAY_BENDS:  # knees and elbows bend the way they can
        column = 3 + 3 * joint + axis
        pose[:, column] = -sign * np.abs(pose[:, column])
    yaw = np.r_[rng.uniform(-60, 60, ROWS - 2), 180.0, 160.0]
    turn = axis_angle_to_matrix(torch.as_tensor(np.stack([np.zeros(ROWS), np.radians(yaw), np.zeros(ROWS)], 1)))
    pose[:, :3] = matrix_to_axis_angle(turn @ axis_angle_to_matrix(torch.as_tensor(pose[:, :3]))).numpy()
    betas = rng.normal(0, 0.5, (ROWS, 10))
    with torch.no_grad():
        joints = neutral(torch.as_tensor(betas, dtype=torch.float32), torch.as_tensor(pose[:, 3:], dtype=torch.float32),
                         torch.as_tensor(pose[:, :3], dtype=torch.float32)).joints54.double().numpy()
    placed = joints[:, GT_JOINTS] - joints[:, :1] + np.array([0.0, 0.0, DEPTH])
    uv = SPIN_FOCAL_LENGTH * placed[..., :2] / placed[..., 2:] + SPIN_CROP / 2
    keypoints = np.concatenate([uv, np.ones((ROWS, 24, 1))], axis=-1)
    return pose, betas, joints, keypoints


def _fitter(neutral, toy_body_dir, iterations: int = 150) -> SMPLify2D:
    start = mean_start(str(toy_body_dir / "smpl_mean_params.npz"))
    prior = GaussianPosePrior(torch.as_tensor(start[0][3:], dtype=torch.float32), torch.eye(69) / 0.15 ** 2)
    return SMPLify2D(neutral, *start, Fit2DSettings(iterations=iterations, pose_prior=0.3), prior)


def _joints(model, pose, betas) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.as_tensor(betas, dtype=torch.float32), torch.as_tensor(pose[:, 3:], dtype=torch.float32),
                     torch.as_tensor(pose[:, :3], dtype=torch.float32)).joints.double()


def test_known_bodies_come_back_from_their_2d_keypoints(single_thread, neutral, toy_body_dir, scene) -> None:
    pose, betas, joints, keypoints = scene
    fits = _fitter(neutral, toy_body_dir).fit(keypoints)
    assert fits.rows.shape == (ROWS, 82) and fits.rows.dtype == np.float32
    truth = torch.as_tensor(joints[:, :24])
    fitted = _joints(neutral, fits.pose, fits.betas)
    start = _joints(neutral, np.tile(mean_start(str(toy_body_dir / "smpl_mean_params.npz"))[0], (ROWS, 1)),
                    np.zeros((ROWS, 10)))
    fit_error, start_error = pa_mpjpe(fitted, truth), pa_mpjpe(start, truth)
    # 2D leaves each limb's depth open: most fits land near the truth, SMPLify's usual failure
    # (a local minimum, here the body at 160 degrees: 13 cm) stays possible
    assert fit_error.median() < 0.5 * start_error.median() and (fit_error < 0.06).sum() >= ROWS - 1  # metres
    orientation = orientation_error_deg(axis_angle_to_matrix(torch.as_tensor(fits.pose[:, :3])),
                                        axis_angle_to_matrix(torch.as_tensor(pose[:, :3])))
    assert orientation.max() < 45  # the two bodies facing away too: the second start found them
    assert set(fits.facing[-2:]) == {1} and set(fits.facing[:-2]) == {0}
    assert fits.data_energy.max() < 24 * 2 * 4  # under 2 px per coordinate
    # the fit sits where SPIN's validity rule expects a good one
    labels = np.zeros((ROWS, 54, 3))
    labels[:, GT_JOINTS] = keypoints
    with torch.no_grad():
        fitted54 = neutral(torch.as_tensor(fits.betas, dtype=torch.float32),
                           torch.as_tensor(fits.pose[:, 3:], dtype=torch.float32),
                           torch.as_tensor(fits.pose[:, :3], dtype=torch.float32)).joints54.double().numpy()
    assert fit_validity(fitted54, labels)[1].all()


def test_one_facing_alone_leaves_the_backs_turned_wrong(single_thread, neutral, toy_body_dir, scene) -> None:
    """Why two starts: from the start facing the camera, descent does not turn a body round."""
    pose, _, _, keypoints = scene
    fitter = _fitter(neutral, toy_body_dir)
    fitter.settings.two_facings = False
    fits = fitter.fit(keypoints[-2:])
    orientation = orientation_error_deg(axis_angle_to_matrix(torch.as_tensor(fits.pose[:, :3])),
                                        axis_angle_to_matrix(torch.as_tensor(pose[-2:, :3])))
    assert orientation.min() > 90


def _dataset(tmp_path, keypoints) -> tuple:
    path = tmp_path / "kp_only.npz"
    rows = len(keypoints)
    write_spin_npz(path, SpinNpz(imgname=np.array([f"im_{i}.jpg" for i in range(rows)]),
                                 center=np.full((rows, 2), SPIN_CROP / 2, np.float32),
                                 scale=np.full(rows, SPIN_CROP / 200.0, np.float32), part=keypoints.astype(np.float32),
                                 openpose=np.zeros((rows, 25, 3), np.float32)))
    return path


def test_the_command_writes_spin_layout_and_resumes_after_a_stop(single_thread, toy_body_dir, scene, tmp_path,
                                                                 monkeypatch, capsys) -> None:
    pose, betas, _, keypoints = scene
    dataset = _dataset(tmp_path, keypoints[:4])
    truth = tmp_path / "truth.npz"
    np.savez(truth, pose=pose[:4], shape=betas[:4], gender=np.full(4, -1))
    args = [str(dataset), str(tmp_path / "kp_fits.npy"), "--body-dir", str(toy_body_dir), "--batch", "2",
            "--iterations", "40", "--truth", str(truth)]
    calls = []
    original = SMPLify2D.fit

    def stop_after_first_batch(self, batch):
        calls.append(len(batch))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the job killed between batches
        return original(self, batch)

    monkeypatch.setattr(SMPLify2D, "fit", stop_after_first_batch)
    with pytest.raises(KeyboardInterrupt):
        static_fits.main(args)
    partial = tmp_path / "kp_fits.partial.npz"
    assert partial.is_file() and not (tmp_path / "kp_fits.npy").exists()
    monkeypatch.setattr(SMPLify2D, "fit", original)
    assert static_fits.main(args) == 0
    out = capsys.readouterr().out
    assert "resuming after row 2 of 4" in out and "PA-MPJPE" in out and "validity rule keeps" in out
    assert not partial.exists()
    fits = read_static_fits(tmp_path / "kp_fits.npy", 4)  # the reader HMR+ uses takes it as SPIN's
    losses = np.load(tmp_path / "kp_fits.error.npy")
    assert losses.shape == (4,) and np.isfinite(losses).all()
    # the loss file is the validity rule's loss of the fits written
    np.testing.assert_allclose(losses, static_fits.validity_loss(BodyModel(toy_body_dir, "neutral"), fits,
                                                                 keypoints[:4]), rtol=1e-4)
    # an uninterrupted run gives the same rows: the resumed half was not refitted differently
    static_fits.main([*args[:1], str(tmp_path / "again.npy"), *args[2:]])
    np.testing.assert_allclose(np.load(tmp_path / "again.npy"), fits, atol=1e-6)


def test_the_command_refuses_bad_arguments(toy_body_dir, tmp_path) -> None:
    with pytest.raises(SystemExit):
        static_fits.main(["x.npz", str(tmp_path / "fits.txt"), "--body-dir", str(toy_body_dir)])
    with pytest.raises(SystemExit):
        static_fits.main(["x.npz", str(tmp_path / "f.npy"), "--body-dir", str(toy_body_dir), "--batch", "0"])
    with pytest.raises(ValueError, match=r"\(N, 24, 3\)"):
        SMPLify2D(BodyModel(toy_body_dir, "neutral"), np.zeros(72), np.zeros(10)).fit(np.zeros((2, 17, 3)))

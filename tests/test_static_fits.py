"""SPIN's static fits: the reader, the validity rule against hand-computed values, and the join
into a prepared index (issue 19: an HMR+ row needs them for its keypoint-only datasets)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gtahuman.body.conventions import convert_keypoints
from gtahuman.body.rotations import axis_angle_to_matrix
from gtahuman.body.smpl import BodyModel
from gtahuman.data.formats.errors import DataFormatError
from gtahuman.data.formats.spin_npz import SpinNpz, write_spin_npz
from gtahuman.data.prepare import load_prepared, prepare_dataset
from gtahuman.data.static_fits import (
    GT_JOINTS,
    SPIN_CROP,
    SPIN_FOCAL_LENGTH,
    estimate_translation,
    fit_loss,
    geman_mcclure,
    read_static_fits,
)


def project(joints: np.ndarray, translation: np.ndarray) -> np.ndarray:
    placed = joints + translation[:, None]
    return SPIN_FOCAL_LENGTH * placed[..., :2] / placed[..., 2:3] + SPIN_CROP / 2


def test_translation_is_recovered_from_exact_projections() -> None:
    rng = np.random.default_rng(0)
    joints = rng.normal(0, 0.4, (3, 24, 3))
    truth = np.array([[0.1, -0.2, 20.0], [-0.3, 0.1, 35.0], [0.0, 0.0, 15.0]])
    labels = np.concatenate([project(joints, truth), np.ones((3, 24, 1))], axis=-1)
    labels[2, 5:, 2] = 0  # conf 0: those joints play no part, however wrong their labels
    labels[2, 5:, :2] = 1e4
    np.testing.assert_allclose(estimate_translation(joints, labels), truth, rtol=1e-9, atol=1e-9)
    labels[2, 1:, 2] = 0  # one labelled joint: no unique translation
    assert np.isnan(estimate_translation(joints, labels)[2]).all()


def test_geman_mcclure_and_the_fit_loss_by_hand() -> None:
    assert geman_mcclure(np.array(100.0)) == pytest.approx(5000.0)  # sigma² r² / (sigma² + r²) at r = sigma
    assert geman_mcclure(np.array(0.0)) == 0.0
    rng = np.random.default_rng(1)
    joints = np.zeros((2, 54, 3))
    joints[:, :, :] = rng.normal(0, 0.3, (54, 3))
    truth = np.array([[0.0, 0.0, 25.0]] * 2)
    labels = np.zeros((2, 54, 3))
    labels[:, GT_JOINTS, :2] = project(joints[:, GT_JOINTS], truth)
    labels[:, GT_JOINTS, 2] = 1.0
    # Every label shifted by the same 30 px in x: a translation absorbs most of it, so compare with
    # a sample whose labels move 30 px apart in opposite directions per joint (no translation can).
    labels[1, GT_JOINTS[::2], 0] += 30.0
    labels[1, GT_JOINTS[1::2], 0] -= 30.0
    loss = fit_loss(joints, labels)
    assert loss[0] == pytest.approx(0.0, abs=1e-6)
    # the same sum written out: the best translation (checked above), projected, per-coordinate
    # sigma² r² / (sigma² + r²) with sigma = 100, summed over the 24 labelled joints, over 49
    t = estimate_translation(joints[1:, GT_JOINTS], labels[1:, GT_JOINTS])
    r = project(joints[1:, GT_JOINTS], t) - labels[1:, GT_JOINTS, :2]
    expected = (1e4 * r**2 / (1e4 + r**2)).sum() / 49
    assert loss[1] == pytest.approx(expected, rel=1e-9) and 300 < expected < 24 * 2 * 1e4 / 49


def test_reader_checks_shape_rows_and_refuses_pickles(tmp_path) -> None:
    np.save(tmp_path / "ok.npy", np.zeros((4, 82), np.float32))
    assert read_static_fits(tmp_path / "ok.npy", 4).shape == (4, 82)
    with pytest.raises(DataFormatError, match=r"ok.npy.*\(5, 82\)"):
        read_static_fits(tmp_path / "ok.npy", 5)  # one fit per dataset row
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataFormatError, match="obj.npy"):
        read_static_fits(tmp_path / "obj.npy", 1)
    bad = np.zeros((2, 82))
    bad[1, 3] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(DataFormatError, match="row 1"):
        read_static_fits(tmp_path / "nan.npy", 2)
    with pytest.raises(FileNotFoundError, match="static_fits"):
        read_static_fits(tmp_path / "none.npy", 2)


def test_fits_join_the_keypoint_only_rows_and_the_rule_drops_the_bad_one(tmp_path, toy_body_dir) -> None:
    """A keypoint-only SPIN npz whose 2D labels are projections of known bodies: the fits of rows 0
    and 1 are those bodies (valid), row 2's fit is another pose (rejected)."""
    body = BodyModel(toy_body_dir)
    rng = np.random.default_rng(2)
    n = 3
    pose = np.zeros((n, 72), np.float32)
    pose[:, 0] = np.pi  # facing the camera (SPIN's camera frame: y down)
    pose[:, 3:] = rng.normal(0, 0.15, (n, 69))
    betas = rng.normal(0, 0.5, (n, 10)).astype(np.float32)
    rotmats = axis_angle_to_matrix(torch.tensor(pose).reshape(n, 24, 3))
    with torch.no_grad():
        joints54 = body(torch.tensor(betas), rotmats[:, 1:], rotmats[:, :1]).joints54.numpy()
    crop_px = project(joints54.astype(np.float64), np.tile([0.0, 0.0, 40.0], (n, 1)))
    centre, scale = np.array([[300.0, 250.0]] * n), np.full(n, 1.5)  # a 300 px box
    image_px = crop_px * (200 * scale[:, None, None]) / SPIN_CROP + (centre - 100 * scale[:, None])[:, None]
    labels54 = np.concatenate([image_px, np.ones((n, 54, 1))], axis=-1).astype(np.float32)
    part = convert_keypoints(labels54, "smpl_54", "smpl_24")[0]
    images = tmp_path / "images"
    (images / "s").mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (640, 480)).save(images / "s" / f"{i}.jpg")
    npz = write_spin_npz(tmp_path / "kp_only.npz", SpinNpz(
        imgname=np.array([f"s/{i}.jpg" for i in range(n)]), center=centre.astype(np.float32),
        scale=scale.astype(np.float32), part=part, openpose=np.zeros((n, 25, 3), np.float32)))
    fits = np.concatenate([pose, betas], axis=1)
    fits[2, 3:72] = rng.normal(0, 0.8, 69)  # a fit that does not explain row 2's keypoints
    np.save(tmp_path / "kp_only_fits.npy", fits)

    def prepare(out: str, **kw):
        return prepare_dataset("spin_npz", npz, tmp_path / out, body_model_dir=toy_body_dir, dataset_name="kp",
                               domain="real", image_root=images, progress=False, **kw)

    assert not prepare("plain")["has_smpl"].any()  # keypoints only: no SMPL without fits
    index = prepare("fitted", static_fits=tmp_path / "kp_only_fits.npy")
    assert index["has_smpl"].tolist() == [True, True, False]
    np.testing.assert_allclose(index["smpl_body_pose"][:2], pose[:2, 3:], atol=1e-6)
    np.testing.assert_allclose(index["smpl_betas"][:2], betas[:2], atol=1e-6)
    assert index.meta["prepare"]["counts"]["static_fits_used"] == 2
    assert index.meta["prepare"]["counts"]["static_fits_rejected"] == 1
    # the fits file is a source file: changing it refuses the index
    np.save(tmp_path / "kp_only_fits.npy", fits * 0.5)
    with pytest.raises(Exception, match="kp_only_fits.npy"):
        load_prepared(tmp_path / "fitted")

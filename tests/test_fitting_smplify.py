"""SMPLify-3D recovers known SMPL from game keypoints; one shape per sequence; smoothing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gtahuman.body.smpl import BodyModel
from gtahuman.fitting import FitSettings, SMPLify3D, keypoint_map
from gtahuman.miniworld.game_skeleton import GameRig
from gtahuman.fitting.synthetic import synthetic_gta_sequence
from gtahuman.metrics import acceleration

JOINT_ERROR_BOUND_M = 0.008  # the goal is 10 mm; clean toy sequences fit to ~2-3 mm
# girth is invisible to joints: vertices carry more. ~15.6 mm since the annotator's map leaves out
# the game's fingers and facial rig (issue 24), which had pinned the hands' and head's twist.
VERTEX_ERROR_BOUND_M = 0.018


@pytest.fixture(scope="module")
def male(toy_body_dir) -> BodyModel:
    return BodyModel(toy_body_dir, "male")


@pytest.fixture(scope="module")
def fitter(male: BodyModel) -> SMPLify3D:
    return SMPLify3D(male, keypoint_map("gta"))


def _body(model: BodyModel, betas, body_pose, global_orient, transl):
    with torch.no_grad():
        return model(torch.as_tensor(np.atleast_2d(betas)), torch.as_tensor(body_pose),
                     torch.as_tensor(global_orient), torch.as_tensor(transl))


def _errors(model: BodyModel, sequence, fit) -> tuple[float, float]:
    truth = _body(model, sequence.betas[:1], sequence.body_pose, sequence.global_orient, sequence.transl)
    fitted = _body(model, fit.betas, fit.body_pose, fit.global_orient, fit.transl)
    return ((fitted.joints - truth.joints).norm(dim=-1).mean().item(),
            (fitted.vertices - truth.vertices).norm(dim=-1).mean().item())


def test_known_sequence_is_recovered_from_keypoints_alone(single_thread, male, fitter) -> None:
    sequence = synthetic_gta_sequence(male, "seq_walk", "walk", frames=24, seed=3)
    fit = fitter.fit(sequence.keypoints_3d)
    joint_error, vertex_error = _errors(male, sequence, fit)
    assert joint_error < JOINT_ERROR_BOUND_M
    assert vertex_error < VERTEX_ERROR_BOUND_M
    assert fit.body_pose.shape == (24, 69) and fit.global_orient.shape == (24, 3) and fit.transl.shape == (24, 3)
    # the optimisation improves on the closed-form start, and the reported error is the residual
    assert np.nanmean(fit.fit_error) < np.nanmean(fit.init_error)
    assert np.nanmean(fit.fit_error) < 0.005 and fit.energy[1] < fit.energy[0]
    # the same sequence without iterations is the closed-form start: worse than the fit
    start = SMPLify3D(male, keypoint_map("gta"), FitSettings(iterations=0)).fit(sequence.keypoints_3d)
    assert _errors(male, sequence, start)[0] > joint_error


@pytest.mark.parametrize("rig_name,joint_bound,vertex_bound", [("mini_world", 0.03, 0.035), ("other", 0.045, 0.05)])
def test_a_game_rig_the_map_never_read_fits_within_its_modelling_error(single_thread, male, fitter, rig_name,
                                                                         joint_bound, vertex_bound) -> None:
    """Game joints off SMPL's by a rig's offsets (the mini world's, or offsets drawn here that no
    table of the annotator could know): the fit still lands within a few centimetres of the true
    SMPL, and its error is larger than on the exact landmarks, i.e. it is a modelling error the
    annotator does not undo by reading the generator. Measured: 21 / 27 mm and 32 / 37 mm."""
    systematic = None if rig_name == "mini_world" else np.random.default_rng(5).normal(0.0, 0.03, (24, 3))
    rig = GameRig.draw(np.random.default_rng(2), systematic=systematic)
    sequence = synthetic_gta_sequence(male, "seq_rig", "walk", frames=24, seed=3, rig=rig)
    joint_error, vertex_error = _errors(male, sequence, fitter.fit(sequence.keypoints_3d))
    exact = synthetic_gta_sequence(male, "seq_exact", "walk", frames=24, seed=3)
    assert joint_error < joint_bound and vertex_error < vertex_bound
    assert joint_error > 2 * _errors(male, exact, fitter.fit(exact.keypoints_3d))[0]


def test_one_betas_per_sequence_fitted_together(single_thread, male, fitter) -> None:
    tall = synthetic_gta_sequence(male, "seq_tall", "reach", frames=16, seed=4, betas=np.r_[1.5, np.zeros(9)])
    short = synthetic_gta_sequence(male, "seq_short", "wave", frames=20, seed=5, betas=np.r_[-1.5, np.zeros(9)])
    fits = fitter.fit_many([tall.keypoints_3d, short.keypoints_3d])
    assert [f.betas.shape for f in fits] == [(10,), (10,)]
    assert [f.num_frames for f in fits] == [16, 20]
    # each sequence gets its own shape: beta 0 is stature (+4 % per unit), which joints reveal
    assert fits[0].betas[0] == pytest.approx(1.5, abs=0.3)
    assert fits[1].betas[0] == pytest.approx(-1.5, abs=0.3)
    for sequence, fit in zip((tall, short), fits):
        assert _errors(male, sequence, fit)[0] < JOINT_ERROR_BOUND_M


def test_smoothness_lowers_acceleration_of_noisy_input(single_thread, male) -> None:
    sequence = synthetic_gta_sequence(male, "seq_noisy", "walk", frames=24, seed=6)
    noisy = sequence.keypoints_3d.copy()
    noisy[..., :3] += np.random.default_rng(0).normal(0.0, 0.015, noisy[..., :3].shape)  # 1.5 cm jitter
    table = keypoint_map("gta")
    truth = _body(male, sequence.betas[:1], sequence.body_pose, sequence.global_orient, sequence.transl)
    results = {}
    # the same start (raw keypoints) and enough iterations to converge: only the term differs
    common = {"iterations": 100, "init_smoothing": 0.0}
    for name, settings in {"off": FitSettings(smooth_rotation=0.0, smooth_translation=0.0, **common),
                           "on": FitSettings(smooth_rotation=1e-2, smooth_translation=1.0, **common)}.items():
        fit = SMPLify3D(male, table, settings).fit(noisy)
        joints = _body(male, fit.betas, fit.body_pose, fit.global_orient, fit.transl).joints
        results[name] = (acceleration(joints).mean().item(), (joints - truth.joints).norm(dim=-1).mean().item())
    true_acceleration = acceleration(truth.joints).mean().item()
    assert results["on"][0] < 0.7 * results["off"][0]  # less jitter
    assert results["on"][0] > true_acceleration * 0.5  # ... without freezing the motion
    assert results["on"][1] < results["off"][1]  # and closer to the truth


def test_missing_keypoints_and_bad_input(single_thread, male, fitter) -> None:
    sequence = synthetic_gta_sequence(male, "seq_gap", "walk", frames=12, seed=7)
    keypoints = sequence.keypoints_3d.copy()
    keypoints[:, 60:, :3] = np.nan  # the last 40 joints unknown (facial rig, right hand ...): ignored
    confidence = np.ones(keypoints.shape[:2])
    confidence[5] = 0.0  # one frame without any keypoint: carried by the temporal terms
    fit = fitter.fit(keypoints, confidence)
    assert np.isnan(fit.fit_error[5]) and np.isfinite(fit.fit_error[np.arange(12) != 5]).all()
    assert _errors(male, sequence, fit)[0] < JOINT_ERROR_BOUND_M  # the empty frame is bridged, not lost
    with pytest.raises(ValueError, match=r"convention 'gta' must have shape"):
        fitter.fit(np.zeros((4, 24, 3)))
    with pytest.raises(ValueError, match="FitSettings.optimizer"):
        FitSettings(optimizer="sgd")

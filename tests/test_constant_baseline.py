"""The best constant predictor (gtahuman.constant_baseline), the root-orientation error and the
end-of-run table that puts them next to the trained model.

Hand computations: two rotations about one axis average to the rotation by atan2(sum w sin,
sum w cos) (not the weighted mean angle); any weighted set agrees with scipy's chordal L2
``Rotation.mean``; a tiny two-source index with a plan drawing source A 3x as often as B gives
the draw-weighted mean, without the sample that has no SMPL. On the tiny mini world the constant
is the one of the train sampler's epoch-0 draws, gathered here independently.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from gtahuman.body.rotations import rotation_about_axis
from gtahuman.constant_baseline import (
    CONSTANT_FILE,
    ConstantPrediction,
    constant_from_datamodule,
    constant_from_plan,
    epoch_plan,
    load_run_constant,
    project_to_so3,
    weighted_rotation_mean,
)
from gtahuman.evaluation import summarize
from gtahuman.metrics import orientation_error_deg
from gtahuman.results_table import format_results, ratios_to_constant

AXIS = np.array([1.0, 2.0, 3.0]) / math.sqrt(14.0)


# ----------------------------------------------------------------------------- rotation mean
def test_two_rotations_about_one_axis_average_to_the_weighted_chord_angle() -> None:
    a, b = math.radians(10.0), math.radians(70.0)
    rotations = np.stack([rotation_about_axis(AXIS, a), rotation_about_axis(AXIS, b)])
    mean = weighted_rotation_mean(rotations, np.array([3.0, 1.0]))
    expected_angle = math.atan2(3 * math.sin(a) + math.sin(b), 3 * math.cos(a) + math.cos(b))  # 23.9 deg
    np.testing.assert_allclose(mean, rotation_about_axis(AXIS, expected_angle), atol=1e-12)
    # not the weighted average of the angles (25 deg): the mean is taken on the matrices
    assert abs(math.degrees(expected_angle) - 25.0) > 1.0
    np.testing.assert_allclose(weighted_rotation_mean(rotations), rotation_about_axis(AXIS, (a + b) / 2), atol=1e-12)


def test_weighted_rotation_mean_is_scipys_chordal_mean_per_joint() -> None:
    rng = np.random.default_rng(0)
    base = Rotation.random(4, random_state=1)  # 4 "joints", each with 30 samples spread around it
    samples = [base * Rotation.from_rotvec(0.6 * rng.standard_normal((4, 3))) for _ in range(30)]
    weights = rng.uniform(0.1, 3.0, size=30)
    stacked = np.stack([s.as_matrix() for s in samples])  # (30, 4, 3, 3)
    mean = weighted_rotation_mean(stacked, weights)
    for joint in range(4):
        ref = Rotation.from_matrix(stacked[:, joint]).mean(weights=weights).as_matrix()
        np.testing.assert_allclose(mean[joint], ref, atol=1e-10)
    with pytest.raises(ValueError, match="non-negative"):
        weighted_rotation_mean(stacked, -weights)


def test_projection_returns_the_nearest_rotation_never_a_reflection() -> None:
    # U V^T of diag(3, 2, -1) is the reflection diag(1, 1, -1); the nearest rotation is the identity
    projected = project_to_so3(np.diag([3.0, 2.0, -1.0]))
    np.testing.assert_allclose(projected, np.eye(3), atol=1e-12)
    rotation = Rotation.random(5, random_state=2).as_matrix()
    np.testing.assert_allclose(project_to_so3(2.5 * rotation), rotation, atol=1e-12)  # scale drops out


# ----------------------------------------------------------------------------- from a plan
def _source(rng: np.random.Generator, n: int, has_smpl: list[bool]) -> dict[str, np.ndarray]:
    return {"smpl_global_orient": (0.5 * rng.standard_normal((n, 3))).astype(np.float32),
            "smpl_body_pose": (0.3 * rng.standard_normal((n, 69))).astype(np.float32),
            "smpl_betas": rng.standard_normal((n, 10)).astype(np.float32),
            "has_smpl": np.array(has_smpl)}


def test_constant_from_a_hand_built_plan_weights_draws_and_skips_samples_without_smpl() -> None:
    rng = np.random.default_rng(3)
    a, b = _source(rng, 3, [True, True, False]), _source(rng, 2, [True, True])
    a["smpl_betas"][2] = 100.0  # the sample without SMPL must not move the mean
    a["smpl_global_orient"][2] = [3.0, 0.0, 0.0]
    # global indices: A rows 0..2, B rows 3..4; A's SMPL rows drawn 3x each, B's once each
    plan = rng.permutation(np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 4]))
    constant = constant_from_plan([("A", a), ("B", b)], plan)
    weights = np.array([3.0, 3.0, 1.0, 1.0])
    pose = np.concatenate([np.concatenate([s["smpl_global_orient"], s["smpl_body_pose"]], 1)[rows]
                           for s, rows in ((a, [0, 1]), (b, [0, 1]))]).reshape(4, 24, 3)
    expected_betas = (weights @ np.concatenate([a["smpl_betas"][:2], b["smpl_betas"]])) / weights.sum()
    np.testing.assert_allclose(constant.betas, expected_betas, rtol=1e-6)
    for joint in range(24):
        ref = Rotation.from_rotvec(pose[:, joint].astype(np.float64)).mean(weights=weights)
        assert Rotation.from_rotvec(constant.pose[joint]).approx_equal(ref, atol=1e-6, degrees=False)
    assert constant.draws == 8 and constant.draws_by_source == {"A": 6, "B": 2}

    with pytest.raises(ValueError, match=r"0\.\.4 .*'A', 'B'.* \[3, 2\]"):
        constant_from_plan([("A", a), ("B", b)], np.array([0, 5]))
    with pytest.raises(ValueError, match="no drawn training sample has SMPL"):
        constant_from_plan([("A", a), ("B", b)], np.array([2, 2]))


def test_constant_round_trips_through_its_files(tmp_path) -> None:
    constant = ConstantPrediction(np.arange(72.0).reshape(24, 3) / 100, np.arange(10.0), 8, {"A": 6, "B": 2})
    constant.save(tmp_path / CONSTANT_FILE)
    loaded = load_run_constant(tmp_path)
    np.testing.assert_array_equal(loaded.pose, constant.pose)
    assert loaded.draws_by_source == {"A": 6, "B": 2} and loaded.draws == 8
    (tmp_path / CONSTANT_FILE).unlink()
    assert load_run_constant(tmp_path) is None  # a run from before the constant baseline
    (tmp_path / "metrics.json").write_text(json.dumps({"constant_prediction": constant.to_json()}))
    np.testing.assert_allclose(load_run_constant(tmp_path).betas, constant.betas)
    with pytest.raises(ValueError, match=r"\(24, 3\)"):
        ConstantPrediction(np.zeros((23, 3)), np.zeros(10), 1)


def test_constant_of_the_datamodule_is_that_of_its_epoch0_draws(tiny_config, single_thread) -> None:
    from gtahuman.data.index import SampleIndex
    from gtahuman.run_data import build_datamodule, ensure_assets

    cfg = tiny_config()
    dm = build_datamodule(cfg, ensure_assets(cfg))
    constant = constant_from_datamodule(dm)
    # train() computes it before the Trainer attaches: the samplers training uses must not be built
    # yet (they would fix a 1-process layout, and a DDP resume would restore into replaced ones)
    assert not dm._samplers
    sampler = dm.train_samplers()["train"]
    plan = np.asarray(sampler.global_plan())  # a fresh sampler is at epoch 0
    sampler.set_epoch(3)  # as after three epochs of training: the constant still uses epoch 0
    again = constant_from_datamodule(dm)
    np.testing.assert_array_equal(again.pose, constant.pose)
    assert sampler.epoch == 3 and not np.array_equal(epoch_plan(sampler, 3), plan)
    assert epoch_plan(sampler, 0).tolist() == plan.tolist() and sampler.epoch == 3  # the copy moved, not it

    # independently: global index -> (source, row) by the train sources' sizes, in config order
    indices = [SampleIndex.load(spec.index_dir) for spec in dm.train_sources]
    offsets = np.cumsum([0] + [len(index) for index in indices])
    rotations, betas, weights = [], [], []
    for g, count in zip(*np.unique(plan, return_counts=True)):
        k = int(np.searchsorted(offsets, g, side="right")) - 1
        index, row = indices[k], g - offsets[k]
        if index["has_smpl"][row]:
            pose = np.concatenate([index["smpl_global_orient"][row], index["smpl_body_pose"][row]]).reshape(24, 3)
            rotations.append(pose.astype(np.float64))
            betas.append(index["smpl_betas"][row])
            weights.append(count)
    weights = np.asarray(weights, np.float64)
    assert constant.draws == int(weights.sum()) and 0 < constant.draws <= plan.size
    np.testing.assert_allclose(constant.betas, weights @ np.asarray(betas, np.float64) / weights.sum(), atol=1e-6)
    rotations = np.stack(rotations)
    for joint in range(24):
        ref = Rotation.from_rotvec(rotations[:, joint]).mean(weights=weights)
        assert Rotation.from_rotvec(constant.pose[joint]).approx_equal(ref, atol=1e-6, degrees=False)


# ----------------------------------------------------------------------------- orientation error
def test_orientation_error_of_known_pairs_and_shapes() -> None:
    thirty = rotation_about_axis(torch.tensor(AXIS), math.radians(30.0), dtype=torch.float64)
    assert orientation_error_deg(torch.eye(3, dtype=torch.float64), thirty).item() == pytest.approx(30.0, abs=1e-9)
    half_turn = rotation_about_axis(torch.tensor([0.0, 1.0, 0.0]), math.pi, dtype=torch.float64)
    assert orientation_error_deg(half_turn, torch.eye(3, dtype=torch.float64)).item() == pytest.approx(180.0, abs=1e-9)
    # batch shape kept, symmetric, and the acos(clamp((trace(R1^T R2) - 1) / 2)) formula
    r1 = torch.tensor(Rotation.random(35, random_state=4).as_matrix()).reshape(5, 7, 3, 3)
    r2 = torch.tensor(Rotation.random(35, random_state=5).as_matrix()).reshape(5, 7, 3, 3)
    angle = orientation_error_deg(r1, r2)
    trace = (r1.transpose(-1, -2) @ r2).diagonal(dim1=-2, dim2=-1).sum(-1)
    assert angle.shape == (5, 7)
    torch.testing.assert_close(angle, torch.rad2deg(torch.acos(((trace - 1) / 2).clamp(-1, 1))), atol=1e-6, rtol=0)
    torch.testing.assert_close(orientation_error_deg(r2, r1), angle)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        orientation_error_deg(torch.eye(3)[:2], torch.eye(3)[:2])


def test_summary_takes_the_median_of_orient_deg_and_the_mean_of_the_rest() -> None:
    nan = math.nan
    summary = summarize({"orient_deg": torch.tensor([1.0, 2.0, nan, 10.0, 100.0]),
                         "mpjpe": torch.tensor([1.0, 2.0, nan, 10.0, 100.0])})
    assert summary["orient_deg"] == pytest.approx(6.0)  # (2 + 10) / 2; the mean would be 28.25
    assert summary["mpjpe"] == pytest.approx(28.25)
    assert math.isnan(summarize({"orient_deg": torch.tensor([nan, nan])})["orient_deg"])


# ----------------------------------------------------------------------------- the printed table
def _metrics(with_constant: bool = True) -> dict:
    metrics = {"protocol": "miniworld", "protocols": {"wild_test": "miniworld"}, "body_model_is_toy": True,
               "test": {"wild_test": {"mpjpe": 78.0, "pa_mpjpe": 45.0, "pve": 90.0, "orient_deg": 12.5}},
               "mean_pose_baseline": {"wild_test": {"mpjpe": 300.0, "pa_mpjpe": 86.0, "pve": 310.0,
                                                    "orient_deg": 95.0}}}
    if with_constant:
        metrics["constant_baseline"] = {"wild_test": {"mpjpe": 100.0, "pa_mpjpe": 60.0, "pve": None,
                                                      "orient_deg": 40.0}}
    return metrics


def test_the_table_holds_both_baselines_orient_and_the_ratio_line() -> None:
    text = format_results(_metrics())
    lines = text.splitlines()
    assert lines[0].split()[-4:] == ["MPJPE", "PA_MPJPE", "PVE", "ORIENT"]
    rows = {label: line for line in lines[1:4] for label in ("trained", "train mean (constant)", "SMPL mean params")
            if label in line}
    assert len(rows) == 3 and lines[1].split()[2] == "trained"
    assert rows["train mean (constant)"].split()[-4:] == ["100.0", "60.0", "nan", "40.0"]
    assert rows["SMPL mean params"].split()[-1] == "95.0" and rows["trained"].split()[-1] == "12.5"
    assert "wild_test: trained / constant = 0.78 MPJPE, 0.75 PA-MPJPE" in lines
    assert "toy body model" in lines[-1]
    ratios = ratios_to_constant(_metrics())
    assert ratios == {"wild_test": {"mpjpe": pytest.approx(0.78), "pa_mpjpe": pytest.approx(0.75)}}
    # a run from before the constant baseline: its two rows, no ratio line; a video run: no baselines
    old = format_results(_metrics(with_constant=False))
    assert "train mean" not in old and "trained / constant" not in old and "SMPL mean params" in old
    video = {"protocol": "miniworld", "test": {"wild_test": {"mpjpe": 1.0}}}
    assert len(format_results(video).splitlines()) == 3


def test_analysis_reads_the_constant_baseline(tmp_path) -> None:
    from analysis_fakes import make_run

    from analysis.rundirs import MEAN_POSE_BASELINE, load_run

    path = make_run(tmp_path, "quickstart", pa_mpjpe=45.0, mpjpe=78.0)
    metrics = json.loads((path / "metrics.json").read_text())
    assert math.isnan(load_run(path).baseline_metric("wild_test", "pa_mpjpe"))  # older run: no constant
    metrics["constant_baseline"] = _metrics()["constant_baseline"]
    (path / "metrics.json").write_text(json.dumps(metrics))
    run = load_run(path)
    assert run.baseline_metric("wild_test", "mpjpe") == 100.0
    assert run.baseline_metric("wild_test", "pa_mpjpe", MEAN_POSE_BASELINE) == 80.0
    assert run.ratio_to_constant("wild_test", "pa_mpjpe") == pytest.approx(0.75)
    assert math.isnan(run.ratio_to_constant("wild_test", "pve"))

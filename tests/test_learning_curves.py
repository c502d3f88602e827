"""analysis.learning: train-probe vs held-out curves from a run's metrics.csv, and the verdict."""
from __future__ import annotations

import csv
import json

import pytest

from analysis.learning import main, read_curves, verdict


def write_log(run, rows):
    (run / "logs").mkdir(parents=True)
    keys = ["epoch", "step", "train/loss"] + sorted({k for r in rows for k in r} - {"epoch", "step", "train/loss"})
    with open(run / "logs" / "metrics.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=keys)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            writer.writerow({"epoch": row["epoch"], "step": row["step"], "train/loss": 1.0})  # a train-only row


def curve_rows(held, probe, orient=(90.0, 90.0)):
    return [{"epoch": i, "step": 100 * (i + 1) - 1, "val/wild_val/pa_mpjpe": h, "val/wild_val/mpjpe": 3 * h,
             "val/wild_val/orient_deg": o, "val/probe_gta/pa_mpjpe": p, "val/probe_gta/mpjpe": 3 * p,
             "val/probe_gta/orient_deg": o}
            for i, (h, p, o) in enumerate(zip(held, probe, orient))]


def test_curves_are_read_per_set_and_metric_in_step_order(tmp_path):
    write_log(tmp_path, curve_rows(held=(70.0, 60.0), probe=(65.0, 50.0)))
    curves = read_curves(tmp_path)
    assert curves.steps == [99, 199]
    assert curves.held_out == ["wild_val"] and curves.probes == ["probe_gta"]
    assert curves.values["wild_val"]["pa_mpjpe"] == [(99, 70.0), (199, 60.0)]
    assert curves.values["probe_gta"]["mpjpe"] == [(99, 195.0), (199, 150.0)]


@pytest.mark.parametrize("held, probe, pattern", [
    ((70.0, 69.0), (65.0, 40.0), "MEMORISING"),  # the train error fell 25, the held-out 1
    ((102.7, 92.8), (88.0, 49.0), "MEMORISING"),  # both fell, but the gap opened by 29 of the 39 gained
    ((70.0, 60.0), (65.0, 50.0), "learning"),
    ((70.0, 72.0), (65.0, 66.0), "not learning"),
])
def test_verdict_tells_memorising_from_learning(tmp_path, held, probe, pattern):
    write_log(tmp_path, curve_rows(held, probe))
    lines = verdict(read_curves(tmp_path))
    assert lines[-1].startswith(f"pattern: {pattern}")
    gap = held[-1] - probe[-1]
    assert f"held-out minus train): {gap:+.1f}" in lines[2]


def test_command_prints_table_baselines_and_writes_the_figure(tmp_path, capsys):
    write_log(tmp_path, curve_rows(held=(70.0, 60.0), probe=(65.0, 50.0), orient=(95.0, 40.0)))
    (tmp_path / "metrics.json").write_text(json.dumps({
        "test": {"wild_test": {"mpjpe": 180.0, "pa_mpjpe": 54.0, "orient_deg": 40.0}},
        "constant_baseline": {"wild_test": {"mpjpe": 240.0, "pa_mpjpe": 72.0, "orient_deg": 76.0}}}))
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "trained / constant mpjpe = 0.75" in out and "trained / constant pa_mpjpe = 0.75" in out
    assert "held-out orient_deg: 95.0 -> 40.0" in out
    assert (tmp_path / "learning.png").stat().st_size > 10_000


def test_a_run_without_validation_is_a_clear_error(tmp_path):
    write_log(tmp_path, [{"epoch": 0, "step": 9}])
    with pytest.raises(ValueError, match="no val/<set>/<metric>"):
        read_curves(tmp_path)
    with pytest.raises(FileNotFoundError, match="metrics.csv"):
        read_curves(tmp_path / "nothing")


def _one_joint_poses(angles_deg, joint=4):
    """(N, 72) axis-angle: joint ``joint`` bent about x by each angle, every other joint at rest."""
    import numpy as np

    pose = np.zeros((len(angles_deg), 24, 3))
    pose[:, joint, 0] = np.radians(angles_deg)
    return pose.reshape(len(angles_deg), 72)


def test_prediction_spread_against_hand_computed_values():
    import numpy as np

    from analysis.learning import prediction_spread

    angles = np.random.default_rng(0).uniform(-30.0, 50.0, 200)
    truth = _one_joint_poses(angles)
    hand = np.abs(angles - angles.mean()).mean()  # one axis: the spread is the mean |angle - mean|
    same = prediction_spread(truth, truth)
    assert same.joints == [4] and same.truth_deg[0] == pytest.approx(hand, rel=1e-6)
    assert same.ratio == pytest.approx(1.0) and same.correlation == pytest.approx(1.0)
    halfway = prediction_spread(_one_joint_poses(angles.mean() + 0.5 * (angles - angles.mean())), truth)
    assert halfway.ratio == pytest.approx(0.5, rel=1e-6) and halfway.correlation == pytest.approx(1.0)
    shuffled = prediction_spread(_one_joint_poses(np.random.default_rng(1).permutation(angles)), truth)
    assert shuffled.ratio == pytest.approx(1.0, rel=1e-6) and abs(shuffled.correlation) < 0.2
    constant = prediction_spread(_one_joint_poses(np.full(200, 10.0)), truth)
    assert constant.ratio == pytest.approx(0.0, abs=1e-9)


def test_command_says_when_predictions_collapse_onto_one_pose(tmp_path, capsys):
    import numpy as np

    run = tmp_path / "run"
    write_log(run, curve_rows([60, 58], [60, 50]))
    angles = np.random.default_rng(0).uniform(-30.0, 50.0, 100)
    (run / "predictions").mkdir()
    np.savez(run / "predictions" / "wild_test.npz", pred_pose=_one_joint_poses(12.0 + 0.1 * angles),
             gt_pose=_one_joint_poses(angles), gt_has_smpl=np.ones(100, np.int8))
    np.savez(run / "predictions" / "wild_val.npz", pred_pose=_one_joint_poses(angles),
             gt_pose=_one_joint_poses(angles), gt_has_smpl=np.ones(100, np.int8))
    assert main([str(run), "--out", str(tmp_path / "fig.png")]) == 0
    out = capsys.readouterr().out
    collapsed = [line for line in out.splitlines() if line.startswith("spread wild_test")]
    assert collapsed and "0.10x" in collapsed[0] and "COLLAPSED" in collapsed[0]
    varied = [line for line in out.splitlines() if line.startswith("spread wild_val")]
    assert varied and "1.00x" in varied[0] and "COLLAPSED" not in varied[0]

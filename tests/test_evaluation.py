"""Protocols: root subtraction, joint selection, units and names, on hand-made 17-joint inputs."""
from __future__ import annotations

import math

import pytest
import torch

from gtahuman.evaluation import (
    H36M_JOINT_NAMES,
    H36M_TO_J14,
    MPI_INF_3DHP_TEST_JOINT_NAMES,
    MPI_INF_3DHP_TO_H36M,
    PROTOCOLS,
    evaluate_joints,
    format_report,
    get_protocol,
    summarize,
)
from gtahuman.metric_modules import PerSampleErrors


def ladder_joints(batch: int = 1) -> torch.Tensor:
    """Joint i sits at (i, 10 i, 100 i) mm plus (5, 5, 5) m: every joint is distinguishable."""
    i = torch.arange(17, dtype=torch.float64)[:, None]
    joints = torch.cat([i, 10 * i, 100 * i], dim=1) / 1000.0 + 5.0
    return joints.expand(batch, 17, 3).clone()


def test_prepare_joints_subtracts_pelvis_then_selects_lsp_14():
    prepared = get_protocol("3dpw").prepare_joints(ladder_joints()) * 1000.0
    assert prepared.shape == (1, 14, 3)
    # first row is H36M joint 6 (right ankle) minus joint 0: (6, 60, 600) mm; last is joint 10
    torch.testing.assert_close(prepared[0, 0], torch.tensor([6.0, 60.0, 600.0], dtype=torch.float64))
    torch.testing.assert_close(prepared[0, -1], torch.tensor([10.0, 100.0, 1000.0], dtype=torch.float64))
    assert prepared[0, :, 0].round().tolist() == [float(i) for i in H36M_TO_J14]
    assert get_protocol("3dpw").eval_joint_names[:3] == ("right_ankle", "right_knee", "right_hip")


def test_root_rule_and_joint_selection_in_errors():
    gt = ladder_joints(4)
    pred = gt.clone()
    pred[0] += torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)  # whole body shifted: 0 error
    pred[1, 0] += torch.tensor([0.03, 0.04, 0.0], dtype=torch.float64)  # only the pelvis: 50 mm on all 14
    pred[2, 7] += torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64)  # spine: not among the 14
    pred[3, 16] += torch.tensor([0.0, 0.014, 0.0], dtype=torch.float64)  # right wrist, 14 mm on 1 joint
    pw3d = evaluate_joints(get_protocol("3dpw"), pred, gt)
    assert set(pw3d) == {"mpjpe", "pa_mpjpe"}  # no vertices given -> no PVE
    torch.testing.assert_close(pw3d["mpjpe"], torch.tensor([0.0, 50.0, 0.0, 1.0], dtype=torch.float64))
    assert pw3d["pa_mpjpe"][:3].abs().max() < 1e-6  # a pure translation is aligned away

    hp3d = evaluate_joints(get_protocol("mpi_inf_3dhp"), pred, gt)
    # 17 joints incl. pelvis (0 error after centring), spine and head:
    # sample 1 -> 16 joints at 50 mm / 17; sample 2 -> 500 mm / 17; sample 3 -> 14 / 17
    expected = torch.tensor([0.0, 16 * 50.0 / 17, 500.0 / 17, 14.0 / 17], dtype=torch.float64)
    torch.testing.assert_close(hp3d["mpjpe"], expected)
    # PCK@150 mm: sample 2 misses one joint of 17
    torch.testing.assert_close(hp3d["pck"], torch.tensor([100.0, 100.0, 1600.0 / 17, 100.0], dtype=torch.float64))
    # AUC: an error e < 5 mm counts at 30 of 31 thresholds; 50 mm at 20 (55..150); 500 mm at none
    assert hp3d["auc"][1].item() == pytest.approx(100.0 * (30 + 16 * 20) / 17 / 31)
    assert hp3d["auc"][2].item() == pytest.approx(100.0 * (16 * 30 + 0) / 17 / 31)


def test_pve_in_mm_without_alignment_and_vertex_argument_checks():
    gt_vertices = torch.zeros(2, 6, 3, dtype=torch.float64)
    pred_vertices = gt_vertices + torch.tensor([0.0, 0.002, 0.0], dtype=torch.float64)  # 2 mm everywhere
    out = evaluate_joints(get_protocol("3dpw"), ladder_joints(2), ladder_joints(2), pred_vertices, gt_vertices)
    torch.testing.assert_close(out["pve"], torch.tensor([2.0, 2.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="both or neither"):
        evaluate_joints(get_protocol("3dpw"), ladder_joints(2), ladder_joints(2), pred_vertices, None)


def test_bad_joint_shapes_name_the_argument_and_expectation():
    with pytest.raises(ValueError, match=r"pred_joints17.*\(B, 17, 3\).*\(2, 24, 3\)"):
        evaluate_joints(get_protocol("h36m_p2"), torch.zeros(2, 24, 3), torch.zeros(2, 24, 3))
    with pytest.raises(ValueError, match="shapes differ"):
        evaluate_joints(get_protocol("h36m_p2"), torch.zeros(2, 17, 3), torch.zeros(3, 17, 3))


def test_unknown_protocol_lists_valid_names():
    with pytest.raises(KeyError) as info:
        get_protocol("3dpw_test")
    message = str(info.value)
    assert "3dpw_test" in message
    for name in ("3dpw", "h36m_p2", "mpi_inf_3dhp", "miniworld"):
        assert name in message
    assert set(PROTOCOLS) == {"3dpw", "h36m_p2", "mpi_inf_3dhp", "miniworld"}


def test_protocol_rules_as_documented():
    assert get_protocol("3dpw").gt_gender == "gendered" and get_protocol("3dpw").pred_gender == "neutral"
    assert get_protocol("h36m_p2").gt_gender == "keypoints"
    assert "60457274" in get_protocol("h36m_p2").split
    assert get_protocol("miniworld").toy_body_model and not get_protocol("3dpw").toy_body_model
    assert get_protocol("mpi_inf_3dhp").pck_threshold == 0.15


def test_mpi_inf_3dhp_reorder_maps_the_same_joint_names():
    aliases = {"neck": "thorax", "head_top": "headtop"}
    for h36m_index, test_index in enumerate(MPI_INF_3DHP_TO_H36M):
        name = MPI_INF_3DHP_TEST_JOINT_NAMES[test_index]
        assert aliases.get(name, name) == H36M_JOINT_NAMES[h36m_index]


def test_summarize_and_report_through_per_sample_errors():
    gt = ladder_joints(3)
    pred = gt.clone()
    pred[:, 16, 1] += torch.tensor([0.014, 0.028, 0.042], dtype=torch.float64)  # 1, 2, 3 mm MPJPE
    protocol = get_protocol("miniworld")
    errors = evaluate_joints(protocol, pred, gt)
    collector = PerSampleErrors(list(errors))
    collector.update(torch.tensor([2, 0, 1]), **errors)
    per_sample = collector.compute()
    assert per_sample["sample_id"].tolist() == [0, 1, 2]
    torch.testing.assert_close(per_sample["mpjpe"], torch.tensor([2.0, 3.0, 1.0], dtype=torch.float64))
    summary = summarize(per_sample)
    assert set(summary) == {"mpjpe", "pa_mpjpe"}
    assert summary["mpjpe"] == pytest.approx(2.0)
    assert summarize({"x": torch.tensor([1.0, math.nan, 3.0])}) == {"x": 2.0}
    report = format_report(protocol, summary)
    assert "TOY body model" in report and "mpjpe: 2.00 mm" in report
    assert "TOY" not in format_report(get_protocol("3dpw"), summary)
    # the root-orientation error is summarised by its median and reported in degrees
    orient = summarize({"orient_deg": torch.tensor([5.0, math.nan, 7.0, 170.0])})
    assert orient == {"orient_deg": 7.0}
    assert "orient_deg: 7.00 deg" in format_report(protocol, orient)

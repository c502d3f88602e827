"""The findings' controls from fabricated runs: world controls, the thinned-factor experiment, the
constant-predictor check and the nested amount line of Fig. 8."""
from __future__ import annotations

import json

import numpy as np
import pytest
from analysis_fakes import TEST_SET, make_run, prediction_columns

from analysis.controls import answer_constant, answer_thinning, answer_world_controls, per_bin_means
from analysis.rundirs import find_runs
from analysis.tables import build_tables, collect, fig8_points

STUDIO = ["data.miniworld_variant=gta_studio"]


def entries_of(root):
    return collect(find_runs([root]))[0]


def test_world_controls_compare_each_world_with_the_one_real_only_cell(tmp_path) -> None:
    root = tmp_path / "runs"
    for seed, pa in enumerate((60.0, 61.0, 62.0)):
        make_run(root, "table2_hmr_plus_mini", seed=seed, pa_mpjpe=pa)
    for seed, pa in enumerate((50.0, 51.0, 52.0)):
        make_run(root, "quickstart", seed=seed, pa_mpjpe=pa)
    for seed, pa in enumerate((60.0, 61.5, 63.0)):
        make_run(root, "quickstart", seed=seed, run_id=f"studio{seed}", pa_mpjpe=pa, overrides=STUDIO)
    entries = entries_of(root)
    table, lines = answer_world_controls(entries)
    rows = {tuple(labels[1:]): values for labels, values in table.rows}  # Backbone is dropped (one value)
    assert rows[("(none: real only)", "baseline")][1].values == (60.0, 61.0, 62.0)
    assert rows[("standard", "positive control")][1].mean == 51.0
    assert rows[("gta_studio", "negative control")][1].mean == 61.5
    positive, negative = lines
    # 61 ± 1 -> 51 ± 1 (n = 3 + 3): Welch df 4, t_0.975 = 2.776, se 0.816: -10 ± 2.27, resolved
    assert positive.startswith("- positive control, world `standard`")
    assert "lowers PA-MPJPE by 10.0 mm" in positive and "95 % CI [−12.3, −7.7]" in positive
    assert positive.endswith("resolved at 95 %.")
    # 61 ± 1 -> 61.5 ± 1.5: +0.5 with an interval holding 0
    assert negative.startswith("- negative control, world `gta_studio` (negative control: GTA restricted")
    assert "raises PA-MPJPE by 0.5 mm" in negative and negative.endswith("not resolved.")
    # the paper's tables keep the default world only: Table 2's BT cell is not pooled with the control
    bt = [values for labels, values in build_tables(entries)[0].rows if labels[1] == "BT"]
    assert len(bt) == 1 and bt[0][1].values == (50.0, 51.0, 52.0)


def thinned_study(root, extra_rise: float = 0.0):
    """Unthinned and thinned arms, 3 seeds each; the test set has 4 samples per elevation bin. The
    thinned arm's error is 10 mm higher at 30 degrees and above (+ ``extra_rise`` in [0, 10))."""
    elevation = np.repeat([-5.0, 5.0, 15.0, 25.0, 35.0, 50.0], 4)
    for seed in range(3):
        base = 50.0 + seed + np.tile([0.0, 1.0, 2.0, 3.0], 6)  # per-seed offset, within-bin spread
        thinned = base + np.where(elevation >= 30, 10.0, 0.0) + np.where((elevation > 0) & (elevation < 10),
                                                                        extra_rise, 0.0)
        noise = 0.3 * (seed - 1)  # the arms differ by more than a common offset
        for experiment, errors in (("findings_unthinned_mini", base), ("findings_thinned_mini", thinned + noise)):
            make_run(root, experiment, seed=seed, pa_mpjpe=float(errors.mean()),
                     predictions={TEST_SET: prediction_columns({"cam_elevation": elevation}, errors)})
    return entries_of(root)


def test_thinning_rises_in_exactly_the_thinned_bins(tmp_path) -> None:
    entries = thinned_study(tmp_path / "runs")
    unthinned = next(e for e in entries if e.run.experiment == "findings_unthinned_mini" and e.what.seed == 0)
    means, counts = per_bin_means(unthinned, "cam_elevation", [-90, 0, 10, 20, 30, 45, 90], "pa_mpjpe")
    np.testing.assert_allclose(means, 51.5)  # (50 + 51 + 52 + 53) / 4 in every bin
    assert counts.tolist() == [4, 4, 4, 4, 4, 4]
    (table,), (line,) = answer_thinning(entries)
    rows = {labels[0]: (labels, values) for labels, values in table.rows}
    assert rows["[30, 45)"][0][1:] == ["0 %", "4"] and rows["[0, 10)"][0][1] == "100 %"
    # thinned arm: +10 + 0.3 (seed - 1): means 61.5 + (-0.3, 0, 0.3) + seed against 51.5 + seed
    assert rows["[30, 45)"][1][1].mean == pytest.approx(62.5) and rows["[30, 45)"][1][0].mean == pytest.approx(52.5)
    assert "rises, resolved, in 2 of the 2 thinned bins ([30, 45), [45, 90))" in line
    assert "no resolved change in the other bins" in line and "behave as the data predicts" in line


def test_thinning_names_a_resolved_change_outside_the_thinned_bins(tmp_path) -> None:
    _, (line,) = answer_thinning(thinned_study(tmp_path / "runs", extra_rise=5.0))
    assert "resolved changes elsewhere: [0, 10) (+5.0 mm)" in line and "not the clean pattern" in line


def test_constant_check_counts_runs_above_the_bar(tmp_path) -> None:
    root = tmp_path / "runs"
    for seed, pa in enumerate((35.0, 50.0)):
        path = make_run(root, "quickstart", seed=seed, pa_mpjpe=pa, mpjpe=100.0)
        metrics = json.loads((path / "metrics.json").read_text())
        metrics["constant_baseline"] = {TEST_SET: {"pa_mpjpe": 56.0, "mpjpe": 250.0}}
        (path / "metrics.json").write_text(json.dumps(metrics))
    make_run(root, "table2_hmr_plus_mini", pa_mpjpe=60.0)  # no constant: counted apart
    lines = answer_constant(entries_of(root))
    assert lines[0] == "- MPJPE: run / best constant from 0.40 to 0.40 over 2 runs (worst: quickstart/seed0); " \
                       "1 runs have no constant baseline."
    assert "PA-MPJPE: run / best constant from 0.62 to 0.89" in lines[1]  # 35 / 56, 50 / 56
    assert lines[2] == "- 1 of 2 runs reach at most 0.7x the constant's PA-MPJPE; above it: quickstart/seed1."


def test_nested_amounts_form_their_own_fig8_line_with_their_own_zero(tmp_path) -> None:
    root = tmp_path / "runs"
    make_run(root, "table2_hmr_plus_mini", pa_mpjpe=70.0)  # real only through the mixture sampler
    for k, pa in ((0.0, 64.0), (0.5, 60.0), (1.0, 58.0)):
        make_run(root, "quickstart", run_id=f"nested{k:g}", pa_mpjpe=pa, overrides=[
            "data.sampler=amount", f"data.real_ratio={1 / (1 + k)}", f"data.sampler_args.total_multiple={1 + k}",
            "data.sampler_args.fixed_synthetic_subset=true", "data.epoch_length=null"])
    make_run(root, "quickstart", run_id="shares1", pa_mpjpe=59.0, overrides=[
        "data.sampler=amount", "data.real_ratio=0.5", "data.sampler_args.total_multiple=2", "data.epoch_length=null"])
    points = fig8_points(entries_of(root))
    nested = next(row for (_, backbone), row in points.items() if "nested" in backbone)
    shares = next(row for (_, backbone), row in points.items() if "nested" not in backbone)
    assert {k: cell.mean for k, cell in nested.items()} == {0.0: 64.0, 0.5: 60.0, 1.0: 58.0}
    assert {k: cell.mean for k, cell in shares.items()} == {0.0: 70.0, 1.0: 59.0}

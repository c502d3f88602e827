"""Tables 2, 6, 7, 8, 9 and Fig. 8 assembled from fabricated run directories (mean ± std over seeds)."""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from analysis_fakes import make_run

# What the tables call the mini rows' model: the quickstart's backbone and keypoint branch.
QUICKSTART_BACKBONE = "plain16 + keypoint branch"

from analysis.rundirs import describe_run, find_runs, load_run
from analysis.table_format import format_value
from analysis.tables import collect, fig8_points, main, table2, table6, table7, table7_grid, table8, table9


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for seed, pa in enumerate((60.0, 62.0, 64.0)):  # HMR+ real only: 62 ± 2
        make_run(root, "table2_hmr_plus_mini", seed=seed, pa_mpjpe=pa, mpjpe=pa + 40)
    for seed, pa in enumerate((55.0, 57.0)):  # HMR+ BT: 56 ± 1.41
        make_run(root, "table2_hmr_plus_bt_mini", seed=seed, pa_mpjpe=pa, mpjpe=pa + 30)
    make_run(root, "table8_keypoints_mini", pa_mpjpe=59.0)
    make_run(root, "table2_hmr_plus_bt_mini", run_id="dann", pa_mpjpe=53.0,
             overrides=["data.mode=adaptation", "adaptation.method=dann"])
    make_run(root, "table2_hmr_ft_mini", pa_mpjpe=58.0, overrides=["model.init_checkpoint=/start/best.ckpt"])
    make_run(root, "table9_resnet50_real_mini", pa_mpjpe=61.0)
    make_run(root, "table9_resnet50_mini", pa_mpjpe=57.5)
    # Table 7 cells (ratio x multiple of the real pool); two seeds in one cell
    for ratio, multiple, pa, seed in ((0.25, 0.3333, 70.0, 0), (0.25, 0.3333, 72.0, 1), (0.25, 0.6667, 66.0, 0),
                                      (0.5, 0.3333, 68.0, 0)):
        make_run(root, f"table7_real{round(100 * ratio):03d}_mini", seed=seed, pa_mpjpe=pa,
                 run_id=f"m{multiple}-s{seed}", overrides=[f"data.sampler_args.total_multiple={multiple}"])
    # Fig. 8: all real data + k x as much GTA-Human (amount sampler, real_ratio 1/(1+k))
    for k, pa in ((1, 58.5), (2, 57.0)):
        make_run(root, "table7_real050_mini", run_id=f"fig8-{k}x", pa_mpjpe=pa,
                 overrides=[f"data.real_ratio={1 / (1 + k)}", f"data.sampler_args.total_multiple={1 + k}"])
    (root / "unfinished" / "r0").mkdir(parents=True)
    (root / "unfinished" / "r0" / "config.yaml").write_text("experiment: x\n")
    return root


@pytest.fixture(scope="module")
def found(runs):
    return find_runs([runs])


def rows_of(table):
    return {tuple(labels): [format_value(v, 1) for v in values] for labels, values in table.rows}


def test_runs_are_described_from_their_configs(found) -> None:
    # the unfinished folder (no metrics.json) is skipped
    assert len(found) == 16
    what = {r.path.parent.name + "/" + r.path.name: describe_run(r) for r in found}
    bt, ft = what["table2_hmr_plus_bt_mini/seed0"], what["table2_hmr_ft_mini/seed0"]
    dann = what["table2_hmr_plus_bt_mini/dann"]
    assert (bt.method, bt.mixture, bt.synthetic_supervision, bt.adaptation) == ("HMR+", "BT", "both", None)
    assert (ft.method, ft.mixture) == ("HMR", "FT") and dann.adaptation == "dann"
    assert what["table8_keypoints_mini/seed0"].synthetic_supervision == "keypoints"
    assert what["table2_hmr_plus_mini/seed0"].gta_multiple == 0.0
    assert what["table7_real050_mini/fig8-2x"].gta_multiple == pytest.approx(2.0)


def test_table2_averages_seeds_and_subtracts_the_real_only_row(found) -> None:
    entries, _ = collect(found)
    rows = rows_of(table2(entries))
    mobile = QUICKSTART_BACKBONE
    # mean ± sample std: (60, 62, 64) -> 62.0 ± 2.0; (55, 57) -> 56.0 ± 1.4; change -6.0
    assert rows[("HMR+", "-", mobile)][1] == "62.0 ± 2.0"
    assert rows[("HMR+", "BT", mobile)] == ["86.0 ± 1.4", "56.0 ± 1.4", "-16.0", "-6.0"]
    assert rows[("HMR+", "BT", "resnet50")][1:] == ["57.5", "-3.5", "-3.5"]
    assert rows[("HMR", "FT", mobile)][1] == "58.0"  # one run: no spread; no HMR real-only row: no change
    assert rows[("HMR", "FT", mobile)][3] == "–"
    assert len(rows) == 5  # keypoints-only, DANN and amount runs belong to other tables
    cells = {tuple(labels): values for labels, values in table2(entries).rows}
    assert cells[("HMR+", "BT", mobile)][1].seeds == (0, 1)
    one_backbone = table2([e for e in entries if e.what.backbone == mobile])
    assert one_backbone.label_columns == ["Method", "Mixture"]  # a constant column is dropped


def test_table6_table8_table9(found) -> None:
    entries, _ = collect(found)
    mobile = QUICKSTART_BACKBONE
    six = rows_of(table6(entries))
    assert six[("HMR+", mobile, "X", "X", "BT + DANN (Ganin et al.)")][1] == "53.0"
    assert six[("HMR+", mobile, "X", "-", "real only")][1] == "62.0 ± 2.0"
    assert six[("HMR+", mobile, "X", "X", "BT")][1] == "56.0 ± 1.4"
    eight = rows_of(table8(entries))
    assert [k for k in eight if k[0] == mobile] == [(mobile, "-", "-"), (mobile, "X", "-"), (mobile, "X", "X")]
    assert eight[(mobile, "X", "-")][1] == "59.0" and eight[(mobile, "X", "X")][1] == "56.0 ± 1.4"
    nine = rows_of(table9(entries))
    assert nine[("resnet50",)] == ["61.0", "57.5", "-3.5"]
    assert nine[(mobile,)][:2] == ["62.0 ± 2.0", "56.0 ± 1.4"]


def test_table7_grid_and_fig8_points(found) -> None:
    entries, _ = collect(found)
    table = table7(entries)
    ratios, amounts, means, stds = table7_grid(table)
    # the Fig. 8 runs are amount-sampler runs too: 50 % of 2x and 33.3 % of 3x the real pool
    assert ratios == ["25%", "33.3%", "50%"] and amounts == ["0.3333× real", "0.6667× real", "2× real", "3× real"]
    np.testing.assert_allclose(means, [[71.0, 66.0, np.nan, np.nan], [np.nan, np.nan, np.nan, 57.0],
                                       [68.0, np.nan, 58.5, np.nan]])
    assert stds[0, 0] == pytest.approx(np.sqrt(2.0)) and np.isnan(stds[0, 1])
    assert rows_of(table)[("50%",)] == ["68.0", "–", "58.5", "–"]
    points = fig8_points(entries)
    assert list(points) == [("HMR+", QUICKSTART_BACKBONE)]
    line = points[("HMR+", QUICKSTART_BACKBONE)]
    assert sorted(line) == [0.0, 1.0, 2.0]  # Table 7 runs use a third of the real pool: not Fig. 8
    assert [line[k].mean for k in sorted(line)] == pytest.approx([62.0, 58.5, 57.0])


def test_cli_writes_markdown_csv_and_the_fig8_plot(runs, tmp_path) -> None:
    written = main([str(runs), "--out", str(tmp_path)])
    for name in ("table2", "table6", "table7", "table8", "table9", "fig8"):
        assert (tmp_path / f"{name}.md").is_file() and (tmp_path / f"{name}.csv").is_file()
    assert (tmp_path / "fig8.png").stat().st_size > 5_000 and written["tables.md"].is_file()
    rows = list(csv.DictReader(io.StringIO((tmp_path / "table2.csv").read_text())))
    bt = next(r for r in rows if r["Mixture"] == "BT")
    assert float(bt["PA-MPJPE mean"]) == pytest.approx(56.0) and float(bt["PA-MPJPE std"]) == pytest.approx(np.sqrt(2))
    assert bt["PA-MPJPE n"] == "2" and bt["PA-MPJPE seeds"] == "0 1" and float(bt["Δ PA-MPJPE"]) == pytest.approx(-6.0)
    assert "toy body model" in (tmp_path / "tables.md").read_text()


def test_other_rows_are_recognised_from_their_configs(tmp_path) -> None:
    rows = {"table6_hmr_gta_mini": [], "table6_cyclegan_mini": [], "table3_gta_mini": [],
            "table2_pare_ft_mini": ["model.init_checkpoint=/p.pth"]}
    what = {name: describe_run(load_run(make_run(tmp_path, name, overrides=extra))) for name, extra in rows.items()}
    assert (what["table6_hmr_gta_mini"].method, what["table6_hmr_gta_mini"].mixture) == ("HMR", "GTA only")
    assert what["table6_cyclegan_mini"].adaptation == "cyclegan"
    assert (what["table2_pare_ft_mini"].method, what["table2_pare_ft_mini"].mixture) == ("PARE", "FT")
    entries, notes = collect(find_runs([tmp_path]))
    assert len(entries) == 3 and notes == ["left out (task=video): table3_gta_mini/seed0"]
    six = rows_of(table6(entries))
    assert list(six) == [("HMR", "-", "X", "GTA-Human only"), ("HMR", "X", "X", "BT + CycleGAN")]


def test_a_missing_test_set_is_reported_not_mixed_in(found) -> None:
    entries, notes = collect(found, set_name="pw3d_test")
    assert entries == [] and "no test set 'pw3d_test'" in notes[0]


def test_a_fig8_run_sized_by_synthetic_multiple_sits_at_its_k(tmp_path) -> None:
    run = load_run(make_run(tmp_path, "table7_real050_mini", run_id="k0.5", pa_mpjpe=60.0,
                            overrides=["data.real_ratio=0.666667", "data.sampler_args.total_multiple=null",
                                       "data.sampler_args.synthetic_multiple=0.5"]))
    what = describe_run(run)
    assert what.amount_multiple == pytest.approx(1.5) and what.gta_multiple == pytest.approx(0.5, abs=1e-5)
    entries, _ = collect([run])
    assert list(fig8_points(entries).values())[0].keys() == {0.5}  # the whole real pool: on Fig. 8's line

"""FINDINGS.md from fabricated runs: every answer follows the numbers (and flips when they do)."""
from __future__ import annotations

import re

import numpy as np
from analysis_fakes import TEST_SET, blobs, make_run, prediction_columns

from analysis.findings import compare, findings_markdown
from analysis.per_bin import FIG9_FACTORS
from analysis.rundirs import find_runs
from analysis.table_format import Cell


def make_study(root):
    """Real-only (3 seeds), blended (2 seeds, with features and per-sample predictions),
    keypoints-only, DANN, and all real data + 1x / 2x GTA-Human."""
    rng = np.random.default_rng(0)
    for seed, pa in enumerate((60.0, 62.0, 64.0)):
        make_run(root, "table2_hmr_plus_mini", seed=seed, pa_mpjpe=pa)
    elevation = np.array([-60.0, -50.0, 10.0, 20.0, 30.0, 50.0])
    factors = {f: np.linspace(0.0, 0.2, 6) for f in FIG9_FACTORS}
    factors["cam_elevation"] = elevation
    train = {f: np.zeros(10) for f in FIG9_FACTORS}
    train["source"] = np.array(["real_indoor"] * 4 + ["real_kp"] * 2 + ["gta"] * 4)
    train["cam_elevation"] = np.array([15.0] * 6 + [-55.0, 15.0, 25.0, 45.0])
    for seed, pa in enumerate((55.0, 57.0)):
        errors = np.array([90.0, 85.0, 50.0, 52.0, 55.0, 70.0])
        details = dict(train_factors=train, features=blobs(rng, {"real_indoor": -3.0, "gta": 3.0, TEST_SET: 0.0}),
                       predictions={TEST_SET: prediction_columns(factors, errors)})
        make_run(root, "table2_hmr_plus_bt_mini", seed=seed, pa_mpjpe=pa, **details)
    make_run(root, "table8_keypoints_mini", pa_mpjpe=59.0)
    make_run(root, "table2_hmr_plus_bt_mini", run_id="dann", pa_mpjpe=53.0,
             overrides=["data.mode=adaptation", "adaptation.method=dann"],
             features=blobs(rng, {"real_indoor": 0.0, "gta": 0.0, TEST_SET: 0.0}, n=40))
    for k, pa in ((1, 58.5), (2, 57.0)):
        make_run(root, "table7_real050_mini", run_id=f"fig8-{k}x", pa_mpjpe=pa,
                 overrides=[f"data.real_ratio={1 / (1 + k)}", f"data.sampler_args.total_multiple={1 + k}"])
    make_run(root, "table7_real025_mini", run_id="t7", pa_mpjpe=61.0, overrides=["data.sampler_args.total_multiple=2"])
    return find_runs([root])


def test_answers_are_computed_from_the_numbers(tmp_path) -> None:
    runs = make_study(tmp_path / "runs")
    out = tmp_path / "docs" / "FINDINGS.md"
    text = findings_markdown(runs, out, embedding="pca")
    assert out.read_text() == text and "toy body model" in text
    # 62 ± 2 (n=3) -> 56 ± 1.41 (n=2): se = sqrt(4/3 + 2/2) = 1.53, Welch df = 2.88, t_0.975 = 3.27,
    # so the 95 % interval is -6.0 ± 4.99 (scipy.stats.ttest_ind(b, a, equal_var=False) agrees)
    assert ("HMR+ BT lowers PA-MPJPE by 6.0 mm against HMR+ on real data only (62.0 ± 2.0 → 56.0 ± 1.4 mm); "
            "change −6.0 mm, 95 % CI [−11.0, −1.0], Welch t(2.9) = −3.9, p = 0.032: "
            "resolved at 95 %.") in text
    # a side with one run: no interval, whatever the size of the change
    assert ("BT + DANN (Ganin et al.) lowers PA-MPJPE by 3.0 mm against BT without adaptation "
            "(56.0 ± 1.4 → 53.0 mm); BT + DANN (Ganin et al.) is a single run, so its seed-to-seed spread is "
            "unknown: not resolved.") in text
    assert "GTA-Human keypoints only lowers PA-MPJPE by 3.0 mm against no GTA-Human (62.0 ± 2.0 → 59.0 mm)" in text
    assert "from 0x to 2x GTA-Human, 2x lowers PA-MPJPE by 5.0 mm" in text and "falls at every step" in text
    # the slope over every run (0x: 60, 62, 64; 1x: 58.5; 2x: 57), not over the three means:
    # scipy.stats.linregress gives -2.625 ± t_0.975,3 x 0.955 = [-5.66, +0.41]: the means fall, but
    # the runs do not resolve a negative slope
    # (the slope is -2.625 exactly, so its last printed digit depends on float rounding: 2.62 or 2.63)
    assert re.search(r"least-squares slope over the 5 per-seed runs −2\.6[23] mm per 1x, 95 % CI \[−5\.66, \+0\.41\] "
                     r"\(t, 3 df, p = 0\.071\): not a resolved negative slope\.", text)
    assert "- 2× real: lowest error at 50% real (58.5 mm; 25% 61.0)." in text  # the one column with two ratios
    # the blended run's features are two blobs, the DANN run's one cloud
    assert ("table2_hmr_plus_bt_mini/seed0: a linear classifier tells real from GTA-Human features with held-out "
            "accuracy 1.00") in text
    assert "table2_hmr_plus_bt_mini/seed1: a linear" in text  # every run with both domains' features
    dann_line = next(line for line in text.splitlines() if line.startswith("- table2_hmr_plus_bt_mini/dann: a linear"))
    assert float(dann_line.split("accuracy ")[1].split(" ")[0]) < 0.8
    # Fig. 9: elevation bins with training mass have lower error -> negative rank correlation
    assert "- table2_hmr_plus_bt_mini/seed0: rank correlation of training mix density" in text
    # 10-degree bins with both: [-60, -50) train .125 error 90; [10, 20) .625, 50; [20, 30) .125, 52
    # -> ranks (1.5, 3, 1.5) vs (3, 1, 2): Spearman = -1.5 / sqrt(1.5 * 2) = -0.87
    assert "cam_elevation ρ = -0.87 (3 bins)" in text
    assert "per_bin_table2_hmr_plus_bt_mini_seed1" not in text  # one blended run per method and backbone
    for name in ("fig8.png", "features.png", "per_bin_table2_hmr_plus_bt_mini_seed0.png", "table2.csv"):
        assert (tmp_path / "docs" / "findings_files" / name).is_file()
    assert "](findings_files/fig8.png)" in text


def test_answers_flip_when_the_numbers_do(tmp_path) -> None:
    root = tmp_path / "runs"
    for seed, pa in enumerate((55.0, 56.0, 57.0)):
        make_run(root, "table2_hmr_plus_mini", seed=seed, pa_mpjpe=pa)
    for seed, pa in enumerate((56.0, 57.0)):
        make_run(root, "table2_hmr_plus_bt_mini", seed=seed, pa_mpjpe=pa)
    make_run(root, "table2_hmr_plus_bt_mini", run_id="dann", pa_mpjpe=53.0,
             overrides=["data.mode=adaptation", "adaptation.method=dann"])
    text = findings_markdown(find_runs([root]), tmp_path / "F.md", embedding=None)
    # 56 ± 1 (n=3) -> 56.5 ± 0.71 (n=2): Welch 95 % interval [-2.0, +3.0] holds 0
    assert ("HMR+ BT raises PA-MPJPE by 0.5 mm against HMR+ on real data only (56.0 ± 1.0 → 56.5 ± 0.7 mm); "
            "change +0.5 mm, 95 % CI [−2.0, +3.0], Welch t(2.9) = +0.7, p = 0.56: not resolved.") in text
    assert "BT + DANN (Ganin et al.) lowers PA-MPJPE by 3.5 mm" in text


def test_compare_single_runs_and_missing_rows(tmp_path) -> None:
    one = compare("pa_mpjpe", Cell((60.0,), (0,)), Cell((61.5,), (0,)), "X", "Y")
    assert one == ("X raises PA-MPJPE by 1.5 mm against Y (60.0 → 61.5 mm); single runs, so the seed-to-seed "
                   "spread is unknown.")
    one_side = compare("pa_mpjpe", Cell((60.0, 62.0, 64.0), (0, 1, 2)), Cell((50.0,), (0,)), "X", "Y")
    assert one_side.endswith("; X is a single run, so its seed-to-seed spread is unknown: not resolved.")
    diverged = compare("pa_mpjpe", Cell((60.0, float("nan")), (0, 1)), Cell((61.5,), (0,)), "X", "Y")
    assert diverged.endswith("single runs, so the seed-to-seed spread is unknown.")  # NaN is not a seed's value
    runs = find_runs([make_run(tmp_path / "runs", "table2_hmr_plus_mini")])
    text = findings_markdown(runs, tmp_path / "F.md", embedding=None)
    assert "not answered: needs a real-only run and a BT or FT run of the same method." in text
    assert "not answered: needs a BT run with per-sample predictions." in text


def test_domain_classifier_accuracy_has_an_interval_over_seeds(tmp_path) -> None:
    from analysis.findings import answer_domain_gap

    root, rng = tmp_path / "runs", np.random.default_rng(3)
    for seed in range(3):  # BT: the domains far apart; DANN: one cloud
        make_run(root, "table2_hmr_plus_bt_mini", seed=seed, pa_mpjpe=55.0,
                 features=blobs(rng, {"real_indoor": -3.0, "gta": 3.0, TEST_SET: 0.0}, n=30))
        make_run(root, "table2_hmr_plus_bt_mini", seed=seed, run_id=f"dann{seed}", pa_mpjpe=54.0,
                 overrides=["data.mode=adaptation", "adaptation.method=dann"],
                 features=blobs(rng, {"real_indoor": 0.0, "gta": 0.0, TEST_SET: 0.0}, n=30))
    lines = answer_domain_gap(find_runs([root]), tmp_path, None, "files")
    bt = next(line for line in lines if line.startswith("- HMR+ BT, 3 seeds"))
    assert bt.startswith("- HMR+ BT, 3 seeds: accuracy 1.00, 95 % CI [1.00, 1.00]")
    dann = next(line for line in lines if line.startswith("- HMR+ BT + DANN, 3 seeds"))
    mean = float(dann.split("accuracy ")[1].split(",")[0])
    assert mean < 0.8  # one cloud: near chance
    change = next(line for line in lines if line.startswith("- HMR+ BT + DANN against HMR+ BT"))
    assert change.endswith("resolved at 95 %.") and f"accuracy change −{1 - mean:.2f}" in change

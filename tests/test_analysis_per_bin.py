"""Per-bin statistics (paper Fig. 9) against bins counted by hand, on fabricated run directories."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from analysis_fakes import TEST_SET, make_run, prediction_columns

from analysis.per_bin import FIG9_FACTORS, analyse_run, assign_bins, bin_edges, main, per_bin_statistics, plot_per_bin
from analysis.rundirs import load_run
from analysis.training_mix import source_shares, training_mix
from gtahuman.data.budget import BUDGET_FILE, Budget
from gtahuman.data.index_synthetic import synthesize_index


def test_bins_counts_means_and_densities_match_hand_computed_values() -> None:
    # edges 0|10|20|30: 1, 5 -> bin 0; 12, 19 -> bin 1; 20 and 30 (last edge inclusive) -> bin 2;
    # 35 (outside), NaN factor and a NaN error are left out.
    values = np.array([1, 5, 12, 19, 20, 30, 35, np.nan, 3])
    errors = np.array([10, 20, 30, 50, 70, 90, 5, 8, np.nan])
    train = np.array([2, 25, 25, 100, np.nan])
    weights = np.array([0.5, 0.25, 0.25, 1.0, 3.0])  # only 2, 25, 25 are in range: mass 0.5 | 0 | 0.5
    stats = per_bin_statistics("cam_elevation", values, errors, np.array([0.0, 10, 20, 30]), "pa_mpjpe", train, weights)
    np.testing.assert_array_equal(stats.count, [2, 2, 2])
    np.testing.assert_allclose(stats.mean_error, [15.0, 40.0, 80.0])
    np.testing.assert_allclose(stats.eval_density, [1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(stats.train_density, [0.5, 0.0, 0.5])
    assert stats.left_out == 3
    np.testing.assert_allclose(stats.centers, [5.0, 15.0, 25.0])
    # an empty bin has no mean error, not 0
    empty = per_bin_statistics("x", np.array([1.0]), np.array([4.0]), np.array([0.0, 2, 4]))
    assert empty.mean_error[0] == 4.0 and np.isnan(empty.mean_error[1])


def test_bin_edges_use_natural_ranges_for_angles_and_the_data_range_for_pose_distances() -> None:
    np.testing.assert_allclose(bin_edges("cam_elevation", np.array([3.0]), 4), [-90, -45, 0, 45, 90])
    np.testing.assert_allclose(bin_edges("pose_dist_mean", np.array([20.0, np.nan, 60.0]), 4), [20, 30, 40, 50, 60])
    np.testing.assert_allclose(bin_edges("truncation", np.array([0.5])), np.linspace(0, 1, 11))
    np.testing.assert_array_equal(assign_bins(np.array([-1.0, 0.0, 0.99, 1.0, 2.0]), np.array([0.0, 1.0, 2.0])),
                                  [-1, 0, 0, 1, 1])
    with pytest.raises(ValueError, match="increasing"):
        bin_edges("cam_azimuth", np.array([0.0]), [0.0, 10.0, 5.0])


def test_run_directory_bins_weight_training_sources_by_their_share_of_the_epoch(tmp_path) -> None:
    # Blended mini row: real_ratio 0.5, partition real_indoor 0.6 / real_kp 0.4 -> shares 0.3, 0.2, 0.5.
    elevation = np.array([-60.0, -30.0, 10.0, 50.0])
    factors = {f: np.linspace(0.0, 0.3, 4) for f in FIG9_FACTORS}
    factors["cam_elevation"] = elevation
    train = {"source": np.array(["real_indoor"] * 3 + ["real_kp"] + ["gta"] * 2),
             **{f: np.zeros(6) for f in FIG9_FACTORS}}
    train["cam_elevation"] = np.array([5.0, 5.0, 5.0, 5.0, -45.0, 45.0])
    run_dir = make_run(tmp_path, "table2_hmr_plus_bt_mini", train_factors=train,
                       predictions={TEST_SET: prediction_columns(factors, np.array([100.0, 80.0, 50.0, 70.0]))})
    run = load_run(run_dir)
    # counted draws of the run's samplers (whole samples), hence the tolerance
    assert training_mix(run, FIG9_FACTORS).shares == pytest.approx({"real_indoor": 0.3, "real_kp": 0.2, "gta": 0.5},
                                                                   abs=1e-3)

    out = tmp_path / "out"
    main([str(run_dir), "--edges", "cam_elevation=-90,0,90", "--out", str(out)])
    with open(out / f"per_bin_{TEST_SET}.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["factor"] == "cam_elevation"]
    assert [int(r["count"]) for r in rows] == [2, 2]
    assert [float(r["mean_pa_mpjpe"]) for r in rows] == pytest.approx([90.0, 60.0])
    # training mass below 0: gta's -45 only (0.5 / 2); above: real_indoor + real_kp + gta's 45
    assert [float(r["train_density"]) for r in rows] == pytest.approx([0.25, 0.75])
    assert (out / f"per_bin_{TEST_SET}.png").stat().st_size > 10_000


def test_occlusion_and_truncation_density_is_drawn_in_log_scale(tmp_path) -> None:
    factors = {f: np.array([0.05, 0.15, 0.5]) for f in FIG9_FACTORS}
    factors.update(cam_elevation=np.array([-60.0, 10.0, 70.0]), cam_azimuth=np.array([-150.0, 0.0, 150.0]))
    run = load_run(make_run(tmp_path, "table2_hmr_plus_mini",
                            predictions={TEST_SET: prediction_columns(factors, np.array([50.0, 60.0, 70.0]))}))
    stats = analyse_run(run, use_training_mix=False, bins=5)
    assert stats[0].train_density is None and [s.factor for s in stats] == list(FIG9_FACTORS)
    axes = plot_per_bin(stats).axes[: len(stats)]  # the panels' density axes (twins come after)
    scales = {s.factor: ax.get_yscale() for s, ax in zip(stats, axes)}
    assert scales == {"cam_elevation": "linear", "cam_azimuth": "linear", "pose_dist_mean": "linear",
                      "pose_dist_tpose": "linear", "occluded_ratio": "log", "truncation": "log"}


def test_shares_follow_the_amount_sampler_and_adaptation_pairs(tmp_path) -> None:
    sizes = {"real_indoor": 30, "real_kp": 10, "gta": 100}
    # 25 % real, uniform over the real pool; an epoch of 4 x the real pool (160 samples), batches of 4
    amount = load_run(make_run(tmp_path, "table7_real025_mini", overrides=["data.batch_size=4",
                                                                         "data.sampler_args.total_multiple=4"]))
    assert source_shares(amount, sizes) == pytest.approx({"real_indoor": 0.1875, "real_kp": 0.0625, "gta": 0.75},
                                                         abs=2e-3)
    paired = load_run(make_run(tmp_path, "table2_hmr_plus_bt_mini", run_id="da",
                               overrides=["data.mode=adaptation", "adaptation.method=dann"]))
    assert source_shares(paired, sizes) == pytest.approx({"real_indoor": 0.3, "real_kp": 0.2, "gta": 0.5}, abs=2e-3)
    real_only = load_run(make_run(tmp_path, "table2_hmr_plus_mini"))
    assert source_shares(real_only, sizes) == pytest.approx({"real_indoor": 0.6, "real_kp": 0.4}, abs=2e-3)
    # what the run's samplers counted before training wins over the config
    Budget(steps=1, epochs=1, batches_per_epoch=1, batch={"train": 4}, samples_seen={"real_indoor": 3, "real_kp": 1},
           unique_samples={"real_indoor": 3, "real_kp": 1}, pool=sizes).save(real_only.path / BUDGET_FILE)
    assert source_shares(real_only, sizes) == {"real_indoor": 0.75, "real_kp": 0.25}


def test_training_factors_come_from_the_index_prepared_from_the_configured_source(tmp_path) -> None:
    run = load_run(make_run(tmp_path, "table2_hmr_plus_mini"))
    rng = np.random.default_rng(0)
    for name, source in run.config.data.train.items():
        for suffix, path, value in (("right", source.path, 7.0), ("other", "/elsewhere/x.npz", -7.0)):
            index = synthesize_index(5, rng, dataset=name)
            index["cam_elevation"][:] = value
            index.meta.update(prepare={"settings": {"kind": str(source.kind)}, "source": str(path)})
            index.save(tmp_path / "cache" / "indices" / f"{name}-{suffix}")
    mix = training_mix(run, ("cam_elevation",))
    values, weights = mix.weighted("cam_elevation")
    assert np.all(values == 7.0) and weights.sum() == pytest.approx(1.0)
    assert "real_indoor-right" in mix.origin


def test_a_train_source_evaluated_later_is_binned_too(tmp_path) -> None:
    # Fig. 9 of the paper bins GTA-Human samples: experiments.evaluate set=gta writes them to evaluations/
    factors = {f: np.array([0.1, 0.6]) for f in FIG9_FACTORS}
    run = load_run(make_run(tmp_path, "table2_hmr_plus_bt_mini",
                            predictions={"gta": prediction_columns(factors, np.array([40.0, 80.0]))}))
    assert run.prediction_sets() == ["gta"]
    truncation = analyse_run(run, "gta", factors=["truncation"], bins=2, use_training_mix=False)[0]
    np.testing.assert_allclose(truncation.mean_error, [40.0, 80.0])


def test_missing_files_and_columns_are_named(tmp_path) -> None:
    run = load_run(make_run(tmp_path, "table2_hmr_plus_mini",
                            predictions={TEST_SET: {"sample_id": np.arange(3), "pa_mpjpe": np.ones(3)}}))
    with pytest.raises(KeyError, match=r"wild_test\.npz.*factor_cam_elevation"):
        analyse_run(run, use_training_mix=False)
    with pytest.raises(FileNotFoundError, match=r"no prepared index of train source 'real_indoor'.*indices"):
        training_mix(run, FIG9_FACTORS)
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        load_run(tmp_path / "table2_hmr_plus_mini")


def test_a_re_evaluation_of_a_test_set_takes_precedence_over_what_training_wrote(tmp_path) -> None:
    """A run trained before the data gained a factor (e.g. the mesh's self-occlusion for SPIN npz
    sets) is re-evaluated with experiments.evaluate; the analysis must bin the new file."""
    old = prediction_columns({"self_occluded_ratio": np.full(4, np.nan)}, np.array([50.0, 60.0, 70.0, 80.0]))
    path = make_run(tmp_path, "quickstart", predictions={TEST_SET: old})
    later = path / "evaluations" / f"{TEST_SET}-miniworld"
    later.mkdir(parents=True)
    new = prediction_columns({"self_occluded_ratio": np.array([0.0, 0.05, 0.3, 0.4])}, old["pa_mpjpe"])
    np.savez(later / f"{TEST_SET}.npz", **new)
    run = load_run(path)
    np.testing.assert_array_equal(run.predictions(TEST_SET)["factor_self_occluded_ratio"], new["factor_self_occluded_ratio"])
    stats = analyse_run(run, TEST_SET, "pa_mpjpe", ["self_occluded_ratio"], {"self_occluded_ratio": [0.0, 0.1, 1.0]},
                        use_training_mix=False)
    np.testing.assert_allclose(stats[0].mean_error, [55.0, 75.0])  # (50 + 60) / 2 and (70 + 80) / 2


def test_bin_interval_by_hand_and_sparse_or_single_bin_panels() -> None:
    edges = np.array([0.0, 10.0, 20.0, 30.0])
    stats = per_bin_statistics("cam_elevation", np.array([1.0, 2.0, 3.0, 15.0]), np.array([50.0, 60.0, 70.0, 40.0]), edges)
    # bin 0: mean 60, sample sd 10, se 10 / sqrt(3), t_0.975(2) = 4.303 -> 24.84; one sample: no interval
    assert stats.half_width[0] == pytest.approx(4.3027 * 10 / np.sqrt(3), rel=1e-4)
    assert np.isnan(stats.half_width[1]) and np.isnan(stats.half_width[2])
    single = per_bin_statistics("truncation", np.zeros(4), np.full(4, 50.0), np.linspace(0, 1, 6))
    figure = plot_per_bin([stats, single], min_count=3)
    assert len([ax for ax in figure.axes if ax.get_visible()]) == 2  # one panel (+ its twin): the single-bin one dropped
    twin = figure.axes[-1]
    assert list(twin.get_lines()[0].get_xdata()) == [5.0]  # bin 1 has 1 sample < min_count 3: no point


def test_a_missing_run_is_a_usage_error(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([str(tmp_path / "nope")])
    assert stopped.value.code == 2 and "config.yaml not found" in capsys.readouterr().err

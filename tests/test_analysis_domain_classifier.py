"""The cross-validated domain classifier: its logistic fit, its folds, and accuracies that must come out."""
from __future__ import annotations

import numpy as np
import pytest
from analysis_fakes import TEST_SET, blobs, make_run

from analysis.domain_classifier import cross_validated_accuracy, domain_separability, fit_logistic, stratified_folds
from analysis.rundirs import load_run


def test_logistic_fit_matches_scikit_learn_on_the_same_objective() -> None:
    sklearn = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3))
    y = (x @ np.array([1.5, -2.0, 0.5]) + 0.3 + rng.normal(scale=1.0, size=80) > 0).astype(int)
    l2 = 0.05
    w, b = fit_logistic(x, y, l2)
    # scikit-learn minimises C * sum(log-loss) + |w|^2 / 2, i.e. ours with C = 1 / (l2 N)
    reference = sklearn.LogisticRegression(C=1 / (l2 * len(y)), tol=1e-10, max_iter=10_000).fit(x, y)
    np.testing.assert_allclose(w, reference.coef_[0], atol=1e-4)
    assert b == pytest.approx(reference.intercept_[0], abs=1e-4)


def test_one_dimensional_fit_puts_the_boundary_between_the_classes() -> None:
    x = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    w, b = fit_logistic(x, np.array([0, 0, 1, 1]), l2=1e-3)
    assert w[0] > 0 and b == pytest.approx(0.0, abs=1e-6)  # symmetric data: boundary at 0


def test_folds_are_stratified_and_partition_the_samples() -> None:
    y = np.array([0] * 10 + [1] * 5)
    folds = stratified_folds(y, 5, seed=2)
    assert np.array_equal(np.sort(np.concatenate(folds)), np.arange(15))
    assert all((y[f] == 0).sum() == 2 and (y[f] == 1).sum() == 1 for f in folds)


def test_separable_domains_score_one_and_identical_ones_score_near_chance() -> None:
    rng = np.random.default_rng(1)
    apart = np.concatenate([rng.normal(-3, 1, (40, 5)), rng.normal(3, 1, (40, 5))])
    labels = np.repeat([0, 1], 40)
    assert cross_validated_accuracy(apart, labels).accuracy == 1.0
    same = cross_validated_accuracy(rng.normal(0, 1, (200, 5)), np.repeat([0, 1], 100))
    assert same.chance == 0.5 and abs(same.accuracy - 0.5) < 0.12
    with pytest.raises(ValueError, match="5 samples of each class"):
        cross_validated_accuracy(apart[:44], labels[:44])


def test_run_real_vs_gta_features(tmp_path) -> None:
    rng = np.random.default_rng(2)
    apart = load_run(make_run(tmp_path, "table2_hmr_plus_bt_mini", run_id="apart",
                              features=blobs(rng, {"real_indoor": -3.0, "gta": 3.0, TEST_SET: 0.0})))
    mixed = load_run(make_run(tmp_path, "table2_hmr_plus_bt_mini", run_id="mixed",
                              features=blobs(rng, {"real_indoor": 0.0, "gta": 0.0, TEST_SET: 0.0}, n=60)))
    assert domain_separability(apart).accuracy == 1.0
    assert domain_separability(mixed).accuracy < 0.75
    assert domain_separability(apart, "real_indoor", TEST_SET).counts == (20, 20)
    with pytest.raises(KeyError, match="no features of group or domain 'coco'"):
        domain_separability(apart, "coco")

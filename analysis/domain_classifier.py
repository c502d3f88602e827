"""How separable two domains are in a run's feature space: a cross-validated linear classifier.

The paper reads the domain gap off UMAP pictures (Fig. 7); a number says the same thing without
the eye: train an L2-regularised logistic regression to tell, say, real from GTA features and
report its held-out accuracy. Near the majority-class rate = the backbone maps both domains to
the same place; near 1 = the domains are linearly separable (a wide gap).

Pure numpy + scipy's L-BFGS: features are standardised with the training fold's mean and
standard deviation, the objective is ``mean log-loss + l2 / 2 * |w|^2`` (bias not penalised),
and the folds are stratified and seeded.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from analysis.rundirs import Run
from analysis.umap_features import collect_features


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> tuple[np.ndarray, float]:
    """Weights (F,) and bias minimising mean log-loss + l2/2 |w|^2 for labels y in {0, 1}."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.shape != (len(x),) or not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"fit_logistic: x must be (N, F) and y (N,) of 0/1; got {x.shape} and {y.shape}")
    n, width = x.shape

    def loss_and_gradient(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:width], params[width]
        z = x @ w + b
        # log-loss = -[y log s(z) + (1-y) log s(-z)], computed stably
        loss = -np.mean(y * log_expit(z) + (1 - y) * log_expit(-z)) + 0.5 * l2 * w @ w
        residual = (expit(z) - y) / n
        return loss, np.concatenate([x.T @ residual + l2 * w, [residual.sum()]])

    result = minimize(loss_and_gradient, np.zeros(width + 1), jac=True, method="L-BFGS-B",
                      options={"maxiter": 500, "gtol": 1e-8})
    return result.x[:width], float(result.x[width])


def stratified_folds(y: np.ndarray, folds: int, seed: int = 0) -> list[np.ndarray]:
    """Test indices of ``folds`` folds; each class is shuffled and dealt round-robin."""
    rng = np.random.default_rng(seed)
    buckets: list[list[int]] = [[] for _ in range(folds)]
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        for i, member in enumerate(members):
            buckets[i % folds].append(int(member))
    return [np.sort(np.array(b, dtype=np.int64)) for b in buckets]


@dataclass(frozen=True)
class ClassifierResult:
    accuracy: float  # mean held-out accuracy over the folds
    std: float  # its standard deviation over the folds
    fold_accuracies: np.ndarray
    chance: float  # accuracy of always answering the larger class
    counts: tuple[int, int]  # samples of class 0 and class 1


def cross_validated_accuracy(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0,
                             l2: float = 1e-2) -> ClassifierResult:
    """Held-out accuracy of `fit_logistic` over stratified folds."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y).astype(np.int64)
    counts = (int((y == 0).sum()), int((y == 1).sum()))
    if min(counts) < folds:
        raise ValueError(f"{folds}-fold cross-validation needs >= {folds} samples of each class; got {counts}")
    scores = []
    for test in stratified_folds(y, folds, seed):
        train = np.setdiff1d(np.arange(len(y)), test)
        mean, std = x[train].mean(axis=0), x[train].std(axis=0)
        std[std == 0] = 1.0  # constant features carry no information; keep them finite
        w, b = fit_logistic((x[train] - mean) / std, y[train], l2)
        predicted = ((x[test] - mean) / std @ w + b) > 0
        scores.append(float(np.mean(predicted == (y[test] == 1))))
    scores_array = np.array(scores)
    return ClassifierResult(float(scores_array.mean()), float(scores_array.std()), scores_array,
                            max(counts) / len(y), counts)


def domain_separability(run: Run, first: str = "real", second: str = "synthetic", folds: int = 5,
                        seed: int = 0, l2: float = 1e-2) -> ClassifierResult:
    """Accuracy of telling ``first`` from ``second`` features of one run. Each is a group
    ('real', 'synthetic', 'eval') or a domain label; features as in `collect_features`."""
    table = collect_features(run, seed=seed)

    def rows(name: str) -> np.ndarray:
        chosen = (table.group == name) | (table.domain == name)
        if not chosen.any():
            raise KeyError(f"{run.path}: no features of group or domain '{name}'; it has domains "
                           f"{sorted(set(table.domain))} (train sources' features come from experiments.evaluate)")
        return chosen

    a, b = rows(first), rows(second)
    both = a | b
    return cross_validated_accuracy(table.features[both], b[both].astype(np.int64), folds, seed, l2)

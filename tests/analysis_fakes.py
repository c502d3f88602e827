"""Fabricated run directories for the analysis tests (tests/test_analysis_*.py).

`make_run` writes what ``gtahuman.train.train`` leaves behind, with numbers the test chooses:
``config.yaml`` from the repository's real experiment configs (``load_config``), ``metrics.json``
with the given test summaries, and optionally ``predictions/<set>.npz``, features (in
``predictions/`` or in an ``evaluations/<set>-miniworld/`` folder as ``experiments.evaluate``
writes them) and ``train_factors.npz``.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from gtahuman.config import load_config, to_yaml

TEST_SET = "wild_test"


def make_run(root: Path, experiment: str, *, seed: int = 0, overrides: Sequence[str] = (), run_id: str | None = None,
             pa_mpjpe: float = 60.0, mpjpe: float | None = None, test_set: str = TEST_SET,
             predictions: Mapping[str, Mapping[str, np.ndarray]] | None = None,
             features: Mapping[str, np.ndarray] | None = None,
             train_factors: Mapping[str, np.ndarray] | None = None, toy: bool = True) -> Path:
    """A finished run directory ``root/<experiment>/<run_id>`` (default run id ``seed<seed>``).

    ``predictions`` (set -> columns) and ``features`` (set -> (K, F) array) of test sets go to
    ``predictions/``, of other sets to ``evaluations/<set>-miniworld/``. ``train_factors``: the
    arrays of ``train_factors.npz``.
    """
    cfg = copy.deepcopy(_config(experiment, str(root), tuple(overrides)))
    OmegaConf.update(cfg, "run.seed", seed)
    path = root / experiment / (run_id or f"seed{seed}")
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(to_yaml(cfg))
    summary = {"pa_mpjpe": pa_mpjpe, "mpjpe": mpjpe if mpjpe is not None else pa_mpjpe + 40.0, "pve": None,
               "evaluated": 10.0, "toy_body_model": float(toy)}
    metrics = {"experiment": experiment, "test": {test_set: summary}, "protocols": {test_set: "miniworld"},
               "mean_pose_baseline": {test_set: {"pa_mpjpe": 80.0}}, "global_step": 10,
               "body_model_is_toy": toy, "tested_checkpoint": "best.ckpt"}
    (path / "metrics.json").write_text(json.dumps(metrics))
    def folder(set_name: str) -> Path:
        where = path / "predictions" if set_name in cfg.data.test else path / "evaluations" / f"{set_name}-miniworld"
        where.mkdir(parents=True, exist_ok=True)
        return where

    for set_name, columns in (predictions or {}).items():
        np.savez(folder(set_name) / f"{set_name}.npz", **columns)
    for set_name, array in (features or {}).items():
        np.savez(folder(set_name) / f"{set_name}_features.npz", features=np.asarray(array, np.float32),
                 feature_sample_id=np.arange(len(array)))
    if train_factors is not None:
        np.savez(path / "train_factors.npz", **train_factors)
    return path


@lru_cache(maxsize=64)
def _config(experiment: str, root: str, overrides: tuple[str, ...]) -> DictConfig:
    """Building a config takes ~0.3 s; a study fabricates many runs of few configs."""
    return load_config([f"experiment={experiment}", f"run.output_root={root}", f"run.cache_dir={root}/cache",
                        *overrides])


def prediction_columns(factors: Mapping[str, np.ndarray], pa_mpjpe: np.ndarray) -> dict[str, np.ndarray]:
    """``predictions/<set>.npz`` columns: ids, errors and ``factor_<name>`` for the given factors."""
    n = len(pa_mpjpe)
    columns = {"sample_id": np.arange(n), "pa_mpjpe": np.asarray(pa_mpjpe, np.float64),
               "mpjpe": np.asarray(pa_mpjpe, np.float64) + 40.0, "pve": np.full(n, np.nan)}
    columns.update({f"factor_{name}": np.asarray(values, np.float32) for name, values in factors.items()})
    return columns


def blobs(rng: np.random.Generator, centres: Mapping[str, float], n: int = 20, width: int = 8) -> dict[str, np.ndarray]:
    """Features per set: Gaussian clouds around ``centre`` on every axis (unit spread)."""
    return {name: rng.normal(centre, 1.0, size=(n, width)) for name, centre in centres.items()}

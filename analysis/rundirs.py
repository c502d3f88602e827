"""Finished run directories, read back for analysis (``gtahuman.train.train`` writes them).

A run directory ``<output_root>/<experiment>/<run_id>/`` holds ``config.yaml`` (resolved config),
``metrics.json`` (test summary per set in mm, the baselines ``constant_baseline`` (the training
data's best constant) and ``mean_pose_baseline`` (SMPL mean parameters), protocols, ...),
``predictions/<set>.npz`` (per sample: ``sample_id``, errors ``mpjpe``/``pa_mpjpe``/``pve``, ``orient_deg``,
``factor_<name>`` columns, ...) and ``predictions/<set>_features.npz`` (``features`` (K, F),
``feature_sample_id`` (K,)). ``experiments.evaluate`` adds ``evaluations/<set>-<protocol>/``
folders with the same files, e.g. for train sources, whose features Fig. 7 needs.

`load_run` reads one directory, `find_runs` every finished run under some paths (a sweep's
trial directories are ordinary run directories), and `describe_run` says what a run is in the
paper's terms (method, mixture, supervision, adaptation, amounts), read from its config.
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from gtahuman.config import load_run_config
from gtahuman.rundir import CONFIG_FILE, METRICS_FILE

log = logging.getLogger(__name__)

ERROR_METRICS = ("mpjpe", "pa_mpjpe", "pve")
# metrics.json keys of the baselines: the train data's best constant (runs since it was added)
# and the SMPL mean parameters (every run)
CONSTANT_BASELINE, MEAN_POSE_BASELINE = "constant_baseline", "mean_pose_baseline"
FEATURES_SUFFIX = "_features.npz"


def factor_key(factor: str) -> str:
    """Column name of a factor in ``predictions/<set>.npz``."""
    return f"factor_{factor}"


class Run:
    """One finished run directory: its config (validated), metrics and per-sample files."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        for name in (CONFIG_FILE, METRICS_FILE):
            if not (self.path / name).is_file():
                raise FileNotFoundError(f"{self.path / name} not found: expected a finished run directory written "
                                        f"by gtahuman.train.train ({CONFIG_FILE} + {METRICS_FILE})")
        self.config: DictConfig = load_run_config(self.path / CONFIG_FILE)
        try:
            self.metrics: dict[str, Any] = json.loads((self.path / METRICS_FILE).read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{self.path / METRICS_FILE}: not valid JSON ({err})") from None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    # ------------------------------------------------------------------ identity
    @property
    def experiment(self) -> str:
        return str(self.metrics.get("experiment") or self.config.experiment)

    @property
    def seed(self) -> int:
        return int(self.config.run.seed)

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def label(self) -> str:
        """Short name for legends: ``<experiment>/<run_id>``."""
        return f"{self.experiment}/{self.run_id}"

    @property
    def is_toy(self) -> bool:
        """Numbers from the toy body model (every report must say so)."""
        return bool(self.metrics.get("body_model_is_toy", False))

    # ------------------------------------------------------------------ metrics
    def test_sets(self) -> list[str]:
        return list(self.metrics.get("test", {}))

    def default_test_set(self) -> str:
        sets = self.test_sets()
        if not sets:
            raise KeyError(f"{self.path / METRICS_FILE}: key 'test' holds no test set; the run was trained "
                           "without data.test")
        return sets[0]

    def test_metric(self, set_name: str, metric: str) -> float:
        """Summary value (mm) of ``metric`` on ``set_name``; NaN when the protocol lacks it."""
        summaries = self.metrics.get("test", {})
        if set_name not in summaries:
            raise KeyError(f"{self.path / METRICS_FILE}: no test set '{set_name}' under 'test'; "
                           f"it has: {', '.join(summaries) or '(none)'}")
        return finite_or_nan(summaries[set_name].get(metric))

    def baseline_metric(self, set_name: str, metric: str, baseline: str = CONSTANT_BASELINE) -> float:
        """A baseline's summary value of ``metric`` on ``set_name`` (``baseline``: CONSTANT_BASELINE
        or MEAN_POSE_BASELINE); NaN when the run predates that baseline or the protocol lacks it."""
        return finite_or_nan(self.metrics.get(baseline, {}).get(set_name, {}).get(metric))

    def ratio_to_constant(self, set_name: str, metric: str) -> float:
        """Trained / constant-baseline value of ``metric`` (the project's bar: <= 0.8 for MPJPE
        and PA-MPJPE); NaN when either is missing."""
        constant = self.baseline_metric(set_name, metric)
        return self.test_metric(set_name, metric) / constant if constant > 0 else float("nan")

    # ------------------------------------------------------------------ per-sample files
    def _per_set_files(self, suffix: str) -> dict[str, Path]:
        """Set name -> ``<set><suffix>``: the latest ``evaluations/*/`` (what ``experiments.evaluate``
        wrote, e.g. for train sources, or a re-evaluation after the data gained a factor column)
        first, then ``predictions/`` (what training wrote)."""
        found: dict[str, Path] = {}
        evaluations = sorted((self.path / "evaluations").glob("*/"), key=lambda p: (-p.stat().st_mtime_ns, p.name))
        for folder in [*evaluations, self.path / "predictions"]:
            for path in sorted(folder.glob(f"*{suffix}")):
                if suffix == FEATURES_SUFFIX or not path.name.endswith(FEATURES_SUFFIX):
                    found.setdefault(path.name[: -len(suffix)], path)
        return found

    def prediction_sets(self) -> list[str]:
        return sorted(self._per_set_files(".npz"))

    def predictions(self, set_name: str, required: Sequence[str] = ("sample_id",)) -> dict[str, np.ndarray]:
        """Per-sample columns of one set (the latest evaluation's ``<set>.npz``, else
        ``predictions/<set>.npz``); each of ``required`` must be there."""
        files = self._per_set_files(".npz")
        if set_name not in files:
            raise FileNotFoundError(f"{self.path}: no per-sample predictions of set '{set_name}' (looked in "
                                    f"predictions/ and evaluations/*/); it has: {', '.join(sorted(files)) or '(none)'}")
        path = files[set_name]
        with np.load(path, allow_pickle=False) as data:
            columns = {key: data[key] for key in data.files}
        for key in required:
            if key not in columns:
                raise KeyError(f"{path}: no column '{key}'; it has: {', '.join(sorted(columns))}")
        return columns

    def feature_files(self) -> dict[str, Path]:
        """Set name -> its features file: the latest ``evaluations/*/`` first, then ``predictions/``."""
        return self._per_set_files(FEATURES_SUFFIX)

    def features(self, set_name: str) -> tuple[np.ndarray, np.ndarray]:
        """(features (K, F) float32, their sample ids (K,)) of ``set_name``."""
        files = self.feature_files()
        if set_name not in files:
            raise FileNotFoundError(f"{self.path}: no features of set '{set_name}' (looked in predictions/ and "
                                    f"evaluations/*/); it has features of: {', '.join(sorted(files)) or '(none)'}")
        with np.load(files[set_name], allow_pickle=False) as data:
            for key in ("features", "feature_sample_id"):
                if key not in data.files:
                    raise KeyError(f"{files[set_name]}: no array '{key}'; it has: {', '.join(data.files)}")
            features, ids = data["features"], data["feature_sample_id"]
        if features.ndim != 2 or len(features) != len(ids):
            raise ValueError(f"{files[set_name]}: 'features' must be (K, F) with K = len(feature_sample_id); "
                             f"got {features.shape} and {ids.shape}")
        return features.astype(np.float32), ids.astype(np.int64)

    # ------------------------------------------------------------------ data sets of the config
    def set_config(self, set_name: str) -> tuple[str, DictConfig | None]:
        """(split, source config) of a named set: 'test', 'val', 'train' or 'unknown'."""
        for split in ("test", "val", "train"):
            if set_name in self.config.data[split]:
                return split, self.config.data[split][set_name]
        return "unknown", None

    def domain_of(self, set_name: str) -> str:
        """A set's domain label (``data.<split>.<name>.domain``, default the set's name)."""
        _, source = self.set_config(set_name)
        return str(source.domain) if source is not None and source.domain else set_name

    def group_of(self, set_name: str) -> str:
        """'real' or 'synthetic' for train sources (their role), 'eval' for val/test sets."""
        split, source = self.set_config(set_name)
        return str(source.role) if split == "train" and source is not None else "eval"

    @cached_property
    def launch_dir(self) -> Path | None:
        """The directory the run was started from, when ``run.output_root`` was relative."""
        root = Path(str(self.config.run.output_root))
        if root.is_absolute():
            return None
        parts = [p for p in root.parts if p != "."]
        resolved = self.path.resolve()
        depth = len(parts) + 2  # <output_root parts>/<experiment>/<run_id>
        if len(resolved.parts) <= depth or list(resolved.parts[-depth:-2]) != parts:
            return None
        return resolved.parents[depth - 1]

    def resolve_path(self, value: str | os.PathLike) -> Path:
        """A path of the config: relative ones are relative to where the run was started (or the
        current directory, when that one exists and the other does not)."""
        path = Path(value)
        if path.is_absolute():
            return path
        candidates = [base / path for base in (self.launch_dir, Path.cwd()) if base is not None]
        return next((c for c in candidates if c.exists()), candidates[0])


def load_run(path: str | os.PathLike) -> Run:
    return Run(path)


def find_runs(paths: Iterable[str | os.PathLike]) -> list[Run]:
    """Every finished run at or under ``paths`` (sorted by path). A folder with config.yaml but no
    metrics.json (unfinished, or still training) is skipped with a warning."""
    runs: dict[Path, Run] = {}
    for given in paths:
        given = Path(given)
        if not given.exists():
            raise FileNotFoundError(f"{given}: no such run directory or folder")
        if (given / CONFIG_FILE).is_file():
            runs.setdefault(given.resolve(), Run(given))
            continue
        for config in sorted(given.rglob(CONFIG_FILE)):
            folder = config.parent
            if not (folder / METRICS_FILE).is_file():
                log.warning("skipping %s: no %s (unfinished run)", folder, METRICS_FILE)
                continue
            runs.setdefault(folder.resolve(), Run(folder))
    return [runs[key] for key in sorted(runs)]


# ---------------------------------------------------------------------------------- descriptor
ADAPTATION_LABELS = {"dann": "DANN (Ganin et al.)", "jan": "JAN", "rsd": "RSD (Chen et al.)",
                     "cyclegan": "CycleGAN"}


@dataclass(frozen=True)
class RunDescriptor:
    """What a run is, in the paper's terms; every field is read from its config."""

    experiment: str  # without the mini world's "_mini" suffix
    seed: int
    task: str  # image | video (the image tables take image runs only)
    method: str  # HMR | HMR+ | SPIN | PARE
    mixture: str  # "-" (real only, or evaluated without training) | BT | FT | GTA only
    has_real: bool
    has_synthetic: bool
    backbone: str
    synthetic_supervision: str | None  # what the synthetic sources are supervised with (both | keypoints | smpl)
    adaptation: str | None  # dann | jan | rsd | cyclegan | None
    sampler: str
    real_ratio: float | None
    amount_total: int | None  # amount sampler: samples per epoch
    amount_multiple: float | None  # amount sampler: multiple of the real pool
    evaluated_only: bool  # trainer.max_steps == 0: a published model tested as it is
    toy: bool
    world: str = "-"  # the mini world's variant (standard, gta_studio, ...); "-" for the user's own data
    fixed_synthetic: bool = False  # amount sampler: the synthetic part is a fixed, nested subset (an amount)

    @property
    def gta_multiple(self) -> float | None:
        """Fig. 8's x: synthetic samples per real sample (0 without synthetic sources)."""
        if not self.has_synthetic:
            return 0.0 if self.has_real else None
        if self.sampler == "amount" and self.real_ratio:
            return (1.0 - self.real_ratio) / self.real_ratio
        return None


def backbone_label(cfg: Any) -> str:
    """The backbone as tables show it; a regressor with a 2D keypoint branch (arch hmr_kp, the
    mini world's from-scratch model) is not the paper's HMR, and its rows say so."""
    backbone = str(cfg.model.backbone)
    return f"{backbone} + keypoint branch" if str(cfg.model.arch) == "hmr_kp" else backbone


def describe_run(run: Run) -> RunDescriptor:
    cfg = run.config
    roles = {name: str(src.role) for name, src in cfg.data.train.items()}
    synthetic = [name for name, role in roles.items() if role == "synthetic"]
    has_real, has_synthetic = len(synthetic) < len(roles), bool(synthetic)
    evaluated_only = int(cfg.trainer.max_steps) == 0
    experiment = run.experiment.removesuffix("_mini")
    if str(cfg.model.arch) == "pare" or str(cfg.model.init_format) == "pare":
        method = "PARE"
    elif str(cfg.model.init_format) == "spin" or experiment.startswith(("table2_spin", "table5_spin")):
        method = "SPIN"  # the mini world's SPIN rows start from an HMR+ run (format auto): named by the row
    else:
        method = "HMR" if cfg.model.variant == "hmr" else "HMR+"
    if evaluated_only or not has_synthetic:
        mixture = "-"
    elif cfg.model.init_checkpoint:
        mixture = "FT"
    else:
        mixture = "BT" if has_real else "GTA only"
    supervised = cfg.model.supervision_sources
    gta_supervision = None
    if has_synthetic:
        applies = supervised is None or any(name in supervised for name in synthetic)
        gta_supervision = str(cfg.model.supervision) if applies else "both"
    adaptation = str(cfg.adaptation.method) if cfg.adaptation.method not in (None, "none") else None
    if adaptation is None and cfg.adaptation.sim2real_checkpoint:
        adaptation = "cyclegan"
    args = cfg.data.sampler_args
    amount = cfg.data.sampler == "amount"
    total = args.get("total") if amount else None
    multiple = args.get("total_multiple") if amount else None
    if amount and args.get("synthetic_multiple") is not None:  # Fig. 8's k: all real rows + k x as much GTA
        multiple = 1.0 + float(args.get("synthetic_multiple"))
    ratio = cfg.data.real_ratio
    world = str(cfg.data.get("miniworld_variant", "standard")) if cfg.data.get("miniworld") else "-"
    return RunDescriptor(
        experiment=experiment, seed=run.seed, task=str(cfg.task), method=method, mixture=mixture, has_real=has_real,
        has_synthetic=has_synthetic, backbone=backbone_label(cfg), synthetic_supervision=gta_supervision,
        adaptation=adaptation, sampler=str(cfg.data.sampler), real_ratio=None if ratio is None else float(ratio),
        amount_total=None if total is None else int(total),
        amount_multiple=None if multiple is None else float(multiple),
        evaluated_only=evaluated_only, toy=run.is_toy, world=world,
        fixed_synthetic=bool(amount and args.get("fixed_synthetic_subset", False)))


def finite_or_nan(value: Any) -> float:
    """metrics.json writes NaN as null: back to NaN (and any number to float)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return number if math.isfinite(number) else float("nan")

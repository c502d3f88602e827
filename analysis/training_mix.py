"""The factors of a run's training mix: where its samples lie in camera angle, pose, occlusion.

Fig. 9 plots the error per bin next to the data density per bin; the density that explains the
error is the one the model was trained on, so each training sample is weighted by its source's
share of an epoch divided by the source's size. The factors come from, in order:

1. ``<run>/train_factors.npz`` when the run wrote one: ``source`` (N,) train-source names and one
   (N,) array per factor column (``cam_elevation``, ... as in the sample index);
2. the prepared sample indices of the train sources under ``<run.cache_dir>/indices/``: each
   index's manifest records the dataset name, its kind and the source path it was prepared from,
   which must equal the run config's (so a cache holding several worlds is never mixed up).

Shares are what the run's samplers drew: the samples seen per source in ``<run>/budget.json``
(every run writes it), or, for a run from before budget.json, the same count redone from its
config (`gtahuman.data.budget.config_budget`: the samplers the data module builds). The factor
samplers (``scarcity``, ``balance``) also reweight inside a source; within a source every sample
weighs the same here.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analysis.rundirs import Run
from gtahuman.data.budget import BUDGET_FILE, Budget, config_budget
from gtahuman.data.index import MANIFEST, SampleIndex
from gtahuman.data.mixing import MixPart

log = logging.getLogger(__name__)

TRAIN_FACTORS_FILE = "train_factors.npz"


@dataclass(frozen=True)
class TrainingMix:
    """Per-source factor columns and each source's share of an epoch."""

    factors: dict[str, dict[str, np.ndarray]]  # source name -> factor -> (n_source,) values
    shares: dict[str, float]  # source name -> fraction of an epoch (sums to 1)
    origin: str  # where the factors were read from (for captions)

    def weighted(self, factor: str) -> tuple[np.ndarray, np.ndarray]:
        """(values, weights) of all training samples; a sample's weight = share / source size."""
        values, weights = [], []
        for name, columns in self.factors.items():
            if factor not in columns:
                raise KeyError(f"training factors ({self.origin}): source '{name}' has no factor '{factor}'; "
                               f"it has: {', '.join(columns)}")
            column = np.asarray(columns[factor], dtype=np.float64)
            values.append(column)
            weights.append(np.full(len(column), self.shares[name] / max(len(column), 1)))
        return np.concatenate(values), np.concatenate(weights)


def source_shares(run: Run, sizes: Mapping[str, int],
                  factors: Mapping[str, Mapping[str, np.ndarray]] | None = None) -> dict[str, float]:
    """Fraction of the run's training samples each train source supplied: the run's
    ``budget.json`` (counted from its samplers before it trained) when it wrote one, else the same
    count for its config over sources of ``sizes`` rows (`gtahuman.data.budget.config_budget`;
    a factor sampler also needs each source's ``factors`` columns)."""
    file = run.path / BUDGET_FILE
    if file.is_file():
        seen = Budget.load(file).samples_seen
    else:
        cfg = run.config
        parts = [MixPart(name, int(sizes[name]), str(src.role), (factors or {}).get(name))
                 for name, src in cfg.data.train.items()]
        try:
            seen = config_budget(cfg, parts).samples_seen
        except ValueError as err:
            raise ValueError(f"{run.path}: cannot count what the run's samplers drew ({err})") from err
    total = sum(seen.values())
    if total <= 0:
        raise ValueError(f"{run.path}: the run's samplers draw no training sample ({file.name if file.is_file() else 'config'})")
    return {name: count / total for name, count in seen.items()}


def locate_index(run: Run, name: str) -> Path:
    """The prepared index of train source ``name``: the one under ``<cache_dir>/indices/`` whose
    manifest names this dataset, kind and source path (the newest if several)."""
    source = run.config.data.train[name]
    indices = run.resolve_path(str(run.config.run.cache_dir)) / "indices"
    wanted = run.resolve_path(str(source.path)).resolve()
    matches = []
    for manifest in indices.glob(f"{name}-*/{MANIFEST}"):
        try:
            meta = json.loads(manifest.read_text())["meta"]
            prepared = meta["prepare"]
            same = (meta.get("dataset") == name and prepared["settings"]["kind"] == str(source.kind)
                    and Path(prepared["source"]).resolve() == wanted)
        except (KeyError, TypeError, json.JSONDecodeError):
            continue  # not an index this suite prepared: not ours to read
        if same:
            matches.append(manifest.parent)
    if not matches:
        raise FileNotFoundError(
            f"no prepared index of train source '{name}' (kind {source.kind}, path {wanted}) under {indices}; "
            f"expected {indices}/{name}-<key>/{MANIFEST} (written when the run prepared its data), or "
            f"{run.path / TRAIN_FACTORS_FILE}")
    if len(matches) > 1:
        log.warning("several indices of '%s' match %s; using the newest", name, wanted)
    return max(matches, key=lambda p: (p / MANIFEST).stat().st_mtime)


def _from_file(run: Run, path: Path) -> dict[str, dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as data:
        if "source" not in data.files:
            raise KeyError(f"{path}: no array 'source' (train-source name per sample); it has: {', '.join(data.files)}")
        names = data["source"].astype(str)
        columns = {key: data[key] for key in data.files if key != "source"}
    unknown = sorted(set(names) - set(run.config.data.train))
    if unknown:
        raise KeyError(f"{path}: sources {unknown} are not train sources of the run's config "
                       f"({', '.join(run.config.data.train)})")
    return {name: {k: v[names == name] for k, v in columns.items()} for name in run.config.data.train}


def training_mix(run: Run, factors: tuple[str, ...] | None = None) -> TrainingMix:
    """The factors of every train source of ``run`` and their shares of an epoch (``factors``:
    index columns to read, default all of ``gtahuman.data.datamodule.FACTOR_COLUMNS``)."""
    if factors is None:
        from gtahuman.data.datamodule import FACTOR_COLUMNS  # imports lightning: only when needed

        factors = FACTOR_COLUMNS
    file = run.path / TRAIN_FACTORS_FILE
    if file.is_file():
        per_source, origin = _from_file(run, file), str(file)
    else:
        per_source, dirs = {}, []
        for name in run.config.data.train:
            directory = locate_index(run, name)
            index = SampleIndex.load(directory, mmap=True, verify="fast")
            per_source[name] = {f: np.asarray(index[f], dtype=np.float64) for f in factors}
            dirs.append(directory.name)
        origin = f"indices {', '.join(dirs)}"
    sizes = {name: len(next(iter(cols.values()), ())) for name, cols in per_source.items()}
    return TrainingMix(per_source, source_shares(run, sizes, per_source), origin)

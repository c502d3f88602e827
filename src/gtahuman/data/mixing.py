"""Which sampler draws which sources: the training mixture from sizes, roles and the config.

One function, `build_train_samplers`, turns the train sources (name, rows, role, and their factor
columns when a sampler needs them) plus the data config (mode, sampler, its arguments, the epoch
length) into the samplers training draws from: ``{'train': ...}``, or ``{'source': real,
'target': synthetic}`` in adaptation mode, where the target cycles through its pool for the
source's epoch length (a size-weighted ``mixture``, seed + 1). `MixedDataModule` calls it with
its datasets; `experiments.design` calls it with dataset sizes alone (no files), so that a
table's budgets can be read before anyone holds the data (`gtahuman.data.budget`).
"""
from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from gtahuman.data.sampler_plans import EpochSampler
from gtahuman.data.samplers import SAMPLERS

# Numeric per-sample factors offered to the factor samplers (categorical codes are per-index
# vocabularies and would need recoding to be comparable across sources).
# Adaptation mode: 'split' halves the global batch between the real and the synthetic loader, so
# a step sees as many samples as a blended step, real and synthetic 1:1, and an epoch is as many
# steps as the blended run's (a DA row then differs from its BT baseline in the objective alone);
# 'each' gives each loader the whole batch (twice the samples per step, the epoch set by the real
# side alone: the uncontrolled protocol, kept for reproducing it).
ADAPTATION_BATCHES = ("split", "each")
FACTOR_COLUMNS = ("cam_elevation", "cam_azimuth", "pose_dist_mean", "pose_dist_tpose", "occluded_ratio",
                  "self_occluded_ratio", "truncation", "daytime_hours")


@dataclass(frozen=True)
class MixPart:
    """One train source as the mixture sees it: its name, rows, role ('real' | 'synthetic') and,
    for the factor samplers, its index (anything with the factor columns); None when only sizes
    are known."""

    name: str
    size: int
    role: str = "real"
    index: Any = None


class ConcatenatedFactors(Mapping):
    """Factor name -> values over the concatenated parts, concatenated only when asked."""

    def __init__(self, parts: Sequence[MixPart]):
        self._parts = parts

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in FACTOR_COLUMNS:
            raise KeyError(name)
        missing = [p.name for p in self._parts if p.index is None]
        if missing:
            raise ValueError(f"the sampler reads the factor '{name}', which needs the data: no index for "
                             f"{', '.join(missing)} (sizes alone were given)")
        return np.concatenate([np.asarray(p.index[name], np.float64) for p in self._parts])

    def __iter__(self) -> Iterator[str]:
        return iter(FACTOR_COLUMNS)

    def __len__(self) -> int:
        return len(FACTOR_COLUMNS)


def loader_batch(batch: int, mode: str, adaptation_batch: str) -> int:
    """Samples per batch of each train loader, for a (per-rank) batch of ``batch``: half of it per
    domain in adaptation mode with ``adaptation_batch='split'``, else all of it."""
    if mode != "adaptation" or adaptation_batch == "each":
        return batch
    if batch % 2:
        raise ValueError(f"MixedDataModule: adaptation_batch='split' halves the per-rank batch ({batch}) between "
                         "the real and the synthetic loader; use an even data.batch_size per rank")
    return batch // 2


def sampler_arguments(sampler: str, sampler_args: Mapping[str, Any], real_ratio: float | None, mode: str,
                      sources: Sequence[tuple[str, str, float]]) -> dict[str, Any]:
    """The configured sampler's arguments completed from the data config: ``real_ratio`` becomes
    the synthetic share's complement over the sources with role 'synthetic' (not in adaptation
    mode, where the domains meet 1:1 batch by batch), and the ``mixture`` sampler's partition is
    the sources' ``weight`` (inside each role group with a real_ratio, else across all); the
    ``amount`` sampler's ``real_partition: weights`` becomes the real sources' weights (HMR+'s
    real mix), ``pooled`` none (uniform over the pooled real rows).
    ``sources``: (name, role, weight) per train source, in order."""
    args = dict(sampler_args)
    # Adaptation: the configured sampler draws the source (real) batches only; the target
    # (synthetic) batches are as large, so the domains meet 1:1 whatever real_ratio says.
    drawn = [s for s in sources if s[1] == "real"] if mode == "adaptation" else list(sources)
    if real_ratio is not None and mode != "adaptation":
        args.update(real_ratio=real_ratio, synthetic_sources=[i for i, s in enumerate(sources) if s[1] == "synthetic"])
    if sampler == "mixture" and "partition" not in args:
        args["partition"] = [float(weight) for _, _, weight in drawn]
    if sampler == "amount" and isinstance(args.get("real_partition"), str):
        choice = args.pop("real_partition")
        if choice not in ("weights", "pooled"):
            raise ValueError(f"data.sampler_args.real_partition: 'weights', 'pooled' or a list of weights, got {choice!r}")
        if choice == "weights":
            args["real_partition"] = [float(weight) for _, role, weight in sources if role != "synthetic"]
    return args


def configured_sampler_arguments(data_cfg: Any, sources: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """`sampler_arguments` for a config's ``data`` section and its train sources as (name, role),
    in order: what the data module and the budget of a config both draw with."""
    return sampler_arguments(data_cfg.sampler, OmegaConf.to_container(data_cfg.sampler_args, resolve=True),
                             data_cfg.real_ratio, data_cfg.mode,
                             [(name, role, float(data_cfg.train[name].weight)) for name, role in sources])


def build_sampler(name: str, args: Mapping[str, Any], parts: Sequence[MixPart], seed: int, world: int = 1,
                  rank: int = 0, mode: str = "blended") -> EpochSampler:
    """The registered sampler ``name`` over ``parts`` (concatenated in order)."""
    reserved = {"sources", "seed", "num_replicas", "rank", "source_names"} & set(args)
    if reserved:
        raise ValueError(f"MixedDataModule: sampler_args may not set {sorted(reserved)}; the DataModule sets "
                         "them (seed through its own 'seed' argument)")
    sources = np.repeat(np.arange(len(parts), dtype=np.int32), [p.size for p in parts])
    kwargs = dict(args, sources=sources, seed=seed, num_replicas=world, rank=rank,
                  source_names=[p.name for p in parts])
    accepted = inspect.signature(SAMPLERS.get(name)).parameters
    if "factors" in accepted:
        kwargs.setdefault("factors", ConcatenatedFactors(parts))
    if "epoch_length" in kwargs and "epoch_length" not in accepted:
        raise ValueError(f"MixedDataModule: sampler '{name}' takes no epoch_length (mode {mode!r}); "
                         "use 'mixture' or 'balance', or set the amount through the sampler's own arguments")
    return SAMPLERS.build(name, **kwargs)


def train_groups(parts: Sequence[MixPart], mode: str) -> dict[str, list[MixPart]]:
    """``{'train': parts}``, or in adaptation mode the real ('source') and synthetic ('target') parts."""
    if mode != "adaptation":
        return {"train": list(parts)}
    groups = {"source": [p for p in parts if p.role == "real"], "target": [p for p in parts if p.role == "synthetic"]}
    for key, role in (("source", "real"), ("target", "synthetic")):
        if not groups[key]:
            raise ValueError(f"MixedDataModule: mode 'adaptation' needs at least one train source with role "
                             f"'{role}' (the {key} domain); got roles {[p.role for p in parts]}")
    return groups


def build_train_samplers(parts: Sequence[MixPart], mode: str, sampler: str, sampler_args: Mapping[str, Any],
                         epoch_length: int | None, seed: int, world: int = 1, rank: int = 0,
                         adaptation_batch: str = "split") -> dict[str, EpochSampler]:
    """The train samplers, keyed as the loaders are ('train', or 'source' and 'target'). With
    ``adaptation_batch='split'`` the source epoch is half of what a blended epoch over all the
    parts would be (``epoch_length``, else the largest part), drawn at half the batch: the same
    number of steps per epoch as the blended run."""
    groups = train_groups(parts, mode)
    args = dict(sampler_args)
    if "target" in groups and adaptation_batch == "split" and "epoch_length" in inspect.signature(
            SAMPLERS.get(sampler)).parameters and "epoch_length" not in args:
        blended = epoch_length if epoch_length is not None else max(p.size for p in parts)
        args["epoch_length"], epoch_length = blended // 2, None
    if epoch_length is not None:
        if "epoch_length" in args:
            raise ValueError("MixedDataModule: epoch_length is given both as an argument and in sampler_args")
        args["epoch_length"] = epoch_length
    first = "source" if "source" in groups else "train"
    samplers = {first: build_sampler(sampler, args, groups[first], seed, world, rank, mode)}
    if "target" in groups:  # the target cycles through its pool for the source's epoch length
        length = samplers["source"].global_length()
        samplers["target"] = build_sampler("mixture", {"epoch_length": length}, groups["target"], seed + 1,
                                           world, rank, mode)
    return samplers

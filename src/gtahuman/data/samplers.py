"""Registered epoch samplers over a concatenation of datasets (registry ``SAMPLERS``).

- ``mixture``: fixed shares per source (mmhuman3d partition) or a real:synthetic ratio;
- ``amount``: total amount x real ratio (paper Table 7, Fig. 8);
- ``scarcity``: thin chosen bins of a factor (paper Fig. 9, "Impact of Data Scarcity");
- ``balance``: inverse-density draws over a factor's histogram;
- ``sequential``: evaluation, every sample once in order.

Each sees only numpy arrays: ``sources`` (dataset id per global sample) and, for the factor
samplers, ``factors`` (name -> per-sample values, NaN = unknown). Seeding, sharding across DDP
ranks (padding, ``drop_last``) and mid-epoch resume are the base class's, see
:mod:`.sampler_plans`. Use with ``Trainer(use_distributed_sampler=False)`` so Lightning does not
shard a second time, and call ``describe(sampler)`` for the realised per-source counts.

Build by name: ``SAMPLERS.build("mixture", sources=..., real_ratio=0.5, synthetic_sources=[3])``.
``amount`` lives in `sampler_amount`, the registry in `sampler_registry`; both are re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Unpack

import numpy as np

from . import sampler_draws as draws
from . import sampler_plans as plans
from .sampler_amount import AmountSampler
from .sampler_plans import CommonSamplerArgs, EpochSampler, SamplerConfigError, SourceKey
from .sampler_registry import SAMPLERS, register_sampler


__all__ = [
    "SAMPLERS",
    "AmountSampler",
    "BalanceSampler",
    "EpochSampler",
    "MixtureSampler",
    "SamplerConfigError",
    "ScarcitySampler",
    "SequentialShardSampler",
    "describe",
]

def describe(sampler: EpochSampler) -> dict[str, Any]:
    """Realised composition of the current epoch (JSON-ready): per-source counts and fractions
    of the global plan, lengths, and what each sampler adds (asked ratios, bins, ...)."""
    plan = sampler.global_plan()
    counts = np.bincount(sampler.sources[plan], minlength=sampler.num_sources)
    total = max(int(plan.size), 1)
    return {
        "sampler": sampler.registered_name,
        "seed": sampler.seed,
        "epoch": sampler.epoch,
        "global_length": int(plan.size),
        "per_rank_length": len(sampler),
        "num_replicas": sampler.num_replicas,
        "unique_samples": int(np.unique(plan).size),
        "counts": {sampler.source_label(s): int(c) for s, c in enumerate(counts)},
        "fractions": {sampler.source_label(s): float(c) / total for s, c in enumerate(counts)},
        **sampler._describe_extra(),
    }


# ---------------------------------------------------------------------------------------------
# Registered samplers
# ---------------------------------------------------------------------------------------------


@register_sampler("mixture")
class MixtureSampler(EpochSampler):
    """Fixed shares per source: mmhuman3d's partition, or a real:synthetic ratio.

    - ``partition``: weight per source (list indexed by source id, or {id or name: weight});
      source s fills p_s / sum(p) of the epoch, as in mmhuman3d's MixedDataset. Without
      partition and real_ratio, sources are weighted by size (uniform over samples).
    - ``real_ratio`` with ``synthetic_sources``: the synthetic sources fill 1 - real_ratio, the
      others real_ratio; inside each group, sources are weighted by ``partition`` if given, else
      by size.
    - ``epoch_length``: default the largest source's size (mmhuman3d's rule).
    - ``replacement=True``: independent draws (mmhuman3d's WeightedRandomSampler law);
      ``False`` (default): exact counts (group counts = rounded ratio x length, then sources
      inside groups, within one sample), each source drawn without replacement while it
      lasts, then the whole epoch shuffled.
    """

    def __init__(
        self,
        sources: np.ndarray,
        *,
        partition: Sequence[float] | Mapping[SourceKey, float] | None = None,
        real_ratio: float | None = None,
        synthetic_sources: Sequence[SourceKey] | None = None,
        epoch_length: int | None = None,
        replacement: bool = False,
        **common: Unpack[CommonSamplerArgs],
    ) -> None:
        super().__init__(sources, **common)
        weights = self._partition_weights(partition)
        synthetic = None
        if (real_ratio is None) != (synthetic_sources is None):
            raise SamplerConfigError(
                "mixture",
                "synthetic_sources",
                "to be given exactly when real_ratio is",
                f"real_ratio={real_ratio}, synthetic_sources={synthetic_sources}",
            )
        if synthetic_sources is not None:
            synthetic = np.isin(
                np.arange(self.num_sources), self.resolve_sources(synthetic_sources, "synthetic_sources")
            )
        self.target = draws.mixture_target(weights, synthetic, real_ratio)
        largest = int(self.source_sizes.max()) if self.source_sizes.size else 0
        self.epoch_length = largest if epoch_length is None else int(epoch_length)
        if self.epoch_length < 0:
            raise SamplerConfigError("mixture", "epoch_length", "a non-negative integer", epoch_length)
        self.replacement = bool(replacement)
        self._pools = draws.source_pools(self.sources, self.num_sources)

    def _partition_weights(self, partition: Sequence[float] | Mapping[SourceKey, float] | None) -> np.ndarray:
        """Weight per source id from a list, a mapping, or the source sizes (None)."""
        if partition is None:
            return self.source_sizes.astype(np.float64)
        if isinstance(partition, Mapping):
            weights = np.full(self.num_sources, np.nan)
            weights[self.resolve_sources(list(partition), "partition")] = list(partition.values())
            missing = [
                self.source_label(s) for s in np.flatnonzero(np.isnan(weights) & (self.source_sizes > 0))
            ]
            if missing:
                raise SamplerConfigError(
                    "mixture",
                    "partition",
                    "a weight for every source with samples (0 to leave one out)",
                    f"none for {missing}",
                )
            weights = np.nan_to_num(weights)
        else:
            weights = np.asarray(partition, dtype=np.float64)
            if weights.shape != (self.num_sources,):
                raise SamplerConfigError(
                    "mixture", "partition", f"{self.num_sources} weights (one per source id)", list(partition)
                )
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise SamplerConfigError("mixture", "partition", "finite, non-negative weights", weights.tolist())
        empty = [self.source_label(s) for s in np.flatnonzero((weights > 0) & (self.source_sizes == 0))]
        if empty:
            raise SamplerConfigError(
                "mixture", "partition", "positive weight only on sources with samples", f"no samples in {empty}"
            )
        return weights

    def global_length(self) -> int:
        return self.epoch_length

    def _build_plan(self, rng: np.random.Generator) -> np.ndarray:
        if self.replacement:
            return draws.iid_mixture_plan(self._pools, self.target.source_fractions, self.epoch_length, rng)
        return draws.exact_mixture_plan(self._pools, self.target.exact_counts(self.epoch_length), rng)

    def _describe_extra(self) -> dict[str, Any]:
        asked = self.target.source_fractions
        return {
            "replacement": self.replacement,
            "asked_fractions": {self.source_label(s): float(f) for s, f in enumerate(asked)},
        }


@register_sampler("scarcity")
class ScarcitySampler(EpochSampler):
    """Thin or drop samples in chosen bins of a factor (the paper's data-scarcity study).

    ``bins`` are edges (bin b = [edges[b], edges[b+1]), the last bin closed); in bin b,
    round(keep_fraction[b] x its samples) are kept (``keep_fraction`` may be one number for all
    bins; 0 drops the bin). Samples outside the bins, with unknown (NaN) factor, or from sources
    not in ``apply_to_sources`` (default: all) are untouched. The kept set is chosen once per
    seed; each epoch visits every kept sample once, in a new order.
    """

    def __init__(
        self,
        sources: np.ndarray,
        *,
        factors: Mapping[str, np.ndarray],
        factor: str,
        bins: Sequence[float],
        keep_fraction: float | Sequence[float],
        apply_to_sources: Sequence[SourceKey] | None = None,
        **common: Unpack[CommonSamplerArgs],
    ) -> None:
        super().__init__(sources, **common)
        values = self.factor_values(factors, factor)
        self.factor, self.edges = factor, draws.check_bin_edges(bins, "scarcity")
        self.keep_fraction = draws.keep_fractions(keep_fraction, self.edges.size - 1)
        self.eligible = np.ones(self.sources.size, dtype=bool)
        if apply_to_sources is not None:
            self.eligible = np.isin(self.sources, self.resolve_sources(apply_to_sources, "apply_to_sources"))
        self.bin_ids = draws.assign_bins(values, self.edges)
        keep = draws.thin_bins(self.bin_ids, self.keep_fraction, self.eligible, self.fixed_rng())
        self.kept = np.flatnonzero(keep)

    def global_length(self) -> int:
        return int(self.kept.size)

    def _build_plan(self, rng: np.random.Generator) -> np.ndarray:
        return rng.permutation(self.kept)

    def _describe_extra(self) -> dict[str, Any]:
        num_bins = self.edges.size - 1
        eligible = np.bincount(self.bin_ids[self.eligible & (self.bin_ids >= 0)], minlength=num_bins)
        kept_bins = self.bin_ids[self.kept]
        per_bin = draws.bin_table(
            self.edges,
            keep_fraction=self.keep_fraction,
            eligible=eligible,
            before=np.bincount(self.bin_ids[self.bin_ids >= 0], minlength=num_bins),
            kept=np.bincount(kept_bins[kept_bins >= 0], minlength=num_bins),
        )
        return {"factor": self.factor, "bins": per_bin, "dropped": int(self.sources.size - self.kept.size)}


@register_sampler("balance")
class BalanceSampler(EpochSampler):
    """Inverse-density sampling over a factor's histogram, with replacement.

    A sample in a bin holding n samples gets weight n ** -power (power=1 flattens the visited
    histogram, 0 is uniform), scaled to mean 1 and clipped at ``max_weight``; samples with NaN
    or out-of-range factor get the mean weight. ``bins`` is a count of equal-width bins over the
    known values' range, or explicit edges. ``epoch_length`` defaults to the number of samples.
    """

    def __init__(
        self,
        sources: np.ndarray,
        *,
        factors: Mapping[str, np.ndarray],
        factor: str,
        bins: int | Sequence[float] = 10,
        power: float = 1.0,
        max_weight: float | None = None,
        epoch_length: int | None = None,
        **common: Unpack[CommonSamplerArgs],
    ) -> None:
        super().__init__(sources, **common)
        values = self.factor_values(factors, factor)
        if isinstance(bins, (int, np.integer)):
            self.edges = draws.equal_width_edges(values, int(bins), "balance")
        else:
            self.edges = draws.check_bin_edges(bins, "balance")
        if not power >= 0:
            raise SamplerConfigError("balance", "power", "a non-negative number", power)
        if max_weight is not None and not max_weight > 0:
            raise SamplerConfigError("balance", "max_weight", "a positive number or None", max_weight)
        self.factor = factor
        self.bin_ids = draws.assign_bins(values, self.edges)
        try:
            self.weights = draws.inverse_density_weights(self.bin_ids, self.edges.size - 1, power, max_weight)
        except ValueError as err:
            raise SamplerConfigError(
                "balance", "bins", "bins that hold some known factor values", f"edges {self.edges.tolist()} ({err})"
            ) from None
        self.probabilities = self.weights / self.weights.sum()
        self.epoch_length = self.sources.size if epoch_length is None else int(epoch_length)
        if self.epoch_length < 0:
            raise SamplerConfigError("balance", "epoch_length", "a non-negative integer", epoch_length)

    def global_length(self) -> int:
        return self.epoch_length

    def _build_plan(self, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(self.sources.size, size=self.epoch_length, p=self.probabilities)

    def _describe_extra(self) -> dict[str, Any]:
        num_bins = self.edges.size - 1
        visited_ids = self.bin_ids[self.global_plan()]
        before = np.bincount(self.bin_ids[self.bin_ids >= 0], minlength=num_bins)
        visited = np.bincount(visited_ids[visited_ids >= 0], minlength=num_bins)
        per_bin = draws.bin_table(self.edges, before=before, visited=visited)
        return {"factor": self.factor, "bins": per_bin, "visited_without_bin": int(np.sum(visited_ids < 0))}


@register_sampler("sequential")
class SequentialShardSampler(EpochSampler):
    """Evaluation: every sample once, in index order; rank r gets a contiguous block (sizes
    differ by at most one, no padding), so blocks concatenated in rank order restore the order.
    It takes the same common arguments as every sampler: the order ignores ``seed``, and
    ``drop_last=True`` is refused (evaluation never drops a sample)."""

    def __init__(self, sources: np.ndarray, **common: Unpack[CommonSamplerArgs]) -> None:
        if common.get("drop_last"):
            raise SamplerConfigError("sequential", "drop_last", "False: evaluation visits every sample", True)
        super().__init__(sources, **common)

    def global_length(self) -> int:
        return int(self.sources.size)

    def _build_plan(self, rng: np.random.Generator) -> np.ndarray:
        return np.arange(self.sources.size, dtype=np.int64)

    def _shard(self, plan: np.ndarray, num_replicas: int, rank: int) -> np.ndarray:
        return plans.shard_contiguous(plan, num_replicas, rank)

    def _rank_length(self, num_replicas: int, rank: int) -> int:
        start, stop = plans.contiguous_bounds(self.global_length(), num_replicas, rank)
        return stop - start

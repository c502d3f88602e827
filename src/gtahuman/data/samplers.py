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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from gtahuman.registry import Registry

from . import sampler_plans as plans
from .sampler_plans import EpochSampler, SamplerConfigError, SourceKey

_NESTED_SYNTHETIC_STREAM = 0x5E57  # AmountSampler's fixed synthetic order (nested amounts)

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

SAMPLERS: Registry[EpochSampler] = Registry("sampler")


def _register(name: str) -> Callable[[type], type]:
    """Register a sampler class and remember its name (for describe() and state checks)."""

    def deco(cls: type) -> type:
        cls.registered_name = name
        return SAMPLERS.register(name)(cls)

    return deco


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


@_register("mixture")
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
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
        source_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(
            sources, seed=seed, num_replicas=num_replicas, rank=rank, drop_last=drop_last, source_names=source_names
        )
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
        self.target = plans.mixture_target(weights, synthetic, real_ratio)
        largest = int(self.source_sizes.max()) if self.source_sizes.size else 0
        self.epoch_length = largest if epoch_length is None else int(epoch_length)
        if self.epoch_length < 0:
            raise SamplerConfigError("mixture", "epoch_length", "a non-negative integer", epoch_length)
        self.replacement = bool(replacement)
        self._pools = plans.source_pools(self.sources, self.num_sources)

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
            return plans.iid_mixture_plan(self._pools, self.target.source_fractions, self.epoch_length, rng)
        return plans.exact_mixture_plan(self._pools, self.target.exact_counts(self.epoch_length), rng)

    def _describe_extra(self) -> dict[str, Any]:
        asked = self.target.source_fractions
        return {
            "replacement": self.replacement,
            "asked_fractions": {self.source_label(s): float(f) for s, f in enumerate(asked)},
        }


@_register("amount")
class AmountSampler(EpochSampler):
    """Total amount x real ratio, as in the paper's Table 7 and Fig. 8.

    The epoch holds ``total`` samples (or ``total_multiple`` x the real pool size), of which
    round(real_ratio x total) are real. The real part is drawn without replacement; asking for
    more real samples than exist is an error (the paper's N/A cells) unless ``allow_repeat``.
    ``fixed_real_subset=True`` (default) picks the real subset once per seed, reading the amount
    as a dataset size; the synthetic part is redrawn each epoch from the synthetic pool ("sampled
    from the 4x set during training"), without replacement while the pool lasts. Fig. 8's "kx
    GTA" (all real data plus k times as much synthetic) is total_multiple=1+k,
    real_ratio=1/(1+k).

    ``fixed_synthetic_subset=True`` reads the synthetic part as an *amount* too: it is the first
    ``synthetic_count`` samples of one permutation of the synthetic pool that depends on the seed
    alone, visited every epoch. So amounts are nested (at one seed, the samples of 0.25x GTA are
    among those of 0.5x), and a larger amount means more distinct synthetic samples, not a larger
    share of the same pool (redrawn each epoch, every amount eventually sees the whole pool).

    ``real_partition`` (one weight per real source, in source order; None = pooled) splits the
    real part between the real sources by weight, as the mixture sampler's partition splits a
    blended epoch (HMR+'s real mix), instead of uniformly over the pooled real rows (where each
    source's share is its size's). A source asked for more rows than it holds is an error naming
    it (an N/A cell) unless ``allow_repeat``. ``max_real`` caps the real part whatever the pool
    holds: a cell asking for more is refused as N/A (the paper's Table 7 counts its real data as
    300K, fewer rows than the files it names hold).

    ``synthetic_multiple`` k (instead of ``total`` / ``total_multiple``), Fig. 8's axis: every real
    row once plus round(k x the real pool) synthetic samples; ``real_ratio`` must then be 1 / (1 + k)
    (to 0.005: it is what reports read), the counts come from k.
    """

    def __init__(
        self,
        sources: np.ndarray,
        *,
        real_ratio: float,
        synthetic_sources: Sequence[SourceKey],
        total: int | None = None,
        total_multiple: float | None = None,
        synthetic_multiple: float | None = None,
        real_partition: Sequence[float] | None = None,
        max_real: int | None = None,
        allow_repeat: bool = False,
        fixed_real_subset: bool = True,
        fixed_synthetic_subset: bool = False,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
        source_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(
            sources, seed=seed, num_replicas=num_replicas, rank=rank, drop_last=drop_last, source_names=source_names
        )
        if not 0.0 <= real_ratio <= 1.0:
            raise SamplerConfigError("amount", "real_ratio", "a number in [0, 1]", real_ratio)
        synthetic = np.zeros(self.num_sources, dtype=bool)
        synthetic[self.resolve_sources(synthetic_sources, "synthetic_sources")] = True
        self.real_pool = np.flatnonzero(~synthetic[self.sources])
        self.synthetic_pool = np.flatnonzero(synthetic[self.sources])
        if sum(x is not None for x in (total, total_multiple, synthetic_multiple)) != 1:
            raise SamplerConfigError(
                "amount",
                "total",
                "exactly one of total, total_multiple and synthetic_multiple",
                f"total={total}, total_multiple={total_multiple}, synthetic_multiple={synthetic_multiple}",
            )
        if synthetic_multiple is not None:
            if synthetic_multiple < 0 or abs(real_ratio - 1.0 / (1.0 + synthetic_multiple)) > 0.005:
                raise SamplerConfigError("amount", "synthetic_multiple",
                                         f"k >= 0 with real_ratio = 1 / (1 + k) = {1.0 / (1.0 + max(synthetic_multiple, 0)):.4f}",
                                         f"k={synthetic_multiple}, real_ratio={real_ratio}")
            self.real_count = int(self.real_pool.size)
            self.synthetic_count = round(synthetic_multiple * self.real_pool.size)
            self.total = self.real_count + self.synthetic_count
        else:
            self.total = int(total) if total is not None else round(total_multiple * self.real_pool.size)
            if self.total < 0:
                raise SamplerConfigError("amount", "total", "a non-negative amount", self.total)
            self.real_count, self.synthetic_count = (
                int(n) for n in plans.allocate_exact_counts(np.array([real_ratio, 1.0 - real_ratio]), self.total)
            )
        if max_real is not None and self.real_count > int(max_real):
            raise SamplerConfigError(
                "amount", "max_real",
                f"at most {int(max_real)} real samples (max_real), but real_ratio={real_ratio} x total={self.total} "
                f"asks for {self.real_count}: an N/A cell, a ratio the real data cannot sustain at this amount",
                max_real)
        if self.real_count > self.real_pool.size and not allow_repeat:
            raise SamplerConfigError(
                "amount",
                "real_ratio",
                f"at most {self.real_pool.size} real samples (all the real sources hold), but "
                f"real_ratio={real_ratio} x total={self.total} asks for {self.real_count}; lower total or "
                "real_ratio, or pass allow_repeat=True (the paper reports this cell as N/A)",
            )
        if self.synthetic_count > 0 and self.synthetic_pool.size == 0:
            raise SamplerConfigError(
                "amount",
                "synthetic_sources",
                f"synthetic samples to draw {self.synthetic_count} from",
                "an empty synthetic pool",
            )
        if fixed_synthetic_subset and self.synthetic_count > self.synthetic_pool.size and not allow_repeat:
            raise SamplerConfigError(
                "amount",
                "fixed_synthetic_subset",
                f"at most {self.synthetic_pool.size} synthetic samples (the synthetic pool) as a fixed subset, but "
                f"the amount asks for {self.synthetic_count}; lower total_multiple or pass allow_repeat=True",
            )
        self.real_ratio = float(real_ratio)
        self.real_parts = self._real_parts(synthetic, real_partition, allow_repeat)
        self._fixed_real = self._draw_real(self.fixed_rng()) if fixed_real_subset else None
        self._fixed_synthetic = None
        if fixed_synthetic_subset:
            # One permutation from its own stream, independent of the amount and of the real
            # draw, read as a prefix: the amounts of one seed are nested.
            order = np.random.default_rng([self.seed, _NESTED_SYNTHETIC_STREAM]).permutation(self.synthetic_pool)
            self._fixed_synthetic = np.resize(order, self.synthetic_count)  # resize repeats (allow_repeat)

    def _real_parts(self, synthetic: np.ndarray, partition: Sequence[float] | None,
                    allow_repeat: bool) -> list[tuple[np.ndarray, int]]:
        """(pool, count) per part of the real draw: the pooled real rows, or one per real source."""
        if partition is None:
            return [(self.real_pool, self.real_count)]
        real_ids = np.flatnonzero(~synthetic)
        weights = np.asarray(partition, dtype=np.float64)
        if weights.shape != (real_ids.size,) or (weights < 0).any() or weights.sum() <= 0:
            raise SamplerConfigError("amount", "real_partition",
                                     f"{real_ids.size} non-negative weights, one per real source, not all 0",
                                     list(partition))
        parts = []
        for source, count in zip(real_ids, plans.allocate_exact_counts(weights, self.real_count)):
            pool = np.flatnonzero(self.sources == source)
            if count > pool.size and not allow_repeat:
                raise SamplerConfigError(
                    "amount", "real_partition",
                    f"at most {pool.size} samples of real source {self.source_label(int(source))!r} (it holds no "
                    f"more), but its weight's part of the {self.real_count} real samples is {int(count)}; lower "
                    "total or real_ratio, or pass allow_repeat=True (the paper reports this cell as N/A)",
                    list(partition))
            parts.append((pool, int(count)))
        return parts

    def _draw_real(self, rng: np.random.Generator) -> np.ndarray:
        drawn = [plans.draw_from_pool(pool, count, rng) for pool, count in self.real_parts if count > 0]
        return np.concatenate(drawn) if drawn else np.empty(0, dtype=np.int64)

    def global_length(self) -> int:
        return self.total

    def _build_plan(self, rng: np.random.Generator) -> np.ndarray:
        real = self._fixed_real
        if real is None:
            real = self._draw_real(rng)
        synthetic = self._fixed_synthetic
        if synthetic is None:
            synthetic = plans.draw_from_pool(self.synthetic_pool, self.synthetic_count, rng)
        return rng.permutation(np.concatenate([real, synthetic]))

    def _describe_extra(self) -> dict[str, Any]:
        return {
            "real_ratio": self.real_ratio,
            "real_count": self.real_count,
            "synthetic_count": self.synthetic_count,
            "real_pool": int(self.real_pool.size),
            "real_partition": "pooled" if len(self.real_parts) == 1 and self.real_parts[0][0] is self.real_pool
            else {self.source_label(int(self.sources[pool[0]])): count for pool, count in self.real_parts if pool.size},
            "synthetic_pool": int(self.synthetic_pool.size),
            "fixed_real_subset": self._fixed_real is not None,
            "fixed_synthetic_subset": self._fixed_synthetic is not None,
        }


@_register("scarcity")
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
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
        source_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(
            sources, seed=seed, num_replicas=num_replicas, rank=rank, drop_last=drop_last, source_names=source_names
        )
        values = self.factor_values(factors, factor)
        self.factor, self.edges = factor, plans.check_bin_edges(bins, "scarcity")
        self.keep_fraction = plans.keep_fractions(keep_fraction, self.edges.size - 1)
        self.eligible = np.ones(self.sources.size, dtype=bool)
        if apply_to_sources is not None:
            self.eligible = np.isin(self.sources, self.resolve_sources(apply_to_sources, "apply_to_sources"))
        self.bin_ids = plans.assign_bins(values, self.edges)
        keep = plans.thin_bins(self.bin_ids, self.keep_fraction, self.eligible, self.fixed_rng())
        self.kept = np.flatnonzero(keep)

    def global_length(self) -> int:
        return int(self.kept.size)

    def _build_plan(self, rng: np.random.Generator) -> np.ndarray:
        return rng.permutation(self.kept)

    def _describe_extra(self) -> dict[str, Any]:
        num_bins = self.edges.size - 1
        eligible = np.bincount(self.bin_ids[self.eligible & (self.bin_ids >= 0)], minlength=num_bins)
        kept_bins = self.bin_ids[self.kept]
        per_bin = plans.bin_table(
            self.edges,
            keep_fraction=self.keep_fraction,
            eligible=eligible,
            before=np.bincount(self.bin_ids[self.bin_ids >= 0], minlength=num_bins),
            kept=np.bincount(kept_bins[kept_bins >= 0], minlength=num_bins),
        )
        return {"factor": self.factor, "bins": per_bin, "dropped": int(self.sources.size - self.kept.size)}


@_register("balance")
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
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
        source_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(
            sources, seed=seed, num_replicas=num_replicas, rank=rank, drop_last=drop_last, source_names=source_names
        )
        values = self.factor_values(factors, factor)
        if isinstance(bins, (int, np.integer)):
            self.edges = plans.equal_width_edges(values, int(bins), "balance")
        else:
            self.edges = plans.check_bin_edges(bins, "balance")
        if not power >= 0:
            raise SamplerConfigError("balance", "power", "a non-negative number", power)
        if max_weight is not None and not max_weight > 0:
            raise SamplerConfigError("balance", "max_weight", "a positive number or None", max_weight)
        self.factor = factor
        self.bin_ids = plans.assign_bins(values, self.edges)
        try:
            self.weights = plans.inverse_density_weights(self.bin_ids, self.edges.size - 1, power, max_weight)
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
        per_bin = plans.bin_table(self.edges, before=before, visited=visited)
        return {"factor": self.factor, "bins": per_bin, "visited_without_bin": int(np.sum(visited_ids < 0))}


@_register("sequential")
class SequentialShardSampler(EpochSampler):
    """Evaluation: every sample once, in index order; rank r gets a contiguous block (sizes
    differ by at most one, no padding), so blocks concatenated in rank order restore the order.
    ``seed`` is accepted so every sampler takes the same common arguments; the order ignores it."""

    def __init__(
        self,
        sources: np.ndarray,
        *,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        source_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(sources, seed=seed, num_replicas=num_replicas, rank=rank, source_names=source_names)

    def global_length(self) -> int:
        return int(self.sources.size)

    def _build_plan(self, rng: np.random.Generator) -> np.ndarray:
        return np.arange(self.sources.size, dtype=np.int64)

    def _shard(self, plan: np.ndarray, num_replicas: int, rank: int) -> np.ndarray:
        return plans.shard_contiguous(plan, num_replicas, rank)

    def _rank_length(self, num_replicas: int, rank: int) -> int:
        start, stop = plans.contiguous_bounds(self.global_length(), num_replicas, rank)
        return stop - start

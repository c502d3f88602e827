"""The numpy building blocks of the registered samplers (:mod:`.samplers`): per-source pools,
exact integer counts from fractions, draws without replacement while a pool lasts, the mixture
rule (per-source fractions from partition weights and a real:synthetic ratio: `mixture_target`,
which the video data module uses too), and the factor bins of the scarcity and balance samplers.
A *plan* and a *pool* are as :mod:`.sampler_plans` defines them."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .sampler_plans import Plan, SamplerConfigError

def source_pools(sources: np.ndarray, num_sources: int) -> list[np.ndarray]:
    """Global indices of each source's samples, ascending (one stable argsort, no Python loop
    over samples, so 1.7 M samples take milliseconds)."""
    order = np.argsort(sources, kind="stable").astype(np.int64)
    counts = np.bincount(sources, minlength=num_sources)
    return np.split(order, np.cumsum(counts)[:-1])


def allocate_exact_counts(fractions: np.ndarray, total: int) -> np.ndarray:
    """Integer counts that sum to ``total`` with each within one of ``fraction * total``.

    Largest-remainder rounding: floor everything, then give the missing units to the largest
    remainders (ties to the lower index). With two entries this is ordinary rounding."""
    fractions = np.asarray(fractions, dtype=np.float64)
    raw = fractions / fractions.sum() * total
    counts = np.floor(raw + 1e-9).astype(np.int64)  # 1e-9: 0.3*10 must floor to 3, not 2
    missing = int(total - counts.sum())
    if missing > 0:
        order = np.argsort(-(raw - counts), kind="stable")
        counts[order[:missing]] += 1
    elif missing < 0:  # only through the epsilon above; take back from the smallest remainders
        order = np.argsort(raw - counts, kind="stable")
        counts[order[:-missing]] -= 1
    return counts


def draw_from_pool(pool: np.ndarray, count: int, rng: np.random.Generator) -> Plan:
    """``count`` indices from ``pool`` without replacement while the pool lasts.

    Whole shuffled passes over the pool come first, then a partial pass of distinct samples, so
    every sample is drawn either floor(count/len) or ceil(count/len) times."""
    pool = np.asarray(pool, dtype=np.int64)
    if count <= 0:
        return np.empty(0, dtype=np.int64)
    if pool.size == 0:
        raise ValueError(f"cannot draw {count} samples from an empty pool")
    passes, rest = divmod(count, pool.size)
    parts = []
    if passes:
        # One random key per (pass, sample); argsort along the row is an independent shuffle
        # per pass without a Python loop over passes.
        keys = rng.random((passes, pool.size))
        parts.append(pool[np.argsort(keys, axis=1)].ravel())
    if rest:
        parts.append(rng.choice(pool, size=rest, replace=False))
    return np.concatenate(parts)


@dataclass(frozen=True)
class MixtureTarget:
    """Asked composition of an epoch: groups of sources, a share per group, a share per source
    inside its group. Partition mode is one group; ``real_ratio`` mode is two (real, synthetic).

    ``source_group[s]`` is the group of source s, or -1 when s is not drawn at all."""

    group_shares: np.ndarray  # (G,), sums to 1
    source_group: np.ndarray  # (K,) int
    within_share: np.ndarray  # (K,), sums to 1 inside each group, 0 for undrawn sources

    @property
    def source_fractions(self) -> np.ndarray:
        """Expected fraction of the epoch that each source fills."""
        drawn = self.source_group >= 0
        fractions = np.zeros(self.source_group.size)
        fractions[drawn] = self.group_shares[self.source_group[drawn]] * self.within_share[drawn]
        return fractions

    def exact_counts(self, length: int) -> np.ndarray:
        """Per-source counts for an epoch of ``length``: group counts first (so the group ratio
        is exact to one sample), then the sources inside each group."""
        counts = np.zeros(self.source_group.size, dtype=np.int64)
        group_counts = allocate_exact_counts(self.group_shares, length)
        for group, group_count in enumerate(group_counts):
            members = np.flatnonzero(self.source_group == group)
            if members.size and group_count > 0:
                counts[members] = allocate_exact_counts(self.within_share[members], int(group_count))
        return counts


def mixture_target(
    weights: np.ndarray, synthetic: np.ndarray | None, real_ratio: float | None
) -> MixtureTarget:
    """Target from per-source weights: one group (``real_ratio`` None), or real vs synthetic
    (``synthetic`` a boolean mask over sources) sharing the epoch real_ratio : 1 - real_ratio.
    Sources of weight 0 are not drawn."""
    if real_ratio is None:
        group, shares = np.zeros(weights.size, dtype=np.int64), np.array([1.0])
    else:
        if not 0.0 <= real_ratio <= 1.0:
            raise SamplerConfigError("mixture", "real_ratio", "a number in [0, 1]", real_ratio)
        group, shares = (np.asarray(synthetic, dtype=np.int64), np.array([real_ratio, 1.0 - real_ratio]))
    group[weights == 0] = -1
    within = np.zeros(weights.size)
    for g, share in enumerate(shares):
        members = group == g
        if weights[members].sum() > 0:
            within[members] = weights[members] / weights[members].sum()
        elif share > 0:
            which = "all" if shares.size == 1 else ("real", "synthetic")[g]
            raise SamplerConfigError(
                "mixture", "partition", f"samples with positive weight among the {which} sources"
            )
    return MixtureTarget(shares, group, within)


def exact_mixture_plan(pools: Sequence[np.ndarray], counts: np.ndarray, rng: np.random.Generator) -> Plan:
    """Stratified plan: exactly ``counts[s]`` samples of source s, then one global shuffle."""
    parts = [draw_from_pool(pool, int(n), rng) for pool, n in zip(pools, counts) if n > 0]
    plan = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    return rng.permutation(plan)


def iid_mixture_plan(
    pools: Sequence[np.ndarray], fractions: np.ndarray, length: int, rng: np.random.Generator
) -> Plan:
    """Independent draws: source s with probability fractions[s], then a uniform sample of it
    (the same law as mmhuman3d's WeightedRandomSampler with weights p_s / len_s)."""
    fractions = np.asarray(fractions, dtype=np.float64)
    chosen = rng.choice(len(pools), size=length, p=fractions / fractions.sum())
    plan = np.empty(length, dtype=np.int64)
    for source, pool in enumerate(pools):
        where = np.flatnonzero(chosen == source)
        if where.size:
            plan[where] = pool[rng.integers(0, pool.size, size=where.size)]
    return plan


def check_bin_edges(edges: Sequence[float], sampler: str) -> np.ndarray:
    """Bin edges as a float array: at least two, finite, strictly increasing."""
    edges_arr = np.asarray(edges, dtype=np.float64)
    if (
        edges_arr.ndim != 1
        or edges_arr.size < 2
        or not np.all(np.isfinite(edges_arr))
        or np.any(np.diff(edges_arr) <= 0)
    ):
        raise SamplerConfigError(
            sampler, "bins", "at least two finite, strictly increasing edges", list(edges)
        )
    return edges_arr


def assign_bins(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin id per value: bin b holds edges[b] <= v < edges[b+1], the last bin also holds its
    right edge (so [30, 90] includes 90). NaN and values outside all bins get -1."""
    values = np.asarray(values, dtype=np.float64)
    num_bins = edges.size - 1
    bin_ids = np.searchsorted(edges, values, side="right") - 1
    bin_ids[values == edges[-1]] = num_bins - 1
    bin_ids[(bin_ids < 0) | (bin_ids >= num_bins) | np.isnan(values)] = -1
    return bin_ids.astype(np.int64)


def equal_width_edges(values: np.ndarray, num_bins: int, sampler: str) -> np.ndarray:
    """``num_bins`` equal-width bins over the range of the known (finite) values."""
    known = values[np.isfinite(values)]
    if known.size == 0:
        raise SamplerConfigError(sampler, "factors", "at least one known (non-NaN) factor value")
    if num_bins < 1:
        raise SamplerConfigError(sampler, "bins", "a positive bin count or a list of edges", num_bins)
    low, high = float(known.min()), float(known.max())
    return np.linspace(low, high if high > low else low + 1.0, int(num_bins) + 1)


def keep_fractions(keep_fraction: float | Sequence[float], num_bins: int) -> np.ndarray:
    """One keep fraction per bin in [0, 1]; a single number applies to every bin."""
    fractions = np.asarray(keep_fraction, dtype=np.float64)
    if fractions.ndim == 0:
        fractions = np.full(num_bins, float(fractions))
    if fractions.shape != (num_bins,) or np.any(~(fractions >= 0) | (fractions > 1)):
        raise SamplerConfigError(
            "scarcity", "keep_fraction", f"one number or {num_bins} numbers in [0, 1]", keep_fraction
        )
    return fractions


def bin_table(edges: np.ndarray, **columns: np.ndarray) -> list[dict[str, object]]:
    """Per-bin rows for logs: {"range": [lo, hi], column: value, ...} with plain Python numbers."""
    return [
        {"range": [float(edges[b]), float(edges[b + 1])], **{k: v[b].item() for k, v in columns.items()}}
        for b in range(edges.size - 1)
    ]


def thin_bins(
    bin_ids: np.ndarray, keep_fraction: np.ndarray, eligible: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Boolean keep-mask: in bin b, keep round(keep_fraction[b] * n_b) of its eligible samples
    (a uniform random subset); every other sample is kept."""
    keep = np.ones(bin_ids.size, dtype=bool)
    for bin_id, fraction in enumerate(keep_fraction):
        members = np.flatnonzero((bin_ids == bin_id) & eligible)
        kept = int(np.floor(fraction * members.size + 0.5))  # half rounds up, not to even
        keep[rng.permutation(members)[kept:]] = False
    return keep


def inverse_density_weights(
    bin_ids: np.ndarray, num_bins: int, power: float, max_weight: float | None
) -> np.ndarray:
    """Per-sample weight (count of its bin) ** -power, scaled to mean 1 over samples with a
    known bin, clipped at ``max_weight``; samples without a bin (NaN, out of range) get the mean
    of the clipped known weights. power=1 makes every occupied bin equally likely, power=0 is
    uniform sampling."""
    known = bin_ids >= 0
    if not known.any():
        raise ValueError("no sample has a factor value inside the bins")
    counts = np.bincount(bin_ids[known], minlength=num_bins).astype(np.float64)
    bin_weight = np.zeros(num_bins)
    occupied = counts > 0
    bin_weight[occupied] = counts[occupied] ** (-power)
    weights = np.empty(bin_ids.size)
    weights[known] = bin_weight[bin_ids[known]]
    weights[known] /= weights[known].mean()
    if max_weight is not None:
        weights[known] = np.minimum(weights[known], max_weight)
    weights[~known] = weights[known].mean()
    return weights

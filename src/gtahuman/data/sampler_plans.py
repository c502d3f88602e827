"""Epoch plans: the base sampler that turns one plan per epoch into a sharded, resumable
torch Sampler, and the numpy building blocks the registered samplers (:mod:`.samplers`) use.

A *plan* is the ordered global sample indices (int64) one epoch visits; a *source* is the
dataset a sample comes from (an int id per sample); a *pool* is the ascending global indices of
one source or group. Each epoch's plan comes from a numpy Generator seeded by (seed, epoch), so
every rank and every resumed run derives the same plan without communicating.

Sharding. Shuffled samplers give rank r the positions r, r+R, r+2R, ... of the plan. With
``drop_last=False`` (default) the plan is padded to a multiple of R by repeating its first
entries, so up to R-1 samples are visited twice that epoch; ``drop_last=True`` drops the last
len % R entries instead. All ranks get the same length (DDP needs equal step counts). The
``sequential`` evaluation sampler gives contiguous blocks without padding.

Resuming. ``state_dict()`` records (seed, epoch, position in this rank's plan, world size and a
digest of the plan); ``load_state_dict`` makes the next iteration regenerate the same plan and
skip the consumed entries, so nothing is repeated or skipped. ``__len__`` stays the full
per-rank epoch length (Lightning counts the restored batches itself). A multi-worker DataLoader
runs ahead of training: pass the number of samples actually trained to
``state_dict(consumed=...)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

Plan = np.ndarray  # 1-D int64 array of global sample indices
SourceKey = int | str  # a source id, or its name when the sampler has source_names
# Separate random streams: the per-epoch plan vs choices made once per seed (fixed subsets).
_EPOCH_STREAM, _FIXED_STREAM = 0, 1


class SamplerConfigError(ValueError):
    """A sampler was given arguments that cannot produce the asked plan.

    The message names the sampler, the argument and what was expected."""

    def __init__(self, sampler: str, key: str, expected: str, got: object = None) -> None:
        message = f"sampler '{sampler}': argument '{key}': expected {expected}"
        if got is not None:
            message += f", got {got}"
        super().__init__(message)
        self.sampler, self.key = sampler, key


# ---------------------------------------------------------------------------------------------
# Sharding across ranks
# ---------------------------------------------------------------------------------------------


def shard_strided(plan: Plan, num_replicas: int, rank: int, drop_last: bool) -> Plan:
    """Rank ``rank``'s share of a global plan: positions rank, rank+R, rank+2R, ...

    drop_last=False pads the plan to a multiple of R by repeating its first entries (as torch's
    DistributedSampler does), so some samples are seen twice in that epoch; drop_last=True cuts
    the last len % R entries instead. Either way all ranks get the same length."""
    if drop_last:
        usable = plan.size - plan.size % num_replicas
        padded = plan[:usable]
    else:
        padded = np.resize(plan, strided_length(plan.size, num_replicas, False) * num_replicas)
    return padded[rank::num_replicas]


def strided_length(global_length: int, num_replicas: int, drop_last: bool) -> int:
    """Per-rank length of :func:`shard_strided`."""
    if drop_last:
        return global_length // num_replicas
    return -(-global_length // num_replicas)


def shard_contiguous(plan: Plan, num_replicas: int, rank: int) -> Plan:
    """Rank ``rank``'s contiguous block, no padding: block sizes differ by at most one and the
    blocks in rank order are the plan itself (evaluation outputs concatenate back in order)."""
    start, stop = contiguous_bounds(plan.size, num_replicas, rank)
    return plan[start:stop]


def contiguous_bounds(global_length: int, num_replicas: int, rank: int) -> tuple[int, int]:
    """[start, stop) of :func:`shard_contiguous`; the first len % R ranks get one extra."""
    base, extra = divmod(global_length, num_replicas)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


# ---------------------------------------------------------------------------------------------
# The base sampler
# ---------------------------------------------------------------------------------------------


class EpochSampler(Sampler[int]):
    """Base class: one deterministic global plan per (seed, epoch), sharded, resumable.

    Subclasses implement :meth:`global_length` and :meth:`_build_plan`. ``num_replicas`` and
    ``rank`` default to torch.distributed's (read when used, so the sampler may be built before
    the process group), else 1 and 0. Iterate one iterator at a time."""

    registered_name = "epoch"

    def __init__(
        self,
        sources: np.ndarray,
        *,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
        source_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        name = self.registered_name
        self.sources = np.asarray(sources)
        if self.sources.ndim != 1 or not np.issubdtype(self.sources.dtype, np.integer):
            raise SamplerConfigError(
                name,
                "sources",
                "a 1-D integer array (one source id per sample)",
                f"shape {self.sources.shape}, dtype {self.sources.dtype}",
            )
        if self.sources.size and self.sources.min() < 0:
            raise SamplerConfigError(name, "sources", "non-negative source ids", int(self.sources.min()))
        highest = int(self.sources.max()) + 1 if self.sources.size else 0
        self.source_names = list(source_names) if source_names is not None else None
        if self.source_names is not None and len(self.source_names) < highest:
            raise SamplerConfigError(
                name, "source_names", f"at least {highest} names (ids 0..{highest - 1})", self.source_names
            )
        self.num_sources = len(self.source_names) if self.source_names is not None else highest
        self.source_sizes = np.bincount(self.sources, minlength=self.num_sources)
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise SamplerConfigError(name, "seed", "a non-negative integer", seed)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self._num_replicas, self._rank = num_replicas, rank
        self.epoch = 0
        self._consumed = 0  # entries of this rank's plan handed out in the current epoch
        self._skip_next = 0  # entries the next iteration skips (set by load_state_dict)
        self._cached_plan: tuple[int, np.ndarray] | None = None

    # -- for subclasses -------------------------------------------------------------------------
    def global_length(self) -> int:
        """Length of the global plan of one epoch (before sharding)."""
        raise NotImplementedError

    def _build_plan(self, rng: np.random.Generator) -> np.ndarray:
        """The global plan for the epoch whose Generator is ``rng``."""
        raise NotImplementedError

    def _describe_extra(self) -> dict[str, Any]:
        return {}

    def _shard(self, plan: np.ndarray, num_replicas: int, rank: int) -> np.ndarray:
        return shard_strided(plan, num_replicas, rank, self.drop_last)

    def _rank_length(self, num_replicas: int, rank: int) -> int:
        return strided_length(self.global_length(), num_replicas, self.drop_last)

    # -- helpers shared by subclasses ------------------------------------------------------------
    def fixed_rng(self) -> np.random.Generator:
        """Generator for choices made once per seed (fixed subsets), independent of the epoch."""
        return np.random.default_rng([self.seed, _FIXED_STREAM])

    def source_label(self, source: int) -> str:
        return self.source_names[source] if self.source_names is not None else str(source)

    def resolve_sources(self, keys: Sequence[SourceKey], argument: str) -> np.ndarray:
        """Source ids from ids or names (names need ``source_names``)."""
        ids = []
        for key in keys:
            if isinstance(key, str):
                if self.source_names is None or key not in self.source_names:
                    raise SamplerConfigError(
                        self.registered_name, argument, f"a source id or one of the names {self.source_names}", key
                    )
                ids.append(self.source_names.index(key))
            elif isinstance(key, (int, np.integer)) and 0 <= key < self.num_sources:
                ids.append(int(key))
            else:
                raise SamplerConfigError(
                    self.registered_name, argument, f"a source id in 0..{self.num_sources - 1} or a source name", key
                )
        return np.asarray(ids, dtype=np.int64)

    def factor_values(self, factors: Mapping[str, np.ndarray] | None, factor: str) -> np.ndarray:
        """The per-sample values of factor ``factor`` as float64 (NaN = unknown)."""
        available = sorted(factors) if factors is not None else []
        if factors is None or factor not in factors:
            raise KeyError(
                f"sampler '{self.registered_name}': argument 'factor': '{factor}' is not "
                f"among the factor arrays given {available}"
            )
        values = np.asarray(factors[factor], dtype=np.float64)
        if values.shape != self.sources.shape:
            raise SamplerConfigError(
                self.registered_name,
                f"factors['{factor}']",
                f"one value per sample, shape {self.sources.shape}",
                values.shape,
            )
        return values

    # -- distributed layout ---------------------------------------------------------------------
    @property
    def num_replicas(self) -> int:
        if self._num_replicas is not None:
            return int(self._num_replicas)
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    @property
    def rank(self) -> int:
        rank = self._rank
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if not 0 <= rank < self.num_replicas:
            raise SamplerConfigError(self.registered_name, "rank", f"0 <= rank < {self.num_replicas}", rank)
        return int(rank)

    # -- plan -----------------------------------------------------------------------------------
    def global_plan(self) -> np.ndarray:
        """The current epoch's global plan (computed once per epoch; read-only)."""
        if self._cached_plan is None or self._cached_plan[0] != self.epoch:
            rng = np.random.default_rng([self.seed, _EPOCH_STREAM, self.epoch])
            plan = np.asarray(self._build_plan(rng), dtype=np.int64)
            if plan.size != self.global_length():
                raise RuntimeError(
                    f"{type(self).__name__} built {plan.size} entries, announced {self.global_length()}"
                )
            plan.setflags(write=False)
            self._cached_plan = (self.epoch, plan)
        return self._cached_plan[1]

    def rank_plan(self) -> np.ndarray:
        """This rank's full share of the current epoch's plan."""
        return self._shard(self.global_plan(), self.num_replicas, self.rank)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; a position restored for this same epoch is kept."""
        if epoch != self.epoch:
            self.epoch = int(epoch)
            self._consumed = self._skip_next = 0

    def __len__(self) -> int:
        """Samples this rank visits in a full epoch."""
        return self._rank_length(self.num_replicas, self.rank)

    def __iter__(self) -> Iterator[int]:
        indices = self.rank_plan()
        start, self._skip_next = self._skip_next, 0
        self._consumed = start
        chunk = 4096  # hand out python ints without building one huge list
        for begin in range(start, indices.size, chunk):
            for index in indices[begin : begin + chunk].tolist():
                self._consumed += 1  # counted before the yield: after k next() calls it is k
                yield index

    # -- resume ---------------------------------------------------------------------------------
    def _plan_digest(self) -> str:
        return hashlib.blake2b(self.global_plan().tobytes(), digest_size=8).hexdigest()

    def state_dict(self, consumed: int | None = None) -> dict[str, Any]:
        """Position inside the epoch; ``consumed`` overrides the iterator's count (use the number
        of samples this rank actually trained on when a DataLoader prefetches)."""
        position = self._consumed if consumed is None else int(consumed)
        return {
            "sampler": self.registered_name,
            "seed": self.seed,
            "epoch": self.epoch,
            "consumed": position,
            "num_replicas": self.num_replicas,
            "global_length": self.global_length(),
            "plan_digest": self._plan_digest(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume: the next iteration yields this rank's plan from ``state['consumed']`` on."""
        name = self.registered_name
        expected = {"sampler": name, "seed": self.seed, "num_replicas": self.num_replicas}
        for key, value in expected.items():
            if key not in state:
                raise KeyError(f"sampler '{name}': state_dict lacks '{key}' (keys: {sorted(state)})")
            if state[key] != value:
                raise SamplerConfigError(
                    name, f"state_dict['{key}']", f"{value!r} as in this run", state[key]
                )
        self.set_epoch(int(state["epoch"]))
        if state["global_length"] != self.global_length() or state["plan_digest"] != self._plan_digest():
            raise SamplerConfigError(
                name,
                "state_dict['plan_digest']",
                "the plan this sampler regenerates for the saved epoch (did the data "
                "or the sampler arguments change since the checkpoint?)",
                f"length {state['global_length']} digest {state['plan_digest']}",
            )
        consumed = int(state["consumed"])
        if not 0 <= consumed <= len(self):
            raise SamplerConfigError(name, "state_dict['consumed']", f"0..{len(self)}", consumed)
        self._skip_next = self._consumed = consumed


# ---------------------------------------------------------------------------------------------
# Building blocks of the registered samplers
# ---------------------------------------------------------------------------------------------


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

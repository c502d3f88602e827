"""Epoch plans: the base sampler that turns one plan per epoch into a sharded, resumable
torch Sampler. The numpy building blocks of the registered samplers (pools, exact counts,
mixtures, factor bins) are :mod:`.sampler_draws`; the samplers themselves :mod:`.samplers`.

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
from typing import Any, TypedDict

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

Plan = np.ndarray  # 1-D int64 array of global sample indices
SourceKey = int | str  # a source id, or its name when the sampler has source_names
# Separate random streams: the per-epoch plan vs choices made once per seed (fixed subsets).
_EPOCH_STREAM, _FIXED_STREAM = 0, 1


class CommonSamplerArgs(TypedDict, total=False):
    """The keyword arguments every sampler takes and hands to `EpochSampler` unchanged, so that a
    registered sampler's own signature lists only what it adds (``**common: Unpack[...]``)."""

    seed: int
    num_replicas: int | None
    rank: int | None
    drop_last: bool
    source_names: Sequence[str] | None


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

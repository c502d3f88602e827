"""``amount``: the total amount of training data times the real share (paper Table 7, Fig. 8), a
sampler of `gtahuman.data.samplers` (registered in ``SAMPLERS``; the base class, seeding,
sharding and resume are `gtahuman.data.sampler_plans`', the drawing helpers `sampler_draws`')."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Unpack

import numpy as np

from . import sampler_draws as draws
from .sampler_plans import CommonSamplerArgs, EpochSampler, SamplerConfigError, SourceKey
from .sampler_registry import register_sampler

_NESTED_SYNTHETIC_STREAM = 0x5E57  # the fixed synthetic order (nested amounts)


@register_sampler("amount")
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
        **common: Unpack[CommonSamplerArgs],
    ) -> None:
        super().__init__(sources, **common)
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
                int(n) for n in draws.allocate_exact_counts(np.array([real_ratio, 1.0 - real_ratio]), self.total)
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
        for source, count in zip(real_ids, draws.allocate_exact_counts(weights, self.real_count)):
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
        drawn = [draws.draw_from_pool(pool, count, rng) for pool, count in self.real_parts if count > 0]
        return np.concatenate(drawn) if drawn else np.empty(0, dtype=np.int64)

    def global_length(self) -> int:
        return self.total

    def _build_plan(self, rng: np.random.Generator) -> np.ndarray:
        real = self._fixed_real
        if real is None:
            real = self._draw_real(rng)
        synthetic = self._fixed_synthetic
        if synthetic is None:
            synthetic = draws.draw_from_pool(self.synthetic_pool, self.synthetic_count, rng)
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

"""Samplers: realised ratios and counts against the asked ones, thinning and balancing of a
factor's histogram, determinism, DDP sharding and mid-epoch resume."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gtahuman.data import sampler_draws as draws
from gtahuman.data import sampler_plans as plans
from gtahuman.data.samplers import SAMPLERS, SamplerConfigError, describe

REAL, SYNTH = 0, 1


def make_sources(sizes: list[int], seed: int = 0) -> np.ndarray:
    """Source ids with the given sizes, interleaved (not in blocks) like a real concatenation
    would not be, so no test can pass by relying on contiguous sources."""
    sources = np.repeat(np.arange(len(sizes)), sizes)
    return np.random.default_rng(seed).permutation(sources)


# Three real sources (ids 0, 1, 2) and one synthetic (id 3).
SIZES = [3000, 1000, 500, 12000]
SYNTHETIC = [3]


def real_fraction(sampler) -> float:
    plan = sampler.global_plan()
    return float(np.mean(~np.isin(sampler.sources[plan], SYNTHETIC)))


# --- building blocks, hand-computed ----------------------------------------------------------


def test_allocate_exact_counts_largest_remainder():
    # 10 * [1/3, 1/3, 1/3] = 3.33 each: one leftover unit goes to the first (ties to lower index)
    assert draws.allocate_exact_counts(np.array([1, 1, 1]), 10).tolist() == [4, 3, 3]
    # 7 * [0.5, 0.3, 0.2] = [3.5, 2.1, 1.4]: floors [3, 2, 1], the leftover goes to the .5
    assert draws.allocate_exact_counts(np.array([0.5, 0.3, 0.2]), 7).tolist() == [4, 2, 1]
    assert draws.allocate_exact_counts(np.array([0.3, 0.7]), 10).tolist() == [3, 7]


def test_draw_from_pool_uses_whole_passes_first():
    pool = np.arange(10, 20)
    drawn = draws.draw_from_pool(pool, 25, np.random.default_rng(0))
    per_sample = np.bincount(drawn - 10, minlength=10)
    assert drawn.size == 25 and set(per_sample.tolist()) == {2, 3}  # 2 passes + 5 distinct
    assert per_sample.sum() == 25 and (per_sample == 3).sum() == 5


def test_assign_bins_closes_the_last_bin_and_marks_nan():
    edges = np.array([0.0, 30.0, 90.0])
    values = np.array([-1.0, 0.0, 29.9, 30.0, 90.0, 90.1, np.nan])
    assert draws.assign_bins(values, edges).tolist() == [-1, 0, 0, 1, 1, -1, -1]


def test_inverse_density_weights_hand_computed():
    # bin 0 holds 3 samples, bin 1 one; raw weights [1/3]*3 + [1], mean 0.5 -> [2/3]*3 + [2];
    # the NaN sample (-1) gets the mean of the known weights, 1.
    weights = draws.inverse_density_weights(np.array([0, 0, 0, 1, -1]), 2, power=1.0, max_weight=None)
    np.testing.assert_allclose(weights, [2 / 3, 2 / 3, 2 / 3, 2.0, 1.0])
    clipped = draws.inverse_density_weights(np.array([0, 0, 0, 1, -1]), 2, power=1.0, max_weight=1.5)
    np.testing.assert_allclose(clipped, [2 / 3, 2 / 3, 2 / 3, 1.5, 3.5 / 4])
    uniform = draws.inverse_density_weights(np.array([0, 0, 0, 1]), 2, power=0.0, max_weight=None)
    np.testing.assert_allclose(uniform, 1.0)


# --- mixture ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_real_ratio_exact_counts(ratio):
    sources = make_sources(SIZES)
    sampler = SAMPLERS.build("mixture", sources=sources, real_ratio=ratio, synthetic_sources=SYNTHETIC)
    length = max(SIZES)  # default epoch length: the largest source
    assert len(sampler) == length
    real = int(np.sum(~np.isin(sources[sampler.global_plan()], SYNTHETIC)))
    assert real == round(ratio * length)
    # inside the real group the sources are weighted by size, 3000:1000:500
    counts = np.bincount(sources[sampler.global_plan()], minlength=4)
    if real:
        np.testing.assert_allclose(counts[:3] / real, np.array(SIZES[:3]) / 4500, atol=2 / real)


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_real_ratio_with_replacement_big_epoch(ratio):
    sampler = SAMPLERS.build(
        "mixture",
        sources=make_sources(SIZES),
        real_ratio=ratio,
        synthetic_sources=SYNTHETIC,
        replacement=True,
        epoch_length=200_000,
    )
    assert abs(real_fraction(sampler) - ratio) < 0.01


@pytest.mark.parametrize("replacement", [False, True])
def test_mmhuman3d_partition_gives_gta_half(replacement):
    # h36m, mpi_inf_3dhp, lsp, lspet, mpii, coco, gta with sizes unrelated to the partition
    names = ["h36m", "mpi_inf_3dhp", "lsp", "lspet", "mpii", "coco", "gta"]
    sources = make_sources([3120, 960, 100, 1000, 1500, 2800, 14000])
    sampler = SAMPLERS.build(
        "mixture",
        sources=sources,
        partition=[0.35, 0.15, 0.1, 0.1, 0.1, 0.2, 1],
        replacement=replacement,
        epoch_length=100_000 if replacement else None,
        source_names=names,
    )
    info = describe(sampler)
    assert abs(info["fractions"]["gta"] - 0.5) < 0.01
    assert abs(info["fractions"]["h36m"] - 0.175) < 0.01
    assert info["asked_fractions"]["coco"] == pytest.approx(0.1)
    assert sum(info["counts"].values()) == info["global_length"]


def test_partition_by_name_and_missing_names_error():
    sources = make_sources([100, 100, 100])
    names = ["a", "b", "c"]
    sampler = SAMPLERS.build(
        "mixture", sources=sources, partition={"a": 1, "b": 3, "c": 0}, source_names=names, epoch_length=400
    )
    assert describe(sampler)["counts"] == {"a": 100, "b": 300, "c": 0}
    with pytest.raises(SamplerConfigError, match=r"partition.*none for \['c'\]"):
        SAMPLERS.build("mixture", sources=sources, partition={"a": 1, "b": 1}, source_names=names)
    with pytest.raises(SamplerConfigError, match="3 weights"):
        SAMPLERS.build("mixture", sources=sources, partition=[1, 1])


# --- amount -----------------------------------------------------------------------------------


def test_amount_counts_and_fixed_real_subset():
    sources = make_sources([600, 400, 5000])  # real pool 1000, synthetic pool 5000
    sampler = SAMPLERS.build("amount", sources=sources, real_ratio=0.25, total=2000, synthetic_sources=[2])
    plans_by_epoch = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        plan = sampler.global_plan()
        assert plan.size == 2000 and np.unique(plan).size == 2000  # no repeats while pools last
        assert int(np.sum(sources[plan] != 2)) == 500
        plans_by_epoch.append(plan)
    real_sets = [set(p[sources[p] != 2].tolist()) for p in plans_by_epoch]
    synth_sets = [set(p[sources[p] == 2].tolist()) for p in plans_by_epoch]
    assert real_sets[0] == real_sets[1]  # the real subset is a fixed dataset
    assert synth_sets[0] != synth_sets[1]  # the synthetic part is redrawn each epoch


def test_amount_total_multiple_reproduces_fig8_axis():
    # "2x GTA": all real data plus twice as much synthetic
    sources = make_sources([600, 400, 5000])
    sampler = SAMPLERS.build(
        "amount", sources=sources, real_ratio=1 / 3, total_multiple=3, synthetic_sources=[2]
    )
    info = describe(sampler)
    assert (info["real_count"], info["synthetic_count"]) == (1000, 2000)
    plan = sampler.global_plan()
    assert set(plan[sources[plan] != 2].tolist()) == set(np.flatnonzero(sources != 2).tolist())


def test_fixed_synthetic_subsets_are_amounts_nested_across_runs_of_one_seed():
    sources = make_sources([600, 400, 5000])  # real pool 1000, synthetic pool 5000

    def synthetic_set(multiple: float, seed: int, epoch: int = 0) -> set[int]:
        sampler = SAMPLERS.build("amount", sources=sources, real_ratio=1 / (1 + multiple), total_multiple=1 + multiple,
                                 synthetic_sources=[2], fixed_synthetic_subset=True, seed=seed)
        sampler.set_epoch(epoch)
        plan = sampler.global_plan()
        assert np.unique(plan).size == plan.size  # every epoch visits the fixed set once
        return set(plan[sources[plan] == 2].tolist())

    quarter, half, double = synthetic_set(0.25, 0), synthetic_set(0.5, 0), synthetic_set(2.0, 0)
    assert (len(quarter), len(half), len(double)) == (250, 500, 2000)
    assert quarter < half < double  # nested
    assert synthetic_set(0.5, 0, epoch=3) == half  # the same samples every epoch
    assert synthetic_set(0.5, 1) != half  # another seed, another subset
    with pytest.raises(SamplerConfigError, match="fixed_synthetic_subset"):
        SAMPLERS.build("amount", sources=sources, real_ratio=1 / 7, total_multiple=7, synthetic_sources=[2],
                       fixed_synthetic_subset=True)


def test_amount_refuses_more_real_than_exists():
    sources = make_sources([600, 400, 5000])
    with pytest.raises(SamplerConfigError) as err:
        SAMPLERS.build("amount", sources=sources, real_ratio=0.75, total=2000, synthetic_sources=[2])
    message = str(err.value)
    assert "1500" in message and "1000" in message and "allow_repeat" in message
    repeated = SAMPLERS.build(
        "amount", sources=sources, real_ratio=0.75, total=2000, synthetic_sources=[2], allow_repeat=True
    )
    plan = repeated.global_plan()
    real_visits = np.bincount(plan[sources[plan] != 2], minlength=sources.size)[sources != 2]
    assert real_visits.sum() == 1500 and set(real_visits.tolist()) == {1, 2}  # one full pass + 500


def test_amount_real_partition_splits_the_real_part_by_weight_and_names_a_short_source():
    sources = make_sources([600, 400, 5000])  # two real sources, one synthetic
    pooled = SAMPLERS.build("amount", sources=sources, real_ratio=0.5, total=800, synthetic_sources=[2])
    plan = pooled.global_plan()
    assert np.bincount(sources[plan], minlength=3)[:2].sum() == 400  # pooled: about 240 / 160, by size
    split = SAMPLERS.build("amount", sources=sources, real_ratio=0.5, total=800, synthetic_sources=[2],
                           real_partition=[0.25, 0.75], source_names=["h36m", "coco", "gta"])
    for epoch in (0, 1):
        split.set_epoch(epoch)
        plan = split.global_plan()
        assert np.bincount(sources[plan], minlength=3).tolist() == [100, 300, 400]  # 400 real at 1:3
        assert np.unique(plan).size == plan.size
    assert describe(split)["real_partition"] == {"h36m": 100, "coco": 300}
    assert describe(pooled)["real_partition"] == "pooled"
    with pytest.raises(SamplerConfigError, match="at most 400 samples of real source 'coco'"):
        SAMPLERS.build("amount", sources=sources, real_ratio=0.5, total=1200, synthetic_sources=[2],
                       real_partition=[0.1, 0.9], source_names=["h36m", "coco", "gta"])  # coco: 540 of 400
    with pytest.raises(SamplerConfigError, match="one per real source"):
        SAMPLERS.build("amount", sources=sources, real_ratio=0.5, total=800, synthetic_sources=[2], real_partition=[1.0])


def test_amount_max_real_refuses_the_cells_the_paper_marks_na():
    sources = make_sources([600, 400, 5000])  # a real pool of 1000, capped at 300 (as the paper counts 300K)
    kept = SAMPLERS.build("amount", sources=sources, real_ratio=0.75, total=400, synthetic_sources=[2], max_real=300)
    assert describe(kept)["real_count"] == 300  # exactly at the cap: the paper's 75 % at 400K runs
    with pytest.raises(SamplerConfigError, match=r"max_real.*asks for 375: an N/A cell"):
        SAMPLERS.build("amount", sources=sources, real_ratio=0.75, total=500, synthetic_sources=[2], max_real=300)


def test_amount_synthetic_multiple_is_all_real_data_plus_k_times_as_much_synthetic():
    sources = make_sources([600, 400, 5000])  # a real pool of 1000
    for k, ratio in ((0.5, 2 / 3), (2.0, 1 / 3)):
        sampler = SAMPLERS.build("amount", sources=sources, real_ratio=round(ratio, 4), synthetic_multiple=k,
                                 synthetic_sources=[2], fixed_synthetic_subset=True)
        plan = sampler.global_plan()
        assert np.bincount(sources[plan] == 2, minlength=2).tolist() == [1000, round(1000 * k)]  # every real row once
    with pytest.raises(SamplerConfigError, match=r"real_ratio = 1 / \(1 \+ k\) = 0.3333"):
        SAMPLERS.build("amount", sources=sources, real_ratio=0.5, synthetic_multiple=2.0, synthetic_sources=[2])
    with pytest.raises(SamplerConfigError, match="exactly one of total, total_multiple and synthetic_multiple"):
        SAMPLERS.build("amount", sources=sources, real_ratio=0.5, total=10, synthetic_multiple=1.0, synthetic_sources=[2])


def test_sampler_arguments_turn_real_partition_weights_into_the_real_sources_weights():
    from gtahuman.data.mixing import sampler_arguments

    sources = [("h36m", "real", 0.35), ("gta", "synthetic", 1.0), ("coco", "real", 0.2)]
    args = sampler_arguments("amount", {"total": 10, "real_partition": "weights"}, 0.5, "blended", sources)
    assert args["real_partition"] == [0.35, 0.2] and args["synthetic_sources"] == [1]
    assert "real_partition" not in sampler_arguments("amount", {"real_partition": "pooled"}, 0.5, "blended", sources)
    with pytest.raises(ValueError, match="real_partition"):
        sampler_arguments("amount", {"real_partition": "by_size"}, 0.5, "blended", sources)


# --- scarcity ---------------------------------------------------------------------------------


def elevation_factor(n: int, seed: int = 1) -> np.ndarray:
    values = np.random.default_rng(seed).uniform(-30, 90, size=n)
    values[::50] = np.nan  # unknown for 2 %
    return values


def test_scarcity_keeps_fraction_per_bin_and_leaves_the_rest():
    sources = make_sources([4000, 6000])
    elevation = elevation_factor(sources.size)
    bins = [0.0, 30.0, 90.0]
    sampler = SAMPLERS.build(
        "scarcity",
        sources=sources,
        factors={"cam_elevation": elevation},
        factor="cam_elevation",
        bins=bins,
        keep_fraction=[0.5, 0.1],
    )
    plan = sampler.global_plan()
    assert np.unique(plan).size == plan.size  # each kept sample once per epoch
    visited = np.zeros(sources.size, dtype=bool)
    visited[plan] = True
    in_low = (elevation >= 0) & (elevation < 30)
    in_high = (elevation >= 30) & (elevation <= 90)
    assert abs(visited[in_low].sum() - 0.5 * in_low.sum()) <= 1
    assert abs(visited[in_high].sum() - 0.1 * in_high.sum()) <= 1
    untouched = ~(in_low | in_high)  # below 0 degrees or unknown
    assert visited[untouched].all()
    kept_before = set(plan.tolist())
    sampler.set_epoch(1)
    assert set(sampler.global_plan().tolist()) == kept_before  # thinned once, not per epoch
    assert not np.array_equal(sampler.global_plan(), plan)


def test_scarcity_drops_a_bin_of_one_source_only():
    sources = make_sources([4000, 6000])
    elevation = elevation_factor(sources.size)
    sampler = SAMPLERS.build(
        "scarcity",
        sources=sources,
        factors={"cam_elevation": elevation},
        factor="cam_elevation",
        bins=[30.0, 90.0],
        keep_fraction=0.0,
        apply_to_sources=[1],
    )
    visited = np.zeros(sources.size, dtype=bool)
    visited[sampler.global_plan()] = True
    high = elevation >= 30
    assert not visited[high & (sources == 1)].any()
    assert visited[high & (sources == 0)].all() and visited[~high].all()


# --- balance ----------------------------------------------------------------------------------


def test_balance_flattens_a_skewed_histogram():
    per_bin = [8000, 1600, 320, 64, 16]  # max/min 500 under uniform sampling
    factor = np.concatenate([np.full(n, b + 0.5) for b, n in enumerate(per_bin)])
    factor = np.random.default_rng(2).permutation(factor)
    sources = np.zeros(factor.size, dtype=np.int64)
    edges = np.arange(6.0)
    sampler = SAMPLERS.build(
        "balance", sources=sources, factors={"pose": factor}, factor="pose", bins=edges.tolist()
    )
    uniform_hist = np.histogram(factor, edges)[0]
    balanced_hist = np.histogram(factor[sampler.global_plan()], edges)[0]
    uniform_ratio = uniform_hist.max() / uniform_hist.min()
    balanced_ratio = balanced_hist.max() / balanced_hist.min()
    assert uniform_ratio == 500
    assert balanced_ratio < 1.5 and balanced_ratio < uniform_ratio / 100


def test_balance_gives_unknown_factors_the_mean_weight():
    factor = np.array([0.1, 0.2, 0.3, 0.9, np.nan, np.nan])
    sampler = SAMPLERS.build(
        "balance", sources=np.zeros(6, dtype=np.int64), factors={"f": factor}, factor="f", bins=2
    )
    known = np.isfinite(factor)
    np.testing.assert_allclose(sampler.weights[~known], sampler.weights[known].mean())
    np.testing.assert_allclose(sampler.weights[known], [2 / 3, 2 / 3, 2 / 3, 2.0])


def test_unknown_factor_names_the_available_ones():
    with pytest.raises(KeyError, match=r"'pose'.*\['cam_elevation'\]"):
        SAMPLERS.build(
            "balance", sources=np.zeros(3, dtype=np.int64), factors={"cam_elevation": np.ones(3)}, factor="pose"
        )


# --- every registered sampler: build, determinism, DDP, resume ---------------------------------


def minimal_args(name: str) -> dict:
    sources = make_sources([50, 30, 200])
    elevation = elevation_factor(sources.size)
    factors = {"cam_elevation": elevation}
    return {
        "mixture": dict(sources=sources),
        "amount": dict(sources=sources, real_ratio=0.5, total=100, synthetic_sources=[2]),
        "scarcity": dict(sources=sources, factors=factors, factor="cam_elevation", bins=[30, 90], keep_fraction=0.2),
        "balance": dict(sources=sources, factors=factors, factor="cam_elevation"),
        "sequential": dict(sources=sources),
    }[name]


ALL = ["amount", "balance", "mixture", "scarcity", "sequential"]
SHUFFLED = [n for n in ALL if n != "sequential"]


def test_every_registered_name_is_covered():
    assert SAMPLERS.names() == ALL


@pytest.mark.parametrize("name", ALL)
def test_builds_with_minimal_args(name):
    sampler = SAMPLERS.build(name, **minimal_args(name))
    indices = list(sampler)
    assert len(indices) == len(sampler) == sampler.global_length() > 0
    assert all(isinstance(i, int) and 0 <= i < 280 for i in indices)


@pytest.mark.parametrize("name", SHUFFLED)
def test_plan_is_a_function_of_seed_and_epoch(name):
    first = SAMPLERS.build(name, **minimal_args(name), seed=7)
    again = SAMPLERS.build(name, **minimal_args(name), seed=7)
    first.set_epoch(3)
    again.set_epoch(3)
    np.testing.assert_array_equal(first.global_plan(), again.global_plan())
    epoch_3 = first.global_plan().copy()
    first.set_epoch(4)
    assert not np.array_equal(first.global_plan(), epoch_3)
    other_seed = SAMPLERS.build(name, **minimal_args(name), seed=8)
    other_seed.set_epoch(3)
    assert not np.array_equal(other_seed.global_plan(), epoch_3)


@pytest.mark.parametrize("name", SHUFFLED)
@pytest.mark.parametrize("drop_last", [False, True])
def test_two_ranks_split_the_global_plan(name, drop_last):
    ranks = [
        SAMPLERS.build(name, **minimal_args(name), num_replicas=2, rank=r, drop_last=drop_last) for r in (0, 1)
    ]
    for sampler in ranks:
        sampler.set_epoch(2)
    plan = ranks[0].global_plan()
    seen = [list(sampler) for sampler in ranks]
    assert len(seen[0]) == len(seen[1]) == len(ranks[0])
    # interleave the ranks back: positions 0,1,2,... of the (padded or cut) global plan
    merged = np.array([i for pair in zip(*seen) for i in pair])
    if drop_last:
        assert len(seen[0]) == plan.size // 2
        np.testing.assert_array_equal(merged, plan[: merged.size])
    else:
        assert len(seen[0]) == -(-plan.size // 2)
        np.testing.assert_array_equal(merged[: plan.size], plan)
        assert merged.size - plan.size in (0, 1) and np.all(merged[plan.size :] == plan[: merged.size - plan.size])


@pytest.mark.parametrize("name", ["amount", "scarcity"])  # plans without repeated samples
def test_two_ranks_see_disjoint_samples(name):
    ranks = [SAMPLERS.build(name, **minimal_args(name), num_replicas=2, rank=r, drop_last=True) for r in (0, 1)]
    a, b = (set(sampler) for sampler in ranks)
    assert not a & b
    assert len(a | b) == 2 * len(ranks[0])


def test_sequential_gives_contiguous_blocks_without_padding():
    sources = np.zeros(11, dtype=np.int64)
    blocks = [list(SAMPLERS.build("sequential", sources=sources, num_replicas=3, rank=r)) for r in range(3)]
    assert [len(b) for b in blocks] == [4, 4, 3]
    assert sum(blocks, []) == list(range(11))


def test_sequential_refuses_drop_last():
    with pytest.raises(SamplerConfigError, match="'drop_last'"):
        SAMPLERS.build("sequential", sources=np.zeros(5, dtype=np.int64), drop_last=True)


@pytest.mark.parametrize("name", ALL)
def test_every_sampler_takes_the_common_arguments_and_refuses_others(name):
    """The common arguments reach the base class through ``**common`` (one list, in
    sampler_plans.CommonSamplerArgs); a misspelt one is an error that names it."""
    names = ["a", "b", "c"]  # minimal_args has three sources
    sampler = SAMPLERS.build(name, **minimal_args(name), seed=7, num_replicas=2, rank=1, source_names=names)
    assert (sampler.seed, sampler.num_replicas, sampler.rank, sampler.source_names) == (7, 2, 1, names)
    with pytest.raises(TypeError, match="num_replica"):
        SAMPLERS.build(name, **minimal_args(name), num_replica=2)


def test_world_size_read_from_torch_distributed(monkeypatch):
    monkeypatch.setattr(plans.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(plans.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(plans.dist, "get_rank", lambda: 1)
    sampler = SAMPLERS.build("sequential", sources=np.zeros(5, dtype=np.int64))
    assert (sampler.num_replicas, sampler.rank, list(sampler)) == (2, 1, [3, 4])


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("rank", [0, 1])
def test_resume_mid_epoch_continues_exactly(name, rank):
    def build():
        sampler = SAMPLERS.build(name, **minimal_args(name), seed=3, num_replicas=2, rank=rank)
        sampler.set_epoch(5)
        return sampler

    uninterrupted = list(build())
    interrupted = build()
    consumed = list(itertools.islice(iter(interrupted), 17))
    state = interrupted.state_dict()
    assert state["consumed"] == 17 and state["epoch"] == 5

    resumed = SAMPLERS.build(name, **minimal_args(name), seed=3, num_replicas=2, rank=rank)
    resumed.load_state_dict(state)
    resumed.set_epoch(5)  # Lightning sets the epoch again after loading: the position must stay
    assert len(resumed) == len(uninterrupted)  # the full epoch length, as Lightning expects
    assert consumed + list(resumed) == uninterrupted
    assert list(resumed) == uninterrupted  # iterating again replays the whole epoch


def test_resume_refuses_a_changed_plan():
    state = SAMPLERS.build("amount", **minimal_args("amount"), seed=3).state_dict(consumed=10)
    with pytest.raises(SamplerConfigError, match="seed"):
        SAMPLERS.build("amount", **minimal_args("amount"), seed=4).load_state_dict(state)
    changed = {**minimal_args("amount"), "real_ratio": 0.3}
    with pytest.raises(SamplerConfigError, match="plan_digest"):
        SAMPLERS.build("amount", **changed, seed=3).load_state_dict(state)
    with pytest.raises(SamplerConfigError, match="num_replicas"):
        SAMPLERS.build("amount", **minimal_args("amount"), seed=3, num_replicas=2, rank=0).load_state_dict(state)

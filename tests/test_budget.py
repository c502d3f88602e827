"""gtahuman.data.budget: a run's steps and samples per source, counted from the samplers built by
gtahuman.data.mixing from sizes alone (no files), against hand counts."""
from __future__ import annotations

import numpy as np
import pytest

from gtahuman.data.budget import Budget, count_budget, differences, planned_steps
from gtahuman.data.mixing import MixPart, build_train_samplers

# Sizes of the paper's real training sets (mmhuman3d's npz files) and GTA-Human's frames.
H36M, MPI, LSP, COCO, GTA = 312_188, 96_507, 10_000, 28_344, 1_400_000


def test_planned_steps_by_epochs_steps_accumulation_and_limits() -> None:
    assert planned_steps(100, max_epochs=3, max_steps=-1) == (300, 3, 100)
    assert planned_steps(100, max_epochs=3, max_steps=250) == (250, 3, 100)  # cut in the third epoch
    assert planned_steps(100, max_epochs=-1, max_steps=250) == (250, 3, 100)
    assert planned_steps(101, max_epochs=2, max_steps=-1, accumulate=4) == (52, 2, 101)  # ceil(101 / 4) per epoch
    assert planned_steps(100, max_epochs=2, max_steps=-1, limit_train_batches=10) == (20, 2, 10)
    assert planned_steps(100, max_epochs=2, max_steps=-1, limit_train_batches=0.25) == (50, 2, 25)
    with pytest.raises(ValueError, match="both unbounded"):
        planned_steps(100, max_epochs=-1, max_steps=-1)


def test_blended_real_ratio_on_realistic_sizes_equals_a_hand_count() -> None:
    parts = [MixPart("h36m", H36M), MixPart("mpi", MPI), MixPart("gta", GTA, "synthetic")]
    samplers = build_train_samplers(parts, "blended", "mixture",
                                    {"real_ratio": 0.5, "synthetic_sources": ["gta"]}, epoch_length=None, seed=0)
    budget = count_budget(samplers, batch_size=64, drop_last=True, max_epochs=2, max_steps=-1)
    # epoch = the largest source (GTA, 1.4 M); 1,400,000 / 64 = 21,875 batches, exactly
    assert budget.batches_per_epoch == 21_875 and budget.steps == 43_750 and budget.epochs == 2
    assert budget.total_seen == 2 * 1_400_000
    assert budget.samples_seen["gta"] == 2 * 700_000  # half of each epoch, exact counts
    # inside the real half, sources by size: h36m 312,188 / 408,695 of 700,000 (within one sample)
    assert abs(budget.samples_seen["h36m"] - 2 * 700_000 * H36M / (H36M + MPI)) <= 2
    assert budget.pool == {"h36m": H36M, "mpi": MPI, "gta": GTA}
    # 700,000 GTA draws per epoch without replacement from 1.4 M: each epoch half of them, new
    # every epoch, so the two epochs cover between half and all of GTA
    assert 700_000 <= budget.unique_samples["gta"] <= GTA
    assert budget.unique_samples["h36m"] == H36M  # 535 K draws per epoch cover H36M whole


def test_adaptation_each_draws_a_whole_batch_of_each_domain_per_step() -> None:
    """The uncontrolled protocol (adaptation_batch='each'): twice the samples per step, the real
    side's epoch (fewer steps than BT)."""
    parts = [MixPart("h36m", H36M), MixPart("coco", COCO), MixPart("gta", GTA, "synthetic")]
    samplers = build_train_samplers(parts, "adaptation", "mixture", {}, epoch_length=None, seed=0,
                                    adaptation_batch="each")
    assert set(samplers) == {"source", "target"}
    budget = count_budget(samplers, batch_size=32, drop_last=True, max_epochs=1, max_steps=-1)
    # the source epoch is its largest source (H36M); the target cycles for as long
    assert budget.steps == H36M // 32 == 9_755
    assert budget.batch == {"source": 32, "target": 32}
    assert budget.samples_seen["gta"] == 9_755 * 32
    assert budget.samples_seen["h36m"] + budget.samples_seen["coco"] == 9_755 * 32
    assert budget.total_seen == 2 * 9_755 * 32  # twice a blended run's samples at the same batch


def test_adaptation_split_has_the_blended_runs_steps_and_samples_per_source() -> None:
    parts = [MixPart("h36m", H36M), MixPart("coco", COCO), MixPart("gta", GTA, "synthetic")]
    blended = count_budget(build_train_samplers(parts, "blended", "mixture",
                                                {"real_ratio": 0.5, "synthetic_sources": [2], "partition": [1, 1, 1]},
                                                epoch_length=None, seed=0),
                           batch_size=64, drop_last=True, max_epochs=2, max_steps=-1)
    split = count_budget(build_train_samplers(parts, "adaptation", "mixture", {"partition": [1, 1]},
                                              epoch_length=None, seed=0),
                         batch_size=32, drop_last=True, max_epochs=2, max_steps=-1)
    # blended: epoch = GTA's 1.4 M rows / 64 = 21,875 steps; split: 700 K real at 32 per batch
    assert split.steps == blended.steps == 43_750
    assert split.samples_seen == blended.samples_seen  # 700 K GTA, 350 K H36M, 350 K COCO per epoch
    assert split.samples_seen["coco"] == 2 * 350_000
    assert differences(split, blended) == ["batch 32 source + 32 target vs 64 train"]


def test_max_steps_cut_counts_the_consumed_prefix_and_unique_rows() -> None:
    parts = [MixPart("a", 10), MixPart("b", 30)]
    samplers = build_train_samplers(parts, "blended", "mixture", {"partition": [1, 1]}, epoch_length=20, seed=3)
    budget = count_budget(samplers, batch_size=4, drop_last=False, max_epochs=5, max_steps=12)
    assert (budget.steps, budget.epochs, budget.batches_per_epoch) == (12, 3, 5)
    # by hand from the plans: epochs 0 and 1 whole, epoch 2's first 2 batches (8 samples)
    sampler = build_train_samplers(parts, "blended", "mixture", {"partition": [1, 1]}, epoch_length=20, seed=3)["train"]
    drawn = []
    for epoch, take in ((0, 20), (1, 20), (2, 8)):
        sampler.set_epoch(epoch)
        drawn.append(sampler.global_plan()[:take])
    drawn = np.concatenate(drawn)
    assert budget.samples_seen == {"a": int((drawn < 10).sum()), "b": int((drawn >= 10).sum())}
    assert budget.unique_samples == {"a": len(set(drawn[drawn < 10])), "b": len(set(drawn[drawn >= 10]))}
    assert budget.total_seen == 48


def test_nested_amounts_differ_in_gta_alone_at_equal_steps() -> None:
    """Fig. 8: amounts as fixed nested GTA subsets with a fixed number of steps."""
    parts = [MixPart("h36m", 1000), MixPart("gta", 4000, "synthetic")]
    budgets = {}
    for multiple in (0.25, 0.5, 1.0):
        args = {"real_ratio": 1 / (1 + multiple), "synthetic_sources": ["gta"], "total_multiple": 1 + multiple,
                "fixed_synthetic_subset": True}
        samplers = build_train_samplers(parts, "blended", "amount", args, epoch_length=None, seed=0)
        budgets[multiple] = count_budget(samplers, batch_size=50, drop_last=True, max_epochs=-1, max_steps=100)
    assert {b.steps for b in budgets.values()} == {100}
    assert [budgets[m].unique_samples["gta"] for m in (0.25, 0.5, 1.0)] == [250, 500, 1000]
    assert differences(budgets[0.25], budgets[0.25]) == []
    said = differences(budgets[0.25], budgets[1.0])
    assert not any(s.startswith("steps") for s in said) and any(s.startswith("gta samples seen") for s in said)


def test_differences_and_json_round_trip(tmp_path) -> None:
    a = Budget(steps=100, epochs=1, batches_per_epoch=100, batch={"train": 32}, samples_seen={"x": 3200},
               unique_samples={"x": 1000}, pool={"x": 1000})
    b = Budget(steps=50, epochs=1, batches_per_epoch=50, batch={"source": 32, "target": 32},
               samples_seen={"x": 1600, "y": 1600}, unique_samples={"x": 1000, "y": 1600}, pool={"x": 1000, "y": 9000})
    assert differences(a, b) == ["steps 100 vs 50", "batch 32 train vs 32 source + 32 target",
                                 "x samples seen 3,200 vs 1,600", "y samples seen 0 vs 1,600"]
    assert differences(a, Budget(**{**a.__dict__, "samples_seen": {"x": 3230}}), tolerance=0.01) == []
    a.save(tmp_path / "budget.json")
    assert Budget.load(tmp_path / "budget.json") == a


def test_factor_samplers_say_they_need_the_data() -> None:
    parts = [MixPart("gta", 100, "synthetic")]
    with pytest.raises(ValueError, match="needs the data: no index for gta"):
        build_train_samplers(parts, "blended", "scarcity", {"factor": "cam_elevation", "bins": [0, 30, 90], "keep_fraction": 0.5},
                             epoch_length=None, seed=0)["train"].global_plan()

"""A run's training budget, counted from its samplers before it trains (issue 19).

Two rows of a table compare like with like only if they train for the same number of optimiser
steps on the same samples per source, or say what differs. The samplers already decide every
sample an epoch draws (their plans are seeded per epoch), so the budget is counted, not
estimated: for each epoch the run starts, the part of the epoch's plan that the steps consume,
per source. What it holds:

- ``steps``: optimiser steps (``max_steps``, or ``max_epochs`` x steps per epoch, whichever ends
  first; ``accumulate_grad_batches`` batches per step);
- ``batch``: samples per batch per loader (``train``, or ``source`` and ``target`` in adaptation
  mode, where every step draws one batch of each);
- ``samples_seen`` and ``unique_samples`` per source, and each source's ``pool`` (its rows).

`count_budget` takes the data module's own samplers (`MixedDataModule.plan_samplers`), so what it
counts is what training draws; `train()` writes it to every run directory as ``budget.json``.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gtahuman.atomic import atomic_write_text
from gtahuman.data.mixing import build_train_samplers, configured_sampler_arguments, loader_batch

BUDGET_FILE = "budget.json"


@dataclass(frozen=True)
class Budget:
    steps: int
    epochs: int  # epochs the run starts (the last may be cut short by max_steps)
    batches_per_epoch: int
    batch: dict[str, int]  # loader -> samples per batch
    samples_seen: dict[str, int]  # source -> samples drawn over the whole run
    unique_samples: dict[str, int]  # source -> distinct rows among them
    pool: dict[str, int]  # source -> rows it holds

    @property
    def total_seen(self) -> int:
        return int(sum(self.samples_seen.values()))

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "total_seen": self.total_seen}

    def save(self, path: str | Path) -> None:
        """Atomic write: a reader never sees half a budget."""
        atomic_write_text(path, json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Budget:
        data = json.loads(Path(path).read_text())
        return cls(**{k: data[k] for k in ("steps", "epochs", "batches_per_epoch", "batch", "samples_seen",
                                           "unique_samples", "pool")})


def differences(a: Budget, b: Budget, tolerance: float = 0.0) -> list[str]:
    """What differs between two budgets, in words (empty when they match): steps, per-loader
    batch, and samples seen per source (relative ``tolerance``: draws of a mixture round)."""
    out = []
    if a.steps != b.steps:
        out.append(f"steps {a.steps:,} vs {b.steps:,}")
    if a.batch != b.batch:
        out.append(f"batch {_counts(a.batch)} vs {_counts(b.batch)}")
    for source in sorted(set(a.samples_seen) | set(b.samples_seen)):
        x, y = a.samples_seen.get(source, 0), b.samples_seen.get(source, 0)
        if abs(x - y) > tolerance * max(x, y):
            out.append(f"{source} samples seen {x:,} vs {y:,}")
    return out


def _counts(mapping: Mapping[str, int]) -> str:
    return " + ".join(f"{v} {k}" for k, v in mapping.items())


def loader_batches(length: int, batch: int, drop_last: bool) -> int:
    """Batches a loader gives over ``length`` samples."""
    return length // batch if drop_last else math.ceil(length / batch)


def planned_steps(batches_per_epoch: int, max_epochs: int, max_steps: int, accumulate: int = 1,
                  limit_train_batches: float | int | None = None) -> tuple[int, int, int]:
    """(optimiser steps, epochs started, batches per epoch after ``limit_train_batches``), as
    Lightning runs them: an epoch of B batches makes ceil(B / accumulate) steps; the run stops
    at ``max_steps`` (if >= 0) or after ``max_epochs`` (if >= 0), whichever comes first."""
    if isinstance(limit_train_batches, int):  # Lightning: an int is a number of batches
        batches_per_epoch = min(batches_per_epoch, limit_train_batches)
    elif limit_train_batches is not None:  # a float is a fraction of the epoch
        batches_per_epoch = int(batches_per_epoch * float(limit_train_batches))
    if max_epochs < 0 and max_steps < 0:
        raise ValueError("budget: trainer.max_epochs and trainer.max_steps are both unbounded (-1); give one")
    steps_per_epoch = math.ceil(batches_per_epoch / accumulate)
    if steps_per_epoch == 0:
        return 0, 0, batches_per_epoch
    by_epochs = max_epochs * steps_per_epoch if max_epochs >= 0 else None
    steps = min(s for s in (by_epochs, max_steps if max_steps >= 0 else None) if s is not None)
    return steps, math.ceil(steps / steps_per_epoch), batches_per_epoch


def count_budget(samplers: Mapping[str, Any], batch_size: int | Mapping[str, int], drop_last: bool, max_epochs: int,
                 max_steps: int, accumulate: int = 1, limit_train_batches: float | int | None = None) -> Budget:
    """The budget of a run drawn by ``samplers`` (loader name -> `EpochSampler`, global plans),
    ``batch_size`` samples per batch (one number for every loader, or one per loader). The
    samplers are moved through the epochs the run starts (`set_epoch`); pass fresh ones
    (`MixedDataModule.plan_samplers`)."""
    batches = {name: int(batch_size[name] if isinstance(batch_size, Mapping) else batch_size) for name in samplers}
    lengths = {name: loader_batches(s.global_length(), batches[name], drop_last) for name, s in samplers.items()}
    # adaptation: Lightning's CombinedLoader 'max_size_cycle' runs the longest loader's batches
    steps, epochs, per_epoch = planned_steps(max(lengths.values(), default=0), max_epochs, max_steps, accumulate,
                                             limit_train_batches)
    seen: dict[str, int] = {}
    unique: dict[str, int] = {}
    pool: dict[str, int] = {}
    for name, sampler in samplers.items():
        drawn = np.zeros(sampler.num_sources, np.int64)
        marked = np.zeros(len(sampler.sources), bool)
        batches_left = steps * accumulate
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            plan = sampler.global_plan()
            # the data module gives both adaptation loaders the same epoch length, so no loader
            # cycles inside an epoch; a partial last batch (drop_last off) is the plan's tail
            part = plan[:min(per_epoch, batches_left) * batches[name]]
            drawn += np.bincount(sampler.sources[part], minlength=sampler.num_sources)
            marked[part] = True
            batches_left -= per_epoch
        for s in range(sampler.num_sources):
            name = sampler.source_label(s)
            rows = sampler.sources == s
            seen[name], unique[name], pool[name] = int(drawn[s]), int(marked[rows].sum()), int(rows.sum())
    return Budget(steps=int(steps), epochs=int(epochs), batches_per_epoch=int(per_epoch), batch=batches,
                  samples_seen=seen, unique_samples=unique, pool=pool)


def config_budget(cfg: Any, parts: Any) -> Budget:
    """The budget a run of config ``cfg`` draws from ``parts`` (`gtahuman.data.mixing.MixPart` per
    train source, in the config's order; sizes suffice unless the sampler reads a factor): the
    same samplers the data module builds, on one process. The one rule that turns a config into
    samples per source, for reports that have no data module (design, analyses of old runs)."""
    d, t = cfg.data, cfg.trainer
    args = configured_sampler_arguments(d, [(p.name, p.role) for p in parts])
    samplers = build_train_samplers(parts, d.mode, d.sampler, args, d.epoch_length, cfg.run.seed,
                                    adaptation_batch=d.adaptation_batch)
    return count_budget(samplers, loader_batch(d.batch_size, d.mode, d.adaptation_batch), True, int(t.max_epochs),
                        int(t.max_steps), int(t.accumulate_grad_batches), t.limit_train_batches)


def datamodule_budget(dm: Any, trainer_cfg: Any) -> Budget:
    """`count_budget` for a `MixedDataModule` and the config's ``trainer`` section, on one process
    (global batch and plans; a run on several processes draws the same samples in total)."""
    world = dm.layout()[0]
    return count_budget(dm.plan_samplers(), dm.train_batch() * world, dm.drop_last, int(trainer_cfg.max_epochs),
                        int(trainer_cfg.max_steps), int(trainer_cfg.accumulate_grad_batches),
                        trainer_cfg.limit_train_batches)

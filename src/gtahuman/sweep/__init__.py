"""Optuna sweeps over experiment configs (paper Table 7: real ratio x total amount).

``python -m experiments.sweep sweep=NAME`` runs one worker; see docs/SWEEPS.md.

- config.py: the sweep schema (experiment, overrides, search space, sampler, pruner, storage);
- study.py: storage (SQLite safe for several processes, or any SQLAlchemy URL), shared budget,
  recovery of interrupted trials;
- objective.py: one trial = one ``gtahuman.train.train`` run directory; validation reporting
  and pruning;
- run.py: the worker loop; report.py: trial table, best trial, heat map.
"""
from gtahuman.sweep.config import SweepConfig, load_sweep_config, split_arguments, sweep_names

# run_worker / report_only live in gtahuman.sweep.run (it imports Lightning; the CLI's --list
# and --print-config do not need it).
__all__ = ["SweepConfig", "load_sweep_config", "split_arguments", "sweep_names"]

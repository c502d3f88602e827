"""Run one sweep worker: ``python -m experiments.sweep sweep=NAME [sweep.key=value ...] [key=value ...]``.

``sweep=NAME`` picks experiments/configs/sweep/NAME.yaml (or a path to a .yaml file);
``sweep.key=value`` changes the sweep (``sweep.n_trials=10``, ``sweep.storage=postgresql://...``,
``sweep.sampler.name=tpe``); any other ``key=value`` is an override of the experiment config of
every trial (``trainer.max_epochs=2``). Start the same command several times, on one machine or
many, to share one study (docs/SWEEPS.md); a killed worker's trial is re-run by the next worker.

``--list`` shows the sweeps, ``--print-config`` the resolved sweep config, ``--report`` rewrites
the trial table, best trial and heat map of an existing study without running trials.

Exit status: 0 when the study has a completed trial; 1 when none completed (every trial failed,
was not applicable or was pruned), with the first failed trial's own error, run directory and
run.log; 2 for a config error.
"""
from __future__ import annotations

import sys
import warnings

from gtahuman.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        print(__doc__)
        return 0
    from gtahuman.sweep.config import load_sweep_config, split_arguments, sweep_names

    if "--list" in args:
        print("\n".join(sweep_names()))
        return 0
    flags = {a for a in args if a.startswith("--")}
    unknown = flags - {"--print-config", "--report"}
    if unknown:
        print(f"unknown option(s) {sorted(unknown)}; see --help", file=sys.stderr)
        return 2
    try:
        name, sweep_args, experiment_args = split_arguments([a for a in args if not a.startswith("--")])
        if name is None:
            raise ConfigError("give the sweep to run: sweep=NAME (python -m experiments.sweep --list)")
        cfg = load_sweep_config(name, sweep_args, experiment_args)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    if "--print-config" in flags:
        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(cfg))
        return 0
    warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
    from gtahuman.sweep.run import report_only, run_worker

    failure = None
    try:
        if "--report" in flags:
            written = report_only(cfg)
        else:
            result = run_worker(cfg)
            written, failure = result.report, result.failure
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    if "markdown" in written:
        print(written["markdown"].read_text())
    print("\n".join(f"{kind}: {path}" for kind, path in written.items()))
    if failure:  # no trial completed: a failed sweep, with the first trial's own error
        print(f"error: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

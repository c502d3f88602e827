"""Run one experiment: ``python -m experiments.run [experiment=NAME] [key=value ...]``.

With no arguments it runs the quickstart on the procedural mini world (generated on first use):
blended training of a small HMR on CPU, evaluation on the wild-test set, and a results table next
to two baselines (the training data's best constant prediction and the SMPL mean parameters;
`gtahuman.results_table`). ``experiment=NAME`` picks experiments/configs/experiment/NAME.yaml;
``key=value`` overrides any config key (a typo is an error naming the key). ``--list`` shows the
experiments and ``--print-config`` the resolved config without running.

Every value is checked before any work (`gtahuman.config_checks`: ranges, registry names, keys
that must agree): a bad one exits with status 2 and a message naming the key, its value and what
was expected, without generating, preparing or writing anything (``--print-config`` included).
"""
from __future__ import annotations

import sys
import warnings

from gtahuman.atomic import DiskFullError
from gtahuman.config import ConfigError, experiment_names, load_config, require_complete, to_yaml
from gtahuman.config_checks import validate_config


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        print(__doc__)
        return 0
    if "--list" in args:
        print("\n".join(experiment_names()))
        return 0
    show_only = "--print-config" in args
    args = [a for a in args if a != "--print-config"]
    try:
        cfg = load_config(args)
        validate_config(cfg)  # ranges, registry names, mode agreement: before any work
        if not show_only and not cfg.dry_run:
            require_complete(cfg)  # a real-data row without body.model_dir etc. stops here, clearly
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    if show_only:
        print(to_yaml(cfg))
        return 0
    if cfg.dry_run:  # check the config against the files, train nothing (docs/REPRODUCE.md)
        from experiments.check import run_check

        return run_check(cfg)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
    from gtahuman.results_table import format_results
    from gtahuman.train import train  # heavy imports only when running

    try:
        metrics = train(cfg)
    except ConfigError as err:  # a value only training can judge (e.g. a video row's sources)
        print(f"config error: {err}", file=sys.stderr)
        return 2
    except DiskFullError as err:  # a checkpoint or cache write ran out of space: say where, and how to go on
        from gtahuman.run_signals import resume_command

        command, _ = resume_command(cfg, args) if cfg.run.run_id else ("the same command", False)
        print(f"error: {err.strerror}\nfree space there, then continue the run with:\n  {command}", file=sys.stderr)
        return 1
    print()
    print(format_results(metrics))
    print(f"run directory: {metrics['run_dir']}  (wall time {metrics['wall_time_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

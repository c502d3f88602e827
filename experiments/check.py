"""Check an experiment before training: ``python -m experiments.check [experiment=NAME] [key=value ...]``.

Validates the config against the files on disk (`gtahuman.check`): every path a key points to
(each missing file named with its key), every prepared index against its manifest and source
checksums, the body model, one training batch on one device (step time, peak memory), and what
the run will do (samples per epoch per source, steps, estimated time). Nothing is trained and no
run directory is written. ``python -m experiments.run ... dry_run=true`` does the same.

Options: ``--prepare`` prepares sources that are not prepared yet (on the mini world it always
does, as the world is generated on demand), ``--steps N`` training steps to time (default 3),
``--no-step`` skips building the model. Exit status: 0 no problems, 1 problems, 2 config error.
"""
from __future__ import annotations

import sys
import warnings

from omegaconf import DictConfig

from gtahuman.config import ConfigError, load_config
from gtahuman.config_checks import validate_config

OPTIONS = ("--prepare", "--no-step", "--steps")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        print(__doc__)
        return 0
    steps, rest = 3, []
    for i, arg in enumerate(args):
        if arg == "--steps" or (i and args[i - 1] == "--steps"):
            continue
        rest.append(arg)
    if "--steps" in args:
        position = args.index("--steps")
        try:
            steps = int(args[position + 1])
        except (IndexError, ValueError):
            print("--steps needs a number, e.g. --steps 3", file=sys.stderr)
            return 2
    unknown = [a for a in rest if a.startswith("--") and a not in OPTIONS]
    if unknown:
        print(f"unknown option(s) {unknown}; see --help", file=sys.stderr)
        return 2
    overrides = [a for a in rest if not a.startswith("--")]
    try:
        cfg = load_config(overrides)
        validate_config(cfg)  # a bad value is a config error (exit 2), before any file is looked at
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    return run_check(cfg, prepare=True if "--prepare" in rest else None, steps=steps, measure="--no-step" not in rest)


def run_check(cfg: DictConfig, prepare: bool | None = None, steps: int = 3, measure: bool = True) -> int:
    """Print the check report of ``cfg``; the exit status (0 ok, 1 problems)."""
    warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
    from gtahuman.check import check

    report = check(cfg, prepare=prepare, steps=steps, measure=measure)
    print(report.format())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

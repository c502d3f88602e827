"""Evaluate a checkpoint: ``python -m experiments.evaluate ckpt=PATH [set=NAME ...] [protocol=NAME] [key=value ...]``.

``ckpt`` is a checkpoint inside a run directory (``<run>/checkpoints/best.ckpt`` or ``last.ckpt``);
the system is rebuilt from the checkpoint alone (``HMRSystem.load_from_checkpoint``) and the data
from the run's saved ``config.yaml`` (+ any ``key=value`` overrides, e.g. a path to a new test file).

``set=NAME`` picks an eval set by its name in the run's config: any of ``data.test``, ``data.val``
or ``data.train`` (train sources are read without augmentation); repeat it or separate names
with commas; default: every test set. ``protocol=NAME`` evaluates every chosen set under that
protocol (gtahuman.evaluation.PROTOCOLS); default: each set's own (``eval.protocols``, else the
set's name when it is a protocol, else ``eval.protocol``), as in training.

For each set the results go into a new folder of the run directory,
``evaluations/<set>-<protocol>/`` (``-2``, ``-3``... when it exists): ``metrics.json`` (the
summary in mm next to the two baselines, which checkpoint, the git commit) and the same
per-sample files as a run's ``predictions/`` (``<set>.npz`` with sample ids, errors, predictions
and factors; ``<set>_features.npz``). The table is printed at the end.

Baselines, as at the end of training: ``constant_baseline`` (the training data's best constant:
the one the run saved in ``constant_prediction.npz`` / metrics.json, else computed again from the
run's config and its train sampler's epoch-0 plan; `gtahuman.constant_baseline`) and
``mean_pose_baseline`` (the SMPL mean parameters).
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from omegaconf import OmegaConf

from gtahuman.data.formats.errors import DataFormatError
from gtahuman.config import ConfigError, load_run_config, require_complete
from gtahuman.rundir import CONFIG_FILE, METRICS_FILE, RunDir, git_commit

EVALUATIONS_DIR = "evaluations"


def run_dir_of(checkpoint: Path) -> RunDir:
    """The run directory a checkpoint belongs to (``<run>/checkpoints/<name>.ckpt``)."""
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    for candidate in (checkpoint.parent.parent, checkpoint.parent):
        if (candidate / CONFIG_FILE).is_file():
            return RunDir(candidate)
    raise FileNotFoundError(f"no {CONFIG_FILE} next to {checkpoint} or in {checkpoint.parent.parent}; evaluate "
                            "needs a checkpoint inside a run directory (<run>/checkpoints/*.ckpt)")


def _new_folder(parent: Path, name: str) -> Path:
    path, k = parent / name, 1
    while path.exists():
        k += 1
        path = parent / f"{name}-{k}"
    path.mkdir(parents=True)
    return path


def _choose_sets(cfg: Any, names: Sequence[str]) -> dict[str, Any]:
    """Name -> source config; test sets shadow val sets, which shadow train sources. A train
    source with ``split: train`` also offers ``<name>_heldout``: the sequences it never trained on."""
    heldout = {f"{name}_heldout": OmegaConf.merge(src, {"split": "heldout"})
               for name, src in cfg.data.train.items() if src.get("split") == "train"}
    available = {**cfg.data.train, **heldout, **cfg.data.val, **cfg.data.test}
    if not names:
        if not cfg.data.test:
            raise ValueError("the run's config has no data.test sets; name one with set=NAME "
                             f"(available: {', '.join(available) or '(none)'})")
        return dict(cfg.data.test)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise KeyError(f"set={','.join(unknown)}: not an eval set of this run's config; available: "
                       f"{', '.join(available)} (data.test, data.val, data.train)")
    return {n: available[n] for n in names}


def run_constant(run: RunDir, cfg: Any, body_dir: Path) -> Any:
    """The training data's constant prediction: what the run saved, else computed from its config
    (its train sources and sampler, as training drew them); None when no drawn sample has SMPL."""
    from gtahuman.constant_baseline import constant_from_datamodule, load_run_constant
    from gtahuman.data.datamodule import MixedDataModule
    from gtahuman.run_data import datamodule_arguments, prepare_source

    saved = load_run_constant(run.path)
    if saved is not None:
        return saved
    train = {name: prepare_source(name, src, cfg, body_dir) for name, src in cfg.data.train.items()}
    return constant_from_datamodule(MixedDataModule(**datamodule_arguments(cfg, {"train": train})))


def evaluate_checkpoint(checkpoint: str | Path, sets: Sequence[str] = (), protocol: str | None = None,
                        overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on the named sets; returns the printed metrics plus ``folders``
    (set -> output folder)."""
    import lightning as L

    from gtahuman.data.datamodule import MixedDataModule
    from gtahuman.evaluation import PROTOCOLS, get_protocol
    from gtahuman.systems.hmr import HMRSystem
    from gtahuman.run_data import datamodule_arguments, ensure_assets, prepare_source
    from gtahuman.run_trainer import evaluate_test_sets, write_predictions

    checkpoint = Path(checkpoint)
    run = run_dir_of(checkpoint)
    cfg = load_run_config(run.config_path, overrides)
    require_complete(cfg)
    if protocol is not None:
        get_protocol(protocol)  # fail early, listing the valid names
    chosen = _choose_sets(cfg, sets)
    body_dir = ensure_assets(cfg)
    specs = {name: prepare_source(name, src, cfg, body_dir) for name, src in chosen.items()}
    dm = MixedDataModule(**datamodule_arguments(cfg, {"test": specs}))
    protocols = {name: protocol or cfg.eval.protocols.get(name)
                 or (name if name in PROTOCOLS else cfg.eval.protocol) for name in specs}
    # The body model is rebuilt from its directory; give this machine's path (the run may have moved).
    system = HMRSystem.load_from_checkpoint(str(checkpoint), map_location="cpu", body_model_dir=str(body_dir),
                                            eval_protocols=protocols)
    trainer = L.Trainer(accelerator=cfg.trainer.accelerator, devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=cfg.trainer.progress_bar, enable_model_summary=False,
                        precision=cfg.trainer.precision)
    constant = run_constant(run, cfg, body_dir)
    metrics = evaluate_test_sets(trainer, system, dm, ckpt_path=None, constant=constant)
    metrics.update(experiment=cfg.experiment, protocol=cfg.eval.protocol, body_model_is_toy=bool(system.is_toy_body),
                   checkpoint=str(checkpoint), folders={})
    if constant is not None:
        metrics["constant_prediction"] = constant.to_json()
    for name, spec in specs.items():
        folder = _new_folder(run.path / EVALUATIONS_DIR, f"{name}-{metrics['protocols'][name]}")
        RunDir(folder).write_metrics({
            "set": name, "protocol": metrics["protocols"][name], "checkpoint": str(checkpoint),
            "test": metrics["test"].get(name, {}), "mean_pose_baseline": metrics["mean_pose_baseline"][name],
            **({"constant_baseline": metrics["constant_baseline"][name],
                "constant_prediction": constant.to_json()} if constant is not None else {}),
            "body_model_is_toy": metrics["body_model_is_toy"], "git_commit": git_commit(),
            "overrides": list(overrides), "bad_samples": dm.bad_sample_count})
        write_predictions(folder, system.test_results, {name: spec})
        metrics["folders"][name] = str(folder)
    return metrics


def parse_arguments(args: Sequence[str]) -> tuple[str, list[str], str | None, list[str]]:
    """(ckpt, sets, protocol, config overrides) from ``key=value`` arguments."""
    checkpoint, sets, protocol, overrides = None, [], None, []
    for item in args:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"argument '{item}' must look like key=value (ckpt=PATH, set=NAME, protocol=NAME)")
        if key == "ckpt":
            checkpoint = value
        elif key == "set":
            sets += [v for v in value.split(",") if v]
        elif key == "protocol":
            protocol = value
        else:
            overrides.append(item)
    if checkpoint is None:
        raise ConfigError("give the checkpoint to evaluate: ckpt=PATH (e.g. checkpoints/<experiment>/<run>/"
                          "checkpoints/best.ckpt)")
    return checkpoint, sets, protocol, overrides


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or "-h" in args or "--help" in args:
        print(__doc__)
        return 0 if args else 2
    try:
        checkpoint, sets, protocol, overrides = parse_arguments(args)
    except ConfigError as err:
        print(f"argument error: {err}", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
    from gtahuman.results_table import format_results

    try:
        metrics = evaluate_checkpoint(checkpoint, sets, protocol, overrides)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    except KeyError as err:  # set=NAME or protocol=NAME not known: the message lists the valid names
        print(f"argument error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, DataFormatError) as err:  # a data file the run's config names is missing or bad
        print(f"data error: {err}", file=sys.stderr)
        return 1
    print()
    print(format_results(metrics))
    for name, folder in metrics["folders"].items():
        print(f"{name}: {Path(folder) / METRICS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One sweep trial: the trial's parameters -> an experiment config -> ``gtahuman.train.train``.

Each trial is a normal run directory ``<sweep dir>/<experiment>/<number>-<param>=<value>.../`` (config.yaml,
checkpoints, metrics.json, predictions), made by the same ``train(cfg)`` as ``experiments.run``.
The objective is the best value of a validation metric over the run's validations (the value
that chose best.ckpt when the metric is ``eval.monitor``); the test metrics of the best
checkpoint are recorded as user attributes, never optimised. After every validation the value is
reported to Optuna, and the pruner may stop the run there.
"""
from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import optuna
from omegaconf import DictConfig

from gtahuman.config import DEFAULT_CONFIG_DIR, ConfigError
from gtahuman.data.sampler_plans import SamplerConfigError
from gtahuman.sweep.config import experiment_config, objective_metric
from gtahuman.sweep.study import RUN_DIR_ATTR

NOT_APPLICABLE_ATTR = "not_applicable"  # the paper's N/A cells: the data cannot give this mix
TEST_METRICS = ("mpjpe", "pa_mpjpe", "pve")


class NotApplicable(RuntimeError):
    """The trial asks for a mix the data cannot give (e.g. more real samples than exist)."""


class ValidationReporter(L.Callback):
    """Reports ``metric`` to the trial after every validation run (step = index of the run,
    i.e. the epoch when validating once per epoch) and raises ``TrialPruned`` when the pruner
    says so; the checkpoint callbacks have already saved that epoch by then."""

    def __init__(self, trial: optuna.Trial, metric: str, direction: str = "minimize") -> None:
        self.trial, self.metric, self.direction = trial, metric, direction
        self.values: list[float] = []

    @property
    def best(self) -> float | None:
        finite = [v for v in self.values if math.isfinite(v)]
        if not finite:
            return None
        return min(finite) if self.direction == "minimize" else max(finite)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        logged = trainer.callback_metrics
        if self.metric not in logged:
            raise KeyError(f"sweep metric '{self.metric}' was not logged by the validation run; "
                           f"logged: {', '.join(sorted(k for k in logged if k.startswith('val/')))}")
        value = float(logged[self.metric])
        step = len(self.values)
        self.values.append(value)
        self.trial.report(value, step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"{self.metric}={value:.3f} at validation {step}")


def is_not_applicable(err: SamplerConfigError) -> bool:
    """The amount sampler asked for more real samples than exist (a cell of the paper's table
    that reads N/A), as opposed to a mistake in the sampler arguments."""
    return err.sampler == "amount" and err.key == "real_ratio" and "real samples" in str(err)


def suggest_params(trial: optuna.Trial, space: DictConfig) -> dict[str, Any]:
    """The trial's value of every parameter (a retried or queued trial gets its stored ones)."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        if spec.choices is not None:
            params[name] = trial.suggest_categorical(name, list(spec.choices))
        elif spec.type == "int":
            params[name] = trial.suggest_int(name, int(spec.low), int(spec.high), step=int(spec.step or 1),
                                             log=bool(spec.log))
        else:
            params[name] = trial.suggest_float(name, float(spec.low), float(spec.high), step=spec.step,
                                               log=bool(spec.log))
    return params


@contextlib.contextmanager
def _run_log_scope() -> Iterator[None]:
    """train() attaches its run's log file to the 'gtahuman' logger; detach it after the trial,
    or every later trial of this worker would also write into this run's run.log."""
    logger = logging.getLogger("gtahuman")
    before = set(logger.handlers)
    try:
        yield
    finally:
        for handler in set(logger.handlers) - before:
            logger.removeHandler(handler)
            handler.close()


def trial_run_id(trial_number: int, params: dict[str, Any]) -> str:
    """A trial's folder name: its number, then its parameters (``7-real_ratio=0.25-total=2``), so
    a listing of the sweep reads as its grid; characters outside ``[A-Za-z0-9._=+-]`` become ``_``."""
    parts = [str(trial_number)]
    for key, value in params.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        parts.append(f"{str(key).rsplit('.', 1)[-1]}={shown}")
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", "-".join(parts))


def trial_config(cfg: DictConfig, params: dict[str, Any], trial_number: int, sweep_path: Path,
                 config_dir: Path | str = DEFAULT_CONFIG_DIR) -> DictConfig:
    """The experiment config of trial ``trial_number``: its run directory is under the sweep's,
    named by `trial_run_id`."""
    extra = [f"run.output_root={sweep_path}", f"run.run_id={trial_run_id(trial_number, params)}", "run.resume=false"]
    exp = experiment_config(cfg, params, config_dir, extra=extra)
    if str(exp.trainer.devices) == "auto":  # a worker is one device; Lightning's auto takes them all
        exp = experiment_config(cfg, params, config_dir, extra=[*extra, "trainer.devices=1"])
    if exp.task != "image":
        raise ConfigError(f"sweep '{cfg.name}': experiment '{cfg.experiment}' has task={exp.task}; sweeps run "
                          "image models (task=image)")
    if exp.trainer.num_nodes != 1 or str(exp.trainer.devices) != "1":
        raise ConfigError(f"sweep '{cfg.name}': one trial runs on one device (trainer.devices=1, "
                          f"trainer.num_nodes=1; got {exp.trainer.devices} x {exp.trainer.num_nodes}); "
                          "start one worker per GPU instead (docs/SWEEPS.md)")
    return exp


def run_trial(trial: optuna.Trial, cfg: DictConfig, sweep_path: Path,
              config_dir: Path | str = DEFAULT_CONFIG_DIR) -> float:
    """Train one trial and return its objective; raises TrialPruned / NotApplicable / errors."""
    from gtahuman.train import train  # heavy imports only when a trial runs

    params = suggest_params(trial, cfg.space)
    exp = trial_config(cfg, params, trial.number, sweep_path, config_dir)
    trial.set_user_attr(RUN_DIR_ATTR, str(Path(exp.run.output_root) / exp.experiment / exp.run.run_id))
    reporter = ValidationReporter(trial, objective_metric(cfg, config_dir), cfg.direction)
    with _run_log_scope():
        try:
            metrics = train(exp, callbacks=[reporter])
        except SamplerConfigError as err:
            if not is_not_applicable(err):
                raise
            trial.set_user_attr(NOT_APPLICABLE_ATTR, str(err))
            raise NotApplicable(str(err)) from err
    for set_name, summary in metrics.get("test", {}).items():
        for name in TEST_METRICS:
            if name in summary and math.isfinite(float(summary[name])):
                trial.set_user_attr(f"test/{set_name}/{name}", float(summary[name]))
    trial.set_user_attr("global_step", int(metrics["global_step"]))
    if reporter.best is None:
        raise ValueError(f"trial {trial.number}: {no_objective_reason(reporter, exp)}")
    return reporter.best


def no_objective_reason(reporter: ValidationReporter, exp: DictConfig) -> str:
    """Why a trial that trained gave no objective: no validation set, no validation run, or
    only non-finite values (a diverged model), each said as it is."""
    if reporter.values:
        shown = ", ".join(f"{v:.4g}" for v in reporter.values[:5])
        return (f"every value of {reporter.metric} was not finite ({len(reporter.values)} validation runs: "
                f"{shown}); the model diverged (try a lower optim.lr)")
    if not exp.data.val:
        return f"the experiment '{exp.experiment}' has no data.val sets, so {reporter.metric} was never logged"
    return (f"no validation run finished (data.val: {', '.join(exp.data.val)}; trainer.max_epochs="
            f"{exp.trainer.max_epochs}, trainer.max_steps={exp.trainer.get('max_steps')}, "
            f"trainer.limit_val_batches={exp.trainer.get('limit_val_batches')})")

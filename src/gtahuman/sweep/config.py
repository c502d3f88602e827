"""Sweep configuration: ``experiments/configs/sweep/<name>.yaml`` + command-line ``key=value``.

A sweep is an experiment (a name from experiments/configs/experiment, plus overrides applied to
every trial) and a search space over config keys, explored by an Optuna sampler::

    name: table7_grid
    experiment: table7_real050_mini
    metric: val/pa_mpjpe            # the objective: a validation metric, never a test one
    sampler: {name: grid}
    space:
      real_ratio: {key: data.real_ratio, choices: [0.0, 0.25, 0.5, 0.75, 1.0]}
      total:      {key: data.sampler_args.total_multiple, choices: [0.3333, 0.6667, 1.0]}

Each ``space`` entry is a parameter (its Optuna name is the entry's name) that sets one config
key, from ``choices`` or a ``low``/``high`` range (``step``, ``log``, ``type: int``). On the
command line, ``sweep.<key>=value`` changes the sweep (``sweep.n_trials=3``) and any other
``key=value`` is appended to the experiment overrides of every trial (``trainer.max_epochs=2``).
Everything is validated against the dataclasses below, and every parameter key against the
experiment's own schema, before a study is touched.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from gtahuman.config import DEFAULT_CONFIG_DIR, ConfigError, load_config

SWEEP_DIR_NAME = "sweep"  # experiments/configs/sweep/<name>.yaml
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "threshold", "none")
DIRECTIONS = ("minimize", "maximize")


@dataclass
class ParamSpace:
    """One searched parameter: ``key`` (a config key) from ``choices`` or ``low``..``high``."""

    key: str = MISSING
    choices: Optional[List[Any]] = None
    low: Optional[float] = None
    high: Optional[float] = None
    step: Optional[float] = None  # grid spacing of a range (needed for a range in a grid sweep)
    log: bool = False
    type: str = "float"  # float | int (ranges only)


@dataclass
class SamplerSpec:
    name: str = "tpe"  # tpe | random | grid
    seed: int = 0  # tpe/random: reseeded per trial number (reproducible with any number of workers)
    n_startup_trials: int = 10  # tpe: random trials before the model kicks in


@dataclass
class PrunerSpec:
    name: str = "median"  # median | threshold | none
    n_startup_trials: int = 5  # median: finished trials before any pruning
    n_warmup_steps: int = 0  # median: validation runs of a trial before it may be pruned
    upper: Optional[float] = None  # threshold: prune once the metric is above this
    lower: Optional[float] = None  # threshold: prune once the metric is below this


@dataclass
class ReportSpec:
    heatmap_rows: Optional[str] = None  # parameter names for the heat map (Table 7: real_ratio x total)
    heatmap_cols: Optional[str] = None
    test_metric: str = "pa_mpjpe"  # test/<first test set>/<this> is drawn next to the objective


@dataclass
class SweepConfig:
    name: str = MISSING  # the study name and the sweep folder <output_root>/<name>
    description: str = ""
    experiment: str = MISSING
    overrides: List[str] = field(default_factory=list)  # key=value for every trial
    metric: Optional[str] = None  # objective: a val/ metric; null = the experiment's eval.monitor
    direction: str = "minimize"
    n_trials: Optional[int] = None  # finished trials the study needs (all workers); null = grid size
    sampler: SamplerSpec = field(default_factory=SamplerSpec)
    pruner: PrunerSpec = field(default_factory=PrunerSpec)
    space: Dict[str, ParamSpace] = field(default_factory=dict)
    # SQLAlchemy URL of the study; null = sqlite:///<sweep dir>/study.db (one machine). For many
    # machines: postgresql://user:password@host/db (see docs/SWEEPS.md).
    storage: Optional[str] = None
    output_root: str = "checkpoints/sweeps"
    heartbeat_interval: int = 60  # seconds; a trial silent for grace_period is failed and retried
    grace_period: Optional[int] = None  # null = 2 x heartbeat_interval
    max_retry: int = 3  # re-runs of one interrupted trial
    wait_for_running: bool = True  # at the end, wait for other workers' trials (to retry them if they die)
    report: ReportSpec = field(default_factory=ReportSpec)


# ------------------------------------------------------------------------------------ loading
def sweep_names(config_dir: Path = DEFAULT_CONFIG_DIR) -> list[str]:
    return sorted(p.stem for p in (config_dir / SWEEP_DIR_NAME).glob("*.yaml"))


def _sweep_file(name: str, config_dir: Path) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"no sweep file {path}")
        return path
    path = config_dir / SWEEP_DIR_NAME / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no sweep '{name}': expected {path}; available: "
                          f"{', '.join(sweep_names(config_dir)) or '(none)'}")
    return path


def _merge(schema: DictConfig, base: DictConfig, part: Any, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, part)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        detail = str(err).splitlines()[0]
        if isinstance(err, ConfigKeyError):
            parent = OmegaConf.select(schema, key.rpartition(".")[0]) if "." in key else schema
            valid = sorted(parent.keys()) if isinstance(parent, DictConfig) else []
            near = difflib.get_close_matches(key.rpartition(".")[2], valid, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            detail = f"unknown key; valid keys here: {', '.join(valid)}{hint}"
        raise ConfigError(f"sweep config key 'sweep.{key}' (from {source}): {detail}") from None


def split_arguments(args: Sequence[str]) -> tuple[Optional[str], list[str], list[str]]:
    """CLI arguments -> (sweep name, ``sweep.*`` overrides without the prefix, experiment overrides)."""
    name, sweep_args, experiment_args = None, [], []
    for item in args:
        if "=" not in item:
            raise ConfigError(f"command-line argument '{item}' must look like key=value")
        key, value = item.split("=", 1)
        if key == "sweep":
            name = value
        elif key == "experiment":  # the sweep's experiment, not a per-trial override
            sweep_args.append(f"experiment={value}")
        elif key.startswith("sweep."):
            sweep_args.append(f"{key[len('sweep.'):]}={value}")
        else:
            experiment_args.append(item)
    return name, sweep_args, experiment_args


def load_sweep_config(name: str, sweep_overrides: Sequence[str] = (), experiment_overrides: Sequence[str] = (),
                      config_dir: Path | str = DEFAULT_CONFIG_DIR) -> DictConfig:
    """The validated sweep config: schema <- sweep file <- ``sweep.*`` overrides; experiment
    overrides are appended to ``overrides``. ``name``: a sweep name or a path to a .yaml file."""
    config_dir = Path(config_dir)
    path = _sweep_file(name, config_dir)
    schema = OmegaConf.structured(SweepConfig)
    try:
        node = OmegaConf.load(path)
        cli = OmegaConf.from_dotlist(list(sweep_overrides))
    except Exception as err:
        raise ConfigError(f"cannot parse sweep config {path} or its overrides {list(sweep_overrides)}: {err}") from None
    if "name" not in node:
        node.name = path.stem
    cfg = _merge(schema, schema, node, str(path))
    cfg = _merge(schema, cfg, cli, "the command line")
    cfg.overrides = [*cfg.overrides, *experiment_overrides]
    OmegaConf.set_struct(cfg, True)
    check_sweep_config(cfg, config_dir)
    return cfg


# --------------------------------------------------------------------------------- validation
def grid_values(name: str, spec: DictConfig) -> list[Any]:
    """The values a grid sweep visits for one parameter (``choices``, or ``low:high:step``)."""
    if spec.choices is not None:
        return list(spec.choices)
    if spec.step is None:
        raise ConfigError(f"sweep space '{name}': a grid sweep needs 'choices' or a range with 'step' "
                          f"(got low={spec.low}, high={spec.high})")
    count = int(math.floor((spec.high - spec.low) / spec.step + 1e-9)) + 1
    values = [spec.low + i * spec.step for i in np.arange(count)]
    return [int(round(v)) for v in values] if spec.type == "int" else [round(float(v), 12) for v in values]


def grid_size(cfg: DictConfig) -> int:
    return int(np.prod([len(grid_values(n, s)) for n, s in cfg.space.items()]))


def target_trials(cfg: DictConfig) -> int:
    """Finished trials the sweep asks for (the grid size when ``n_trials`` is null)."""
    if cfg.n_trials is not None:
        return int(cfg.n_trials)
    if cfg.sampler.name != "grid":
        raise ConfigError(f"sweep '{cfg.name}': sweep.n_trials is required for sampler '{cfg.sampler.name}'")
    return grid_size(cfg)


def example_value(spec: DictConfig) -> Any:
    return spec.choices[0] if spec.choices is not None else (int(spec.low) if spec.type == "int" else spec.low)


def _check_param(name: str, spec: DictConfig) -> None:
    where = f"sweep space '{name}' (key {spec.key})"
    if spec.choices is not None:
        if spec.low is not None or spec.high is not None:
            raise ConfigError(f"{where}: give either 'choices' or 'low'/'high', not both")
        if len(spec.choices) == 0:
            raise ConfigError(f"{where}: 'choices' is empty")
        return
    if spec.low is None or spec.high is None:
        raise ConfigError(f"{where}: expected 'choices' or both 'low' and 'high'")
    if spec.type not in ("float", "int"):
        raise ConfigError(f"{where}: 'type' must be float or int, got {spec.type!r}")
    if not spec.low <= spec.high:
        raise ConfigError(f"{where}: low={spec.low} must not exceed high={spec.high}")
    if spec.log and (spec.low <= 0 or spec.step is not None):
        raise ConfigError(f"{where}: a log range needs low > 0 and no step")


def check_sweep_config(cfg: DictConfig, config_dir: Path = DEFAULT_CONFIG_DIR) -> None:
    """Fail, naming the key, on anything a trial would only discover later."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"sweep config needs values for {', '.join('sweep.' + k for k in missing)}")
    for key, value, valid in (("sampler.name", cfg.sampler.name, SAMPLERS), ("pruner.name", cfg.pruner.name, PRUNERS),
                              ("direction", cfg.direction, DIRECTIONS)):
        if value not in valid:
            raise ConfigError(f"sweep config key 'sweep.{key}' is {value!r}; choose from {', '.join(valid)}")
    if not cfg.space:
        raise ConfigError(f"sweep '{cfg.name}' has an empty search space (sweep.space)")
    for name, spec in cfg.space.items():
        _check_param(name, spec)
        if cfg.sampler.name == "grid":
            grid_values(name, spec)
    if cfg.pruner.name == "threshold" and cfg.pruner.upper is None and cfg.pruner.lower is None:
        raise ConfigError("sweep.pruner.name=threshold needs sweep.pruner.upper or sweep.pruner.lower")
    if cfg.n_trials is not None and cfg.n_trials < 1:
        raise ConfigError(f"sweep.n_trials must be at least 1, got {cfg.n_trials}")
    if cfg.sampler.name == "grid" and cfg.n_trials is not None and cfg.n_trials > grid_size(cfg):
        raise ConfigError(f"sweep.n_trials={cfg.n_trials} exceeds the grid's {grid_size(cfg)} cells (sampler grid)")
    target_trials(cfg)
    experiment_config(cfg, {name: example_value(spec) for name, spec in cfg.space.items()}, config_dir)
    metric = objective_metric(cfg, config_dir)
    if not metric.startswith("val/"):
        raise ConfigError(f"sweep.metric={metric!r}: the objective must be a validation metric (val/...), "
                          "never a test metric")


def param_overrides(cfg: DictConfig, params: dict[str, Any]) -> list[str]:
    """Trial parameters (by space name) -> ``key=value`` overrides of the experiment config."""
    return [f"{cfg.space[name].key}={value}" for name, value in params.items()]


def experiment_config(cfg: DictConfig, params: dict[str, Any], config_dir: Path | str = DEFAULT_CONFIG_DIR,
                      extra: Sequence[str] = ()) -> DictConfig:
    """The experiment config of one trial: the experiment, the sweep's overrides, the parameters."""
    overrides = [f"experiment={cfg.experiment}", *cfg.overrides, *param_overrides(cfg, params), *extra]
    try:
        return load_config(overrides, config_dir)
    except ConfigError as err:
        raise ConfigError(f"sweep '{cfg.name}': {err}") from None


def objective_metric(cfg: DictConfig, config_dir: Path | str = DEFAULT_CONFIG_DIR) -> str:
    if cfg.metric:
        return str(cfg.metric)
    params = {name: example_value(spec) for name, spec in cfg.space.items()}
    return str(experiment_config(cfg, params, config_dir).eval.monitor)


def sweep_dir(cfg: DictConfig) -> Path:
    return Path(cfg.output_root) / cfg.name


def storage_url(cfg: DictConfig) -> str:
    return cfg.storage or f"sqlite:///{(sweep_dir(cfg) / 'study.db').resolve()}"

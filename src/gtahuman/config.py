"""Experiment configuration: ``base.yaml`` + experiment overlay + command-line ``key=value``.

Everything is validated against the dataclass schema (`gtahuman.config_schema`; OmegaConf structured configs), so a
typo in a key or a value of the wrong type is an error that names the key, where it came from,
and the valid choices, never a silent default.

    cfg = load_config(["experiment=quickstart", "run.seed=3"])

An overlay file ``experiments/configs/experiment/<name>.yaml`` is a partial tree. It may start
with ``extends: [other, ...]`` to stack other overlays first (a mini-world version of a paper row
extends the real-data row and overrides only the paths), ``replace: [data.train, ...]`` to
empty those mappings before merging its own tree (merging alone adds keys, so a real-data row
could never drop the mini-world sources of base.yaml), and ``drop: [data.train.gta]`` to delete
single entries (a real-only row). Overlays whose name starts with ``_`` are fragments for
``extends`` (``experiment_names`` lists only runnable ones).

A value of ``???`` (OmegaConf's MISSING) is one the user must give, e.g. ``body.model_dir`` of a
real-data row; ``require_complete`` (called before any work) names every such key.

The schema checks keys and types; the values themselves (ranges, registry names, keys that must
agree, e.g. ``data.real_ratio`` with ``data.mode=adaptation``) are checked by
`gtahuman.config_checks.validate_config`, which the commands call right after ``load_config``
and ``train()`` calls first.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Sequence

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

# The schema: the dataclasses every key is validated against
from gtahuman.config_schema import Config

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_DIR = REPO_ROOT / "experiments" / "configs"


class ConfigError(ValueError):
    """A configuration that does not match the schema, or a missing overlay file."""


# What to give for keys that real-data overlays leave as ??? (shown in require_complete's error).
MISSING_HINTS = {
    "body.model_dir": "a directory with SMPL_{NEUTRAL,MALE,FEMALE}.pkl (or .npz), J_regressor_h36m.npy, "
                      "J_regressor_extra.npy and smpl_mean_params.npz",
    "model.init_checkpoint": "the checkpoint to fine-tune from (a best.ckpt of this suite, or a SPIN / "
                             "mmhuman3d state dict, see model.init_format)",
    "video.frame_checkpoint": "the trained frame model the temporal model starts from (a best.ckpt of this "
                              "suite, or SPIN's model_checkpoint.pt with video.frame_checkpoint_format=spin)",
}




# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
def _valid_keys(schema: DictConfig, dotted: str) -> list[str]:
    node: Any = schema
    for part in dotted.split(".")[:-1]:
        if not isinstance(node, DictConfig) or part not in node:
            return []
        node = node[part]
    return sorted(node.keys()) if isinstance(node, DictConfig) else []


def did_you_mean(value: Any, names: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``names`` to a string ``value``, else ``""``."""
    near = difflib.get_close_matches(str(value), list(names), n=1) if isinstance(value, str) else []
    return f"; did you mean '{near[0]}'?" if near else ""


def _explain(err: OmegaConfBaseException, schema: DictConfig, source: str) -> ConfigError:
    key = getattr(err, "full_key", None) or "?"
    if isinstance(err, ConfigKeyError):
        valid = _valid_keys(schema, key)
        leaf = key.rsplit(".", 1)[-1]
        hint = did_you_mean(leaf, valid)
        return ConfigError(
            f"unknown config key '{key}' (from {source}); valid keys here: "
            f"{', '.join(valid) or '(none)'}{hint}"
        )
    if isinstance(err, ValidationError):
        msg = str(err).splitlines()[0]
        return ConfigError(f"bad value for config key '{key}' (from {source}): {msg}")
    return ConfigError(f"config error at '{key}' (from {source}): {str(err).splitlines()[0]}")


def _merge(schema: DictConfig, cfg: DictConfig, part: DictConfig, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(cfg, part)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise _explain(err, schema, source) from None


def _load_yaml(path: Path) -> DictConfig:
    try:
        node = OmegaConf.load(path)
    except Exception as err:  # yaml syntax errors and the like
        raise ConfigError(f"cannot parse config file {path}: {err}") from None
    if not isinstance(node, DictConfig):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return node


def _overlay_chain(name: str, config_dir: Path, seen: tuple[str, ...] = ()) -> list[tuple[Path, DictConfig]]:
    path = config_dir / "experiment" / f"{name}.yaml"
    if not path.is_file():
        names = experiment_names(config_dir)
        raise ConfigError(
            f"no experiment '{name}': expected {path}; available: {', '.join(names) or '(none)'}"
        )
    if name in seen:
        raise ConfigError(f"experiment overlays extend each other in a cycle: {' -> '.join(seen + (name,))}")
    node = _load_yaml(path)
    parents = node.pop("extends", []) if "extends" in node else []
    if isinstance(parents, str):
        parents = [parents]
    chain: list[tuple[Path, DictConfig]] = []
    for parent in parents:
        chain += _overlay_chain(str(parent), config_dir, seen + (name,))
    return chain + [(path, node)]


def _apply_directives(cfg: DictConfig, node: DictConfig, source: Path) -> None:
    """Apply an overlay's ``replace:`` (empty these mappings) and ``drop:`` (delete these keys,
    e.g. ``data.train.gta`` for a real-only row) to ``cfg``, popping them from ``node``."""
    for directive in ("replace", "drop"):
        keys = node.pop(directive, []) if directive in node else []
        for key in [keys] if isinstance(keys, str) else keys:
            parent_key, _, leaf = str(key).rpartition(".")
            parent = OmegaConf.select(cfg, parent_key, throw_on_missing=False) if parent_key else cfg
            target = OmegaConf.select(cfg, str(key), throw_on_missing=False)
            if directive == "replace" and isinstance(target, DictConfig):
                for child in list(target.keys()):
                    del target[child]
            elif directive == "drop" and isinstance(parent, DictConfig) and leaf in parent and parent_key:
                del parent[leaf]
            else:
                expected = "a mapping of the config (e.g. data.train)" if directive == "replace" else \
                    "an existing entry of a mapping (e.g. data.train.gta)"
                raise ConfigError(f"{source}: '{directive}' names '{key}'; expected {expected}")


def _marked_missing(node: DictConfig, prefix: str = "") -> list[str]:
    """Dotted keys an overlay sets to ``???`` (read without resolving its interpolations)."""
    keys = []
    for key in node.keys():
        dotted = f"{prefix}{key}"
        if OmegaConf.is_missing(node, key):
            keys.append(dotted)
        elif not OmegaConf.is_interpolation(node, key) and isinstance(node[key], DictConfig):
            keys += _marked_missing(node[key], dotted + ".")
    return keys


def experiment_names(config_dir: Path = DEFAULT_CONFIG_DIR, fragments: bool = False) -> list[str]:
    """Runnable experiment overlays (``fragments=True``: also the ``_name`` parts they extend)."""
    stems = (p.stem for p in (config_dir / "experiment").glob("*.yaml"))
    return sorted(s for s in stems if fragments or not s.startswith("_"))


def load_config(overrides: Sequence[str] = (), config_dir: Path | str = DEFAULT_CONFIG_DIR) -> DictConfig:
    """Build the validated config: schema <- base.yaml <- experiment overlay(s) <- overrides."""
    config_dir = Path(config_dir)
    overrides = list(overrides)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"command-line override '{item}' must look like key=value")
    experiment = recipe = None
    rest = []
    for item in overrides:
        key, value = item.split("=", 1)
        if key == "experiment":
            experiment = value
        elif key == "recipe":
            recipe = value
        else:
            rest.append(item)

    schema = OmegaConf.structured(Config)
    cfg = _merge(schema, schema, _load_yaml(config_dir / "base.yaml"), str(config_dir / "base.yaml"))
    name = experiment or cfg.experiment
    if experiment is not None or (config_dir / "experiment" / f"{name}.yaml").is_file():
        for path, node in _overlay_chain(name, config_dir):
            _apply_directives(cfg, node, path)
            required = _marked_missing(node)
            cfg = _merge(schema, cfg, node, str(path))
            for key in required:  # merging never lets ??? replace a value; the overlay means it
                OmegaConf.update(cfg, key, MISSING, merge=False)
    cfg.experiment = name
    if recipe is not None and recipe != cfg.recipe:
        cfg = _apply_recipe(schema, cfg, recipe, config_dir)
    try:
        cli = OmegaConf.from_dotlist(rest)
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot parse command-line overrides {rest}: {err}") from None
    cfg = _merge(schema, cfg, cli, "the command line")
    OmegaConf.set_readonly(cfg, False)
    OmegaConf.set_struct(cfg, True)
    return cfg


def _apply_recipe(schema: DictConfig, cfg: DictConfig, recipe: str, config_dir: Path) -> DictConfig:
    """Stack the fragment of ``recipes[recipe]`` on the experiment (``recipe=<name>``)."""
    if recipe not in cfg.recipes:
        own = [cfg.recipe] if cfg.recipe else []
        choices = ", ".join(own + sorted(cfg.recipes)) or "none besides its own settings"
        raise ConfigError(f"experiment '{cfg.experiment}' has no recipe '{recipe}'; its recipes: {choices} "
                          f"(the key 'recipes' of experiments/configs/experiment/{cfg.experiment}.yaml)")
    for path, node in _overlay_chain(str(cfg.recipes[recipe]), config_dir):
        _apply_directives(cfg, node, path)
        cfg = _merge(schema, cfg, node, str(path))
    cfg.recipe = recipe
    cfg.description = f"{cfg.description} [recipe {recipe}]"
    return cfg


def load_run_config(path: Path | str, overrides: Sequence[str] = ()) -> DictConfig:
    """A run directory's saved ``config.yaml`` (already resolved), validated against the schema,
    with command-line ``key=value`` overrides on top (used by ``experiments.evaluate``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no run config at {path}; expected the config.yaml a run writes into its directory")
    schema = OmegaConf.structured(Config)
    cfg = _merge(schema, schema, _load_yaml(path), str(path))
    bad = [item for item in overrides if "=" not in item]
    if bad:
        raise ConfigError(f"command-line override '{bad[0]}' must look like key=value")
    try:
        cli = OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot parse command-line overrides {list(overrides)}: {err}") from None
    cfg = _merge(schema, cfg, cli, "the command line")
    OmegaConf.set_struct(cfg, True)
    return cfg


def require_complete(cfg: DictConfig) -> None:
    """Fail, naming each key, when a value the user must give (``???``) is still missing."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if not missing:
        return
    lines = [f"  {key}: {MISSING_HINTS.get(key, 'a value is required')}" for key in missing]
    example = " ".join(f"{key}=..." for key in missing)
    raise ConfigError(f"experiment '{cfg.experiment}' needs values for {', '.join(missing)} (marked ??? in its "
                      f"config):\n" + "\n".join(lines) + f"\ngive them on the command line: {example}")


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)

"""Experiment configuration: ``base.yaml`` + experiment overlay + command-line ``key=value``.

Everything is validated against the dataclass schema below (OmegaConf structured configs), so a
typo in a key or a value of the wrong type is an error that names the key, where it came from,
and the valid choices, never a silent default.

    cfg = load_config(["experiment=quickstart", "run.seed=3"])

An overlay file ``experiments/configs/experiment/<name>.yaml`` is a partial tree. It may start
with ``extends: [other, ...]`` to stack other overlays first (a mini-world version of a paper row
extends the real-data row and overrides only the paths).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_DIR = REPO_ROOT / "experiments" / "configs"


class ConfigError(ValueError):
    """A configuration that does not match the schema, or a missing overlay file."""


# --------------------------------------------------------------------------------------------
# Schema. Sections grow with the suite; every key a YAML file or the CLI may set is here.
# --------------------------------------------------------------------------------------------
@dataclass
class RunConfig:
    seed: int = 0
    # Runs land in <output_root>/<experiment>/<run_id>/ (see gtahuman.rundir).
    output_root: str = "checkpoints"
    run_id: Optional[str] = None  # default: a timestamp
    resume: bool = False  # continue <run_id> from its last checkpoint
    # Generated assets (toy body model, mini world, crop caches) live here, never in a run dir.
    cache_dir: str = ".cache/gtahuman"


@dataclass
class BodyConfig:
    # Directory with SMPL_{NEUTRAL,MALE,FEMALE}.(pkl|npz), J_regressor_h36m.npy,
    # J_regressor_extra.npy, smpl_mean_params.npz. Null: the toy body model generated into
    # <cache_dir>/toy_body (marked as toy in every report).
    model_dir: Optional[str] = None
    num_betas: int = 10


@dataclass
class SourceConfig:
    """One dataset: raw files in a real format, prepared once into an index (and crop cache)."""

    kind: str = "spin_npz"  # gta_raw | spin_npz | humandata
    path: str = MISSING  # the annotation file (npz) or the release root (gta_raw)
    image_root: Optional[str] = None  # default: the folder of `path` (gta_raw: the root itself)
    role: str = "real"  # real | synthetic (mixing groups; DA: real = source, synthetic = target)
    weight: float = 1.0  # partition weight inside its role group (mmhuman3d-style mixing)
    domain: Optional[str] = None  # domain label for analyses; default: the source name


@dataclass
class DataConfig:
    # Mini world to generate (tiny | default | large) into <cache_dir>/miniworld/<size>-seed<seed>;
    # paths below may use ${data.world_dir}. Null for real data only.
    miniworld: Optional[str] = "default"
    miniworld_seed: int = 0
    world_dir: str = "${run.cache_dir}/miniworld/${data.miniworld}-seed${data.miniworld_seed}"
    train: Dict[str, SourceConfig] = field(default_factory=dict)
    val: Dict[str, SourceConfig] = field(default_factory=dict)  # model selection, never test
    test: Dict[str, SourceConfig] = field(default_factory=dict)
    mode: str = "blended"  # blended | finetune | adaptation
    sampler: str = "mixture"  # a name from gtahuman.data.samplers.SAMPLERS
    sampler_args: Dict[str, Any] = field(default_factory=dict)
    real_ratio: Optional[float] = None  # real:synthetic ratio; null = partition weights
    epoch_length: Optional[int] = None  # samples per epoch; null = the sampler's default
    batch_size: int = 32  # global batch (divided by the world size)
    num_workers: int = 0
    img_res: int = 224
    augment: bool = True
    crop_cache: bool = True  # decode person crops from a cache, not full frames
    crop_res: int = 256


@dataclass
class LossWeights:
    # SPIN's weights (5*L2D + 5*L3D + 1*Lpose + 0.001*Lbetas + cam prior, all x60): the paper keeps
    # SPIN's hyper-parameters for HMR+ BT.
    keypoints2d: float = 300.0
    keypoints3d: float = 300.0
    smpl_pose: float = 60.0
    smpl_betas: float = 0.06
    camera: float = 60.0
    vertices: float = 0.0
    adversarial: float = 1.0


@dataclass
class ModelConfig:
    variant: str = "hmr_plus"  # hmr (adversarial pose prior) | hmr_plus
    backbone: str = "resnet50"  # a name from gtahuman.models.BACKBONES
    backbone_args: Dict[str, Any] = field(default_factory=dict)
    n_iter: int = 3
    supervision: str = "both"  # both | keypoints | smpl (paper Table 8)
    loss_weights: LossWeights = field(default_factory=LossWeights)
    init_checkpoint: Optional[str] = None  # fine-tuning: suite checkpoint or SPIN/mmhuman3d state dict
    init_format: str = "auto"  # auto | suite | spin | mmhuman3d
    prior_sources: List[str] = field(default_factory=list)  # train sources feeding the pose prior (hmr)
    feature_samples: int = 256  # backbone features kept per eval set (UMAP analysis)


@dataclass
class OptimConfig:
    lr: float = 5e-5  # SPIN's Adam lr
    base_batch_size: Optional[int] = None  # linear scaling: lr * global_batch / base_batch_size
    disc_lr: float = 1e-4
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | step
    milestones: List[int] = field(default_factory=list)
    gamma: float = 0.1


@dataclass
class TrainerConfig:
    max_epochs: int = 1
    max_steps: int = -1
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    accumulate_grad_batches: int = 1
    gradient_clip_val: Optional[float] = None
    log_every_n_steps: int = 10
    val_check_interval: Optional[float] = None
    limit_train_batches: Optional[float] = None
    limit_val_batches: Optional[float] = None
    progress_bar: bool = True


@dataclass
class EvalConfig:
    protocol: str = "miniworld"  # a name from gtahuman.evaluation.PROTOCOLS
    monitor: str = "val/pa_mpjpe"  # best checkpoint = lowest value of this (a val metric)


@dataclass
class Config:
    experiment: str = "quickstart"
    description: str = ""
    run: RunConfig = field(default_factory=RunConfig)
    body: BodyConfig = field(default_factory=BodyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


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


def _explain(err: OmegaConfBaseException, schema: DictConfig, source: str) -> ConfigError:
    key = getattr(err, "full_key", None) or "?"
    if isinstance(err, ConfigKeyError):
        valid = _valid_keys(schema, key)
        leaf = key.rsplit(".", 1)[-1]
        near = difflib.get_close_matches(leaf, valid, n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
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


def experiment_names(config_dir: Path = DEFAULT_CONFIG_DIR) -> list[str]:
    return sorted(p.stem for p in (config_dir / "experiment").glob("*.yaml"))


def load_config(overrides: Sequence[str] = (), config_dir: Path | str = DEFAULT_CONFIG_DIR) -> DictConfig:
    """Build the validated config: schema <- base.yaml <- experiment overlay(s) <- overrides."""
    config_dir = Path(config_dir)
    overrides = list(overrides)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"command-line override '{item}' must look like key=value")
    experiment = None
    rest = []
    for item in overrides:
        key, value = item.split("=", 1)
        if key == "experiment":
            experiment = value
        else:
            rest.append(item)

    schema = OmegaConf.structured(Config)
    cfg = _merge(schema, schema, _load_yaml(config_dir / "base.yaml"), str(config_dir / "base.yaml"))
    name = experiment or cfg.experiment
    if experiment is not None or (config_dir / "experiment" / f"{name}.yaml").is_file():
        for path, node in _overlay_chain(name, config_dir):
            cfg = _merge(schema, cfg, node, str(path))
    cfg.experiment = name
    try:
        cli = OmegaConf.from_dotlist(rest)
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot parse command-line overrides {rest}: {err}") from None
    cfg = _merge(schema, cfg, cli, "the command line")
    OmegaConf.set_readonly(cfg, False)
    OmegaConf.set_struct(cfg, True)
    return cfg


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)

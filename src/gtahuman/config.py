"""Experiment configuration: ``base.yaml`` + experiment overlay + command-line ``key=value``.

Everything is validated against the dataclass schema below (OmegaConf structured configs), so a
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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

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
# Schema. Sections grow with the suite; every key a YAML file or the CLI may set is here.
# --------------------------------------------------------------------------------------------
@dataclass
class RunConfig:
    seed: int = 0
    # Runs land in <output_root>/<experiment>/<run_id>/ (see gtahuman.rundir).
    output_root: str = "checkpoints"
    run_id: Optional[str] = None  # default: the start time plus a random suffix (gtahuman.rundir)
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
    # SPIN's static_fits/<dataset>_fits.npy (spin_npz / humandata): SMPL for the rows without their own,
    # where SPIN's validity rule accepts the fit (gtahuman.data.static_fits); HMR+ rows need them
    static_fits: Optional[str] = None
    # null | train | heldout: a fixed split by sequence (gtahuman.data.splits); 'train' leaves out
    # heldout_fraction of the sequences, which `experiments.evaluate set=<name>_heldout` then scores
    split: Optional[str] = None
    heldout_fraction: float = 0.1


@dataclass
class DataConfig:
    # Mini world to generate (tiny | default | large) into <cache_dir>/miniworld/<size>-<variant>-seed<seed>;
    # paths below may use ${data.world_dir}. Null for real data only.
    miniworld: Optional[str] = "default"
    miniworld_seed: int = 0
    # what the world's GTA domain covers: standard | gta_studio (negative control) | gta_studio_geometry
    # | gta_studio_looks (gtahuman.data.miniworld.domains.VARIANTS); the other domains never change
    miniworld_variant: str = "standard"
    world_dir: str = "${run.cache_dir}/miniworld/${data.miniworld}-${data.miniworld_variant}-seed${data.miniworld_seed}"
    # Root of the user's real data (mmhuman3d layout: preprocessed_datasets/*.npz, datasets/<name>/,
    # pretrained/); real-data overlays write their paths as ${data.root}/...
    root: str = "${oc.env:GTAHUMAN_DATA,data}"
    train: Dict[str, SourceConfig] = field(default_factory=dict)
    val: Dict[str, SourceConfig] = field(default_factory=dict)  # model selection, never test
    test: Dict[str, SourceConfig] = field(default_factory=dict)
    mode: str = "blended"  # blended | finetune | adaptation
    sampler: str = "mixture"  # a name from gtahuman.data.samplers.SAMPLERS
    sampler_args: Dict[str, Any] = field(default_factory=dict)
    real_ratio: Optional[float] = None  # real:synthetic ratio; null = partition weights
    epoch_length: Optional[int] = None  # samples per epoch; null = the sampler's default
    # samples per train source (with SMPL) evaluated with the val sets, unaugmented: the error on
    # what the run trains on beside its held-out error (python -m analysis.learning RUN); 0 = off
    train_probe: int = 0
    batch_size: int = 32  # global batch (divided by the world size)
    # mode adaptation: 'split' = half the batch from each domain, epochs as long as a blended run's
    # (a DA row differs from its BT baseline in the objective alone); 'each' = a whole batch from
    # each domain, the epoch set by the real side (twice the samples per step; fewer steps)
    adaptation_batch: str = "split"
    num_workers: int = 0
    img_res: int = 224
    augment: bool = True
    # true: training crops leave the loader as uint8 with their colour multipliers, and colour noise
    # and normalisation run batched on the training device (a quarter of the bytes per sample
    # through workers, collation and the copy to a GPU); evaluation crops are finished on the CPU
    uint8_images: bool = False
    crop_cache: bool = True  # decode person crops from a cache, not full frames
    crop_res: int = 336  # 1.5x the box: img_res 224 at full resolution
    # Stream crops from litdata shards written from the crop cache (needs crop_cache; cached by content)
    crop_shards: bool = False


@dataclass
class LossWeights:
    # SPIN's weights (5*L2D + 5*L3D + 1*Lpose + 0.001*Lbetas + cam prior, all x60): the paper keeps
    # SPIN's hyper-parameters for HMR+ BT.
    keypoints2d: float = 300.0
    keypoints3d: float = 300.0
    keypoints3d_aligned: float = 0.0  # not SPIN's: 3D joints after the best rotation onto the GT
    smpl_pose: float = 60.0
    smpl_betas: float = 0.06
    camera: float = 60.0
    vertices: float = 0.0
    adversarial: float = 1.0
    parts: float = 60.0  # PARE's part segmentation (SMPL_PART_LOSS_WEIGHT 1 x LOSS_WEIGHT 60); arch pare only
    keypoints2d_direct: float = 100.0  # L1 on the keypoint branch's soft-argmax 2D keypoints; arch hmr_kp only
    keypoints2d_heatmap: float = 0.0  # cross-entropy of its heatmaps against Gaussians at the labels; hmr_kp only


# The systems' keyword arguments before they took one LossWeights (checkpoints written then carry them).
LEGACY_LOSS_ARGUMENTS = {"loss_keypoints2d": "keypoints2d", "loss_keypoints3d": "keypoints3d",
                         "loss_keypoints3d_aligned": "keypoints3d_aligned", "loss_pose": "smpl_pose",
                         "loss_betas": "smpl_betas", "loss_camera": "camera", "loss_vertices": "vertices",
                         "loss_adversarial": "adversarial", "loss_parts": "parts",
                         "loss_keypoints2d_direct": "keypoints2d_direct",
                         "loss_keypoints2d_heatmap": "keypoints2d_heatmap"}


def loss_weights_from(value: "LossWeights | Mapping[str, float] | None", legacy: Mapping[str, float] | None = None,
                      owner: str = "the system", **defaults: float) -> LossWeights:
    """A system's typed loss weights: from a LossWeights, a mapping of some of its fields (the
    config section, a checkpoint's hyper-parameters) or None, over the schema's defaults changed by
    ``defaults``; ``legacy``: the ``loss_<term>`` keywords of older checkpoints. A name that is no
    loss term, or a negative weight, is an error naming the valid terms."""
    valid = [f.name for f in fields(LossWeights)]
    given = dict(defaults)
    given.update(asdict(value) if isinstance(value, LossWeights) else dict(value or {}))
    for name, weight in (legacy or {}).items():
        if name not in LEGACY_LOSS_ARGUMENTS:
            raise TypeError(f"{owner}: unexpected keyword argument {name!r}")
        given[LEGACY_LOSS_ARGUMENTS[name]] = weight
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValueError(f"{owner}: no loss term {', '.join(map(repr, unknown))}; the terms: {', '.join(valid)}")
    negative = {k: v for k, v in given.items() if float(v) < 0}
    if negative:
        raise ValueError(f"{owner}: loss weights must be >= 0; got {negative}")
    return LossWeights(**{k: float(v) for k, v in given.items()})


@dataclass
class ModelConfig:
    arch: str = "hmr"  # image regressor: hmr (backbone + IEF head) | a name in gtahuman.models.REGRESSORS
    variant: str = "hmr_plus"  # hmr (adversarial pose prior) | hmr_plus
    backbone: str = "resnet50"  # a name from gtahuman.models.BACKBONES
    backbone_args: Dict[str, Any] = field(default_factory=dict)
    n_iter: int = 3
    regressor_args: Dict[str, Any] = field(default_factory=dict)  # extra arguments of a REGRESSORS entry
    # PARE's part labels: render_gt (rasterise the GT SMPL mesh per batch when the batch has no
    # part_labels) | batch (only labels the data provides)
    part_labels: str = "render_gt"
    head_dropout: float = 0.5  # dropout after each hidden layer of the IEF head (SPIN: 0.5)
    # Where the IEF starts: smpl_mean_params (the body directory's file, SPIN's) | train_mean (the
    # training data's best constant: mean pose and betas as the sampler mixes the sources; HMR's
    # mean parameters were its training data's mean). A fine-tuned head keeps its own start.
    init_estimate: str = "smpl_mean_params"
    supervision: str = "both"  # both | keypoints | smpl (paper Table 8)
    # Train sources the supervision toggle applies to (Table 8: the GTA source); null = all of them.
    supervision_sources: Optional[List[str]] = None
    loss_weights: LossWeights = field(default_factory=LossWeights)
    # element loss of the 2D and 3D keypoint terms: mse (SPIN, the paper's "same as SPIN") |
    # smooth_l1 (mmhuman3d's GTA-Human configs; gtahuman.systems.losses.keypoint_element_loss)
    keypoint_loss: str = "mse"
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
    schedule: str = "constant"  # constant | step (milestones, gamma) | cosine (per step, to 0)
    milestones: List[int] = field(default_factory=list)
    gamma: float = 0.1
    warmup_steps: int = 0  # cosine: linear warm-up steps


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
    # Validate every N training batches, counted across epoch ends, so runs with short epochs (the
    # amount and scarcity samplers) pick their best checkpoint among as many validations as others;
    # null: val_check_interval, or each epoch end.
    val_every_steps: Optional[int] = None
    limit_train_batches: Optional[float] = None
    limit_val_batches: Optional[float] = None
    progress_bar: bool = True
    # Also refresh last.ckpt every N optimizer steps (mid-epoch resume after a kill); null = epoch ends only
    checkpoint_every_n_steps: Optional[int] = None
    # torch intra-op threads; null = OMP_NUM_THREADS if set, else the free cores (gtahuman.threads)
    threads: Optional[int] = None
    # Loggers beside the CSV log every run keeps (logs/metrics.csv, which analysis reads):
    # tensorboard (<run>/tensorboard), mlflow (<run>/mlruns), wandb (offline, <run>/wandb)
    loggers: List[str] = field(default_factory=list)


@dataclass
class EvalConfig:
    protocol: str = "miniworld"  # a name from gtahuman.evaluation.PROTOCOLS
    monitor: str = "val/pa_mpjpe"  # best checkpoint = lowest value of this (a val metric)
    # Eval set name -> protocol, for sets that do not use `protocol` (e.g. h36m_p2 on an H36M set).
    # A set named like a protocol (3dpw, h36m_p2, ...) uses that protocol without an entry here.
    protocols: Dict[str, str] = field(default_factory=dict)


@dataclass
class AdaptationConfig:
    """Domain adaptation (paper Table 6): needs ``data.mode=adaptation`` (real = source, synthetic
    = target batches). Each objective's own typed arguments go in ``args``."""

    method: Optional[str] = None  # null | a name in gtahuman.adaptation.ADAPTATIONS (dann, jan, rsd)
    weight: float = 1.0  # multiplies the objective's loss (its paper weight lives in its args)
    args: Dict[str, Any] = field(default_factory=dict)
    # CycleGAN sim2real: a trained generator checkpoint applied to synthetic crops, either on the
    # fly during training (online) or once into a translated crop cache (offline).
    sim2real_checkpoint: Optional[str] = None
    sim2real_mode: str = "offline"  # online | offline


@dataclass
class VideoConfig:
    """Temporal model (paper Table 3), used when ``task=video``."""

    frame_checkpoint: Optional[str] = None  # trained frame model (HMRSystem checkpoint) for features + head init
    window: int = 16
    hidden_size: int = 1024
    num_layers: int = 2
    bidirectional: bool = False
    residual: bool = True
    motion_discriminator: bool = False
    # -- gtahuman.video (see its modules); `frame_checkpoint: null` on the mini world trains one first
    frame_checkpoint_format: str = "auto"  # auto | suite | spin | mmhuman3d (a SPIN state dict for VIBE's rows)
    stride: Optional[int] = None  # training window stride; null = window (VIBE: no overlap)
    zero_init: bool = True  # GRU path's output layer starts at 0: the untrained model = the frame model
    motion_loss_weight: float = 0.5  # VIBE's D_MOTION_LOSS_W (generator and discriminator)
    feature_batch_size: int = 64  # frames per batch when caching the frame model's features
    # Table 3 "GTA*": keep only N SMPL poses of one train source (whole sequences, seeded), N given
    # directly (subsample_poses) or as the SMPL-labelled frame count of another dataset (subsample_like)
    subsample_source: Optional[str] = None
    subsample_poses: Optional[int] = None
    subsample_like: Optional[SourceConfig] = None


@dataclass
class Config:
    experiment: str = "quickstart"
    description: str = ""
    # A paper row's training recipe. The row's own keys are one recipe (null: the experiment's own
    # settings; the paper rows say `paper`: the paper's text); `recipes` names other recipes of the
    # row and the fragment (experiment/_<name>.yaml) that `recipe=<name>` on the command line stacks
    # on it, e.g. mmhuman3d: the released configs behind the published numbers (docs/REPRODUCE.md)
    recipe: Optional[str] = None
    recipes: Dict[str, str] = field(default_factory=dict)
    task: str = "image"  # image (HMRSystem) | video (temporal model on frame features)
    # experiments.run ... dry_run=true: check the config against the files (gtahuman.check), train nothing
    dry_run: bool = False
    run: RunConfig = field(default_factory=RunConfig)
    body: BodyConfig = field(default_factory=BodyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    adaptation: AdaptationConfig = field(default_factory=AdaptationConfig)
    video: VideoConfig = field(default_factory=VideoConfig)


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

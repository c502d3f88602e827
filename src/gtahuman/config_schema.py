"""The configuration schema: every key a YAML file or the command line may set, with its type,
default and what it means, as dataclasses (OmegaConf structured configs; `gtahuman.config` loads
and merges against them). `LossWeights` is also the type the systems take (`loss_weights_from`),
so a new loss term is a field here, not a renamed argument in every layer.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Mapping, Optional

from omegaconf import MISSING

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
    # | gta_studio_looks (gtahuman.miniworld.domains.VARIANTS); the other domains never change
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
    # their mean: all (every element, SPIN) | confident (the elements of positive confidence only,
    # mmhuman3d's later body-model estimator; gtahuman.systems.losses)
    keypoint_reduction: str = "all"
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
    # Every N optimiser steps, the predicted meshes over the first `sample_images` crops of the batch:
    # <run>/samples/step_<N>.png and the loggers that take images (gtahuman.run_samples); null = off
    sample_images_every_n_steps: Optional[int] = None
    sample_images: int = 4


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

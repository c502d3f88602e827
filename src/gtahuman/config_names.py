"""What a config may name: the registries' names and the fixed vocabularies of the config's keys.

The registries live in modules that import torch, timm and Lightning (seconds to tens of seconds on
a busy machine), so each kind of name has a snapshot here; ``tests/test_config_checks.py``
asserts that every snapshot equals its registry, so a component registered without updating the
snapshot fails the tests. Where the registry's module is imported already (as in ``train()``, or
a test that registers a component of its own), its live names are used (`known_names`).
`gtahuman.config_checks` checks a config's values against these.
"""
from __future__ import annotations

import sys

# kind -> (module holding the live names, attribute, snapshot of the names)
NAME_SOURCES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "backbone": ("gtahuman.models", "BACKBONES", (
        "deit_base", "deit_small", "hrnet_w18_small", "hrnet_w32", "mobilenetv3_small_050", "resnet101",
        "resnet10t", "resnet152", "resnet18", "resnet50")),
    "PARE backbone": ("gtahuman.models.pare", "MULTI_SCALE_BACKBONES", (
        "hrnet_w18_small", "hrnet_w32", "mobilenetv3_small_050", "resnet10t", "resnet18", "resnet50")),
    "keypoint backbone": ("gtahuman.models.keypoint_hmr", "KEYPOINT_BACKBONES", (
        "mobilenetv3_small_050", "plain16", "plain24", "plain32", "plain8", "resnet10t", "resnet18", "resnet50")),
    "regressor": ("gtahuman.models", "REGRESSORS", ("hmr_kp", "pare")),
    "sampler": ("gtahuman.data.samplers", "SAMPLERS", ("amount", "balance", "mixture", "scarcity", "sequential")),
    "adaptation objective": ("gtahuman.adaptation", "ADAPTATIONS", ("dann", "jan", "none", "rsd")),
    "evaluation protocol": ("gtahuman.evaluation", "PROTOCOLS", ("3dpw", "h36m_p2", "miniworld", "mpi_inf_3dhp")),
    "source kind": ("gtahuman.data.prepare_sources", "SOURCES", ("gta_raw", "humandata", "spin_npz")),
    "mini-world size": ("gtahuman.miniworld.domains", "SIZES", ("default", "large", "tiny")),
    "mini-world variant": ("gtahuman.miniworld.domains", "VARIANTS", (
        "gta_studio", "gta_studio_geometry", "gta_studio_looks", "standard")),
    "model variant": ("gtahuman.systems.hmr", "VARIANTS", ("hmr", "hmr_plus")),
    "supervision": ("gtahuman.systems.hmr", "SUPERVISION", ("both", "keypoints", "smpl")),
    "part-label source": ("gtahuman.systems.hmr_supervision", "PART_LABELS", ("batch", "render_gt")),
    "lr schedule": ("gtahuman.systems.optimisation", "SCHEDULES", ("constant", "cosine", "step")),
    "keypoint loss": ("gtahuman.systems.losses", "KEYPOINT_LOSSES", ("mse", "smooth_l1")),
    "keypoint reduction": ("gtahuman.systems.losses", "KEYPOINT_REDUCTIONS", ("all", "confident")),
    "checkpoint format": ("gtahuman.systems.checkpoint_import", "FORMATS", ("auto", "mmhuman3d", "spin", "suite")),
    "initial estimate": ("gtahuman.train_image", "INIT_ESTIMATES", ("smpl_mean_params", "train_mean")),
}
# What MixedDataModule and the samplers accept (signatures checked against the snapshot in the tests).
MODES = ("adaptation", "blended", "finetune")
SPLITS = ("train", "heldout")  # as gtahuman.data.splits.SPLITS
ADAPTATION_BATCHES = ("each", "split")  # as gtahuman.data.mixing.ADAPTATION_BATCHES (no data import here)
ROLES = ("real", "synthetic")
SIM2REAL_MODES = ("offline", "online")
TASKS = ("image", "video")
SAMPLERS_TAKING_REAL_RATIO = ("amount", "mixture")
SAMPLERS_NEEDING_REAL_RATIO = ("amount",)
SAMPLERS_TAKING_EPOCH_LENGTH = ("balance", "mixture")
SAMPLER_ARGS_SET_BY_THE_DATAMODULE = ("num_replicas", "rank", "seed", "source_names", "sources")
# Lightning's Trainer (2.x): accelerator and strategy names, precision inputs.
ACCELERATORS = ("auto", "cpu", "cuda", "gpu", "mps", "tpu")
STRATEGIES = (
    "auto", "ddp", "ddp_find_unused_parameters_false", "ddp_find_unused_parameters_true", "ddp_fork",
    "ddp_fork_find_unused_parameters_false", "ddp_fork_find_unused_parameters_true", "ddp_notebook",
    "ddp_notebook_find_unused_parameters_false", "ddp_notebook_find_unused_parameters_true", "ddp_spawn",
    "ddp_spawn_find_unused_parameters_false", "ddp_spawn_find_unused_parameters_true", "deepspeed",
    "deepspeed_stage_1", "deepspeed_stage_2", "deepspeed_stage_2_offload", "deepspeed_stage_3",
    "deepspeed_stage_3_offload", "deepspeed_stage_3_offload_nvme", "fsdp", "fsdp_cpu_offload", "single_device",
    "single_tpu", "single_xla", "xla", "xla_debug")
PRECISIONS = ("16", "16-mixed", "16-true", "32", "32-true", "64", "64-true", "bf16", "bf16-mixed", "bf16-true",
              "transformer-engine", "transformer-engine-float16")
MAX_SEED = 2**32 - 1  # numpy and Lightning's seed_everything accept 0 .. 2^32 - 1
ADAPTATION_REAL_SHARE = 0.5  # mode adaptation pairs each real batch with an equally large synthetic one


def known_names(kind: str) -> list[str]:
    """The valid names of ``kind`` (a key of `NAME_SOURCES`): the live registry when its module
    is imported already, else the snapshot (no import: the checks stay well under a second)."""
    module_name, attribute, snapshot = NAME_SOURCES[kind]
    live = getattr(sys.modules.get(module_name), attribute, None)
    if live is None:
        return sorted(snapshot)
    return sorted(live.names() if hasattr(live, "names") else live)
# trainer.loggers: besides the CSV log every run keeps (gtahuman.run_trainer.extra_loggers), and the
# packages that write them (any one of them; the last is what to install)
LOGGER_PACKAGES = {"mlflow": ("mlflow",), "tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}
LOGGERS = tuple(LOGGER_PACKAGES)

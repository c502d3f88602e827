"""``validate_config(cfg)``: every value of a loaded config checked before any work.

`gtahuman.config` checks the shape of a config (known keys, value types); this module checks the
values: numeric ranges, names that must exist in a registry, and keys that only make sense
together. It runs in ``experiments.run`` (also with ``--print-config``), ``experiments.check``
and at the top of ``train()``, so a wrong value stops a run in well under a second, before the
mini world is generated, a source is prepared or a run directory is made, with one message that
names every bad key, its value and what was expected::

    config error: 2 invalid config values:
      optim.lr=-1.0: expected a number > 0 (the learning rate)
      model.backbone=resnet_typo: expected a backbone (gtahuman.models.BACKBONES): deit_base, ...;
        did you mean 'resnet10t'?

Values still ``???`` are skipped here (`gtahuman.config.require_complete` names them). The
names and vocabularies the values are checked against are in `gtahuman.config_names` (registry
snapshots, so that the checks import no torch); the collecting machinery (`Checks`,
`ConfigProblem`) is in `gtahuman.config_problems`.
"""
from __future__ import annotations

import importlib.util
import math
from typing import Any

from omegaconf import DictConfig, ListConfig
from omegaconf.errors import OmegaConfBaseException

from gtahuman.config import ConfigError, did_you_mean
from gtahuman.config_names import (
    ACCELERATORS, ADAPTATION_BATCHES, ADAPTATION_REAL_SHARE, LOGGER_PACKAGES, LOGGERS, MAX_SEED, MODES, PRECISIONS,
    ROLES, SAMPLERS_NEEDING_REAL_RATIO, SAMPLERS_TAKING_EPOCH_LENGTH, SAMPLERS_TAKING_REAL_RATIO,
    SAMPLER_ARGS_SET_BY_THE_DATAMODULE, SIM2REAL_MODES, SPLITS, STRATEGIES, TASKS, known_names,
)
from gtahuman.config_problems import Checks, ConfigProblem


# ------------------------------------------------------------------------------------ sections
def _check_run(c: Checks) -> None:
    c.number("run.seed", 0, MAX_SEED, what="the random seed")
    for key in ("run.output_root", "run.cache_dir"):
        given, value = c.get(key)
        if given and not (isinstance(value, str) and value.strip()):
            c.bad(key, value, "a folder (not empty)")
    given, run_id = c.get("run.run_id")
    if given and run_id is not None and (not run_id.strip() or run_id in (".", "..") or "/" in run_id
                                         or "\\" in run_id):
        c.bad("run.run_id", run_id, "a folder name (no '/', not '.' or '..') or null for a new unique id")
    if c.value("run.resume") and c.value("run.run_id") is None and c.get("run.run_id")[0]:
        c.bad("run.resume", True, "run.run_id of the run to continue (run.resume=true continues an existing "
                                  "run: give run.run_id=ID)")


def _check_source(c: Checks, key: str) -> None:
    c.registered(f"{key}.kind", "source kind")
    c.choice(f"{key}.role", ROLES, "source role")
    c.number(f"{key}.weight", 0, what="the source's partition weight inside its role group")
    c.choice(f"{key}.split", SPLITS, "part of a held-out split by sequence", optional=True)
    c.number(f"{key}.heldout_fraction", 0, 1, low_open=True, high_open=True,
             what="the share of sequences the held-out split leaves out of training")


def _train_roles(c: Checks) -> dict[str, list[str]]:
    roles: dict[str, list[str]] = {role: [] for role in ROLES}
    for name in c.value("data.train", {}) or {}:
        role = c.value(f"data.train.{name}.role")
        if role in roles:
            roles[role].append(str(name))
    return roles


def _check_data(c: Checks) -> None:
    c.registered("data.miniworld", "mini-world size", optional=True)
    c.number("data.miniworld_seed", 0, MAX_SEED, what="the mini world's seed")
    c.registered("data.miniworld_variant", "mini-world variant")
    for split in ("train", "val", "test"):
        for name in c.value(f"data.{split}", {}) or {}:
            _check_source(c, f"data.{split}.{name}")
    if c.get("data.train")[0] and not c.value("data.train"):
        c.bad("data.train", {}, "at least one train source")
    c.choice("data.mode", MODES, "data mode")
    c.choice("data.adaptation_batch", ADAPTATION_BATCHES, "batch layout of data.mode=adaptation")
    c.registered("data.sampler", "sampler")
    c.number("data.real_ratio", 0, 1, optional=True, what="the real share of each epoch; null: partition weights")
    c.number("data.epoch_length", 1, optional=True, what="samples per epoch; null: the sampler's default")
    c.number("trainer.threads", 1, optional=True, what="torch intra-op threads; null: chosen from the free cores")
    c.number("data.train_probe", 0, what="samples per train source evaluated with the val sets; 0: off")
    c.number("data.batch_size", 1, what="the global batch")
    c.number("data.num_workers", 0, what="DataLoader worker processes")
    c.number("data.img_res", 16, what="the network's input size in pixels")
    c.number("data.crop_res", 16, what="the cached crops' size in pixels")
    if c.value("data.crop_shards") and c.get("data.crop_cache")[0] and not c.value("data.crop_cache"):
        c.bad("data.crop_shards", True, "data.crop_cache=true as well (the shards are written from the crop cache)")
    sampler_args = c.value("data.sampler_args") or {}
    reserved = sorted(set(SAMPLER_ARGS_SET_BY_THE_DATAMODULE) & set(sampler_args))
    if reserved:
        c.bad("data.sampler_args", sampler_args, f"no {', '.join(reserved)} (the data module sets them; the seed "
                                                 "is run.seed)")
    _check_mode(c, sampler_args)


def _check_mode(c: Checks, sampler_args: Any) -> None:
    """Keys that must agree with data.mode and data.sampler (what MixedDataModule would refuse)."""
    mode, sampler = c.value("data.mode"), c.value("data.sampler")
    given, ratio = c.get("data.real_ratio")
    ratio = ratio if given and isinstance(ratio, (int, float)) and 0 <= ratio <= 1 else None
    roles = _train_roles(c)
    if mode == "adaptation":
        if ratio is not None and ratio != ADAPTATION_REAL_SHARE:
            c.bad("data.real_ratio", ratio, f"null (or {ADAPTATION_REAL_SHARE:g}) with data.mode=adaptation: each real "
                                            "(source) batch is paired with an equally large synthetic (target) "
                                            "batch, so the domains always meet 1:1")
        for role, domain in (("real", "source"), ("synthetic", "target")):
            if c.value("data.train") and not roles[role]:
                c.bad("data.mode", mode, f"a train source with role '{role}' (the {domain} domain) for "
                                         "data.mode=adaptation")
    elif ratio is not None and sampler in known_names("sampler"):
        if sampler not in SAMPLERS_TAKING_REAL_RATIO:
            c.bad("data.real_ratio", ratio, f"null with data.sampler={sampler} (only "
                                            f"{' and '.join(SAMPLERS_TAKING_REAL_RATIO)} mix by a real ratio)")
        else:
            if ratio > 0 and not roles["real"]:
                c.bad("data.real_ratio", ratio, "0 or null: no train source has role 'real'")
            if ratio < 1 and not roles["synthetic"]:
                c.bad("data.real_ratio", ratio, "1 or null: no train source has role 'synthetic'")
    if sampler in SAMPLERS_NEEDING_REAL_RATIO and "real_ratio" not in sampler_args and \
            (ratio is None or mode == "adaptation"):
        c.bad("data.sampler", sampler, f"data.real_ratio as well (the {sampler} sampler draws a real share)")
    epoch_length = c.value("data.epoch_length")
    if mode == "finetune" and epoch_length is None and c.get("data.epoch_length")[0]:
        c.bad("data.epoch_length", None, "a number of samples per epoch with data.mode=finetune")
    if epoch_length is not None:
        if "epoch_length" in sampler_args:
            c.bad("data.epoch_length", epoch_length, "null when data.sampler_args.epoch_length is given (one of "
                                                     "the two)")
        elif sampler in known_names("sampler") and sampler not in SAMPLERS_TAKING_EPOCH_LENGTH:
            c.bad("data.epoch_length", epoch_length, f"null with data.sampler={sampler} (it takes no epoch length; "
                                                     f"{' and '.join(SAMPLERS_TAKING_EPOCH_LENGTH)} do)")
    method = c.value("adaptation.method")
    if method not in (None, "none") and method in known_names("adaptation objective") and mode != "adaptation":
        c.bad("adaptation.method", method, f"data.mode=adaptation as well (an objective needs source/target batch "
                                           f"pairs; data.mode is {mode})")


def _check_model(c: Checks) -> None:
    arch = c.value("model.arch")
    c.registered("model.arch", "regressor", extra=("hmr",))
    c.registered("model.variant", "model variant")
    if arch == "hmr" or arch not in known_names("regressor"):
        c.registered("model.backbone", "backbone")
    elif arch == "pare":
        c.registered("model.backbone", "PARE backbone")
    elif arch == "hmr_kp":
        c.registered("model.backbone", "keypoint backbone")
    c.number("model.n_iter", 1, what="IEF iterations")
    c.registered("model.part_labels", "part-label source")
    c.registered("model.keypoint_loss", "keypoint loss")
    c.registered("model.keypoint_reduction", "keypoint reduction")
    c.number("model.head_dropout", 0, 1, high_open=True, what="dropout probability")
    c.registered("model.init_estimate", "initial estimate")
    if c.value("model.init_estimate") == "train_mean" and c.value("model.init_checkpoint"):
        c.bad("model.init_estimate", "train_mean", "smpl_mean_params with model.init_checkpoint (a fine-tuned head "
                                                   "starts where its checkpoint's head starts)")
    c.registered("model.supervision", "supervision")
    c.registered("model.init_format", "checkpoint format", extra=("pare",))  # pare: PARE's public layout
    c.number("model.feature_samples", 0, what="backbone features kept per eval set")
    for name in c.value("model.loss_weights", {}) or {}:
        c.number(f"model.loss_weights.{name}", 0, what="a loss weight")
    train_names = [str(n) for n in (c.value("data.train", {}) or {})]
    # the pose prior reads its sources only with the adversarial prior (model.variant=hmr)
    keys = ("model.supervision_sources", "model.prior_sources") if c.value("model.variant") == "hmr" else \
        ("model.supervision_sources",)
    for key in keys:
        unknown = [n for n in (c.value(key) or []) if n not in train_names]
        if unknown:
            c.bad(key, c.value(key), f"names of train sources: {', '.join(train_names) or '(none)'} "
                                     f"(not {', '.join(map(str, unknown))})")
    if c.value("task") == "image" and c.value("model.variant") == "hmr" and arch == "hmr" \
            and c.get("model.prior_sources")[0] and not c.value("model.prior_sources"):
        c.bad("model.prior_sources", [], "at least one train source whose SMPL poses feed the adversarial pose "
                                         "prior of model.variant=hmr")
    if c.value("task") == "image" and c.value("model.variant") == "hmr" \
            and c.value("trainer.accumulate_grad_batches") not in (None, 1):
        # the adversarial prior optimises manually (systems/pose_prior.py), and Lightning accumulates
        # automatic optimisation only: refused here rather than after the data are prepared
        c.bad("trainer.accumulate_grad_batches", c.value("trainer.accumulate_grad_batches"),
              "1 with model.variant=hmr (its adversarial prior optimises manually)")


def _check_optim(c: Checks) -> None:
    c.number("optim.lr", 0, low_open=True, what="the learning rate")
    c.number("optim.base_batch_size", 1, optional=True, what="the batch the lr is given for; null: no scaling")
    c.number("optim.disc_lr", 0, low_open=True, what="the pose discriminator's learning rate")
    c.number("optim.weight_decay", 0, what="weight decay")
    c.registered("optim.schedule", "lr schedule")
    c.number("optim.gamma", 0, 1, low_open=True, what="the step schedule's lr factor")
    c.number("optim.warmup_steps", 0, what="linear warm-up steps")
    milestones = list(c.value("optim.milestones") or [])
    if any(not isinstance(m, int) or m < 1 for m in milestones) or milestones != sorted(set(milestones)):
        c.bad("optim.milestones", milestones, "increasing epoch numbers >= 1")
    if c.value("optim.schedule") == "step" and not milestones:
        c.bad("optim.milestones", milestones, "at least one epoch with optim.schedule=step")


def _devices_ok(devices: Any) -> bool:
    if isinstance(devices, bool):
        return False
    if isinstance(devices, int):
        return devices == -1 or devices >= 1
    if isinstance(devices, str):
        text = devices.strip()
        if text in ("auto", "-1") or (text.isdigit() and int(text) >= 1):
            return True
        parts = [p.strip() for p in text.split(",") if p.strip()]
        return "," in text and bool(parts) and all(p.isdigit() for p in parts) and len(set(parts)) == len(parts)
    if isinstance(devices, (ListConfig, list, tuple)):
        items = list(devices)
        return bool(items) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in items) \
            and len(set(items)) == len(items)
    return False


def configured_processes(cfg: DictConfig) -> int:
    """Processes the config asks for (devices x nodes), 1 when ``devices`` is left to Lightning
    (the rule of `gtahuman.train_image.configured_world_size`, without its imports)."""
    devices = cfg.trainer.devices
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > 0:
        count = devices
    elif isinstance(devices, str) and devices.isdigit():
        count = int(devices)
    elif isinstance(devices, (ListConfig, list, tuple)):
        count = len(devices)
    else:
        count = 1
    return count * cfg.trainer.num_nodes


def _check_trainer(c: Checks) -> None:
    c.number("trainer.max_epochs", -1, what="-1: no epoch limit")
    c.number("trainer.max_steps", -1, what="-1: no step limit")
    if c.value("trainer.max_epochs") == -1 and c.value("trainer.max_steps") == -1:
        c.bad("trainer.max_epochs", -1, "a limit: with trainer.max_steps=-1 too the run would never end (give "
                                        "trainer.max_epochs >= 0 or trainer.max_steps >= 0)")
    c.choice("trainer.accelerator", ACCELERATORS, "Lightning accelerator")
    given, loggers = c.get("trainer.loggers")
    for i, name in enumerate(loggers if given and loggers is not None else []):
        if name == "csv":
            c.bad(f"trainer.loggers[{i}]", name, "a logger besides the CSV log, which every run keeps: "
                                              + ", ".join(LOGGERS))
        elif name not in LOGGERS:
            c.bad(f"trainer.loggers[{i}]", name, f"one of {', '.join(LOGGERS)}{did_you_mean(name, LOGGERS)}")
        elif not any(importlib.util.find_spec(p) for p in LOGGER_PACKAGES[name]):  # found, not imported
            extra = " or pip install -e .[curves]" if name == "tensorboard" else ""
            c.bad(f"trainer.loggers[{i}]", name, f"an installed logger: '{name}' needs the package "
                                              f"{' or '.join(LOGGER_PACKAGES[name])} (pip install "
                                              f"{LOGGER_PACKAGES[name][-1]}{extra})")
    given, devices = c.get("trainer.devices")
    if given and not _devices_ok(devices):
        c.bad("trainer.devices", devices, "auto, a count >= 1, -1 (all), or device indices (a list, or '0,1')")
    c.number("trainer.num_nodes", 1, what="machines")
    given, strategy = c.get("trainer.strategy")
    if given and isinstance(strategy, str) and strategy.lower() not in STRATEGIES:
        c.bad("trainer.strategy", strategy, f"a Lightning strategy: {', '.join(STRATEGIES)}"
                                            f"{did_you_mean(strategy, STRATEGIES)}")
    c.choice("trainer.precision", PRECISIONS, "Lightning precision")
    c.number("trainer.accumulate_grad_batches", 1, what="batches per optimizer step")
    c.number("trainer.gradient_clip_val", 0, low_open=True, optional=True, what="gradient norm to clip to; null: no "
                                                                                "clipping")
    c.number("trainer.log_every_n_steps", 1, what="steps between logged rows")
    c.number("trainer.val_check_interval", 0, 1, low_open=True, optional=True,
             what="the fraction of an epoch between validations; null: each epoch end")
    c.number("trainer.val_every_steps", 1, optional=True, what="training batches between validations; null: "
                                                               "val_check_interval or each epoch end")
    if c.value("trainer.val_every_steps") is not None and c.value("trainer.val_check_interval") is not None:
        c.bad("trainer.val_every_steps", c.value("trainer.val_every_steps"),
              "null when trainer.val_check_interval is set (one validation rule, not both)")
    for key in ("trainer.limit_train_batches", "trainer.limit_val_batches"):
        given, value = c.get(key)
        if given and value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)
                                                and (0 <= value <= 1 or (value > 1 and value % 1 == 0))):
            c.bad(key, value, "a fraction in [0, 1] or a whole number of batches, or null")
    c.number("trainer.checkpoint_every_n_steps", 1, optional=True, what="steps between mid-epoch last.ckpt "
                                                                         "refreshes; null: epoch ends only")
    c.number("trainer.sample_images_every_n_steps", 1, optional=True, what="steps between sample images; null: none")
    c.number("trainer.sample_images", 1, what="crops per sample image")
    try:
        processes = configured_processes(c.cfg)
        batch = c.cfg.data.batch_size
    except (OmegaConfBaseException, TypeError, AttributeError):
        return  # reported above
    if isinstance(batch, int) and batch >= 1 and processes >= 1 and batch % processes:
        c.bad("data.batch_size", batch, f"a multiple of the {processes} processes (trainer.devices x "
                                        "trainer.num_nodes): the batch is global")


def _check_eval(c: Checks) -> None:
    c.registered("eval.protocol", "evaluation protocol")
    given, monitor = c.get("eval.monitor")
    if given and not (isinstance(monitor, str) and monitor.startswith("val/") and len(monitor) > 4):
        c.bad("eval.monitor", monitor, "a validation metric, val/<metric> (the best checkpoint is never chosen "
                                       "on the test sets)")
    eval_sets = [str(n) for split in ("val", "test") for n in (c.value(f"data.{split}", {}) or {})]
    for name in c.value("eval.protocols", {}) or {}:
        if name not in eval_sets:
            c.bad(f"eval.protocols.{name}", c.value(f"eval.protocols.{name}"),
                  f"an entry named like a val or test set: {', '.join(eval_sets) or '(none)'}{did_you_mean(name, eval_sets)}")
        c.registered(f"eval.protocols.{name}", "evaluation protocol")


def _check_adaptation(c: Checks) -> None:
    c.registered("adaptation.method", "adaptation objective", optional=True)
    c.number("adaptation.weight", 0, what="the objective's loss multiplier")
    c.choice("adaptation.sim2real_mode", SIM2REAL_MODES, "sim2real mode")


def _check_video(c: Checks) -> None:
    c.number("video.window", 1, what="frames per window")
    c.number("video.hidden_size", 1, what="GRU units")
    c.number("video.num_layers", 1, what="GRU layers")
    c.registered("video.frame_checkpoint_format", "checkpoint format")
    c.number("video.stride", 1, optional=True, what="frames between training windows; null: the window")
    c.number("video.motion_loss_weight", 0, what="the motion discriminator's loss weight")
    c.number("video.feature_batch_size", 1, what="frames per batch when caching features")
    c.number("video.subsample_poses", 1, optional=True, what="SMPL poses kept of video.subsample_source")
    if c.value("video.subsample_like") is not None:
        _check_source(c, "video.subsample_like")
    if c.value("task") != "video":
        return
    if c.value("video.motion_discriminator") and c.value("trainer.gradient_clip_val") is not None:
        c.bad("trainer.gradient_clip_val", c.value("trainer.gradient_clip_val"),
              "null with video.motion_discriminator=true (it optimises manually; Lightning cannot clip it)")
    source = c.value("video.subsample_source")
    counts = [c.value(k) is not None for k in ("video.subsample_poses", "video.subsample_like")]
    if source is None and any(counts):
        c.bad("video.subsample_source", None, "the train source to cut down (e.g. gta) when video.subsample_poses "
                                              "or video.subsample_like is given")
    elif source is not None:
        train_names = [str(n) for n in (c.value("data.train", {}) or {})]
        if source not in train_names:
            c.bad("video.subsample_source", source, f"a train source: {', '.join(train_names)}"
                                                    f"{did_you_mean(source, train_names)}")
        if sum(counts) != 1:
            c.bad("video.subsample_source", source, "exactly one of video.subsample_poses (a count) and "
                                                    "video.subsample_like (a dataset whose SMPL poses to count)")


def config_problems(cfg: DictConfig) -> list[ConfigProblem]:
    """Every invalid value of ``cfg`` (see the module docstring); empty when there is none."""
    c = Checks(cfg)
    c.choice("task", TASKS, "task")
    c.number("body.num_betas", 1, 300, what="SMPL shape coefficients")
    for section in (_check_run, _check_data, _check_model, _check_optim, _check_trainer, _check_eval,
                    _check_adaptation, _check_video):
        section(c)
    return c.problems


def validate_config(cfg: DictConfig) -> None:
    """Raise `ConfigError` naming every invalid value of ``cfg`` (key, value, what is expected)."""
    problems = config_problems(cfg)
    if len(problems) == 1:
        raise ConfigError(f"invalid config value {problems[0].format()}")
    if problems:
        raise ConfigError(f"{len(problems)} invalid config values:\n" + "\n".join(f"  {p.format()}" for p in problems))

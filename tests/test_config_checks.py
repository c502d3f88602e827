"""Config values are checked before any work (gtahuman.config_checks, issue #20 item 3).

Most bad values are tried in-process on `validate_config` (and through the commands' ``main``);
a handful go through ``python -m experiments.run`` / ``experiments.check`` as subprocesses to show
the whole command: exit status 2 within seconds, the key in the message, no traceback, and
nothing written under the run and cache folders.
"""
from __future__ import annotations

import copy
import functools
import inspect
import os
import subprocess
import sys
import time
import types
import typing
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from experiments.check import main as check_main
from experiments.run import main as run_main
from gtahuman.config import REPO_ROOT, ConfigError, experiment_names, load_config
from gtahuman.config_checks import config_problems, configured_processes, validate_config
from gtahuman.config_names import (
    ACCELERATORS,
    MODES,
    NAME_SOURCES,
    PRECISIONS,
    SAMPLERS_NEEDING_REAL_RATIO,
    SAMPLERS_TAKING_EPOCH_LENGTH,
    SAMPLERS_TAKING_REAL_RATIO,
    STRATEGIES,
    known_names,
)


@functools.lru_cache(maxsize=None)
def _experiment(name: str) -> DictConfig:
    return load_config([f"experiment={name}"])


def config(*overrides: str) -> DictConfig:
    """``load_config(overrides)``, faster: the experiment's files are read once per session and the
    other overrides merged onto a copy (as load_config merges the command line)."""
    name = next((o.split("=", 1)[1] for o in overrides if o.startswith("experiment=")), "quickstart")
    rest = [o for o in overrides if not o.startswith("experiment=")]
    cfg = copy.deepcopy(_experiment(name))
    OmegaConf.set_struct(cfg, False)  # load_config merges the command line before closing the config
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(rest))
    OmegaConf.set_struct(cfg, True)
    return cfg


def problems(*overrides: str) -> dict[str, str]:
    """{key: formatted problem} of the quickstart config with ``overrides``."""
    return {p.key: p.format() for p in config_problems(config(*overrides))}


def fails_on(key: str, *overrides: str) -> str:
    """The ConfigError message of ``overrides``, which must name ``key``."""
    with pytest.raises(ConfigError) as err:
        validate_config(config(*overrides))
    message = str(err.value)
    assert f"{key}=" in message, message
    return message


# ------------------------------------------------------------------------------ the bad values
# (overrides, the key the message must name, text it must hold)
BAD = [
    (["data.real_ratio=1.5"], "data.real_ratio", "in [0, 1]"),
    (["optim.lr=-1"], "optim.lr", "> 0"),
    (["optim.lr=0"], "optim.lr", "> 0"),
    (["trainer.max_epochs=-3"], "trainer.max_epochs", ">= -1"),
    (["trainer.max_steps=-2"], "trainer.max_steps", ">= -1"),
    (["model.backbone=nosuchnet"], "model.backbone", "resnet50"),
    (["data.sampler=nosuch"], "data.sampler", "mixture"),
    (["data.mode=foo"], "data.mode", "blended, finetune"),
    (["data.batch_size=0"], "data.batch_size", ">= 1"),
    (["adaptation.method=foo"], "adaptation.method", "dann, jan, none, rsd"),
    (["data.train.gta.kind=nosuch"], "data.train.gta.kind", "gta_raw, humandata, spin_npz"),
    (["data.miniworld=huge"], "data.miniworld", "default, large, tiny"),
    (["data.miniworld_variant=studio"], "data.miniworld_variant", "gta_studio"),
    (["eval.protocol=3dpv"], "eval.protocol", "did you mean '3dpw'"),
    (["eval.protocols.wild_test=nope"], "eval.protocols.wild_test", "miniworld"),
    (["eval.protocols.nosuchset=3dpw"], "eval.protocols.nosuchset", "wild_test"),
    (["model.arch=parre"], "model.arch", "did you mean 'pare'"),
    (["model.arch=pare", "model.backbone=resnet101"], "model.backbone", "hrnet_w32"),
    (["model.init_estimate=mean"], "model.init_estimate", "smpl_mean_params, train_mean"),
    (["model.variant=hmrplus"], "model.variant", "did you mean 'hmr_plus'"),
    (["model.supervision=all"], "model.supervision", "both"),
    (["optim.schedule=linear"], "optim.schedule", "constant"),
    (["data.img_res=8"], "data.img_res", ">= 16"),
    (["data.train.gta.role=fake"], "data.train.gta.role", "real, synthetic"),
    (["data.train.gta.weight=-1"], "data.train.gta.weight", ">= 0"),
    (["model.loss_weights.keypoints2d=-300"], "model.loss_weights.keypoints2d", ">= 0"),
    (["trainer.precision=16mixed"], "trainer.precision", "did you mean '16-mixed'"),
    (["trainer.accelerator=gpus"], "trainer.accelerator", "did you mean 'gpu'"),
    (["trainer.strategy=dpp"], "trainer.strategy", "did you mean 'ddp'"),
    (["trainer.devices=0"], "trainer.devices", "a count >= 1"),
    (["trainer.devices=[0,0]"], "trainer.devices", "device indices"),
    (["trainer.devices=3", "data.batch_size=32"], "data.batch_size", "multiple of the 3 processes"),
    (["eval.monitor=test/pa_mpjpe"], "eval.monitor", "val/<metric>"),
    (["task=vid"], "task", "did you mean 'video'"),
    (["run.run_id=a/b"], "run.run_id", "folder name"),
    (["run.resume=true"], "run.resume", "run.run_id"),
    (["optim.schedule=step"], "optim.milestones", "at least one epoch"),
    (["optim.milestones=[5,2]"], "optim.milestones", "increasing"),
    (["model.supervision_sources=[gtta]"], "model.supervision_sources", "real_indoor, real_kp, gta"),
    (["model.init_estimate=train_mean", "model.init_checkpoint=/some/best.ckpt"], "model.init_estimate",
     "smpl_mean_params with model.init_checkpoint"),
    (["data.crop_shards=true", "data.crop_cache=false"], "data.crop_shards", "data.crop_cache=true"),
    (["trainer.max_epochs=-1", "trainer.max_steps=-1"], "trainer.max_epochs", "never end"),
    (["optim.lr=${nope}"], "optim.lr", "resolves"),
    (["model.variant=hmr", "model.prior_sources=[gta]", "trainer.accumulate_grad_batches=2"],
     "trainer.accumulate_grad_batches", "1 with model.variant=hmr"),
]


@pytest.mark.parametrize(("overrides", "key", "text"), BAD, ids=[" ".join(b[0]) for b in BAD])
def test_a_bad_value_is_refused_naming_key_value_and_expectation(overrides, key, text) -> None:
    message = fails_on(key, *overrides)
    assert text in message, message


def test_registry_names_are_listed_with_a_suggestion() -> None:
    message = fails_on("model.backbone", "model.arch=hmr", "model.backbone=resnet_typo")
    assert "model.backbone=resnet_typo" in message and "gtahuman.models.BACKBONES" in message
    assert all(name in message for name in known_names("backbone")) and "did you mean 'resnet" in message
    # The quickstart's arch (hmr_kp) takes its own list of backbones.
    message = fails_on("model.backbone", "model.backbone=plain_typo")
    assert "KEYPOINT_BACKBONES" in message and all(name in message for name in known_names("keypoint backbone"))
    assert not problems("model.backbone=plain32") and "model.backbone" in problems("model.backbone=deit_small")


def test_every_problem_is_reported_at_once() -> None:
    found = problems("optim.lr=-1", "data.batch_size=0", "model.backbone=nosuchnet")
    assert set(found) == {"optim.lr", "data.batch_size", "model.backbone"}
    with pytest.raises(ConfigError, match=r"^3 invalid config values:\n"):
        validate_config(config("optim.lr=-1", "data.batch_size=0", "model.backbone=nosuchnet"))


# ------------------------------------------------------------------------------ mode agreement
def test_real_ratio_with_adaptation_is_refused_unless_it_says_one_to_one() -> None:
    message = fails_on("data.real_ratio", "data.mode=adaptation", "data.real_ratio=0.3")
    assert "1:1" in message
    for ratio in ("null", "0.5"):  # what adaptation does anyway (base.yaml's 0.5 stays valid)
        assert not problems("data.mode=adaptation", f"data.real_ratio={ratio}")
    assert not problems("experiment=findings_dann_mini")


def test_an_objective_needs_adaptation_mode_and_adaptation_needs_both_roles() -> None:
    assert "data.mode=adaptation" in fails_on("adaptation.method", "adaptation.method=dann")
    assert not problems("adaptation.method=dann", "data.mode=adaptation")
    assert not problems("adaptation.method=none")  # switching it off by name needs no pairs
    message = fails_on("data.mode", "data.mode=adaptation", "data.train.gta.role=real")
    assert "role 'synthetic'" in message


def test_real_ratio_needs_the_roles_it_splits_and_a_sampler_that_takes_it() -> None:
    # table5_hmr_mini trains on real sources only (real_ratio null)
    assert not problems("experiment=table5_hmr_mini", "data.real_ratio=1.0")
    assert "no train source has role 'synthetic'" in fails_on(
        "data.real_ratio", "experiment=table5_hmr_mini", "data.real_ratio=0.5")
    assert "no train source has role 'real'" in fails_on(
        "data.real_ratio", "data.train.real_indoor.role=synthetic", "data.train.real_kp.role=synthetic")
    assert "amount and mixture" in fails_on("data.real_ratio", "data.sampler=sequential", "data.epoch_length=null")
    assert "data.real_ratio as well" in fails_on("data.sampler", "data.sampler=amount", "data.real_ratio=null",
                                                 "data.epoch_length=null")


def test_epoch_length_agrees_with_mode_and_sampler() -> None:
    assert "data.mode=finetune" in fails_on("data.epoch_length", "data.mode=finetune", "data.epoch_length=null")
    assert "takes no epoch length" in fails_on("data.epoch_length", "data.sampler=sequential",
                                               "data.real_ratio=null")
    assert not problems("data.sampler=sequential", "data.real_ratio=null", "data.epoch_length=null")


# ------------------------------------------------------------------------------ range boundaries
# (key, values just inside, values just outside) on the quickstart config
BOUNDARIES = [
    ("data.real_ratio", ["0.0", "1.0", "null"], ["-0.01", "1.01"]),
    ("optim.lr", ["1e-12"], ["0.0", "-1e-12", "nan", "inf"]),
    ("optim.disc_lr", ["1e-12"], ["0.0"]),
    ("optim.weight_decay", ["0.0"], ["-1e-6"]),
    ("optim.gamma", ["1e-6", "1.0"], ["0.0", "1.01"]),
    ("optim.warmup_steps", ["0"], ["-1"]),
    ("optim.base_batch_size", ["1", "null"], ["0"]),
    ("trainer.max_epochs", ["0"], ["-2"]),  # -1: see test_epoch_and_step_limits
    ("trainer.max_steps", ["-1", "0"], ["-2"]),
    ("trainer.accumulate_grad_batches", ["1"], ["0"]),
    ("trainer.num_nodes", ["1"], ["0"]),
    ("trainer.log_every_n_steps", ["1"], ["0"]),
    ("trainer.gradient_clip_val", ["1e-6", "null"], ["0.0", "-1.0"]),
    ("trainer.val_check_interval", ["1e-3", "1.0", "null"], ["0.0", "1.5"]),
    ("trainer.limit_train_batches", ["0.0", "1.0", "3.0", "null"], ["-0.1", "2.5"]),
    ("trainer.limit_val_batches", ["0.0", "1.0"], ["-0.1", "1.5"]),
    ("trainer.checkpoint_every_n_steps", ["1", "null"], ["0"]),
    ("data.batch_size", ["1"], ["0", "-32"]),
    ("data.num_workers", ["0"], ["-1"]),
    ("data.img_res", ["16"], ["15"]),
    ("data.crop_res", ["16"], ["15"]),
    ("data.epoch_length", ["1", "null"], ["0"]),
    ("data.train_probe", ["0"], ["-1"]),
    ("data.train.gta.weight", ["0.0"], ["-0.1"]),
    ("data.miniworld_seed", ["0", str(2**32 - 1)], ["-1", str(2**32)]),
    ("run.seed", ["0", str(2**32 - 1)], ["-1", str(2**32)]),
    ("body.num_betas", ["1", "300"], ["0", "301"]),
    ("model.n_iter", ["1"], ["0"]),
    ("model.head_dropout", ["0.0", "0.99"], ["-0.1", "1.0"]),
    ("model.feature_samples", ["0"], ["-1"]),
    ("model.loss_weights.camera", ["0.0"], ["-0.1"]),
    ("adaptation.weight", ["0.0"], ["-1.0"]),
    ("video.window", ["1"], ["0"]),
    ("video.stride", ["1", "null"], ["0"]),
    ("video.feature_batch_size", ["1"], ["0"]),
    ("video.motion_loss_weight", ["0.0"], ["-0.5"]),
]


@pytest.mark.parametrize(("key", "inside", "outside"), BOUNDARIES, ids=[b[0] for b in BOUNDARIES])
def test_range_boundaries(key: str, inside: list[str], outside: list[str]) -> None:
    for value in inside:
        assert key not in problems(f"{key}={value}"), (key, value)
    for value in outside:
        assert key in problems(f"{key}={value}"), (key, value)


def test_epoch_and_step_limits() -> None:
    """Lightning's -1 (no limit) is fine for either, not for both: that run would never end."""
    assert not problems("trainer.max_epochs=-1", "trainer.max_steps=100")
    assert not problems("trainer.max_epochs=0", "trainer.max_steps=-1")
    assert set(problems("trainer.max_epochs=-1", "trainer.max_steps=-1")) == {"trainer.max_epochs"}


def test_devices_forms_lightning_accepts() -> None:
    for devices in ("auto", "1", "-1", "[0,1]", "'0,1'", "2"):
        assert "trainer.devices" not in problems(f"trainer.devices={devices}", "data.batch_size=32"), devices
    for devices in ("0", "-2", "[]", "[-1]", "two"):
        assert "trainer.devices" in problems(f"trainer.devices={devices}"), devices


# ------------------------------------------------------------------------------ valid configs
def test_shipped_experiments_of_every_kind_validate() -> None:
    """A few overlays of each kind here; every one of them: tests/test_experiment_configs.py."""
    for name in ("quickstart", "findings_dann_mini", "table6_dann", "table2_pare_ft", "table3_mi3_3dpw_gta",
                 "table3_gta_subsampled_mini", "table7_real100", "table5_hmr_mini", "table2_hmr_plus_ft_mini"):
        assert name in experiment_names()
        assert config_problems(load_config([f"experiment={name}"])) == [], name  # ??? values are skipped


def test_shipped_sweep_ranges_validate() -> None:
    """The end points of every searched key (Table 7's grid, the TPE ranges) are valid values."""
    from gtahuman.sweep.config import load_sweep_config, sweep_names

    for name in sweep_names():
        sweep = load_sweep_config(name)
        for spec in sweep.space.values():
            points = list(spec.choices) if spec.choices is not None else [spec.low, spec.high]
            for point in points:
                value = "null" if point is None else (int(point) if spec.type == "int" else point)
                found = problems(f"experiment={sweep.experiment}", *sweep.overrides, f"{spec.key}={value}")
                assert not found, (name, spec.key, value, found)


# ------------------------------------------------------------------------------ the snapshots
def test_name_snapshots_equal_the_registries() -> None:
    import importlib

    for kind, (module_name, attribute, snapshot) in NAME_SOURCES.items():
        live = getattr(importlib.import_module(module_name), attribute)
        names = live.names() if hasattr(live, "names") else list(live)
        assert sorted(snapshot) == sorted(names), (kind, f"update NAME_SOURCES[{kind!r}] in gtahuman.config_checks")


def test_sampler_and_mode_snapshots_equal_the_signatures() -> None:
    from gtahuman.data.datamodule import Mode
    from gtahuman.data.samplers import SAMPLERS

    assert sorted(MODES) == sorted(typing.get_args(Mode))
    for name in SAMPLERS.names():
        params = inspect.signature(SAMPLERS.get(name)).parameters
        assert ("real_ratio" in params) == (name in SAMPLERS_TAKING_REAL_RATIO), name
        needs = "real_ratio" in params and params["real_ratio"].default is inspect.Parameter.empty
        assert needs == (name in SAMPLERS_NEEDING_REAL_RATIO), name
        assert ("epoch_length" in params) == (name in SAMPLERS_TAKING_EPOCH_LENGTH), name


def test_lightning_snapshots_equal_lightning() -> None:
    from lightning.fabric.connector import _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS
    from lightning.pytorch.accelerators import AcceleratorRegistry
    from lightning.pytorch.strategies import StrategyRegistry

    assert sorted(PRECISIONS) == sorted({*typing.get_args(_PRECISION_INPUT_STR),
                                         *typing.get_args(_PRECISION_INPUT_STR_ALIAS)})
    assert sorted(ACCELERATORS) == sorted({"auto", "gpu", *AcceleratorRegistry.available_accelerators()})
    assert sorted(STRATEGIES) == sorted({"auto", *StrategyRegistry.available_strategies()})


def test_process_count_is_the_one_train_checks() -> None:
    from gtahuman.train_image import configured_world_size

    for overrides in ([], ["trainer.devices=4"], ["trainer.devices='2'"], ["trainer.devices=[0,1]"],
                      ["trainer.devices=-1"], ["trainer.devices=2", "trainer.num_nodes=3"]):
        cfg = load_config(overrides)
        assert configured_processes(cfg) == configured_world_size(cfg), overrides


def test_live_registry_is_used_when_its_module_is_imported(monkeypatch) -> None:
    fake = types.ModuleType("gtahuman.models")
    fake.BACKBONES = ["my_net"]
    monkeypatch.setitem(sys.modules, "gtahuman.models", fake)
    assert known_names("backbone") == ["my_net"]
    assert "model.backbone" not in problems("model.arch=hmr", "model.backbone=my_net")
    assert "model.backbone" in problems("model.arch=hmr", "model.backbone=resnet50")


# ------------------------------------------------------------------------------ the commands
@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """Empty run and cache folders and the overrides that point a run at them."""
    out, cache = tmp_path / "runs", tmp_path / "cache"
    out.mkdir()
    cache.mkdir()
    return out, cache, [f"run.output_root={out}", f"run.cache_dir={cache}"]


def _empty(*folders: Path) -> bool:
    return all(not any(folder.iterdir()) for folder in folders)


@pytest.mark.parametrize(("overrides", "key", "text"), BAD, ids=[" ".join(b[0]) for b in BAD])
def test_run_command_exits_2_before_any_work(overrides, key, text, folders, capsys) -> None:
    out, cache, paths = folders
    assert run_main([*overrides, *paths]) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: ") and f"{key}=" in err and "Traceback" not in err
    assert _empty(out, cache)


def test_print_config_refuses_an_invalid_config(capsys) -> None:
    assert run_main(["--print-config", "data.real_ratio=1.5"]) == 2
    captured = capsys.readouterr()
    assert "data.real_ratio=1.5" in captured.err and captured.out == ""
    # a row whose required values are still open (``???``: model.init_checkpoint, body.model_dir)
    # is valid to print: --print-config shows what is left to fill in
    assert run_main(["--print-config", "experiment=table2_hmr_plus_ft"]) == 0


def test_check_command_and_check_report_name_the_key(folders, capsys) -> None:
    from gtahuman.check import check

    out, cache, paths = folders
    assert check_main(["model.backbone=resnet_typo", "--no-step", *paths]) == 2
    assert "model.backbone=resnet_typo" in capsys.readouterr().err
    assert run_main(["model.backbone=resnet_typo", "dry_run=true", *paths]) == 2
    report = check(load_config(["model.backbone=resnet_typo", *paths]), measure=False)
    assert [p.key for p in report.problems] == ["model.backbone"] and not report.ok
    assert "did you mean" in report.format() and not report.sources and report.body == {}
    assert _empty(out, cache)  # no world generated, nothing prepared


def test_train_validates_first(folders) -> None:
    from gtahuman.train import train

    out, cache, paths = folders
    with pytest.raises(ConfigError, match=r"optim\.lr=-1"):
        train(load_config(["optim.lr=-1", *paths]))
    assert _empty(out, cache)


# The cases through the real command line: the whole process, timed (package import included).
SUBPROCESS_CASES = [
    (["data.real_ratio=1.5"], "data.real_ratio"),
    (["optim.lr=-1"], "optim.lr"),
    (["trainer.max_epochs=-3"], "trainer.max_epochs"),
    (["model.backbone=nosuchnet"], "model.backbone"),
    (["data.sampler=nosuch"], "data.sampler"),
    (["data.mode=foo"], "data.mode"),
    (["data.batch_size=0"], "data.batch_size"),
    (["adaptation.method=foo"], "adaptation.method"),
    (["data.train.gta.kind=nosuch"], "data.train.gta.kind"),
    (["data.mode=adaptation", "data.real_ratio=0.3"], "data.real_ratio"),
    (["--print-config", "optim.lr=-1"], "optim.lr"),
]


def _command(module: str, args: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    return done, time.monotonic() - start


@pytest.mark.parametrize(("overrides", "key"), SUBPROCESS_CASES, ids=[" ".join(c[0]) for c in SUBPROCESS_CASES])
def test_run_process_exits_2_within_seconds(overrides, key, folders) -> None:
    out, cache, paths = folders
    done, elapsed = _command("experiments.run", [*overrides, *paths])
    assert done.returncode == 2, done.stderr
    assert f"{key}=" in done.stderr and "Traceback" not in done.stderr
    assert elapsed < 10, elapsed  # about half a second on an idle machine; no torch import
    assert _empty(out, cache)


def test_check_process_fails_naming_the_key(folders) -> None:
    out, cache, paths = folders
    done, elapsed = _command("experiments.check", ["model.backbone=resnet_typo", "--no-step", *paths])
    assert done.returncode == 2 and "model.backbone=resnet_typo" in done.stderr and "Traceback" not in done.stderr
    assert elapsed < 10 and _empty(out, cache)

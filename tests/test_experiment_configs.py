"""Every experiment config (one per paper row, real-data and mini-world versions) builds.

No training and no data: each config is loaded and validated (`validate_config`: ranges,
registry names, agreeing keys), its named components are checked against their registries, and the exact keyword arguments ``train()`` would pass are used to
construct the HMRSystem (toy body model in place of ``body.model_dir``, no weight files), the
MixedDataModule (placeholder index paths) and the train sampler (a synthetic ``sources`` array
with the real datasets' rough sizes). The paper's BT / FT hyper-parameters are checked on the
real-data rows, and those rows refuse to run until ``body.model_dir`` is given.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from gtahuman.config import ConfigError, experiment_names, load_config, require_complete
from gtahuman.config_checks import validate_config
from gtahuman.data.datamodule import MixedDataModule
from gtahuman.data.source_spec import SourceSpec
from gtahuman.data.prepare_sources import SOURCES
from gtahuman.data.samplers import SAMPLERS, describe
from gtahuman.evaluation import PROTOCOLS
from gtahuman.models import BACKBONES
from gtahuman.models.keypoint_hmr import KEYPOINT_BACKBONES
from gtahuman.systems.hmr import HMRSystem, effective_learning_rate
from gtahuman.run_data import datamodule_arguments
from gtahuman.train import train
from gtahuman.train_image import configured_world_size, system_arguments

NAMES = experiment_names()
# Mini-world studies outside the paper's tables (no real-data version), like the quickstart.
MINI_STUDIES = {"pare_vs_hmr_real_mini", "pare_vs_hmr_bt_mini", "findings_dann_mini", "findings_unthinned_mini",
                "findings_thinned_mini", "quickstart_long_mini"}
# Controlled real-data variants of paper rows (issue 19) and Fig. 8 (whose mini version is the
# findings set's nested amounts): not table rows, no _mini config.
REAL_VARIANTS = {"table2_hmr_matched", "table2_hmr_plus_matched", "table6_hmr_real_matched", "fig8_gta"}
REAL_ROWS = [n for n in NAMES if not n.endswith("_mini") and n != "quickstart"]
pytestmark = pytest.mark.usefixtures("single_thread")
_BUILT: dict[str, HMRSystem] = {}  # systems differing only in numbers are built once


@pytest.fixture(scope="module")
def toy_body(toy_body_dir: Path) -> Path:
    return toy_body_dir


def filled(name: str, toy_body: Path):
    """The config with the user's required values given (toy body model, a start checkpoint)."""
    cfg = load_config([f"experiment={name}"])
    if OmegaConf.is_missing(cfg.body, "model_dir"):
        cfg.body.model_dir = str(toy_body)
    if OmegaConf.is_missing(cfg.model, "init_checkpoint"):
        cfg.model.init_checkpoint = "/not/read/before/fit.ckpt"
    if OmegaConf.is_missing(cfg.video, "frame_checkpoint"):
        cfg.video.frame_checkpoint = "/not/read/before/fit.ckpt"
    require_complete(cfg)
    validate_config(cfg)  # every value in range, every name registered, mode and keys agree
    return cfg


def test_there_is_a_config_per_paper_row() -> None:
    rows = set(REAL_ROWS) - REAL_VARIANTS
    assert REAL_VARIANTS <= set(REAL_ROWS)
    assert {n for n in NAMES if n.endswith("_mini")} - MINI_STUDIES == {f"{n}_mini" for n in rows}
    assert MINI_STUDIES <= set(NAMES)
    for table, count in (("table2_", 10), ("table3_", 6), ("table5_", 7), ("table6_", 7), ("table7_", 5),
                         ("table8_", 3), ("table9_", 10)):
        assert sum(n.startswith(table) for n in rows) == count, table
    assert not any(n.startswith("_") for n in NAMES)  # fragments are not experiments


@pytest.mark.parametrize("name", NAMES)
def test_config_builds_system_datamodule_and_sampler(name: str, toy_body: Path) -> None:
    cfg = filled(name, toy_body)
    if cfg.task == "video":
        pytest.skip("a temporal-model row: tests/test_video_configs.py builds it")
    real = cfg.data.miniworld is None
    assert real == (name in REAL_ROWS)
    train_names = list(cfg.data.train)
    backbones = KEYPOINT_BACKBONES if cfg.model.arch == "hmr_kp" else BACKBONES
    assert cfg.model.backbone in backbones and cfg.data.sampler in SAMPLERS
    assert all(src.kind in SOURCES for split in ("train", "val", "test") for src in cfg.data[split].values())
    for set_name in [*cfg.data.val, *cfg.data.test]:  # the rule HMREvaluationMixin applies
        protocol = cfg.eval.protocols.get(set_name) or (set_name if set_name in PROTOCOLS else cfg.eval.protocol)
        assert protocol in PROTOCOLS, (set_name, protocol)
    assert set(cfg.eval.protocols) <= {*cfg.data.val, *cfg.data.test}
    if cfg.model.variant == "hmr":
        assert cfg.model.prior_sources and set(cfg.model.prior_sources) <= set(train_names)

    # -- the system, from the arguments train() passes
    args = system_arguments(cfg, toy_body, train_names, prior_path=None)
    args["backbone_args"].pop("weights_path", None)  # ImageNet files are the user's
    inspect.signature(HMRSystem).bind(**args)  # every argument is one the system takes
    key = json.dumps({k: args[k] for k in ("arch", "backbone", "backbone_args", "variant", "supervision")},
                     sort_keys=True)
    if key not in _BUILT:
        _BUILT[key] = HMRSystem(**args)
    system = _BUILT[key]
    assert system.backbone.feature_dim > 0 and (system.discriminator is not None) == (cfg.model.variant == "hmr")
    if args["supervision_sources"] is not None:
        assert [train_names[i] for i in args["supervision_sources"]] == ["gta"]

    world = configured_world_size(cfg)
    lr = effective_learning_rate(args["lr"], args["batch_size"], world, cfg.trainer.accumulate_grad_batches,
                                 args["base_batch_size"])
    if real and OmegaConf.select(cfg, "model.init_checkpoint") is None:  # paper BT: 32 GPUs x 64, lr 2e-4
        assert (world, args["batch_size"], lr) == (32, 64, pytest.approx(2e-4))
    elif real:  # paper FT: 8 GPUs x 64, lr 1e-5, two epochs
        assert (world, args["batch_size"], lr, cfg.trainer.max_epochs) == (8, 64, pytest.approx(1e-5), 2)
    else:  # mini world: one CPU process, the quickstart's recipe
        assert (world, cfg.trainer.accelerator, cfg.body.model_dir) == (1, "cpu", None)

    # -- the datamodule and its train sampler, without any data
    specs = {split: {n: SourceSpec(name=n, index_dir=f"/placeholder/{n}", image_root="/placeholder", role=s.role)
                     for n, s in cfg.data[split].items()} for split in ("train", "val", "test")}
    dm = MixedDataModule(**datamodule_arguments(cfg, specs))
    # ~1/10 of the real sizes (six real sets of ~20K, GTA-Human 4x); large enough for Table 7's 100K
    adaptation = cfg.data.mode == "adaptation"  # the sampler draws the source (real) batches only
    drawn = [n for n in train_names if not adaptation or cfg.data.train[n].role == "real"]
    sizes = [(200_000 if real else 2000) if cfg.data.train[n].role == "synthetic" else (20_000 if real else 1000)
             for n in drawn]
    sampler_args = dict(dm.sampler_args, **({"epoch_length": dm.epoch_length} if dm.epoch_length else {}))
    sources = np.repeat(np.arange(len(sizes)), sizes)
    if cfg.data.sampler == "scarcity":  # a factor spread evenly over -10..60 (GTA-Human's range) in every source
        factor = np.concatenate([np.linspace(-10.0, 60.0, n) for n in sizes])
        sampler_args["factors"] = {sampler_args["factor"]: factor}
    sampler = SAMPLERS.build(dm.sampler_name, sources=sources, seed=0, source_names=drawn, **sampler_args)
    counts = describe(sampler)["counts"]
    share = sum(c for n, c in counts.items() if cfg.data.train[n].role == "real") / sum(counts.values())
    if adaptation:  # real source batches, each paired with an equal synthetic target batch
        assert share == 1.0 and any(cfg.data.train[n].role == "synthetic" for n in train_names)
    elif cfg.data.real_ratio is not None:
        assert share == pytest.approx(cfg.data.real_ratio, abs=1e-3)
    elif cfg.data.sampler == "scarcity":  # only GTA-Human is thinned, only in the bins kept at 0
        edges, keep = np.asarray(sampler_args["bins"], float), np.asarray(sampler_args["keep_fraction"], float)
        on_gta = sources == drawn.index("gta")
        dropped = on_gta & np.isin(np.digitize(factor, edges[1:-1]), np.flatnonzero(keep == 0))
        assert counts["gta"] == on_gta.sum() - dropped.sum() and sum(counts.values()) == sources.size - dropped.sum()
    else:
        assert share == 1.0 and "gta" not in train_names
    if cfg.data.sampler == "amount" and real and name.startswith("table7_"):  # the first column, 100K samples
        assert sum(counts.values()) == 100_000
    if name == "fig8_gta":  # every real row once, as much GTA-Human (k = 1)
        assert counts["gta"] == sum(c for n, c in counts.items() if n != "gta") == (sources != drawn.index("gta")).sum()


@pytest.mark.parametrize("name", REAL_ROWS)
def test_real_data_rows_require_the_body_model_dir(name: str) -> None:
    cfg = load_config([f"experiment={name}"])
    with pytest.raises(ConfigError, match=r"body\.model_dir"):
        train(cfg)  # fails before generating, preparing or writing anything


def test_overlay_directives_replace_drop_and_require(tmp_path: Path) -> None:
    (tmp_path / "experiment").mkdir()
    (tmp_path / "base.yaml").write_text(
        "data:\n  train:\n    a: {path: a.npz}\n    b: {path: b.npz}\n  sampler_args: {total: 5}\n")
    (tmp_path / "experiment" / "_part.yaml").write_text("body:\n  model_dir: ???\n")
    (tmp_path / "experiment" / "row.yaml").write_text(
        "extends: [_part]\nreplace: [data.sampler_args]\ndrop: [data.train.a]\n"
        "data:\n  sampler_args: {total_multiple: 0.5}\n  train:\n    c: {path: c.npz}\n")
    (tmp_path / "experiment" / "bad.yaml").write_text("drop: [data.train.zzz]\n")
    cfg = load_config(["experiment=row"], tmp_path)
    assert list(cfg.data.train) == ["b", "c"] and dict(cfg.data.sampler_args) == {"total_multiple": 0.5}
    assert OmegaConf.is_missing(cfg.body, "model_dir") and experiment_names(tmp_path) == ["bad", "row"]
    with pytest.raises(ConfigError, match=r"body\.model_dir.*SMPL_"):
        require_complete(cfg)
    require_complete(load_config(["experiment=row", "body.model_dir=/smpl"], tmp_path))
    with pytest.raises(ConfigError, match=r"bad\.yaml.*data\.train\.zzz"):
        load_config(["experiment=bad"], tmp_path)


# Recipes: the row's keys are the paper's text; recipe=mmhuman3d stacks the released config's settings.
MMHUMAN3D = {  # row -> (lr, schedule, milestones, max_epochs, epoch_length, clip, kp3d, kp2d, pose, betas, camera)
    "table2_hmr_bt": (2.5e-4, "step", [40], 50, None, None, 100.0, 10.0, 3.0, 0.02, 0.0),
    "table2_hmr_ft": (2.5e-5, "constant", [], 10, 100000, None, 100.0, 10.0, 3.0, 0.02, 0.0),
    "table2_hmr_plus_bt": (2.5e-5, "constant", [], 150, None, None, 100.0, 10.0, 3.0, 0.02, 60.0),
    "table2_spin_ft": (3e-5, "constant", [], 10, 100000, 35.0, 100.0, 10.0, 3.0, 0.02, 60.0),
    "table2_pare_ft": (5e-5, "constant", [], 10, 100000, None, 300.0, 150.0, 60.0, 0.06, 1.0),
}


@pytest.mark.parametrize("name", sorted(MMHUMAN3D))
def test_recipe_mmhuman3d_sets_the_released_configs_values(name: str) -> None:
    paper = load_config([f"experiment={name}"])
    cfg = load_config([f"experiment={name}", "recipe=mmhuman3d"])
    validate_config(cfg)
    w = cfg.model.loss_weights
    got = (cfg.optim.lr, cfg.optim.schedule, list(cfg.optim.milestones), cfg.trainer.max_epochs,
           cfg.data.epoch_length, cfg.trainer.gradient_clip_val, w.keypoints3d, w.keypoints2d, w.smpl_pose,
           w.smpl_betas, w.camera)
    assert got == pytest.approx(MMHUMAN3D[name]) and cfg.optim.base_batch_size is None
    assert (paper.recipe, cfg.recipe) == ("paper", "mmhuman3d")
    assert cfg.model.keypoint_loss == ("mse" if name == "table2_pare_ft" else "smooth_l1")
    assert paper.model.keypoint_loss == "mse" and paper.optim.lr != cfg.optim.lr
    assert (cfg.model.loss_weights.parts == 0.0) == (name == "table2_pare_ft")
    assert load_config([f"experiment={name}", "recipe=paper"]) == paper  # the row's own recipe: unchanged


@pytest.mark.parametrize("recipe", ["paper", "mmhuman3d"])
@pytest.mark.parametrize("real, blended", [("table2_hmr", "table2_hmr_bt"), ("table2_hmr_plus", "table2_hmr_plus_bt")])
def test_real_only_and_bt_rows_differ_in_the_data_alone_under_either_recipe(real: str, blended: str,
                                                                             recipe: str) -> None:
    a, b = (OmegaConf.to_container(load_config([f"experiment={n}", f"recipe={recipe}"])) for n in (real, blended))
    differing = {f"{section}.{key}" for section in a if isinstance(a[section], dict)
                 for key in set(a[section]) | set(b[section]) if a[section].get(key) != b[section].get(key)}
    differing |= {k for k in a if not isinstance(a[k], dict) and a[k] != b[k]}
    assert differing == {"experiment", "description", "data.train", "data.real_ratio"}


def test_an_unknown_recipe_names_the_rows_recipes_and_mini_rows_have_none() -> None:
    with pytest.raises(ConfigError, match=r"no recipe 'mmhuman3d_v2'; its recipes: paper, mmhuman3d"):
        load_config(["experiment=table2_hmr_bt", "recipe=mmhuman3d_v2"])
    with pytest.raises(ConfigError, match=r"table2_hmr_plus_ft' has no recipe 'mmhuman3d'; its recipes: paper "):
        load_config(["experiment=table2_hmr_plus_ft", "recipe=mmhuman3d"])  # mmhuman3d released no HMR+ FT
    mini = load_config(["experiment=table2_hmr_bt_mini"])
    assert mini.recipe is None and dict(mini.recipes) == {}
    with pytest.raises(ConfigError, match="none besides its own settings"):
        load_config(["experiment=table2_hmr_bt_mini", "recipe=mmhuman3d"])

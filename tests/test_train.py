"""``train(cfg)`` end to end on the tiny mini world, then resume and ``experiments.evaluate``.

One module fixture trains 2 epochs (128 steps, batch 8, 64 px, augmentation on), then resumes the
same run to 4 epochs; the tests read what it left. Learning is checked three ways; each bound was
set from seeds 0-4 of exactly this setup (observed ratios in brackets):

* logged training loss (logs/metrics.csv): median of the last epoch < 0.9 x median of the first
  16 steps [0.68-0.75] (single steps are noisy: a batch's mix of domains moves them by 2x);
* MPJPE on the training samples of real_indoor + gta, un-augmented, of last.ckpt < 0.9 x that of
  the same network at its initialisation (same seed as the run) [0.63-0.80];
* held-out: MPJPE on the real_indoor + gta sets of a second tiny world (world seed 1: 84 frames of
  sequences never trained on) < 0.95 x the initial network's [0.81-0.88].

The initial network predicts about the mean parameters; 256 steps learn mostly the global
orientation and camera, so PA-MPJPE and the wild domain (deliberately unlike the training data)
do not improve reliably yet: beating the mean pose there is the quickstart's longer run's job.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from experiments.evaluate import evaluate_checkpoint, main as evaluate_main, parse_arguments
from gtahuman.config import ConfigError
from gtahuman.constant_baseline import CONSTANT_FILE, load_run_constant
from gtahuman.data.datamodule import FACTOR_COLUMNS, MixedDataModule
from gtahuman.data.index import SampleIndex
from gtahuman.evaluation import get_protocol
from gtahuman.rundir import RunDir
from gtahuman.systems.hmr import HMRSystem
from gtahuman.results_table import format_results
from gtahuman.run_data import ensure_assets, prepare_source
from gtahuman.train import train

STEPS_PER_EPOCH = 512 // 8  # data.epoch_length / data.batch_size of conftest.TINY_OVERRIDES


# The learning bounds above were set with the regressor starting at the SMPL mean parameters: the
# network must first learn the data's mean, which 256 steps do. From the quickstart's train-mean
# start (the constant) 256 steps do not lower the held-out error yet (issue 18).
START = "model.init_estimate=smpl_mean_params"


def read_log(run: Path) -> list[dict[str, str]]:
    with open(run / "logs" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def runs(tiny_config, single_thread) -> dict[str, Any]:
    first = train(tiny_config("run.run_id=main", START))
    run = Path(first["run_dir"])
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    resumed = train(tiny_config("run.run_id=main", START, "run.resume=true", "trainer.max_epochs=4"))
    final = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    samplers = [c["MixedDataModule"]["samplers"]["train"] for c in (saved, final)]
    return {"first": first, "resumed": resumed, "run": run, "saved_step": saved["global_step"],
            "saved_epoch": saved["epoch"], "samplers": samplers, "cfg": tiny_config(START)}


def test_run_directory_holds_config_commit_checkpoints_metrics_predictions(runs) -> None:
    run, metrics = runs["run"], runs["resumed"]
    saved_cfg = OmegaConf.load(run / "config.yaml")  # the first session's settings; the resume is recorded beside it
    assert saved_cfg.run.run_id == "main" and saved_cfg.data.miniworld == "tiny" and saved_cfg.trainer.max_epochs == 2
    assert [e["differs_from_config_yaml"] for e in RunDir(run).read_resumes()] == [
        {"trainer.max_epochs": {"was": 2, "now": 4}}]
    assert len((run / "git_commit.txt").read_text().strip()) >= 7
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "checkpoints" / "best.ckpt").is_file()
    assert metrics["tested_checkpoint"] == "best.ckpt" and metrics["protocols"] == {"wild_test": "miniworld"}
    summary, baseline = metrics["test"]["wild_test"], metrics["mean_pose_baseline"]["wild_test"]
    constant = metrics["constant_baseline"]["wild_test"]
    for summarised in (summary, baseline, constant):
        assert {"mpjpe", "pa_mpjpe", "pve", "orient_deg"} <= set(summarised)
        assert all(np.isfinite(summarised[k]) for k in ("mpjpe", "pa_mpjpe", "pve", "orient_deg"))
    assert summary["toy_body_model"] == 1.0 and metrics["body_model_is_toy"]
    # the train data's constant: saved beside metrics.json, and the same one in it
    saved = load_run_constant(run)
    assert (run / CONSTANT_FILE).is_file() and saved.pose.shape == (24, 3) and saved.betas.shape == (10,)
    np.testing.assert_allclose(metrics["constant_prediction"]["pose_axis_angle"], saved.pose)
    assert metrics["constant_prediction"]["draws_by_source"]["real_kp"] == 0  # keypoints only: no SMPL
    # the table printed at the end: trained, the constant, the SMPL mean params, and the ratio line
    table = format_results(metrics)
    assert "train mean (constant)" in table and "SMPL mean params" in table
    assert "wild_test: trained / constant = " in table
    # orient_deg is logged per val set for the learning curves
    assert any(r.get("val/wild_val/orient_deg") for r in read_log(run))

    rows = np.load(run / "predictions" / "wild_test.npz")
    index = SampleIndex.load(next((Path(runs["cfg"].run.cache_dir) / "indices").glob("wild_test-*")))
    ids = rows["sample_id"]
    assert sorted(ids.tolist()) == list(range(len(index)))  # every test sample once
    for metric in ("mpjpe", "pa_mpjpe", "pve"):  # the summary is the mean of the per-sample rows
        assert rows[metric].shape == ids.shape and np.isfinite(rows[metric]).all()
        assert float(rows[metric].mean()) == pytest.approx(summary[metric], rel=1e-6)
    assert float(np.median(rows["orient_deg"])) == pytest.approx(summary["orient_deg"], rel=1e-6)  # median
    for column in FACTOR_COLUMNS:
        np.testing.assert_array_equal(rows[f"factor_{column}"], np.asarray(index[column])[ids])
    np.testing.assert_array_equal(rows["sequence_id"], np.asarray(index["sequence_id"])[ids])
    assert rows["pred_pose"].shape == (len(ids), 72) and rows["pred_betas"].shape == (len(ids), 10)
    # the truth beside the prediction, for analysis.learning's spread and correlation
    truth = np.concatenate([index["smpl_global_orient"], index["smpl_body_pose"]], axis=1)[ids]
    np.testing.assert_allclose(rows["gt_pose"], truth, rtol=0, atol=1e-6)
    features = np.load(run / "predictions" / "wild_test_features.npz")
    assert {k: v.shape[0] for k, v in features.items()} == {k: 16 for k in features.files}
    # the training mix's factors, per train sample, for the per-bin density plots
    train_factors = np.load(run / "train_factors.npz")
    cache = Path(runs["cfg"].run.cache_dir) / "indices"
    sizes = {name: len(SampleIndex.load(next(cache.glob(f"{name}-*")))) for name in runs["cfg"].data.train}
    names, counts = np.unique(train_factors["source"], return_counts=True)
    assert dict(zip(names.tolist(), counts.tolist())) == sizes
    assert all(train_factors[c].shape == train_factors["source"].shape for c in FACTOR_COLUMNS)


def _mpjpe_per_set(system: HMRSystem, dm: MixedDataModule) -> dict[str, torch.Tensor]:
    """Per test set of ``dm``: per-sample MPJPE (mm) of ``system`` in eval mode."""
    system.eval()
    out = {}
    with torch.no_grad():
        for name, loader in zip(dm.eval_set_names("test"), dm.test_dataloader()):
            batch = next(iter(loader))  # batch_size covers the whole (tiny) set
            output, _ = system(batch["img"])
            errors = system.evaluate_prediction(batch, output.rotmat, output.betas, get_protocol("miniworld"))
            out[name] = errors["mpjpe"]
    return out


def pooled_mpjpe(errors: dict[str, torch.Tensor], *names: str) -> float:
    return float(torch.cat([errors[n] for n in names]).mean())


def test_training_lowers_the_loss_and_the_held_out_error(runs, tiny_config) -> None:
    log = read_log(runs["run"])
    losses = [(int(r["epoch"]), float(r["train/loss"])) for r in log if r["train/loss"]]
    assert len(losses) == 4 * STEPS_PER_EPOCH and all(np.isfinite(v) for _, v in losses)
    first = np.median([v for _, v in losses[:16]])
    last_epoch = np.median([v for epoch, v in losses if epoch == 3])
    assert last_epoch < 0.9 * first, (first, last_epoch)

    cfg, other_world = runs["cfg"], tiny_config("data.miniworld_seed=1")
    body_dir, other_body_dir = ensure_assets(cfg), ensure_assets(other_world)
    sets = {"real_indoor": prepare_source("real_indoor", cfg.data.train.real_indoor, cfg, body_dir),
            "gta": prepare_source("gta", cfg.data.train.gta, cfg, body_dir),
            "held_out_indoor": prepare_source("held_out_indoor", other_world.data.train.real_indoor, other_world,
                                              other_body_dir),
            "held_out_gta": prepare_source("held_out_gta", other_world.data.train.gta, other_world, other_body_dir)}
    dm = MixedDataModule(test_sets=sets, batch_size=256, img_res=cfg.data.img_res, augment=False)
    trained = HMRSystem.load_from_checkpoint(str(runs["run"] / "checkpoints" / "last.ckpt"), map_location="cpu")
    L.seed_everything(cfg.run.seed, verbose=False)  # as train() does before building the system
    after, before = _mpjpe_per_set(trained, dm), _mpjpe_per_set(HMRSystem(**trained.hparams), dm)
    seen = [pooled_mpjpe(e, "real_indoor", "gta") for e in (before, after)]
    held_out = [pooled_mpjpe(e, "held_out_indoor", "held_out_gta") for e in (before, after)]
    assert seen[1] < 0.9 * seen[0], seen
    assert held_out[1] < 0.95 * held_out[0], held_out


def test_checkpoint_rebuilds_the_system_without_the_config(runs) -> None:
    path = runs["run"] / "checkpoints" / "best.ckpt"
    system = HMRSystem.load_from_checkpoint(str(path), map_location="cpu")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    assert system.hparams.backbone == "mobilenetv3_small_050" and system.hparams.img_res == 64
    state = system.state_dict()
    assert set(state) == set(saved["state_dict"])
    assert all(torch.equal(state[k], saved["state_dict"][k]) for k in state)


def test_resume_continues_at_the_saved_step(runs) -> None:
    assert runs["saved_epoch"] == 1 and runs["saved_step"] == 2 * STEPS_PER_EPOCH
    assert runs["first"]["global_step"] == runs["saved_step"]
    assert runs["resumed"]["global_step"] == runs["saved_step"] + 2 * STEPS_PER_EPOCH
    log = read_log(runs["run"])
    new_steps = [int(r["step"]) for r in log if r["train/loss"] and int(r["epoch"]) >= 2]
    assert min(new_steps) >= runs["saved_step"] and len(new_steps) == 2 * STEPS_PER_EPOCH
    # the first two epochs were neither trained again nor dropped from the log
    assert sum(1 for r in log if r["train/loss"] and int(r["epoch"]) < 2) == 2 * STEPS_PER_EPOCH
    # the datamodule's sampler position travels in the checkpoint: a whole epoch consumed each time
    (before, after) = runs["samplers"]
    assert (before["epoch"], before["consumed"], after["epoch"], after["consumed"]) == (1, 512, 3, 512)
    assert before["plan_digest"] != after["plan_digest"]  # epoch 3 drew a new order


def test_resume_of_a_missing_run_names_the_path(tiny_config) -> None:
    with pytest.raises(FileNotFoundError, match="no-such-run"):
        train(tiny_config("run.run_id=no-such-run", "run.resume=true"))


def test_evaluate_reproduces_the_run_and_writes_its_folder(runs, capsys) -> None:
    run, summary = runs["run"], runs["resumed"]["test"]["wild_test"]
    assert evaluate_main([f"ckpt={run / 'checkpoints' / 'best.ckpt'}", "set=wild_test"]) == 0
    assert "wild_test" in capsys.readouterr().out
    folder = run / "evaluations" / "wild_test-miniworld"
    written = OmegaConf.load(folder / "metrics.json")
    for metric in ("mpjpe", "pa_mpjpe", "pve", "orient_deg"):
        assert written.test[metric] == pytest.approx(summary[metric], rel=1e-6)
        for baseline in ("mean_pose_baseline", "constant_baseline"):  # the constant the run saved
            assert written[baseline][metric] == pytest.approx(runs["resumed"][baseline]["wild_test"][metric], rel=1e-6)
    ours, theirs = np.load(folder / "wild_test.npz"), np.load(run / "predictions" / "wild_test.npz")
    np.testing.assert_allclose(ours["pa_mpjpe"], theirs["pa_mpjpe"], rtol=1e-6)

    # 'miniworld' is the 3dpw rules on the toy body model: the same numbers under another name
    again = evaluate_checkpoint(run / "checkpoints" / "best.ckpt", ["wild_test"], protocol="3dpw")
    assert Path(again["folders"]["wild_test"]).name == "wild_test-3dpw"
    assert again["test"]["wild_test"]["pa_mpjpe"] == pytest.approx(summary["pa_mpjpe"], rel=1e-6)
    with pytest.raises(KeyError, match="wild_val, wild_test"):
        evaluate_checkpoint(run / "checkpoints" / "best.ckpt", ["nope"])
    with pytest.raises(ConfigError, match="ckpt=PATH"):
        parse_arguments(["set=wild_test"])
    # on the command line an unknown set or protocol is a message and status 2, not a traceback
    checkpoint = f"ckpt={run / 'checkpoints' / 'best.ckpt'}"
    capsys.readouterr()
    assert evaluate_main([checkpoint, "set=nope"]) == 2
    assert "argument error: set=nope: not an eval set" in capsys.readouterr().err
    assert evaluate_main([checkpoint, "protocol=foo"]) == 2
    assert "unknown evaluation protocol 'foo'; valid names: 3dpw" in capsys.readouterr().err


def test_adaptation_mode_draws_only_the_real_sources(tiny_config) -> None:
    from gtahuman.data.source_spec import SourceSpec
    from gtahuman.run_data import datamodule_arguments
    from gtahuman.train_image import adaptation_arguments

    cfg = tiny_config("data.mode=adaptation", "adaptation.method=dann", "adaptation.weight=2.0")
    specs = {"train": {name: SourceSpec(name=name, index_dir="-", image_root="-", role=src.role)
                       for name, src in cfg.data.train.items()}}
    args = datamodule_arguments(cfg, specs)
    real = [name for name, src in cfg.data.train.items() if src.role == "real"]
    assert len(real) == 2 and len(cfg.data.train) == 3
    # the partition covers the source (real) group only; no real_ratio split in adaptation mode
    assert args["sampler_args"]["partition"] == [float(cfg.data.train[n].weight) for n in real]
    assert "real_ratio" not in args["sampler_args"]
    assert adaptation_arguments(cfg) == {"adaptation": "dann", "adaptation_args": {}, "loss_adaptation": 2.0}
    with pytest.raises(ValueError, match="data.mode=adaptation"):
        adaptation_arguments(tiny_config("adaptation.method=dann"))


def test_train_mean_start_is_the_saved_constant(tiny_config, single_thread) -> None:
    """model.init_estimate=train_mean: the IEF starts at the training data's constant (the one the
    run saves), and the SMPL mean parameters stay the SMPL-mean baseline."""
    metrics = train(tiny_config("run.run_id=train_mean_start", "model.init_estimate=train_mean",
                                "trainer.max_epochs=1", "trainer.limit_train_batches=2"))
    run = Path(metrics["run_dir"])
    constant = load_run_constant(run)
    system = HMRSystem.load_from_checkpoint(str(run / "checkpoints" / "last.ckpt"), map_location="cpu")
    start = system.head.init_pose.reshape(24, 6)
    expected = torch.as_tensor(constant.rotmat())[:, :, :2].reshape(24, 6)
    torch.testing.assert_close(start, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(system.head.init_shape.reshape(10), torch.as_tensor(constant.betas, dtype=torch.float32))
    assert metrics["mean_pose_baseline"]["wild_test"]["mpjpe"] != pytest.approx(
        metrics["constant_baseline"]["wild_test"]["mpjpe"], rel=1e-3)


@pytest.mark.parametrize("overrides, match", [
    (("model.init_estimate=nosuch",), "model.init_estimate"),
    (("model.init_estimate=train_mean", "model.init_checkpoint=some.ckpt"), "model.init_estimate=train_mean"),
])
def test_init_estimate_is_checked_before_any_work(tiny_config, overrides, match) -> None:
    with pytest.raises(ValueError, match=match):
        train(tiny_config("run.run_id=never", *overrides))


def test_val_every_steps_validates_across_short_epochs(tiny_config, single_thread) -> None:
    """trainer.val_every_steps: validations every N batches, whatever the epoch length (2 batches
    here), so short-epoch samplers validate as often as long-epoch ones."""
    import csv

    def validated_steps(run_id: str, *overrides: str) -> list[int]:
        metrics = train(tiny_config(f"run.run_id={run_id}", "data.epoch_length=16", "trainer.max_steps=8",
                                    "trainer.max_epochs=100", "trainer.limit_val_batches=1", *overrides))
        with open(Path(metrics["run_dir"]) / "logs" / "metrics.csv") as file:
            return [int(row["step"]) for row in csv.DictReader(file) if row.get("val/pa_mpjpe")]

    assert len(validated_steps("val_each_epoch")) == 4  # 8 batches, epochs of 2
    assert len(validated_steps("val_every_4", "trainer.val_every_steps=4")) == 2

"""``train_video`` end to end on the tiny mini world (via ``train(cfg)`` with ``task=video``).

One module fixture makes three runs with 4-frame windows (tiny sequences are 12 frames):
``video`` (no frame checkpoint: a frame model is trained first, 2 steps, then 2 temporal steps),
the same run resumed to 4 steps, and ``untrained`` (the first run's frame model, no temporal
step, no val set). The tests read what they left: metrics, predictions, checkpoints and the feature cache.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import open_dict

from gtahuman.config import ConfigError
from gtahuman.data.datasets import IndexDataset
from gtahuman.data.index import SampleIndex
from gtahuman.data.transforms import AugmentConfig, TestTransform
from gtahuman.systems import HMRSystem
from gtahuman.run_data import ensure_assets, prepare_source
from gtahuman.train import train
from gtahuman.video.datamodule import VideoDataModule
from gtahuman.video.features import FeatureCacheError, FrameFeatures, extract_source
from gtahuman.video.train import source_ratios, subsample_setting

VIDEO = ("task=video", "video.window=4", "video.hidden_size=32", "video.num_layers=1", "data.epoch_length=16",
         "trainer.max_epochs=1")
METRICS = ("mpjpe", "pa_mpjpe", "pve", "accel", "accel_error")


def mtimes(paths: list[Path]) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in paths}


@pytest.fixture(scope="module")
def runs(tiny_config, single_thread) -> dict[str, Any]:
    first = train(tiny_config(*VIDEO, "run.run_id=video"))
    run = Path(first["run_dir"])
    cache = Path(tiny_config().run.cache_dir) / "video_features"
    watched = [run / "frame_model" / "run" / "checkpoints" / "best.ckpt", *cache.glob("*/*/meta.json")]
    before = mtimes(watched)
    resumed = train(tiny_config(*VIDEO, "run.run_id=video", "run.resume=true", "trainer.max_epochs=2"))
    no_val = tiny_config(*VIDEO, "run.run_id=untrained", f"video.frame_checkpoint={first['frame_checkpoint']}",
                         "trainer.max_steps=0")
    with open_dict(no_val):  # and without val sets (as the mini Table 3 rows)
        del no_val.data.val["wild_val"]
    untrained = train(no_val)
    return {"first": first, "resumed": resumed, "untrained": untrained, "run": run, "before": before,
            "after": mtimes(watched), "cfg": tiny_config(*VIDEO)}


def test_video_run_writes_mpjpe_pa_mpjpe_and_acceleration_metrics(runs) -> None:
    metrics, run = runs["resumed"], runs["run"]
    assert metrics["task"] == "video" and metrics["body_model_is_toy"]
    assert metrics["protocols"] == {"wild_test": "miniworld"}
    for name in ("test", "frame_model"):
        summary = metrics[name]["wild_test"]
        assert all(np.isfinite(summary[m]) for m in METRICS), summary
        assert summary["toy_body_model"] == 1.0
    assert metrics["test"]["wild_test"]["evaluated"] == 24  # every wild_test frame, once
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "checkpoints" / "best.ckpt").is_file()
    assert "task: video" in (run / "config.yaml").read_text()
    assert metrics["data"]["train_windows"] == {"real_indoor": 9, "real_kp": 2, "gta": 12}  # 12-frame clips / 4
    assert sum(metrics["data"]["windows_per_epoch"].values()) == 16

    rows = np.load(run / "predictions" / "wild_test.npz")
    index = SampleIndex.load(next((Path(runs["cfg"].run.cache_dir) / "indices").glob("wild_test-*")))
    assert sorted(rows["sample_id"].tolist()) == list(range(len(index)))
    np.testing.assert_array_equal(rows["sequence_id"], np.asarray(index["sequence_id"])[rows["sample_id"]])
    for metric in METRICS:  # the summary is the mean over frames; acceleration has no value at
        values = rows[metric]  # the first and last frame of each of the two 12-frame sequences
        assert np.isnan(values).sum() == (4 if metric.startswith("accel") else 0)
        assert float(np.nanmean(values)) == pytest.approx(metrics["test"]["wild_test"][metric], rel=1e-9)
    assert rows["pred_pose"].shape == (24, 72) and rows["frame_mpjpe"].shape == (24,)


def test_sigterm_stops_a_video_run_at_a_step_and_its_resume_finishes_it(runs, tiny_config, monkeypatch) -> None:
    import signal

    import lightning as L

    import gtahuman.video.train as video_train
    from gtahuman.run_signals import RunInterrupted

    class SignalAfterFirstStep(L.Callback):  # a scheduler's SIGTERM, arriving after step 1 (acted on at the next step end)
        def on_train_batch_end(self, trainer, *args) -> None:
            if trainer.global_step == 1:
                os.kill(os.getpid(), signal.SIGTERM)

    built = video_train.video_trainer

    def with_a_signal(cfg, run):
        trainer, best = built(cfg, run)
        trainer.callbacks.append(SignalAfterFirstStep())
        return trainer, best

    args = (*VIDEO, "run.run_id=video-sigterm", f"video.frame_checkpoint={runs['first']['frame_checkpoint']}",
            "trainer.max_epochs=2")
    with monkeypatch.context() as patch:
        patch.setattr(video_train, "video_trainer", with_a_signal)
        with pytest.raises(RunInterrupted) as stop:
            train(tiny_config(*args))
    assert stop.value.code == 143 and stop.value.step == 2
    run = Path(runs["first"]["run_dir"]).parent / "video-sigterm"
    assert torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 2
    assert not (run / "metrics.json").exists()
    resumed = train(tiny_config(*args, "run.resume=true"))
    assert resumed["global_step"] == 4  # 2 epochs of 2 steps: the resume took the last 2


def test_resume_continues_the_global_step_and_reuses_frame_model_and_features(runs) -> None:
    assert runs["first"]["global_step"] == 2 and runs["resumed"]["global_step"] == 4
    assert len(runs["before"]) == 1 + 5  # the frame checkpoint and one feature directory per source
    assert runs["after"] == runs["before"]  # nothing retrained, nothing re-extracted
    log = (runs["run"] / "logs" / "metrics.csv").read_text().splitlines()
    steps = {int(line.split(",")[header.index("step")]) for header in [log[0].split(",")] for line in log[1:]}
    assert max(steps) >= 3  # the resumed session logged its steps in the same file


def test_untrained_temporal_model_scores_exactly_as_the_frame_model(runs) -> None:
    metrics = runs["untrained"]
    assert metrics["global_step"] == 0 and metrics["tested_checkpoint"].startswith("in-memory")
    temporal, frame = metrics["test"]["wild_test"], metrics["frame_model"]["wild_test"]
    for metric in METRICS:
        assert temporal[metric] == pytest.approx(frame[metric], rel=1e-6), metric
    # and the frame model evaluated here is the one the image pipeline tested on the same set
    image_run = runs["first"]["frame_checkpoint"].rsplit("/checkpoints/", 1)[0]
    image_metrics = json.loads((Path(image_run) / "metrics.json").read_text())["test"]["wild_test"]
    for metric in ("mpjpe", "pa_mpjpe", "pve"):
        assert frame[metric] == pytest.approx(image_metrics[metric], rel=1e-4), metric


def test_cached_features_are_the_frame_models_outputs(runs, tmp_path) -> None:
    cfg = runs["cfg"]
    frame = HMRSystem.load_from_checkpoint(runs["first"]["frame_checkpoint"], map_location="cpu").eval()
    spec = prepare_source("wild_test", cfg.data.test.wild_test, cfg, ensure_assets(cfg))
    directory = next((Path(cfg.run.cache_dir) / "video_features").glob("*/wild_test-*"))
    cached = FrameFeatures.load(directory)
    dataset = IndexDataset(SampleIndex.load(spec.index_dir), transform=TestTransform(AugmentConfig(img_res=64)),
                           image_root=spec.image_root, crop_cache=spec.crop_cache_dir)
    rows = [0, 7, 23]
    with torch.no_grad():
        output, feats = frame(torch.stack([dataset[i]["img"] for i in rows]))
    np.testing.assert_allclose(cached["features"][rows], feats.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cached["frame_pose_6d"][rows], output.pose_6d.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(cached["frame_id"], np.asarray(dataset.index["frame_id"]))

    # an unfinished directory (no meta.json) is extracted again; broken columns are named
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy)
    (copy / "meta.json").unlink()
    redone = extract_source(frame, spec.index_dir, copy, name="wild_test", img_res=64,
                            crop_cache_dir=spec.crop_cache_dir, model_key=cached.meta["model_key"], progress=False)
    np.testing.assert_allclose(redone["features"], cached["features"], rtol=1e-4, atol=1e-5)
    np.save(copy / "betas.npy", np.zeros(3))
    np.save(copy / "frame_betas.npy", np.zeros((24, 9), np.float32))
    with pytest.raises(FeatureCacheError, match=r"frame_betas.*\(24, 10\)"):
        FrameFeatures.load(copy)
    (copy / "frame_betas.npy").unlink()
    with pytest.raises(FileNotFoundError, match="frame_betas"):
        FrameFeatures.load(copy)


def test_gta_subsampled_to_another_datasets_pose_count(runs, tiny_config) -> None:
    cfg = tiny_config(*VIDEO, "video.subsample_source=gta", "video.subsample_like.kind=spin_npz",
                      "video.subsample_like.path=${data.world_dir}/real_indoor/real_indoor_train.npz")
    setting = subsample_setting(cfg, ensure_assets(cfg))
    assert setting == {"gta": 36}  # real_indoor: 3 sequences x 12 frames, all with SMPL
    directory = str(next((Path(cfg.run.cache_dir) / "video_features").glob("*/gta-*")))
    dm = VideoDataModule({"gta": directory}, window=4, subsample=setting, batch_size=4)
    (dataset,) = dm.train_datasets()
    kept = np.unique(dataset.windows)
    assert len(kept) == 36 and len(dataset) == 9  # 3 whole 12-frame sequences
    assert len(np.unique(np.asarray(dataset.features["sequence_id"])[kept])) == 3
    with pytest.raises(ConfigError, match="exactly one"):
        subsample_setting(tiny_config(*VIDEO, "video.subsample_source=gta"), Path("unused"))


def test_sources_too_short_for_a_window_get_no_share(runs, tiny_config) -> None:
    root = Path(tiny_config().run.cache_dir) / "video_features"
    dirs = {name: str(next(root.glob(f"*/{name}-*"))) for name in ("real_indoor", "real_kp")}
    ratios = {"real_indoor": 0.6, "real_kp": 0.4}  # real_kp clips have 4 frames: no 8-frame window
    dm = VideoDataModule(dirs, window=8, ratios=ratios, epoch_length=10, batch_size=2)
    assert dm.window_counts() == {"real_indoor": 3, "real_kp": 0}
    assert dm.train_sampler().counts.tolist() == [10, 0]
    with pytest.raises(ValueError, match="no window of 8 frames"):
        VideoDataModule(dirs, window=8, ratios={"real_indoor": 0.0, "real_kp": 1.0}, batch_size=2).train_sampler()


def test_source_ratios_split_real_and_synthetic_groups(tiny_config) -> None:
    ratios = source_ratios(tiny_config(*VIDEO))  # real_ratio 0.5; weights 0.6 / 0.4 inside the real half
    assert ratios == pytest.approx({"real_indoor": 0.3, "real_kp": 0.2, "gta": 0.5})
    assert source_ratios(tiny_config(*VIDEO, "data.real_ratio=null")) is None
    real_only = tiny_config(*VIDEO)
    with open_dict(real_only):
        del real_only.data.train["gta"]
    with pytest.raises(ConfigError, match="no train source has role 'synthetic'"):
        source_ratios(real_only)

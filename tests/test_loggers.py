"""trainer.loggers: a tiny run with TensorBoard writes event files inside the run directory holding
the curves the CSV log holds (loss, lr, validation metrics); unknown or uninstalled loggers are
refused before any work, naming the key or the package."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from gtahuman.config import ConfigError
from gtahuman.config_checks import validate_config
from gtahuman.train import train


def event_tags(directory: Path) -> set[str]:
    """Scalar tags of every TensorBoard event file under ``directory`` (the TFRecord framing:
    length, its CRC, the record, its CRC; each record an Event protobuf)."""
    from tensorboardX.proto import event_pb2

    tags = set()
    for path in directory.rglob("events.out.tfevents*"):
        data, at = path.read_bytes(), 0
        while at + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            record = data[at + 12:at + 12 + length]
            at += 12 + length + 4
            event = event_pb2.Event.FromString(record)
            tags.update(value.tag for value in event.summary.value)
    return tags


def test_tensorboard_curves_sit_in_the_run_directory(tiny_config, single_thread) -> None:
    pytest.importorskip("tensorboardX")
    metrics = train(tiny_config("trainer.loggers=[tensorboard]", "data.epoch_length=32", "trainer.max_epochs=2",
                                "run.run_id=tensorboard"))
    run = Path(metrics["run_dir"])
    tags = event_tags(run / "tensorboard")
    assert "train/loss" in tags and "val/mpjpe" in tags  # the CSV log's curves
    assert any(tag.startswith("lr-") for tag in tags)  # and the learning rate
    header = (run / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss" in header  # the CSV log is kept as it was


def test_unknown_loggers_are_refused_naming_the_key(tiny_config) -> None:
    with pytest.raises(ConfigError, match=r"trainer\.loggers\[0\]=tensorbord.*did you mean 'tensorboard'"):
        validate_config(tiny_config("trainer.loggers=[tensorbord]"))
    with pytest.raises(ConfigError, match=r"trainer\.loggers\[0\]=csv: expected a logger besides the CSV log"):
        validate_config(tiny_config("trainer.loggers=[csv]"))


def test_a_logger_without_its_package_names_the_package(tiny_config, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"'mlflow' needs the package mlflow \(pip install mlflow\)"):
        validate_config(tiny_config("trainer.loggers=[mlflow]"))  # before any work: no run directory


def event_image_tags(directory: Path) -> set[str]:
    from tensorboardX.proto import event_pb2

    tags = set()
    for path in directory.rglob("events.out.tfevents*"):
        data, at = path.read_bytes(), 0
        while at + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            event = event_pb2.Event.FromString(data[at + 12:at + 12 + length])
            at += 12 + length + 4
            tags.update(value.tag for value in event.summary.value if value.HasField("image"))
    return tags


def test_sample_images_draw_the_predicted_mesh_over_the_crops(tiny_config, single_thread) -> None:
    pytest.importorskip("tensorboardX")
    from PIL import Image

    metrics = train(tiny_config("trainer.loggers=[tensorboard]", "data.epoch_length=32", "trainer.max_epochs=1",
                                "trainer.sample_images_every_n_steps=2", "trainer.sample_images=3",
                                "run.run_id=sample_images"))
    run = Path(metrics["run_dir"])
    written = sorted(p.name for p in (run / "samples").glob("*.png"))
    assert written == ["step_000002.png", "step_000004.png"]  # 4 steps of 8: every 2nd
    image = np.asarray(Image.open(run / "samples" / "step_000004.png"))
    res = int(metrics.get("img_res", 0)) or image.shape[0] // 2
    assert image.shape == (2 * res, 3 * res, 3)
    crops, overlays = image[:res].astype(int), image[res:].astype(int)
    changed = np.abs(crops - overlays).sum(axis=-1) > 0
    assert 0.02 < changed.mean() < 0.9  # a body's worth of pixels coloured, not none and not all
    assert "samples/predicted_mesh" in event_image_tags(run / "tensorboard")
    with pytest.raises(ConfigError, match=r"trainer\.sample_images_every_n_steps=0"):
        validate_config(tiny_config("trainer.sample_images_every_n_steps=0"))

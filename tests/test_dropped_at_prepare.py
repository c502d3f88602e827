"""Samples that preparation drops are shown, not only counted (issue #20, item 6).

An image deleted before prepare used to vanish from the data with exit 0, ``bad_samples: 0`` in
metrics.json and nothing in run.log. Now run.log has a warning per source naming the files and
metrics.json has ``dropped_at_prepare: {source: {reason: {count, first}}}``.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from gtahuman.data.dropped import CROP_REASON, dropped_at_prepare, log_dropped, source_drops
from gtahuman.data.index import MANIFEST
from gtahuman.run_data import ensure_assets
from gtahuman.train import train


def test_an_image_deleted_before_prepare_is_named_in_run_log_and_counted_in_metrics(
        tiny_config, tmp_path: Path, single_thread) -> None:
    cfg = tiny_config(f"run.cache_dir={tmp_path / 'cache'}", f"run.output_root={tmp_path / 'runs'}",
                      "run.run_id=dropped", "trainer.max_epochs=1", "trainer.limit_train_batches=2")
    ensure_assets(cfg)  # the world, generated into the fresh cache: nothing prepared yet
    source = Path(cfg.data.train.real_indoor.path)
    victim = str(np.load(source, allow_pickle=False)["imgname"][-1])
    (source.parent / victim).unlink()

    metrics = train(cfg)

    run_dir = Path(metrics["run_dir"])
    log_lines = [line for line in (run_dir / "run.log").read_text().splitlines() if "dropped at prepare" in line]
    indoor = [line for line in log_lines if "source real_indoor:" in line]
    assert len(indoor) == 1 and "WARNING" in indoor[0] and victim in indoor[0], log_lines
    assert "bad_images 1" in indoor[0]
    saved = json.loads((run_dir / "metrics.json").read_text())
    drop = saved["dropped_at_prepare"]["real_indoor"]["bad_images"]
    assert drop["count"] == 1 and drop["first"] == [f"{source.parent / victim}: missing"]
    assert set(saved["dropped_at_prepare"]["real_indoor"]) == {"bad_images"}  # counted once, not also as a box
    assert "bad_samples" in saved  # the training-time count stays beside it
    assert "wild_val" not in saved["dropped_at_prepare"]  # sources that lost nothing are left out


def test_crop_cache_bad_rows_and_bbox_drops_are_reported(tmp_path: Path, caplog) -> None:
    index_dir, crop_dir = tmp_path / "index", tmp_path / "crops"
    index_dir.mkdir()
    crop_dir.mkdir()
    files = [f"img_{k}.jpg" for k in range(8)]
    meta = {"prepare": {"counts": {"bbox_clipped": 3, "dropped_bbox": 7, "bad_images": 0},
                        "examples": {"bbox_clipped": files[:3], "dropped_bbox": files[:5]}}}
    (index_dir / MANIFEST).write_text(json.dumps({"meta": meta}))
    (crop_dir / MANIFEST).write_text(json.dumps({"bad_rows": [{"row": 4, "path": "/x/broken.jpg", "reason": "truncated"}]}))
    drops = source_drops(index_dir, crop_dir)
    assert drops == {"dropped_bbox": {"count": 7, "first": files[:5]},  # clipped boxes are kept: not a drop
                     CROP_REASON: {"count": 1, "first": ["/x/broken.jpg"]}}
    spec = SimpleNamespace(name="coco", index_dir=str(index_dir), crop_cache_dir=str(crop_dir))
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / MANIFEST).write_text(json.dumps({"meta": {"prepare": {"counts": {"bad_images": 0}}}}))
    report = dropped_at_prepare([spec, spec, SimpleNamespace(name="h36m", index_dir=str(clean), crop_cache_dir=None)])
    assert list(report) == ["coco"]  # the same source met twice (train and val) is reported once
    logger = logging.getLogger("test_dropped")
    with caplog.at_level(logging.WARNING, logger="test_dropped"):
        log_dropped(report, logger)
    assert len(caplog.records) == 1
    line = caplog.records[0].getMessage()
    assert "source coco: 8 sample(s) dropped" in line and "img_4.jpg ..." in line and "/x/broken.jpg" in line

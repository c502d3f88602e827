"""``data.crop_shards``: training reads person crops streamed from litdata shards of the crop
cache, and gets exactly the batches the plain crop-cache files give.

The shards themselves (byte-for-byte copies, URLs, workers, refusal of another cache's shards) are
tested in test_shards.py; here the config switch and ``gtahuman.train.prepare_source`` are: the
shards are built once per crop-cache content, the data module reads them, and the first batches
of the train loader (augmentation on) are equal tensors for the same seed.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gtahuman.run_data import build_datamodule, ensure_assets, prepare_source

pytest.importorskip("litdata")

FIRST_BATCHES = 6


def first_batches(dm, count: int) -> list[dict]:
    loader = dm.train_dataloader()
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == count:
            break
    return batches


def test_shards_give_the_same_batches_as_the_crop_cache(tiny_config, single_thread) -> None:
    plain_cfg, shard_cfg = tiny_config(), tiny_config("data.crop_shards=true")
    body_dir = ensure_assets(plain_cfg)
    plain, streamed = build_datamodule(plain_cfg, body_dir), build_datamodule(shard_cfg, body_dir)

    readers = {s["name"]: s["reader"] for s in streamed.describe()["train_sources"]}
    assert readers == {"real_indoor": "crop shards", "real_kp": "crop shards", "gta": "crop shards"}
    assert {s["reader"] for s in plain.describe()["train_sources"]} == {"crop cache"}
    for spec in streamed.train_sources:  # each shard folder is written from its source's crop cache
        assert Path(spec.crop_shards_dir).parent.name == "crop_shards"
        assert Path(spec.crop_cache_dir).name.split("-")[0] == spec.name

    ours, theirs = first_batches(streamed, FIRST_BATCHES), first_batches(plain, FIRST_BATCHES)
    assert len(ours) == len(theirs) == FIRST_BATCHES
    for a, b in zip(ours, theirs):
        assert set(a) == set(b)
        for key in a:
            assert torch.equal(a[key], b[key]), key
    # the batches mix the sources, so every source's shards were read
    assert torch.cat([b["source"] for b in ours]).unique().tolist() == [0, 1, 2]


def test_shards_are_built_once_per_cache_content(tiny_config) -> None:
    cfg = tiny_config("data.crop_shards=true")
    body_dir = ensure_assets(cfg)
    first = prepare_source("wild_val", cfg.data.val.wild_val, cfg, body_dir)
    manifest = Path(first.crop_shards_dir) / "gtahuman_shards.json"
    written = manifest.stat().st_mtime_ns
    again = prepare_source("wild_val", cfg.data.val.wild_val, cfg, body_dir)
    assert again.crop_shards_dir == first.crop_shards_dir and manifest.stat().st_mtime_ns == written
    # another crop resolution is another crop cache, hence other shards
    other = prepare_source("wild_val", cfg.data.val.wild_val, tiny_config("data.crop_shards=true", "data.crop_res=80"),
                           body_dir)
    assert other.crop_shards_dir != first.crop_shards_dir


def test_shards_without_a_crop_cache_are_refused(tiny_config) -> None:
    cfg = tiny_config("data.crop_shards=true", "data.crop_cache=false")
    with pytest.raises(ValueError, match="data.crop_shards=true needs data.crop_cache=true"):
        prepare_source("wild_val", cfg.data.val.wild_val, cfg, ensure_assets(cfg))

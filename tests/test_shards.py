"""Crop shards: litdata shards hold the crop cache byte for byte, read back through the same
contract (also via a litdata URL and inside DataLoader workers), give a DataModule epoch equal to
the plain crop cache's, and shards of another cache are refused.

Tiny indices and JPEG frames are written to tmp_path, as in test_crop_cache / test_datamodule.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gtahuman.data.crop_cache import build_crop_cache
from gtahuman.data.frames import UnreadableImageError
from gtahuman.data.datamodule import MixedDataModule
from gtahuman.data.source_spec import SourceSpec
from gtahuman.data.index import SampleIndex, encode_strings
from gtahuman.data.index_synthetic import synthesize_index
from gtahuman.data.shards import SHARDS_MANIFEST, CropShards, CropShardsMismatchError, write_crop_shards

litdata = pytest.importorskip("litdata")


def smooth_frame(width: int, height: int, seed: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = [127 + 100 * np.sin(x / 23.0 + seed), 127 + 100 * np.cos(y / 17.0 - seed),
                127 + 80 * np.sin((x + y) / 31.0 + 2 * seed)]
    return np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8)


def make_source(root, n: int, name: str, seed: int, size=(96, 72)) -> SampleIndex:
    """n frames under root/frames, boxes varying per row (so affines differ), saved to root/index."""
    base = synthesize_index(n, np.random.default_rng(seed), dataset=name, domain=name)
    width, height = size
    rng = np.random.default_rng(seed + 1)
    columns = dict(base.columns)
    columns["image_path"] = encode_strings([f"frames/{i:04d}.jpg" for i in range(n)])
    columns["image_size"] = np.tile(np.array(size, np.int32), (n, 1))
    xy = rng.uniform([5, 5], [width * 0.4, height * 0.3], (n, 2))
    columns["bbox_xywh"] = np.concatenate([xy, rng.uniform([20, 30], [width * 0.5, height * 0.6], (n, 2))], 1)
    columns["bbox_xywh"] = columns["bbox_xywh"].astype(np.float32)
    box = columns["bbox_xywh"][:, None]
    columns["keypoints2d"][..., :2] = box[..., :2] + rng.random((n, 54, 2)) * box[..., 2:]
    index = SampleIndex(columns, base.meta)
    for i in range(n):
        path = root / index.image_path(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(smooth_frame(width, height, seed * 100 + i)).save(path, quality=95)
    index.save(root / "index")
    return SampleIndex.load(root / "index")


def chunk_files(directory) -> list[str]:
    return [chunk["filename"] for chunk in json.loads((directory / "index.json").read_text())["chunks"]]


def test_shards_hold_every_crop_byte_for_byte(tmp_path):
    index = make_source(tmp_path, 14, "gta", seed=3)
    (tmp_path / index.image_path(6)).unlink()  # a bad row travels as a bad row
    cache = build_crop_cache(index, tmp_path, tmp_path / "cache", crop_res=40, max_bad_fraction=0.1, progress=False)
    shards = write_crop_shards(cache, tmp_path / "shards", chunk_bytes=4000, progress=False)
    assert len(chunk_files(tmp_path / "shards")) >= 3  # rows cross chunk boundaries
    assert len(shards) == 14 and sorted(shards.bad_rows) == [6] and shards.crop_res == 40

    blob = (tmp_path / "cache" / "crops.bin").read_bytes()
    offsets = np.load(tmp_path / "cache" / "offsets.npy")
    raw = litdata.StreamingDataset(str(tmp_path / "shards"))
    remote = CropShards(f"local:{tmp_path / 'shards'}", cache_dir=tmp_path / "stream_cache")  # the URL path
    for i in range(14):
        assert raw[i]["row"] == i and bytes(raw[i]["crop"]) == blob[offsets[i]:offsets[i + 1]]
        if i == 6:
            for reader in (cache, shards, remote):
                with pytest.raises(UnreadableImageError, match="file not found") as caught:
                    reader.read(i)
                assert caught.value.path == str(tmp_path / index.image_path(6))
            continue
        crop, affine = cache.read(i)
        for reader in (shards, remote):
            got_crop, got_affine = reader.read(i)
            assert got_crop.dtype == np.uint8 and got_crop.shape == (40, 40, 3)
            np.testing.assert_array_equal(got_crop, crop)
            np.testing.assert_array_equal(got_affine, affine)
    assert not np.array_equal(cache.read(0)[1], cache.read(1)[1])  # equal affines are not trivially equal
    assert list((tmp_path / "stream_cache").rglob("chunk-*.bin"))  # the URL reader streamed chunks into its cache
    with pytest.raises(IndexError, match="14 rows"):
        shards.read(14)

    # A second call returns the finished shards untouched.
    stamp = (tmp_path / "shards" / SHARDS_MANIFEST).stat().st_mtime_ns
    again = write_crop_shards(tmp_path / "cache", tmp_path / "shards", progress=False)
    assert len(again) == 14 and (tmp_path / "shards" / SHARDS_MANIFEST).stat().st_mtime_ns == stamp


def test_shards_of_another_cache_are_refused_and_writes_are_atomic(tmp_path, monkeypatch):
    index_a = make_source(tmp_path / "a", 6, "a", seed=1)
    index_b = make_source(tmp_path / "b", 6, "b", seed=2)
    cache_a = build_crop_cache(index_a, tmp_path / "a", tmp_path / "a" / "cache", crop_res=32, progress=False)
    cache_b = build_crop_cache(index_b, tmp_path / "b", tmp_path / "b" / "cache", crop_res=32, progress=False)
    # Same index, other frames: the index fingerprint agrees, the cache's does not.
    for i in range(6):
        Image.fromarray(smooth_frame(96, 72, 50 + i)).save(tmp_path / "a" / index_a.image_path(i), quality=95)
    cache_a2 = build_crop_cache(index_a, tmp_path / "a", tmp_path / "a" / "cache2", crop_res=32, progress=False)

    # An interrupted write leaves no shard directory; the rerun starts over and finishes.
    def crash(*args, **kwargs):
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr("litdata.streaming.writer.BinaryWriter.done", crash)
    with pytest.raises(KeyboardInterrupt):
        write_crop_shards(cache_a, tmp_path / "shards", chunk_bytes=2000, progress=False)
    assert not (tmp_path / "shards").exists() and (tmp_path / ".shards.writing").exists()
    monkeypatch.undo()
    shards = write_crop_shards(cache_a, tmp_path / "shards", chunk_bytes=2000, progress=False)
    assert not (tmp_path / ".shards.writing").exists() and len(shards) == 6

    for other in (cache_b, cache_a2):
        with pytest.raises(CropShardsMismatchError, match=f"crop shards {tmp_path / 'shards'} were written from"):
            write_crop_shards(other, tmp_path / "shards", progress=False)
    with pytest.raises(CropShardsMismatchError, match=f"crop shards {tmp_path / 'shards'}: made from .* another index"):
        shards.check(index_b)
    shards.check(index_a)  # the index of cache_a2 too: only the cache fingerprint tells them apart

    # The DataModule refuses shards paired with a crop cache they were not made from.
    spec = SourceSpec(name="b", index_dir=str(tmp_path / "b" / "index"), crop_cache_dir=str(tmp_path / "b" / "cache"),
                      crop_shards_dir=str(tmp_path / "shards"))
    with pytest.raises(CropShardsMismatchError, match=str(tmp_path / "b" / "cache")):
        MixedDataModule([spec], batch_size=2, img_res=16).setup("fit")

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not shards")
    with pytest.raises(FileExistsError, match=f"{tmp_path / 'other'} exists and holds no {SHARDS_MANIFEST}"):
        write_crop_shards(cache_a, tmp_path / "other", progress=False)
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'other' / SHARDS_MANIFEST} not found"):
        CropShards(tmp_path / "other")


@pytest.fixture(scope="module")
def mixed_sources(tmp_path_factory):
    """A real source and a GTA-like one, each as crop cache and as shards of that cache."""
    root = tmp_path_factory.mktemp("mixed")
    plain, streamed = [], []
    for name, n, seed, role in (("real", 18, 4, "real"), ("gta", 14, 5, "synthetic")):
        index = make_source(root / name, n, name, seed)
        build_crop_cache(index, root / name, root / name / "cache", crop_res=40, progress=False)
        write_crop_shards(root / name / "cache", root / name / "shards", chunk_bytes=5000, progress=False)
        plain.append(SourceSpec(name=name, index_dir=str(root / name / "index"),
                                crop_cache_dir=str(root / name / "cache"), role=role))
        streamed.append(SourceSpec(name=name, index_dir=str(root / name / "index"),
                                   crop_shards_dir=str(root / name / "shards"), role=role))
    return plain, streamed


def epoch_batches(sources, open_in_parent: bool = False, **kwargs) -> list[dict[str, torch.Tensor]]:
    dm = MixedDataModule(sources, sampler="mixture", sampler_args={"real_ratio": 0.5, "synthetic_sources": ["gta"]},
                         epoch_length=24, batch_size=6, img_res=24, augment=True, seed=11, **kwargs)
    dm.train_samplers()["train"].set_epoch(1)
    loader = dm.train_dataloader()
    if open_in_parent:  # forked workers inherit an open stream and must open their own
        for part in loader.dataset.parts:
            part.crop_cache.read(0)
    return list(loader)


def assert_batches_equal(expected, got) -> None:
    assert len(expected) == len(got) == 4
    for a, b in zip(expected, got):
        assert set(a) == set(b)
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_datamodule_over_shards_equals_the_crop_cache_path(mixed_sources):
    plain, streamed = mixed_sources
    expected = epoch_batches(plain)
    got = epoch_batches(streamed)
    assert_batches_equal(expected, got)
    sources = torch.cat([b["source"] for b in got])
    assert sources.tolist().count(0) == sources.tolist().count(1) == 12  # both sources were read
    readers = {s["name"]: s["reader"] for s in MixedDataModule(streamed, batch_size=2).describe()["train_sources"]}
    assert readers == {"real": "crop shards", "gta": "crop shards"}


def test_shards_read_inside_dataloader_workers(mixed_sources):
    plain, streamed = mixed_sources
    expected = epoch_batches(plain)
    assert_batches_equal(expected, epoch_batches(streamed, num_workers=2))
    assert_batches_equal(expected, epoch_batches(streamed, open_in_parent=True, num_workers=2))

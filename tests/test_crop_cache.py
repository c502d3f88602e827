"""Crop cache: crops match an independent crop of the frame, the stored affine carries keypoints
onto the same image content, builds resume, and unreadable frames are counted, named and capped.

Frames are small JPEGs written here; the reference crop is a direct numpy bilinear sampling of
the decoded frame (zero outside), not the library's PIL path.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gtahuman.data import crop_cache as cc
from gtahuman.data.crop_cache import (
    CropCacheBuildError,
    CropCacheMismatchError,
    build_crop_cache,
)
from gtahuman.data.frames import UnreadableImageError, decode_image
from gtahuman.data.index import SampleIndex, encode_strings
from gtahuman.data.index_synthetic import synthesize_index

DOT_COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255]], np.uint8)


def smooth_frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth colour content (JPEG keeps it to a few levels) that differs everywhere."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    phase = seed * 0.7
    red = 127 + 100 * np.sin(x / 23.0 + phase)
    green = 127 + 100 * np.cos(y / 17.0 - phase)
    blue = 127 + 80 * np.sin((x + y) / 31.0 + 2 * phase)
    return np.clip(np.stack([red, green, blue], -1), 0, 255).astype(np.uint8)


def make_index(boxes: list[tuple[float, float, float, float]], size: tuple[int, int]) -> SampleIndex:
    base = synthesize_index(len(boxes), np.random.default_rng(0))
    columns = dict(base.columns)
    columns["image_path"] = encode_strings([f"frames/{i:04d}.jpg" for i in range(len(boxes))])
    columns["image_size"] = np.tile(np.array(size, np.int32), (len(boxes), 1))
    columns["bbox_xywh"] = np.array(boxes, np.float32)
    return SampleIndex(columns, base.meta)


def write_frames(index: SampleIndex, root, frames: list[np.ndarray], quality: int = 95) -> None:
    for i, frame in enumerate(frames):
        path = root / index.image_path(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame).save(path, quality=quality)


def reference_crop(frame: np.ndarray, center, side: float, res: int) -> np.ndarray:
    """Bilinear sampling at each output pixel centre; black outside the frame."""
    height, width = frame.shape[:2]
    padded = np.zeros((height + 2, width + 2, 3), np.float64)
    padded[1:-1, 1:-1] = frame
    coords = np.asarray(center)[None] - side / 2 + (np.arange(res) + 0.5)[:, None] * side / res  # (res, 2)
    xs, ys = coords[:, 0] - 0.5 + 1, coords[:, 1] - 0.5 + 1  # pixel-index space of ``padded``
    x0 = np.clip(np.floor(xs).astype(int), 0, width)
    y0 = np.clip(np.floor(ys).astype(int), 0, height)
    wx, wy = np.clip(xs - x0, 0, 1)[None, :, None], np.clip(ys - y0, 0, 1)[:, None, None]
    top = padded[y0][:, x0] * (1 - wx) + padded[y0][:, x0 + 1] * wx
    bottom = padded[y0 + 1][:, x0] * (1 - wx) + padded[y0 + 1][:, x0 + 1] * wx
    return top * (1 - wy) + bottom * wy


def test_crop_matches_direct_crop_with_black_outside(tmp_path):
    boxes = [(250, 150, 60, 80), (40, 30, 100, 90)]  # the first crop runs past the right/bottom edges
    index = make_index(boxes, (320, 240))
    frames = [smooth_frame(320, 240, seed=i) for i in range(2)]
    write_frames(index, tmp_path, frames)
    cache = build_crop_cache(index, tmp_path, tmp_path / "cache", crop_res=128, margin=1.5, quality=95, progress=False)
    for i, (x, y, w, h) in enumerate(boxes):
        crop, affine = cache.read(i)
        side, center = 1.5 * max(w, h), (x + w / 2, y + h / 2)
        decoded = np.asarray(Image.open(tmp_path / index.image_path(i)).convert("RGB"))
        expected = reference_crop(decoded, center, side, 128)
        diff = np.abs(crop.astype(np.float64) - expected)
        assert crop.shape == (128, 128, 3) and crop.dtype == np.uint8
        assert diff.mean() < 2.0 and np.percentile(diff, 99) < 20  # JPEG ringing at the black edge
        zoom = 128 / side
        np.testing.assert_allclose(affine, [[zoom, 0, 64 - zoom * center[0]], [0, zoom, 64 - zoom * center[1]]])
    # Row 0: the frame ends at x = 320, i.e. crop x = (320 - 220) * 128 / 120 = 106.7 px.
    crop0 = cache.read(0)[0]
    assert crop0[:, 109:].max() < 10 and crop0[:100, :104].mean() > 60


def test_reduced_jpeg_decoding_gives_the_same_crop(tmp_path):
    index = make_index([(200, 100, 200, 300)], (640, 480))
    write_frames(index, tmp_path, [smooth_frame(640, 480)])
    path = tmp_path / index.image_path(0)
    reduced, applied = decode_image(path, (640, 480), reduction=4)
    assert applied == 4 and reduced.size == (160, 120)
    full, _ = decode_image(path, (640, 480), reduction=1)
    center, side = np.array([300.0, 250.0]), 450.0
    crop_reduced = cc.cut_square(reduced, center, side, 64, reduction=4).astype(float)
    crop_full = cc.cut_square(full, center, side, 64, reduction=1).astype(float)
    assert np.abs(crop_reduced - crop_full).mean() < 3.0
    # and the cache picks that reduction: 450 px / 4 = 112 >= 64 > 450 / 8
    assert cc.jpeg_reduction(side, 64) == 4


def test_keypoints_through_the_affine_land_on_their_dots(tmp_path):
    x, y, w, h = 90, 50, 100, 140
    index = make_index([(x, y, w, h)], (320, 240))
    dots = np.array([[100, 60], [180, 70], [140, 120], [95, 180], [185, 185]], np.float64)  # px centres
    frame = np.full((240, 320, 3), 128, np.uint8)
    for (dx, dy), colour in zip(dots.astype(int), DOT_COLOURS):
        frame[dy - 4:dy + 5, dx - 4:dx + 5] = colour
    write_frames(index, tmp_path, [frame], quality=98)
    cache = build_crop_cache(index, tmp_path, tmp_path / "cache", crop_res=160, margin=1.5, quality=98, progress=False)
    crop, affine = cache.read(0)
    # dot (dx, dy) covers pixel centre dx + 0.5 in corner coordinates
    in_crop = (dots + 0.5) @ affine[:, :2].T + affine[:, 2]
    for (cx, cy), colour in zip(in_crop, DOT_COLOURS):
        col, row = int(cx), int(cy)
        patch = crop[row - 1:row + 2, col - 1:col + 2].reshape(-1, 3).astype(float).mean(0)
        assert np.abs(patch - colour).max() < 45, (colour, patch)
    # bbox centre -> crop centre, bbox side -> crop_res / margin
    centre = affine[:, :2] @ [x + w / 2, y + h / 2] + affine[:, 2]
    np.testing.assert_allclose(centre, [80, 80])
    assert affine[0, 0] * max(w, h) == pytest.approx(160 / 1.5)


def test_interrupted_build_resumes_and_refuses_another_index(tmp_path, monkeypatch):
    boxes = [(20 + 5 * i, 30, 60, 80) for i in range(10)]
    index = make_index(boxes, (200, 150))
    write_frames(index, tmp_path, [smooth_frame(200, 150, seed=i) for i in range(10)])
    fresh = build_crop_cache(index, tmp_path, tmp_path / "fresh", crop_res=48, chunk_rows=3, progress=False)

    real_build, built = cc._build_chunk, []

    def failing(job):
        if job["chunk"] == 2:
            raise KeyboardInterrupt("simulated crash")
        built.append(job["chunk"])
        return real_build(job)

    monkeypatch.setattr(cc, "_build_chunk", failing)
    with pytest.raises(KeyboardInterrupt):
        build_crop_cache(index, tmp_path, tmp_path / "cache", crop_res=48, chunk_rows=3, progress=False)
    assert built == [0, 1] and not (tmp_path / "cache" / "manifest.json").exists()

    def counting(job):
        built.append(job["chunk"])
        return real_build(job)

    monkeypatch.setattr(cc, "_build_chunk", counting)
    built.clear()
    cache = build_crop_cache(index, tmp_path, tmp_path / "cache", crop_res=48, chunk_rows=3, progress=False)
    assert built == [2, 3]  # chunks 0 and 1 were kept
    assert (tmp_path / "cache" / "crops.bin").read_bytes() == (tmp_path / "fresh" / "crops.bin").read_bytes()
    assert not (tmp_path / "cache" / ".building").exists()
    np.testing.assert_array_equal(cache.read(9)[0], fresh.read(9)[0])

    moved = make_index([(b[0] + 1, *b[1:]) for b in boxes], (200, 150))
    with pytest.raises(CropCacheMismatchError, match="another index"):
        cache.check(moved)
    with pytest.raises(CropCacheMismatchError, match="another index"):
        build_crop_cache(moved, tmp_path, tmp_path / "cache", crop_res=48, progress=False)
    with pytest.raises(CropCacheMismatchError, match="crop_res"):
        build_crop_cache(index, tmp_path, tmp_path / "cache", crop_res=64, progress=False)


def test_parallel_build_equals_serial(tmp_path):
    index = make_index([(10 + 7 * i, 20, 50, 70) for i in range(6)], (160, 120))
    write_frames(index, tmp_path, [smooth_frame(160, 120, seed=i) for i in range(6)])
    serial = build_crop_cache(index, tmp_path, tmp_path / "a", crop_res=32, chunk_rows=2, progress=False)
    parallel = build_crop_cache(index, tmp_path, tmp_path / "b", crop_res=32, chunk_rows=2, workers=2, progress=False)
    assert (tmp_path / "a" / "crops.bin").read_bytes() == (tmp_path / "b" / "crops.bin").read_bytes()
    assert len(serial) == len(parallel) == 6


def test_unreadable_frames_are_counted_named_and_capped(tmp_path):
    index = make_index([(10, 10, 40, 60)] * 10, (100, 80))
    write_frames(index, tmp_path, [smooth_frame(100, 80, seed=i) for i in range(10)])
    garbage, truncated, missing = (tmp_path / index.image_path(i) for i in (3, 7, 8))
    garbage.write_bytes(b"this is not a jpeg")
    truncated.write_bytes(truncated.read_bytes()[:300])
    missing.unlink()

    with pytest.raises(CropCacheBuildError) as caught:
        build_crop_cache(index, tmp_path, tmp_path / "strict", crop_res=32, max_bad_fraction=0.1, progress=False)
    message = str(caught.value)
    assert "3 of 10" in message and all(str(p) in message for p in (garbage, truncated, missing))
    assert not (tmp_path / "strict" / "manifest.json").exists()

    cache = build_crop_cache(index, tmp_path, tmp_path / "lenient", crop_res=32, max_bad_fraction=0.3, progress=False)
    assert sorted(cache.bad_rows) == [3, 7, 8]
    assert cache.bad_rows[8] == (str(missing), "file not found")
    manifest = json.loads((tmp_path / "lenient" / "manifest.json").read_text())
    assert manifest["num_bad"] == 3
    with pytest.raises(UnreadableImageError, match=str(garbage)):
        cache.read(3)
    assert cache.read(4)[0].shape == (32, 32, 3)  # neighbours of bad rows are intact


def test_decode_rejects_a_frame_of_the_wrong_size(tmp_path):
    path = tmp_path / "f.jpg"
    Image.fromarray(smooth_frame(64, 48)).save(path)
    with pytest.raises(UnreadableImageError, match="64x48 px, the index says 1920x1080"):
        decode_image(path, (1920, 1080))

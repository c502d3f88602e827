"""Samples/s per CPU core: decoding full 1920x1080 frames vs reading the crop cache (as files
and as litdata shards).

    python benchmarks/data_loading.py [--frames 50] [--passes 3] [--img-res 224] [--crop-res 336]
                                      [--dir DIR]

Writes ``--frames`` synthetic 1920x1080 JPEGs (quality 90, textured so they compress like
photos) with a random person box each (synthesize_index), builds a crop cache of them, then
times the same training pipeline (``IndexDataset`` + ``TrainTransform``, augmentation on) in
one process with one torch thread, so the figures are per core:

- ``full_frame``: decode the whole JPEG, crop, augment (what training costs without a cache);
- ``full_frame_reduced``: the same with JPEG DCT-reduced decoding (the dataset's default when
  the box is large enough);
- ``crop_cache``: decode the cached crop_res crop, augment;
- ``crop_cache_uint8``: the same, leaving colour noise and normalisation to the training device
  (``data.uint8_images``: the loader's output is the uint8 crop);
- ``crop_shards``: the same crops read from litdata shards of the cache (local directory).

``*_read_per_s`` time the two crop readers alone (random row order, no transform), and
``shard_write_ms_per_frame`` the conversion of the finished cache into shards.

Each pipeline is timed over ``--passes`` passes over all frames after a warm-up pass (the page
cache then holds the files, as it does in training after the first epoch). Prints ``name:
value`` lines; the last is ``ratio`` = crop_cache samples/s / full_frame_reduced samples/s: the
cache against the strongest plain pipeline, the dataset's default decoding of the full frame.
The default crop_res (336 = 1.5 x 224, the cache's margin) gives 224 px per box side, so both sides
cut the same crop at full resolution (a smaller cache would upsample and flatter the cache).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import litdata  # noqa: F401  imported up front: its ~1.5 s import is not part of the shard write time
import numpy as np
import torch
from PIL import Image

from gtahuman.data.crop_cache import CropCache, build_crop_cache
from gtahuman.data.datasets import IndexDataset
from gtahuman.data.index_synthetic import synthesize_index
from gtahuman.data.shards import CropShards, write_crop_shards
from gtahuman.data.transforms import AugmentConfig, TrainTransform


def textured_frame(rng: np.random.Generator, width: int = 1920, height: int = 1080) -> np.ndarray:
    """Smooth colour fields plus fine noise and blocks: a JPEG of a few hundred KB, like a photo."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phases = rng.uniform(0, 2 * np.pi, 3)
    frame = np.stack([127 + 90 * np.sin(x / rng.uniform(20, 90) + p) * np.cos(y / rng.uniform(20, 90) - p)
                      for p in phases], axis=-1)
    for _ in range(40):
        x0, y0 = rng.integers(0, width - 100), rng.integers(0, height - 100)
        frame[y0:y0 + rng.integers(20, 200), x0:x0 + rng.integers(20, 200)] = rng.uniform(0, 255, 3)
    frame += rng.normal(0, 6, frame.shape).astype(np.float32)
    return np.clip(frame, 0, 255).astype(np.uint8)


def samples_per_second(dataset: IndexDataset, passes: int) -> float:
    for i in range(len(dataset)):  # warm-up: page cache, allocator, lazy opens
        dataset[i]
    start = time.perf_counter()
    for epoch in range(passes):
        for i in range(len(dataset)):
            dataset[(epoch, i)]
    return passes * len(dataset) / (time.perf_counter() - start)


def reads_per_second(reader: CropCache | CropShards, passes: int) -> float:
    """Crop reads alone, rows in a shuffled order (as the samplers draw them)."""
    order = np.random.default_rng(1).permutation(len(reader)).tolist()
    for i in order:  # warm-up
        reader.read(i)
    start = time.perf_counter()
    for _ in range(passes):
        for i in order:
            reader.read(i)
    return passes * len(reader) / (time.perf_counter() - start)


def print_worker_memory(samples: int) -> None:
    """RSS and private memory of 8 DataLoader workers before/after one pass over a synthesised
    index (run as its own process so this benchmark's own allocations do not blur it)."""
    script = Path(__file__).with_name("index_memory.py")
    out = subprocess.run([sys.executable, str(script), "--samples", str(samples)], check=True,
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        name, _, value = line.partition(":")
        if value:
            print(f"memory_{'private_after_over_before' if name == 'ratio' else name}:{value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--img-res", type=int, default=224)
    parser.add_argument("--crop-res", type=int, default=336)
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    parser.add_argument("--memory-samples", type=int, default=1_700_000,
                        help="also measure 8 DataLoader workers' memory over a synthesised index of this "
                             "many samples (benchmarks/index_memory.py; ~2 min); 0 skips it")
    args = parser.parse_args()
    torch.set_num_threads(1)  # per-core figures
    work = args.dir or Path(tempfile.mkdtemp(prefix="gtahuman_data_loading_"))
    try:
        rng = np.random.default_rng(0)
        index = synthesize_index(args.frames, rng)
        frame_bytes = 0
        for i in range(args.frames):
            path = work / index.image_path(i)
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(textured_frame(rng)).save(path, quality=90)
            frame_bytes += path.stat().st_size
        start = time.perf_counter()
        build_crop_cache(index, work, work / "cache", crop_res=args.crop_res, progress=False)
        build_s = time.perf_counter() - start
        cache_bytes = (work / "cache" / "crops.bin").stat().st_size
        start = time.perf_counter()
        write_crop_shards(work / "cache", work / "shards", progress=False)
        shard_write_s = time.perf_counter() - start

        transform = TrainTransform(AugmentConfig(img_res=args.img_res), seed=0)
        pipelines = {
            "full_frame": IndexDataset(index, transform=transform, image_root=work, reduced_decoding=False),
            "full_frame_reduced": IndexDataset(index, transform=transform, image_root=work),
            "crop_cache": IndexDataset(index, transform=transform, crop_cache=work / "cache"),
            "crop_cache_uint8": IndexDataset(index, crop_cache=work / "cache", transform=TrainTransform(
                AugmentConfig(img_res=args.img_res, uint8_images=True), seed=0)),
            "crop_shards": IndexDataset(index, transform=transform, crop_cache=CropShards(work / "shards")),
        }
        rates = {name: samples_per_second(ds, args.passes) for name, ds in pipelines.items()}
        read_rates = {name: reads_per_second(pipelines[name].crop_cache, args.passes)
                      for name in ("crop_cache", "crop_shards")}

        print(f"frames: {args.frames}")
        print(f"frame_kib_mean: {frame_bytes / args.frames / 1024:.1f}")
        print(f"cached_crop_kib_mean: {cache_bytes / args.frames / 1024:.1f}")
        print(f"cache_build_ms_per_frame: {1000 * build_s / args.frames:.2f}")
        print(f"shard_write_ms_per_frame: {1000 * shard_write_s / args.frames:.3f}")
        for name, rate in rates.items():
            print(f"{name}_samples_per_s: {rate:.1f}")
            print(f"{name}_ms_per_sample: {1000 / rate:.2f}")
        for name, rate in read_rates.items():
            print(f"{name}_read_per_s: {rate:.1f}")
        print(f"ratio_shards_vs_cache: {rates['crop_shards'] / rates['crop_cache']:.2f}")
        print(f"ratio_reduced_vs_full: {rates['full_frame_reduced'] / rates['full_frame']:.2f}")
        if args.memory_samples > 0:
            print_worker_memory(args.memory_samples)
        print(f"ratio_cache_vs_full_without_reduced_decoding: {rates['crop_cache'] / rates['full_frame']:.2f}")
        print(f"ratio: {rates['crop_cache'] / rates['full_frame_reduced']:.2f}")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

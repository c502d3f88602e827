"""Per-worker memory of DataLoader workers reading a memory-mapped 1.7 M-sample index.

    python benchmarks/index_memory.py [--samples 1700000] [--workers 8] [--batch 1024]
                                      [--dir DIR] [--baseline-samples 200000]

Synthesises an index of ``--samples`` rows (GTA-Human 1.4 M + real 0.3 M), saves it (about
3 GB: keypoints dominate), loads it with ``mmap=True`` and makes one pass with ``--workers``
forked DataLoader workers whose Dataset reads every column at the sampled rows. Each batch
carries its worker's memory, read from /proc/self/status, so the parent sees each worker's
figures at start-up and after its last batch.

RSS counts pages of the mapped files each worker has touched ("RssFile"); those live once in
the page cache and are shared by all workers, so they are reported but are not growth. The
figure that matters is private memory ("RssAnon"): it grows when workers copy data, e.g. when
touching the refcounts of a per-sample Python list of dicts makes the kernel copy its pages
into every worker. A baseline pass over such a list (``--baseline-samples`` rows, 0 to skip)
shows that the measurement does see that growth. Prints ``name: value`` lines (MiB), last
``ratio`` = mean worker RssAnon after the index pass / before it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from gtahuman.data.index import COLUMNS, SampleIndex
from gtahuman.data.index_synthetic import synthesize_index

_FIRST: dict[str, float] = {}  # this worker's memory after its first batch


def memory_mib() -> dict[str, float]:
    """Rss / Pss / Private_Dirty / Shared_Clean of this process in MiB (Linux smaps_rollup)."""
    figures = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Rss", "Pss", "Private_Dirty", "Shared_Clean", "Private_Clean"):
                figures[key] = int(value.split()[0]) / 1024
    return figures


def with_memory(batch: dict) -> dict:
    """collate_fn: the batch is already stacked by __getitems__; attach this worker's memory."""
    now = memory_mib()
    if not _FIRST:  # "before" is taken after one batch, so fixed per-batch buffers are not growth
        _FIRST.update(now)
    batch["_memory"] = torch.tensor([os.getpid(), _FIRST["Rss"], _FIRST["Private_Dirty"], now["Rss"], now["Private_Dirty"]])
    return batch


class IndexColumns(Dataset):
    """Reads every numeric column of the index at the requested rows (paths as bytes)."""

    def __init__(self, index: SampleIndex):
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def __getitems__(self, rows: list[int]) -> dict:
        rows = np.sort(np.asarray(rows))
        batch = {name: torch.from_numpy(np.ascontiguousarray(self.index[name][rows]))
                 for name in COLUMNS if name != "image_path"}
        batch["image_path"] = [bytes(p) for p in self.index["image_path"][rows]]
        return batch


class ListOfDicts(Dataset):
    """The layout to avoid: one Python dict per sample, built in the parent before forking."""

    def __init__(self, index: SampleIndex):
        self.samples = [{"image_path": bytes(p).decode(), "bbox": b.tolist(), "frame": int(f)}
                        for p, b, f in zip(index["image_path"], index["bbox_xywh"], index["frame_id"])]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitems__(self, rows: list[int]) -> dict:
        picked = [self.samples[i] for i in rows]
        return {"frame": torch.tensor([s["frame"] for s in picked]), "bbox": torch.tensor([s["bbox"] for s in picked])}


def one_pass(dataset: Dataset, workers: int, batch: int) -> tuple[np.ndarray, float]:
    """Per-worker (rss, private dirty) MiB after its first and after its last batch; seconds."""
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, collate_fn=with_memory,
                        multiprocessing_context="fork")
    last: dict[int, np.ndarray] = {}
    start = time.perf_counter()
    for out in loader:
        pid, *figures = out["_memory"].tolist()
        last[int(pid)] = np.array(figures)
    return np.stack(list(last.values())), time.perf_counter() - start


def report(name: str, figures: np.ndarray, seconds: float) -> None:
    rss_start, private_start, rss_end, private_end = figures.mean(axis=0)
    print(f"{name}_pass_seconds: {seconds:.1f}")
    print(f"{name}_worker_rss_before_mib: {rss_start:.1f}")
    print(f"{name}_worker_rss_after_mib: {rss_end:.1f}")
    print(f"{name}_worker_private_before_mib: {private_start:.1f}")
    print(f"{name}_worker_private_after_mib: {private_end:.1f}")
    print(f"{name}_worker_private_growth_max_mib: {(figures[:, 3] - figures[:, 1]).max():.1f}")


def build(directory: Path, samples: int) -> None:
    """Synthesise in blocks (bounded peak memory) and tile: the values need not be distinct."""
    block = synthesize_index(min(samples, 100_000), np.random.default_rng(0))
    reps = -(-samples // len(block))
    columns = {name: np.concatenate([block[name]] * reps)[:samples] for name in COLUMNS}
    del block
    SampleIndex(columns, {"dataset": "benchmark", "domain": "synthetic",
                          "vocabularies": {"weather": ["clear", "rain", "snow"], "location": ["city", "beach", "forest"]}}
                ).save(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1_700_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--dir", type=Path, default=None, help="where to write the index (default: a temp dir, removed)")
    parser.add_argument("--baseline-samples", type=int, default=200_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="index_memory_")) if args.dir is None else args.dir
    try:
        start = time.perf_counter()
        build(root / "index", args.samples)
        print(f"samples: {args.samples}")
        print(f"workers: {args.workers}")
        print(f"build_and_save_seconds: {time.perf_counter() - start:.1f}")
        print(f"index_on_disk_mib: {sum(f.stat().st_size for f in (root / 'index').iterdir()) / 2**20:.0f}")
        index = SampleIndex.load(root / "index", mmap=True, verify="fast")
        print(f"parent_rss_after_load_mib: {memory_mib()['Rss']:.1f}")
        if args.baseline_samples:
            baseline = ListOfDicts(index.subset(np.arange(min(args.baseline_samples, len(index)))))
            report("list_of_dicts", *one_pass(baseline, args.workers, args.batch))
            del baseline
        figures, seconds = one_pass(IndexColumns(index), args.workers, args.batch)
        report("index", figures, seconds)
        print(f"ratio: {figures[:, 3].mean() / figures[:, 1].mean():.3f}")
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""SMPL annotator: accuracy and speed on mini-world GTA sequences with known SMPL.

    python benchmarks/annotator.py [--world DIR] [--sequences N] [--workers 1] [--iterations 30]

Annotates the mini world's raw GTA sequences (default world, generated and cached under
``.cache/gtahuman/miniworld/default-standard-seed0`` if missing) from their ``keypoints_3d`` alone, every
sequence fitted (analyser off), with `annotate_directory` in ``--workers`` processes of one
torch thread each (one process leaves the second of 2 cores to the OS; ``--workers 2`` runs a
process per core, which pays where the cores are not shared with other work). Then compares
the fitted SMPL with the ground truth the world was rendered from, through the full body model:

* joint error: mean distance of the 24 SMPL kinematic joints, camera frame (no alignment), mm;
* vertex error: mean distance of the 6890 vertices, mm;
* frames/s: fitted frames / wall time of the whole annotate call (reading, analysis, fit,
  writing, worker start-up included); also the fit-only rate per worker.

Prints `name: value` lines, last ``ratio`` = frames/s over the paper's ~1 frame/s. The mini
world's body is the toy model, so these are toy-body numbers, not SMPL ones.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gtahuman.body.smpl import BodyModel
from gtahuman.data.formats.gta_raw import list_sequences, read_sequence
from gtahuman.data.miniworld.world import WorldPaths, generate_world
from gtahuman.fitting.annotate import AnnotateOptions, annotate_directory
from gtahuman.fitting.smplify3d import FitSettings

PAPER_FRAMES_PER_SECOND = 1.0  # "optimized at an average of one second per frame" (sec. 3.1)
DEFAULT_WORLD = Path(".cache/gtahuman/miniworld/default-standard-seed0")


def load_world(path: Path) -> WorldPaths:
    if (path / "world.json").is_file():
        return WorldPaths.load(path)
    return generate_world(path, size="default", seed=0)


def compare(world: WorldPaths, out_dir: Path, names: list[str]) -> dict[str, float]:
    """Mean joint / vertex / keypoint-fit errors (mm) of the fitted sequences against GT."""
    models = {g: BodyModel(world.body_dir, g) for g in ("male", "female")}
    joint, vertex, fit_error, frames = [], [], [], []
    with torch.no_grad():
        for name in names:
            gt, fit = read_sequence(world.gta_root, name), read_sequence(out_dir, name)
            model = models["male" if gt.is_male else "female"]
            outputs = [model(torch.as_tensor(s.betas), torch.as_tensor(s.body_pose),
                             torch.as_tensor(s.global_orient), torch.as_tensor(s.transl)) for s in (gt, fit)]
            joint.append((outputs[0].joints - outputs[1].joints).norm(dim=-1).mean().item())
            vertex.append((outputs[0].vertices - outputs[1].vertices).norm(dim=-1).mean().item())
            frames.append(gt.num_frames)
    status = [json.loads((out_dir / "status" / f"{n}.json").read_text())["fit"] for n in names]
    fit_error = [s["mean_fit_error_mm"] for s in status]
    weights = np.asarray(frames, dtype=np.float64)
    return {"joint_error_mm": 1000 * float(np.average(joint, weights=weights)),
            "joint_error_worst_sequence_mm": 1000 * float(np.max(joint)),
            "vertex_error_mm": 1000 * float(np.average(vertex, weights=weights)),
            "keypoint_fit_error_mm": float(np.average(fit_error, weights=weights)),
            "frames": int(weights.sum())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world", type=Path, default=DEFAULT_WORLD)
    parser.add_argument("--sequences", type=int, default=None, help="first N sequences (default: all)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=FitSettings.iterations)
    parser.add_argument("--chunk-sequences", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the fit's tensors are tiny; the comparison below is batched per sequence

    world = load_world(args.world)
    names = list_sequences(world.gta_root)[: args.sequences]
    options = AnnotateOptions(settings=FitSettings(iterations=args.iterations), analyse=False,
                              chunk_sequences=args.chunk_sequences)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source"
        (source / "annotations").mkdir(parents=True)
        for name in names:  # a root holding just the chosen sequences (frames are linked)
            original = world.gta_root / "annotations" / f"{name}.pkl"
            (source / "annotations" / f"{name}.pkl").symlink_to(original.resolve())
        (source / "images").symlink_to((world.gta_root / "images").resolve())
        out_dir = Path(tmp) / "annotated"
        start = time.perf_counter()
        report = annotate_directory(source, out_dir, world.body_dir, options, workers=args.workers, progress=False)
        wall = time.perf_counter() - start
        errors = compare(world, out_dir, names)

    fps = errors["frames"] / wall
    print("body_model: toy (mini world; not SMPL numbers)")
    print(f"sequences: {len(names)}")
    print(f"frames: {errors['frames']}")
    print(f"workers: {args.workers}")
    print(f"cpu_count: {os.cpu_count()}")
    print(f"load_average_1min_at_end: {os.getloadavg()[0]:.1f}")
    print(f"iterations: {args.iterations}")
    print(f"joint_error_mm: {errors['joint_error_mm']:.2f}")
    print(f"joint_error_worst_sequence_mm: {errors['joint_error_worst_sequence_mm']:.2f}")
    print(f"vertex_error_mm: {errors['vertex_error_mm']:.2f}")
    print(f"keypoint_fit_error_mm: {errors['keypoint_fit_error_mm']:.2f}")
    print(f"wall_seconds: {wall:.2f}")
    print(f"fit_only_frames_per_second_per_worker: {report['frames_per_second']:.1f}")
    print(f"frames_per_second: {fps:.1f}")
    print(f"ratio: {fps / PAPER_FRAMES_PER_SECOND:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

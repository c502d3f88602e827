"""SMPL annotator: accuracy and speed on mini-world GTA sequences with known SMPL.

    python benchmarks/annotator.py [--world DIR] [--sequences N] [--workers 1] [--iterations 30]
                                   [--noise-mm 10] [--occluded 0.2] [--adam-iterations 300]

Annotates the mini world's raw GTA sequences (default world, generated and cached under
``.cache/gtahuman/miniworld/default-standard-seed0`` if missing) from their ``keypoints_3d`` alone, every
sequence fitted (analyser off). The world's game joints come from a rig of their own
(`gtahuman.miniworld.game_skeleton`: offsets of a few centimetres from SMPL's joints, varying per
subject) that the annotator's correspondence table does not read, so the errors below include a
modelling error, as in the game. Three conditions, each a separate annotation of the same
sequences: ``clean`` (the keypoints as written), ``noise`` (Gaussian noise of ``--noise-mm`` per
axis on every 3D keypoint) and ``occluded`` (each keypoint of each frame dropped, confidence 0,
with probability ``--occluded``); lines are prefixed with the condition. A fourth pass, ``adam``,
fits the clean keypoints with the plain baseline of the same fitter: Adam (lr 0.01, SMPLify's
optimiser) for ``--adam-iterations`` steps from the same closed-form start, instead of L-BFGS.
Each runs
`annotate_directory` in ``--workers`` processes of one
torch thread each (one process leaves the second of 2 cores to the OS; ``--workers 2`` runs a
process per core, which pays where the cores are not shared with other work). Then compares
the fitted SMPL with the ground truth the world was rendered from, through the full body model:

* joint error: mean distance of the 24 SMPL kinematic joints, camera frame (no alignment), mm;
* vertex error: mean distance of the 6890 vertices, mm;
* frames/s: fitted frames / wall time of the whole annotate call (reading, analysis, fit,
  writing, worker start-up included); also the fit-only rate per worker.

Prints `name: value` lines, last ``ratio`` = clean frames/s over the ``adam`` pass's frames/s:
the same frames, start, threads and body model, one optimiser against the other (compare their
errors too). The paper's "about one second per frame" is printed for reference, not divided by:
another machine, another SMPL, another fitter. The mini world's body is the toy model, so these
are toy-body numbers, not SMPL ones.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gtahuman.body.smpl import BodyModel
from gtahuman.data.formats.gta_raw import list_sequences, read_sequence, write_sequence
from gtahuman.miniworld.world import WorldPaths, generate_world
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


def write_condition(world: WorldPaths, names: list[str], source: Path, condition: str, noise_mm: float,
                    occluded: float, seed: int = 0) -> None:
    """A GTA root at ``source`` holding ``names`` under ``condition`` (frames are linked)."""
    (source / "annotations").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name in names:
        original = world.gta_root / "annotations" / f"{name}.pkl"
        if condition == "clean":
            (source / "annotations" / f"{name}.pkl").symlink_to(original.resolve())
            continue
        sequence = read_sequence(world.gta_root, name)
        keypoints = sequence.keypoints_3d.copy()
        if condition == "noise":
            keypoints[..., :3] += rng.normal(0.0, noise_mm / 1000.0, keypoints[..., :3].shape)
        else:
            keypoints[..., 3] *= rng.random(keypoints.shape[:2]) >= occluded
        write_sequence(source, name, dataclasses.replace(sequence, keypoints_3d=keypoints.astype(np.float32)))
    (source / "images").symlink_to((world.gta_root / "images").resolve())


def run_condition(world: WorldPaths, names: list[str], options: AnnotateOptions, workers: int, condition: str,
                  noise_mm: float, occluded: float) -> tuple[dict[str, float], float, float]:
    """(errors, wall seconds, fit-only frames/s per worker) of one condition."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source"
        write_condition(world, names, source, condition, noise_mm, occluded)
        out_dir = Path(tmp) / "annotated"
        start = time.perf_counter()
        report = annotate_directory(source, out_dir, world.body_dir, options, workers=workers, progress=False)
        wall = time.perf_counter() - start
        return compare(world, out_dir, names), wall, report["frames_per_second"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world", type=Path, default=DEFAULT_WORLD)
    parser.add_argument("--sequences", type=int, default=None, help="first N sequences (default: all)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=FitSettings.iterations)
    parser.add_argument("--chunk-sequences", type=int, default=8)
    parser.add_argument("--noise-mm", type=float, default=10.0, help="3D keypoint noise of the 'noise' condition")
    parser.add_argument("--occluded", type=float, default=0.2, help="keypoints dropped in the 'occluded' condition")
    parser.add_argument("--adam-iterations", type=int, default=300, help="Adam steps of the baseline pass")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the fit's tensors are tiny; the comparison below is batched per sequence

    world = load_world(args.world)
    names = list_sequences(world.gta_root)[: args.sequences]
    options = AnnotateOptions(settings=FitSettings(iterations=args.iterations), analyse=False,
                              chunk_sequences=args.chunk_sequences)
    print("body_model: toy (mini world; not SMPL numbers)")
    print("game_skeleton: the mini world's own rig (offsets from SMPL's joints; the annotator's map does not read it)")
    print(f"sequences: {len(names)}")
    print(f"workers: {args.workers}")
    print(f"cpu_count: {os.cpu_count()}")
    print(f"iterations: {args.iterations}")
    print(f"noise_mm: {args.noise_mm}")
    print(f"occluded_fraction: {args.occluded}")
    clean_fps = adam_fps = 0.0
    adam = AnnotateOptions(settings=FitSettings(iterations=args.adam_iterations, optimizer="adam", learning_rate=0.01),
                           analyse=False, chunk_sequences=args.chunk_sequences)
    for condition in ("clean", "noise", "occluded", "adam"):
        errors, wall, fit_rate = run_condition(world, names, adam if condition == "adam" else options, args.workers,
                                               "clean" if condition == "adam" else condition, args.noise_mm,
                                               args.occluded)
        fps = errors["frames"] / wall
        clean_fps = fps if condition == "clean" else clean_fps
        adam_fps = fps if condition == "adam" else adam_fps
        print(f"{condition}_frames: {errors['frames']}")
        print(f"{condition}_joint_error_mm: {errors['joint_error_mm']:.2f}")
        print(f"{condition}_joint_error_worst_sequence_mm: {errors['joint_error_worst_sequence_mm']:.2f}")
        print(f"{condition}_vertex_error_mm: {errors['vertex_error_mm']:.2f}")
        print(f"{condition}_keypoint_fit_error_mm: {errors['keypoint_fit_error_mm']:.2f}")
        print(f"{condition}_wall_seconds: {wall:.2f}")
        print(f"{condition}_fit_only_frames_per_second_per_worker: {fit_rate:.1f}")
        print(f"{condition}_frames_per_second: {fps:.1f}")
    print(f"adam_iterations: {args.adam_iterations}")
    print(f"paper_frames_per_second: {PAPER_FRAMES_PER_SECOND} (stated in the paper; not a like-for-like figure)")
    print(f"load_average_1min_at_end: {os.getloadavg()[0]:.1f}")
    print(f"ratio: {clean_fps / adam_fps:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

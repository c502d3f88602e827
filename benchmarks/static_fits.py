"""Static fits from 2D keypoints: accuracy and speed where the SMPL is known.

    python benchmarks/static_fits.py [--world DIR] [--set wild_test] [--rows 128] [--iterations 300]
                                     [--noise-px 3 6] [--drop 0.2] [--threads 1]

Fits ``--rows`` rows (a fixed random choice) of one of the mini world's SPIN npz files with SMPL
(default ``wild/wild_test.npz``: every visible GT joint labelled) with `SMPLify2D`, as
``python -m gtahuman.fitting.static_fits`` does: SPIN's 224 px crop, the neutral body, the pose
prior fitted to the studio's training poses (``--prior-from real_indoor_train.npz``). Conditions:
``clean``; Gaussian noise of each ``--noise-px`` on the crop's keypoint coordinates (``noise_3px``
...); ``--drop`` of the keypoints set to confidence 0 (``drop_20pct``). Per condition: PA-MPJPE
(mean, median) and pelvis-aligned MPJPE of the 24 SMPL joints in mm, the global orientation's
error (median, degrees) and images/s on ``--threads`` torch threads. The fitter's weights were
chosen on ``wild_val``; do not report that set from here.

Prints `name: value` lines; last ``ratio`` = the mean pose's PA-MPJPE / the clean fits' (how far
the fits are below the strongest constant guess, the fits' own start).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gtahuman.body.smpl import BodyModel
from gtahuman.data.formats.spin_npz import bbox_xywh_from_center_scale, read_spin_npz
from gtahuman.miniworld.world import WorldPaths, generate_world
from gtahuman.data.static_fits import crop_keypoints
from gtahuman.fitting.priors import GaussianPosePrior
from gtahuman.fitting.smplify2d import Fit2DSettings, SMPLify2D, mean_start
from gtahuman.fitting.static_fits import truth_errors

DEFAULT_WORLD = Path(".cache/gtahuman/miniworld/default-standard-seed0")


def load_world(path: Path) -> WorldPaths:
    if (path / "world.json").is_file():
        return WorldPaths.load(path)
    return generate_world(path, size="default", seed=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world", type=Path, default=DEFAULT_WORLD)
    parser.add_argument("--set", default="wild_test", choices=("wild_test", "real_indoor_train"))
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=Fit2DSettings.iterations)
    parser.add_argument("--noise-px", type=float, nargs="*", default=[3.0, 6.0])
    parser.add_argument("--drop", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    world = load_world(args.world)
    data = read_spin_npz(getattr(world, args.set))
    rows = np.sort(np.random.default_rng(0).choice(len(data.imgname), min(args.rows, len(data.imgname)), replace=False))
    keypoints = crop_keypoints(data.part[rows], bbox_xywh_from_center_scale(data.center[rows], data.scale[rows]))
    studio = read_spin_npz(world.real_indoor_train)
    prior = GaussianPosePrior.fit(studio.pose[studio.has_smpl == 1][:, 3:])
    start = mean_start(str(world.body_dir / "smpl_mean_params.npz"))
    fitter = SMPLify2D(BodyModel(world.body_dir, "neutral"), *start, Fit2DSettings(iterations=args.iterations), prior)
    conditions = {"clean": keypoints}
    rng = np.random.default_rng(1)
    for sigma in args.noise_px:
        noisy = keypoints.copy()
        noisy[..., :2] += rng.normal(0.0, sigma, noisy[..., :2].shape)
        conditions[f"noise_{sigma:g}px"] = noisy
    if args.drop > 0:
        dropped = keypoints.copy()
        dropped[..., 2] *= rng.random(dropped.shape[:2]) >= args.drop
        conditions[f"drop_{round(100 * args.drop)}pct"] = dropped

    print("body_model: toy (mini world; not SMPL numbers)")
    print(f"set: {args.set}")
    print(f"rows: {len(rows)}")
    print(f"threads: {args.threads}")
    print(f"iterations: {args.iterations}")
    with tempfile.TemporaryDirectory() as tmp:
        truth = Path(tmp) / "truth.npz"
        np.savez(truth, pose=data.pose[rows], shape=data.shape[rows], gender=data.gender[rows])
        constant = truth_errors(world.body_dir, np.tile(np.r_[start[0], start[1]], (len(rows), 1)), truth)
        print(f"mean_pose_pa_mpjpe_mm: {constant['pa_mpjpe'].mean():.1f}")
        clean_pa = float("nan")
        for name, targets in conditions.items():
            began = time.perf_counter()
            fits = fitter.fit(targets)
            seconds = time.perf_counter() - began
            errors = truth_errors(world.body_dir, fits.rows, truth)
            clean_pa = errors["pa_mpjpe"].mean() if name == "clean" else clean_pa
            print(f"{name}_pa_mpjpe_mm: {errors['pa_mpjpe'].mean():.1f}")
            print(f"{name}_pa_mpjpe_median_mm: {np.median(errors['pa_mpjpe']):.1f}")
            print(f"{name}_mpjpe_pelvis_aligned_mm: {errors['mpjpe'].mean():.1f}")
            print(f"{name}_orientation_median_deg: {np.median(errors['orient_deg']):.1f}")
            print(f"{name}_beyond_90_deg_pct: {100 * (errors['orient_deg'] > 90).mean():.1f}")
            print(f"{name}_images_per_second: {len(rows) / seconds:.1f}")
    print(f"ratio: {constant['pa_mpjpe'].mean() / clean_pa:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""PA-MPJPE speed: the suite's batched torch call against a batched NumPy version (the strongest
plain alternative) and a per-sample NumPy loop (what SPIN's evaluation does), on the same data.

    OMP_NUM_THREADS=1 python benchmarks/metrics.py [--frames 35515] [--joints 14] [--repeats 3]
                                                   [--mirrored 0.01] [--device cpu] [--threads 1]

35,515 frames is the 3DPW test size (14 evaluation joints). A share of the predictions
(``--mirrored``) are mirror images of their ground truth, whose best rotation needs the reflection
fix: the suite's batched call takes its SVD path for those rows, so the timing includes it. Both
NumPy versions are separate, straightforward implementations (one SVD per frame, stacked or
looped), and ``torch_svd`` is the suite's previous batched path (one LAPACK SVD per frame), so the
run also checks that all four agree. Every side gets one warm-up call and the best of
``--repeats`` timed calls; torch runs with ``--threads`` intra-op threads (default 1) and NumPy's
BLAS with whatever OMP_NUM_THREADS says (set it to the same number: the ratio is only like for
like then). Prints one `name: value` line per figure, `ratio` last: batched NumPy seconds /
batched torch seconds (float64 on both). Exits non-zero if the results disagree.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from gtahuman.metrics import kabsch_rotation, pa_mpjpe

AGREEMENT_TOLERANCE_MM = 1e-6  # float64 on both sides


def make_frames(frames: int, joints: int, seed: int, mirrored: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """GT skeletons (~30 cm spread) and predictions = rotated, scaled GT plus 5 cm noise; the first
    ``mirrored`` share of the predictions are mirrored (x -> -x) first."""
    rng = np.random.default_rng(seed)
    gt = rng.normal(scale=0.3, size=(frames, joints, 3))
    q = rng.normal(size=(frames, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    rot = np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], axis=1).reshape(frames, 3, 3)
    scale = rng.uniform(0.8, 1.2, size=(frames, 1, 1))
    source = gt.copy()
    source[: int(round(mirrored * frames)), :, 0] *= -1.0
    pred = scale * source @ rot.transpose(0, 2, 1) + rng.normal(scale=0.05, size=gt.shape)
    return pred, gt


def numpy_pa_mpjpe_loop(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame similarity Procrustes with the reflection fix, then mean joint error (metres)."""
    errors = np.empty(len(pred))
    for i in range(len(pred)):
        src, dst = pred[i], gt[i]
        src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
        a, b = src - src_mean, dst - dst_mean
        u, _, vt = np.linalg.svd(a.T @ b)
        fix = np.eye(3)
        fix[2, 2] = np.sign(np.linalg.det(u @ vt))
        rot = vt.T @ fix @ u.T
        s = np.trace(rot @ a.T @ b) / (a**2).sum()
        aligned = s * src @ rot.T + (dst_mean - s * rot @ src_mean)
        errors[i] = np.linalg.norm(aligned - dst, axis=1).mean()
    return errors


def numpy_pa_mpjpe_batched(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """The same alignment with every frame's 3x3 SVD in one stacked call."""
    a, b = pred - pred.mean(axis=1, keepdims=True), gt - gt.mean(axis=1, keepdims=True)
    u, _, vt = np.linalg.svd(np.einsum("nji,njk->nik", a, b))
    fix = np.sign(np.linalg.det(u @ vt))
    u[:, :, -1] *= fix[:, None]
    rot = np.swapaxes(u @ vt, 1, 2)  # per frame: a @ rot.T aligns a onto b
    rotated = a @ np.swapaxes(rot, 1, 2)
    s = np.einsum("nij,nij->n", rotated, b) / (a**2).sum(axis=(1, 2))
    return np.linalg.norm(s[:, None, None] * rotated - b, axis=2).mean(axis=1)


def torch_svd_pa_mpjpe(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """The suite's previous batched path: one LAPACK SVD per frame (torch.linalg.svd on the
    stack), for the same alignment; `pa_mpjpe` now iterates to the polar factor instead."""
    x1, x2 = pred - pred.mean(dim=1, keepdim=True), gt - gt.mean(dim=1, keepdim=True)
    rot, singular, sign = kabsch_rotation(x1.mT @ x2)
    scale = (singular[:, 0] + singular[:, 1] + sign * singular[:, 2]) / x1.square().sum(dim=(1, 2))
    return (scale[:, None, None] * (x1 @ rot.mT) - x2).norm(dim=-1).mean(dim=1)


def time_best(call, repeats: int, cuda: bool = False) -> tuple[float, object]:
    """Best wall time of ``repeats`` calls of ``call()`` after one warm-up call (every side alike)."""
    result = call()
    best = float("inf")
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = call()
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=35515)
    parser.add_argument("--joints", type=int, default=14)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mirrored", type=float, default=0.01, help="share of mirrored predictions")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    pred_np, gt_np = make_frames(args.frames, args.joints, args.seed, args.mirrored)
    pred = torch.from_numpy(pred_np).to(args.device)
    gt = torch.from_numpy(gt_np).to(args.device)

    cuda = pred.is_cuda
    batched_s, batched = time_best(lambda: pa_mpjpe(pred, gt), args.repeats, cuda)
    svd_s, svd = time_best(lambda: torch_svd_pa_mpjpe(pred, gt), args.repeats, cuda)
    pred32, gt32 = pred.float(), gt.float()
    batched32_s, batched32 = time_best(lambda: pa_mpjpe(pred32, gt32), args.repeats, cuda)
    numpy_s, numpy_batched = time_best(lambda: numpy_pa_mpjpe_batched(pred_np, gt_np), args.repeats)
    loop_s, looped = time_best(lambda: numpy_pa_mpjpe_loop(pred_np, gt_np), args.repeats)

    batched_mm = batched.cpu().numpy() * 1000.0
    max_diff_mm = float(max(np.abs(batched_mm - looped * 1000.0).max(),
                            np.abs(numpy_batched * 1000.0 - looped * 1000.0).max(),
                            np.abs(svd.cpu().numpy() * 1000.0 - looped * 1000.0).max()))
    max_diff32_mm = float(np.abs(batched32.cpu().double().numpy() * 1000.0 - looped * 1000.0).max())
    figures = {
        "frames": args.frames,
        "joints": args.joints,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "mirrored_frames": int(round(args.mirrored * args.frames)),
        "pa_mpjpe_mean_mm": f"{batched_mm.mean():.4f}",
        "batched_float64_seconds": f"{batched_s:.6f}",
        "batched_float32_seconds": f"{batched32_s:.6f}",
        "torch_svd_seconds": f"{svd_s:.6f}",
        "numpy_batched_seconds": f"{numpy_s:.6f}",
        "numpy_loop_seconds": f"{loop_s:.6f}",
        "loop_over_torch": f"{loop_s / batched_s:.1f}",
        "torch_svd_over_torch": f"{svd_s / batched_s:.2f}",
        "max_abs_diff_mm": f"{max_diff_mm:.3e}",
        "max_abs_diff_float32_mm": f"{max_diff32_mm:.3e}",
        "ratio": f"{numpy_s / batched_s:.2f}",  # batched NumPy / batched torch, float64 both: like for like
    }
    for name, value in figures.items():
        print(f"{name}: {value}")
    if max_diff_mm > AGREEMENT_TOLERANCE_MM:
        print(f"error: batched and loop PA-MPJPE differ by {max_diff_mm} mm", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

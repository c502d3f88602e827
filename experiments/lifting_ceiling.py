"""How much articulation can 2D keypoints give? ``python -m experiments.lifting_ceiling [key=value ...]``

An upper-bound diagnostic (issue 18). An MLP lifts the *labelled* 2D keypoints of the config's
train sources (the first 29 smpl_54 keypoints in [-1, 1] coordinates of the person box, with their
visibility; Gaussian noise of standard deviation ``--noise`` added, in the same units) to the 24
root-relative SMPL joints of their SMPL labels, and is tested on the config's first test set:
PA-MPJPE over the 24 SMPL joints against the best constant on the same joints (the Procrustes mean
of the training joints), overall and per group of sequences (the mini world names its sequences
``<action>_...``; other data get one group per leading word of the sequence folder).

A model that reads only 2D keypoints cannot expect to beat what this lifter reaches from perfect
2D; with noise equal to a model's own 2D error (one unit = half the box side) it estimates what
that model's keypoints allow. Options: ``--noise 0,0.06,0.12`` (default), ``--steps 3000``. Prints
one line per noise level and, last, ``ratio: R`` (the noise-free PA-MPJPE over the constant's).
"""
from __future__ import annotations

import posixpath
import sys
from typing import Any

import numpy as np
import torch
from torch import nn

from gtahuman.body.rotations import axis_angle_to_matrix
from gtahuman.config import load_config
from gtahuman.metrics import pa_mpjpe

KEYPOINTS = 29  # smpl_54's first 29: SMPL joints, nose, eyes, ears (as the hmr_kp branch reads)


def lifting_data(index: Any, body: Any) -> dict[str, np.ndarray]:
    """Inputs (N, 29, 3) = box-normalised 2D + visibility, targets (N, 24, 3) root-relative SMPL
    joints of the SMPL labels (the rows with SMPL), and a group name per row."""
    keep = np.asarray(index["has_smpl"]) > 0
    if not keep.any():  # a keypoint-only source: nothing to lift to
        return {"inputs": np.zeros((0, KEYPOINTS, 3), np.float32), "targets": np.zeros((0, 24, 3), np.float32),
                "groups": np.zeros(0, str)}
    k2 = np.asarray(index["keypoints2d"])[keep, :KEYPOINTS]
    box = np.asarray(index["bbox_xywh"])[keep]
    centre, half = box[:, :2] + box[:, 2:] / 2, box[:, 2:].max(axis=1) / 2
    visible = k2[..., 2:3] > 0
    xy = np.where(visible, (k2[..., :2] - centre[:, None]) / half[:, None, None], 0.0)
    pose = np.concatenate([np.asarray(index["smpl_global_orient"]), np.asarray(index["smpl_body_pose"])], axis=1)[keep]
    rotmats = axis_angle_to_matrix(torch.as_tensor(pose, dtype=torch.float32).reshape(-1, 24, 3))
    with torch.no_grad():
        joints = body(torch.as_tensor(np.asarray(index["smpl_betas"])[keep], dtype=torch.float32),
                      rotmats[:, 1:], rotmats[:, :1]).joints.numpy()
    folders = [posixpath.basename(posixpath.dirname(p.decode())) for p in np.asarray(index["image_path"])[keep]]
    return {"inputs": np.concatenate([xy, visible], axis=-1).astype(np.float32),
            "targets": (joints - joints[:, :1]).astype(np.float32),
            "groups": np.array([f.split("_")[0] for f in folders])}


def procrustes_mean(joints: np.ndarray, rounds: int = 4) -> np.ndarray:
    """(24, 3) generalised Procrustes mean: each skeleton rotated onto the running mean, averaged."""
    centred = joints - joints.mean(axis=1, keepdims=True)
    mean = centred[0]
    for _ in range(rounds):
        u, _, vt = np.linalg.svd(np.einsum("nji,jk->nik", centred, mean))
        flip = np.sign(np.linalg.det(u @ vt))
        u[:, :, -1] *= flip[:, None]
        mean = (centred @ (u @ vt)).mean(axis=0)
    return mean


def train_lifter(inputs: np.ndarray, targets: np.ndarray, noise: float, steps: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    lifter = nn.Sequential(nn.Linear(KEYPOINTS * 3, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 72))
    optimiser = torch.optim.Adam(lifter.parameters(), 1e-3)
    x, y = torch.as_tensor(inputs), torch.as_tensor(targets).flatten(1)
    for _ in range(steps):
        rows = torch.randint(0, len(x), (64,))
        loss = (lifter(noisy(x[rows], noise)) - y[rows]).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return lifter


def noisy(inputs: torch.Tensor, noise: float) -> torch.Tensor:
    """Noise on the visible keypoints' coordinates; visibility flags kept."""
    xy, visible = inputs[..., :2], inputs[..., 2:]
    return torch.cat([(xy + noise * torch.randn_like(xy)) * visible, visible], dim=-1).flatten(1)


def ceiling(cfg: Any, noises: list[float], steps: int) -> list[dict[str, Any]]:
    import gtahuman.train as T
    from gtahuman.body.smpl import BodyModel
    from gtahuman.data.index import SampleIndex

    body_dir = T.ensure_assets(cfg)
    body = BodyModel(body_dir)

    def load(split: str, name: str) -> dict[str, np.ndarray]:
        spec = T.prepare_source(name, cfg.data[split][name], cfg, body_dir)
        return lifting_data(SampleIndex.load(spec.index_dir), body)

    parts = [load("train", name) for name in cfg.data.train]
    parts = [p for p in parts if len(p["inputs"])]
    train = {k: np.concatenate([p[k] for p in parts]) for k in ("inputs", "targets")}
    test = load("test", next(iter(cfg.data.test)))
    target = torch.as_tensor(test["targets"])
    constant = torch.as_tensor(procrustes_mean(train["targets"]), dtype=torch.float32).expand_as(target)
    constant_error = 1000 * pa_mpjpe(constant, target).numpy()
    results = []
    for noise in noises:
        lifter = train_lifter(train["inputs"], train["targets"], noise, steps)
        with torch.no_grad():
            predicted = lifter(noisy(torch.as_tensor(test["inputs"]), noise)).reshape(-1, 24, 3)
        error = 1000 * pa_mpjpe(predicted, target).numpy()
        groups = {g: float(error[test["groups"] == g].mean() / constant_error[test["groups"] == g].mean())
                  for g in sorted(set(test["groups"]))}
        results.append({"noise": noise, "pa_mpjpe": float(error.mean()), "constant": float(constant_error.mean()),
                        "groups": groups})
    return results


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        print(__doc__)
        return 0
    noises, steps, overrides = [0.0, 0.06, 0.12], 3000, []
    for i, arg in enumerate(args):
        if arg in ("--noise", "--steps") or (i and args[i - 1] in ("--noise", "--steps")):
            continue
        overrides.append(arg)
    if "--noise" in args:
        noises = [float(v) for v in args[args.index("--noise") + 1].split(",")]
    if "--steps" in args:
        steps = int(args[args.index("--steps") + 1])
    torch.set_num_threads(1)
    results = ceiling(load_config(overrides), noises, steps)
    for r in results:
        groups = " ".join(f"{g} {v:.2f}" for g, v in r["groups"].items())
        print(f"noise {r['noise']:.2f}: lifted PA-MPJPE {r['pa_mpjpe']:.1f} mm, constant {r['constant']:.1f} mm, "
              f"ratio {r['pa_mpjpe'] / r['constant']:.2f}; per group: {groups}")
    print(f"ratio: {results[0]['pa_mpjpe'] / results[0]['constant']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

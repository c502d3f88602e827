"""How much articulation can 2D keypoints give? ``python -m experiments.lifting_ceiling [key=value ...]``

An upper-bound diagnostic (issue 18). An MLP lifts 2D keypoints of the config's train sources to
the 24 root-relative SMPL joints of their SMPL labels and is tested on the config's first test set:
PA-MPJPE over the 24 SMPL joints against the best constant on the same joints (the Procrustes mean
of the training joints), overall and per group of sequences (the mini world names its sequences
``<action>_...``; other data get one group per leading word of the sequence folder).

The inputs must mean the same thing in every source, or the lifter learns the sources' labelling
conventions instead of the body: only the keypoints labelled in (nearly) every row of every
source are used (the mini world's GTA labels all 29 smpl_54 keypoints it shows, the SPIN-format
sets 15), normalised by their own extent (centre and half the larger side of their bounding
box), so that box conventions (GTA's tight boxes, SPIN's 1.2x squares) do not enter. The lifter
is trained on all train sources together and on each source alone: the per-source lines show which
domain's poses cover the test's.

Two modes:

- labels (default): the *labelled* 2D keypoints, with Gaussian noise of standard deviation
  ``--noise`` (in half-extents) added. A model that reads only 2D keypoints cannot expect to beat
  what this lifter reaches from perfect 2D; the noise levels show how fast that ceiling falls.
- ``--run RUN``: the 2D keypoints a trained keypoint-branch model (``model.arch=hmr_kp``) predicts,
  from its best checkpoint, on the train sources (test-time transform) and on the test set; the same
  lifter on those. It also prints how often the prediction swaps a left/right pair (the swapped
  assignment lies nearer the truth). I.i.d. noise is a kind model of a network's 2D errors; this
  is the real one. Then a lifter trained on the *labelled* 2D is fed the run's predicted 2D (how
  much a two-stage model would lose to the run's 2D errors), and the run's own 3D is scored per
  joint group against the constant (which body parts the model reads, and which it leaves at the
  average pose).

``--unlabelled-sides all|limbs`` (labels mode): the lifter is not told which of two mirror keypoints
is which: each pair comes ordered by image x; the targets keep their sides. ``all``: every pair
(hips, shoulders, knees, ankles, elbows, wrists, ...); ``limbs``: the limbs' pairs only, the torso's
keep their names. A body whose two sides look alike (the mini world dresses both legs, and both
arms, alike) shows the image's 2D points, not their names: where the way the torso faces can be
read (its shirt front), ``limbs`` is the nearer ceiling, where nothing tells the sides, ``all``.

Options: ``--noise 0,0.03,0.06,0.12`` (default), ``--steps 3000``, ``--run RUN``, ``--unlabelled-sides all|limbs``. Prints one line
per lifter and noise level and, last, ``ratio: R`` (all sources, first noise level or the run's
predictions: PA-MPJPE over the constant's).
"""
from __future__ import annotations

import posixpath
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gtahuman.body.rotations import axis_angle_to_matrix
from gtahuman.config import load_config, load_run_config
from gtahuman.metrics import pa_mpjpe

KEYPOINTS = 29  # smpl_54's first 29: SMPL joints, nose, eyes, ears (as the hmr_kp branch reads)
SHARED_FRACTION = 0.99  # a keypoint is shared when labelled in this fraction of every source's rows
LEFT_RIGHT = {"knee": (4, 5), "ankle": (7, 8), "shoulder": (16, 17), "elbow": (18, 19), "wrist": (20, 21)}


def root_relative_joints(body: Any, global_orient: np.ndarray, body_pose: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """(N, 24, 3) SMPL joints relative to the pelvis, camera frame, from axis-angle labels."""
    pose = np.concatenate([np.asarray(global_orient).reshape(len(betas), 3),
                           np.asarray(body_pose).reshape(len(betas), 69)], axis=1)
    rotmats = axis_angle_to_matrix(torch.as_tensor(pose, dtype=torch.float32).reshape(-1, 24, 3))
    with torch.no_grad():
        joints = body(torch.as_tensor(np.asarray(betas), dtype=torch.float32), rotmats[:, 1:], rotmats[:, :1]).joints
    return (joints - joints[:, :1]).numpy().astype(np.float32)


def lifting_data(index: Any, body: Any) -> dict[str, np.ndarray]:
    """The rows with SMPL: labelled 2D keypoints (N, 29, 3) in full-image pixels with visibility,
    targets (N, 24, 3) root-relative SMPL joints, and a group name per row."""
    keep = np.asarray(index["has_smpl"]) > 0
    folders = [posixpath.basename(posixpath.dirname(p.decode())) for p in np.asarray(index["image_path"])[keep]]
    if not keep.any():  # a keypoint-only source: nothing to lift to
        return {"keypoints": np.zeros((0, KEYPOINTS, 3), np.float32), "targets": np.zeros((0, 24, 3), np.float32),
                "groups": np.zeros(0, str)}
    return {"keypoints": np.asarray(index["keypoints2d"])[keep, :KEYPOINTS].astype(np.float32),
            "targets": root_relative_joints(body, np.asarray(index["smpl_global_orient"])[keep],
                                            np.asarray(index["smpl_body_pose"])[keep],
                                            np.asarray(index["smpl_betas"])[keep]),
            "groups": np.array([f.split("_")[0] for f in folders])}


def shared_keypoints(keypoint_sets: list[np.ndarray]) -> np.ndarray:
    """Indices of the keypoints labelled in at least SHARED_FRACTION of the rows of every set."""
    labelled = np.min([(k[..., 2] > 0).mean(axis=0) for k in keypoint_sets], axis=0)
    shared = np.flatnonzero(labelled >= SHARED_FRACTION)
    if len(shared) < 3:
        raise ValueError(f"only {len(shared)} keypoints are labelled in every source; a lifter needs at least 3")
    return shared


def extent_normalised(xy: np.ndarray) -> np.ndarray:
    """(N, K, 2) -> the same points centred on their bounding box and divided by half its larger side."""
    low, high = xy.min(axis=1), xy.max(axis=1)
    half = np.maximum((high - low).max(axis=1) / 2, 1e-6)
    return ((xy - ((low + high) / 2)[:, None]) / half[:, None, None]).astype(np.float32)


TORSO = ("hip", "shoulder", "eye", "ear", "collar")  # name parts of the pairs that stay named with "limbs"


def unlabelled_sides(xy: np.ndarray, keypoints: np.ndarray, which: str = "all") -> np.ndarray:
    """(N, K, 2) keypoints (smpl_54 indices ``keypoints``) with each left/right pair ordered by
    image x: the smaller x first, whichever side it is (``which='limbs'``: the torso's pairs keep
    their names)."""
    from gtahuman.body.conventions import flip_permutation, get_names

    if which not in ("all", "limbs"):
        raise ValueError(f"--unlabelled-sides takes 'all' or 'limbs', got {which!r}")
    mirror, names = flip_permutation("smpl_54"), get_names("smpl_54")
    position = {int(k): i for i, k in enumerate(keypoints)}
    out = xy.copy()
    for k, i in position.items():
        j = position.get(int(mirror[k]))
        if j is None or j <= i or (which == "limbs" and any(part in names[k] for part in TORSO)):
            continue
        swap = out[:, i, 0] > out[:, j, 0]
        out[swap, i], out[swap, j] = xy[swap, j], xy[swap, i]
    return out


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
    """An MLP from (N, K, 2) normalised keypoints (noise added per batch) to (N, 24, 3) joints."""
    torch.manual_seed(seed)
    lifter = nn.Sequential(nn.Flatten(), nn.Linear(inputs.shape[1] * 2, 512), nn.ReLU(),
                           nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 72))
    optimiser = torch.optim.Adam(lifter.parameters(), 1e-3)
    x, y = torch.as_tensor(inputs), torch.as_tensor(targets).flatten(1)
    for _ in range(steps):
        rows = torch.randint(0, len(x), (64,))
        loss = (lifter(x[rows] + noise * torch.randn_like(x[rows])) - y[rows]).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return lifter


def lift_and_score(train: list[dict[str, np.ndarray]], test: dict[str, np.ndarray], noise: float,
                   steps: int) -> dict[str, Any]:
    """Train on the concatenated ``train`` parts ("inputs", "targets"), test on ``test``: PA-MPJPE
    (mm) of the lifter and of the Procrustes-mean constant, overall and per test group."""
    inputs = np.concatenate([p["inputs"] for p in train])
    targets = np.concatenate([p["targets"] for p in train])
    lifter = train_lifter(inputs, targets, noise, steps)
    truth = torch.as_tensor(test["targets"])
    with torch.no_grad():
        noisy = torch.as_tensor(test["inputs"])
        predicted = lifter(noisy + noise * torch.randn_like(noisy)).reshape(-1, 24, 3)
    constant = torch.as_tensor(procrustes_mean(targets), dtype=torch.float32).expand_as(truth)
    error, constant_error = (1000 * pa_mpjpe(p, truth).numpy() for p in (predicted, constant))
    groups = {g: float(error[test["groups"] == g].mean() / constant_error[test["groups"] == g].mean())
              for g in sorted(set(test["groups"]))}
    return {"noise": noise, "pa_mpjpe": float(error.mean()), "constant": float(constant_error.mean()),
            "groups": groups}


def score_all_and_each(train: dict[str, dict[str, np.ndarray]], test: dict[str, np.ndarray], noise: float,
                       steps: int) -> list[dict[str, Any]]:
    """One result for all train sources together ("lifter": "all"), then one per source alone."""
    parts = [("all", list(train.values()))] + ([(n, [p]) for n, p in train.items()] if len(train) > 1 else [])
    return [{"lifter": name, **lift_and_score(chosen, test, noise, steps)} for name, chosen in parts]


def ceiling(cfg: Any, noises: list[float], steps: int, unlabelled: str | None = None) -> list[dict[str, Any]]:
    """The labels mode: shared keypoints, extent-normalised, at each noise level."""
    import gtahuman.run_data as T
    from gtahuman.body.smpl import BodyModel
    from gtahuman.data.index import SampleIndex

    body_dir = T.ensure_assets(cfg)
    body = BodyModel(body_dir)

    def load(split: str, name: str) -> dict[str, np.ndarray]:
        spec = T.prepare_source(name, cfg.data[split][name], cfg, body_dir)
        return lifting_data(SampleIndex.load(spec.index_dir), body)

    train = {name: load("train", name) for name in cfg.data.train}
    train = {name: part for name, part in train.items() if len(part["targets"])}
    test = load("test", next(iter(cfg.data.test)))
    shared = shared_keypoints([p["keypoints"] for p in (*train.values(), test)])
    for part in (*train.values(), test):
        xy = part["keypoints"][:, shared, :2]
        part["inputs"] = extent_normalised(xy if unlabelled is None else unlabelled_sides(xy, shared, unlabelled))
    results = [{**r, "keypoints": len(shared)} for noise in noises for r in score_all_and_each(train, test, noise, steps)]
    return results


def left_right_swaps(predicted: np.ndarray, labelled: np.ndarray, min_separation: float = 0.125) -> dict[str, float]:
    """Per left/right pair: the fraction of rows (both labelled, the two at least ``min_separation``
    apart, crop units) whose swapped assignment lies nearer the labels than the predicted one."""
    swaps = {}
    for name, (left, right) in LEFT_RIGHT.items():
        p, g = predicted[:, [left, right]], labelled[:, [left, right]]
        usable = (g[:, :, 2] > 0).all(axis=1) & (np.linalg.norm(g[:, 0, :2] - g[:, 1, :2], axis=-1) >= min_separation)
        straight = np.linalg.norm(p - g[..., :2], axis=-1).sum(axis=1)
        swapped = np.linalg.norm(p[:, ::-1] - g[..., :2], axis=-1).sum(axis=1)
        swaps[name] = float((swapped < straight)[usable].mean()) if usable.any() else float("nan")
    return swaps


def shrinkage(predicted: np.ndarray, labelled: np.ndarray) -> dict[str, tuple[float, float]]:
    """Per left/right pair: (slope, correlation) of the predicted against the labelled keypoint
    positions relative to the shoulders' midpoint, both centred over the rows. A slope well below
    1 is a branch that hedges towards the mean pose (a soft-argmax over a broad heatmap does)."""
    out = {}
    for name, pair in LEFT_RIGHT.items():
        xs, ys = [], []
        for k in pair:
            rows = labelled[:, k, 2] > 0
            p = predicted[rows, k] - predicted[rows][:, [16, 17]].mean(axis=1)
            g = labelled[rows, k, :2] - labelled[rows][:, [16, 17], :2].mean(axis=1)
            xs.append(g - g.mean(axis=0))
            ys.append(p - p.mean(axis=0))
        g, p = np.concatenate(xs), np.concatenate(ys)
        out[name] = (float((p * g).sum() / (g * g).sum()), float((p * g).sum() / np.sqrt((p * p).sum() * (g * g).sum())))
    return out


def predicted_keypoints(run_dir: Path, test_name: str | None = None) -> dict[str, dict[str, np.ndarray]]:
    """The run's best checkpoint on each train source with SMPL and on the test set (test-time
    transform): predicted and labelled 2D keypoints (crop units) and the lifting targets."""
    from gtahuman.data.datamodule import MixedDataModule
    from gtahuman.systems.hmr import HMRSystem
    from gtahuman.run_data import datamodule_arguments, ensure_assets, prepare_source

    cfg = load_run_config(run_dir / "config.yaml")
    body_dir = ensure_assets(cfg)
    test_name = test_name or next(iter(cfg.data.test))
    chosen = {**{n: s for n, s in cfg.data.train.items()}, test_name: cfg.data.test[test_name]}
    specs = {name: prepare_source(name, src, cfg, body_dir) for name, src in chosen.items()}
    dm = MixedDataModule(**datamodule_arguments(cfg, {"test": specs}))
    dm.setup("test")
    system = HMRSystem.load_from_checkpoint(str(run_dir / "checkpoints" / "best.ckpt"), map_location="cpu",
                                            body_model_dir=str(body_dir))
    system.eval()
    body = system._body("neutral", torch.device("cpu"))
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, loader in zip(specs, dm.test_dataloader()):
        pred, label, targets, own = [], [], [], []
        with torch.no_grad():
            for batch in loader:
                keep = batch["has_smpl"].bool()
                if not keep.any():
                    continue
                output, _ = system.regressor(batch["img"][keep])
                joints = body(output.betas, output.rotmat[:, 1:], output.rotmat[:, :1]).joints[:, :24]
                own.append((joints - joints[:, :1]).numpy())
                if getattr(output, "keypoints2d_direct", None) is None:
                    raise ValueError(f"{run_dir}: model.arch={cfg.model.arch} predicts no 2D keypoints of its own "
                                     "(--run needs a keypoint branch, model.arch=hmr_kp)")
                pred.append(output.keypoints2d_direct.numpy())
                label.append(batch["keypoints2d"][keep, :KEYPOINTS].numpy())
                targets.append(root_relative_joints(body, batch["smpl_global_orient"][keep].numpy(),
                                                    batch["smpl_body_pose"][keep].numpy(),
                                                    batch["smpl_betas"][keep].numpy()))
        if pred:
            out[name] = {"predicted": np.concatenate(pred), "labelled": np.concatenate(label),
                         "targets": np.concatenate(targets), "own_3d": np.concatenate(own)}
    return out


JOINT_GROUPS = {"torso and head": (0, 1, 2, 3, 6, 9, 12, 13, 14, 15), "knees": (4, 5), "ankles and feet": (7, 8, 10, 11),
                "shoulders and elbows": (16, 17, 18, 19), "wrists and hands": (20, 21, 22, 23)}


def per_joint_group(predicted: np.ndarray, constant: np.ndarray, truth: np.ndarray) -> dict[str, tuple[float, float]]:
    """Per `JOINT_GROUPS` entry: mean joint error (mm) after a similarity Procrustes fit of the
    whole skeleton, of ``predicted`` and of the ``constant`` skeleton (both (N, 24, 3))."""
    from gtahuman.metrics import similarity_procrustes

    truth_t = torch.as_tensor(truth)
    errors = [(1000 * (similarity_procrustes(torch.as_tensor(p, dtype=torch.float32), truth_t) - truth_t).norm(dim=-1)).numpy()
              for p in (predicted, np.broadcast_to(constant, truth.shape).copy())]
    return {name: (float(errors[0][:, list(j)].mean()), float(errors[1][:, list(j)].mean())) for name, j in JOINT_GROUPS.items()}


def run_ceiling(run_dir: Path, steps: int) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """The --run mode: the lifter on the run's own 2D (all keypoints it predicts), swap rates, a
    lifter trained on the labelled 2D and fed the run's predicted 2D, and the run's own 3D per
    joint group against the constant."""
    sets = predicted_keypoints(run_dir)
    test_name = list(sets)[-1]
    test, train = sets.pop(test_name), sets
    for part in (*train.values(), test):
        part["inputs"] = extent_normalised(part["predicted"])
    test["groups"] = np.array(["all"] * len(test["targets"]))
    every = {**train, test_name: test}
    swaps = {name: left_right_swaps(part["predicted"], part["labelled"]) for name, part in every.items()}
    result = lift_and_score(list(train.values()), test, 0.0, steps)
    result["shrinkage"] = {name: shrinkage(part["predicted"], part["labelled"]) for name, part in every.items()}
    # two stages: a lifter that learned from perfect 2D labels, fed the labels or the run's 2D
    shared = shared_keypoints([part["labelled"] for part in every.values()])
    targets = np.concatenate([part["targets"] for part in train.values()])
    lifter = train_lifter(np.concatenate([extent_normalised(p["labelled"][:, shared, :2]) for p in train.values()]),
                          targets, 0.0, steps)
    constant = procrustes_mean(targets)
    truth = torch.as_tensor(test["targets"])
    with torch.no_grad():
        two_stage = {kind: float(1000 * pa_mpjpe(lifter(torch.as_tensor(extent_normalised(test[kind][:, shared, :2])))
                                                 .reshape(-1, 24, 3), truth).mean())
                     for kind in ("labelled", "predicted")}
    result["two_stage"] = two_stage
    result["joint_groups"] = per_joint_group(test["own_3d"], constant, test["targets"])
    return result, swaps


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        print(__doc__)
        return 0
    options = {"--noise": "0,0.03,0.06,0.12", "--steps": "3000", "--run": None, "--unlabelled-sides": None}
    overrides = []
    for i, arg in enumerate(args):
        if arg in options or (i and args[i - 1] in options):
            continue
        overrides.append(arg)
    for key in options:
        if key in args:
            options[key] = args[args.index(key) + 1]
    steps = int(options["--steps"])
    torch.set_num_threads(1)
    if options["--run"] is not None:
        result, swaps = run_ceiling(Path(options["--run"]), steps)
        for name, rates in swaps.items():
            print(f"{name}: left/right swapped " + " ".join(f"{k} {v:.2f}" for k, v in rates.items()))
        for name, fits in result.pop("shrinkage").items():
            print(f"{name}: predicted vs labelled, shoulder-relative (slope / r) "
                  + " ".join(f"{k} {b:.2f}/{r:.2f}" for k, (b, r) in fits.items()))
        print(f"lifted from the run's own 2D: PA-MPJPE {result['pa_mpjpe']:.1f} mm, constant {result['constant']:.1f} mm, "
              f"ratio {result['pa_mpjpe'] / result['constant']:.2f}")
        lab, pred = result["two_stage"]["labelled"], result["two_stage"]["predicted"]
        print(f"a lifter trained on the labelled 2D: from the test's labels {lab:.1f} mm ({lab / result['constant']:.2f}x), "
              f"from the run's 2D {pred:.1f} mm ({pred / result['constant']:.2f}x)")
        for name, (own, const) in result["joint_groups"].items():
            print(f"the run's own 3D, {name}: {own:.1f} mm against the constant's {const:.1f} ({own / const:.2f}x)")
        print(f"ratio: {result['pa_mpjpe'] / result['constant']:.2f}")
        return 0
    unlabelled = options["--unlabelled-sides"]
    results = ceiling(load_config(overrides), [float(v) for v in options["--noise"].split(",")], steps, unlabelled)
    print(f"{results[0]['keypoints']} keypoints labelled in every source"
          + (f"; left/right pairs ({unlabelled}) ordered by image x" if unlabelled else ""))
    for r in results:
        groups = " ".join(f"{g} {v:.2f}" for g, v in r["groups"].items())
        print(f"noise {r['noise']:.2f}, lifter on {r['lifter']}: lifted PA-MPJPE {r['pa_mpjpe']:.1f} mm, "
              f"constant {r['constant']:.1f} mm, ratio {r['pa_mpjpe'] / r['constant']:.2f}; per group: {groups}")
    print(f"ratio: {results[0]['pa_mpjpe'] / results[0]['constant']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

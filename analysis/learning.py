"""Learning curves of one run: the error on what it trains on beside its held-out error, over steps.

    python -m analysis.learning RUN [--out FIGURE.png]

A model that fits its training data better and better while its held-out error stays flat is
memorising, not learning; one whose held-out error sits at the constant predictor's has learned
nothing. This reads ``logs/metrics.csv`` of a run directory (written during training) and
reports, for every validation point, each evaluated set's PA-MPJPE, MPJPE and median global
orientation error: the val sets (held out) and the ``probe_<source>`` sets (fixed, unaugmented
subsets of the train sources, recorded when the run had ``data.train_probe`` > 0). The last
lines compare the end of the run with its start and say which pattern the curves show; the
test result and both baselines come from ``metrics.json`` when the run finished, and from the
test predictions (``predictions/<set>.npz``) how much the predicted body joints vary against the
truth and how they correlate with it: a model whose predictions barely vary has collapsed onto
one pose, however its curves move.

Nothing here judges by the training loss: it mixes terms and weights and is taken on augmented
crops, so only errors measured the same way on both kinds of data are compared.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

METRICS = ("pa_mpjpe", "mpjpe", "orient_deg")
LABELS = {"pa_mpjpe": "PA-MPJPE (mm)", "mpjpe": "MPJPE (mm)", "orient_deg": "orientation error, median (deg)"}
PROBE_PREFIX = "probe_"


@dataclass
class Curves:
    """``values[set][metric]`` = list of (step, value), in step order."""

    steps: list[int]
    values: dict[str, dict[str, list[tuple[int, float]]]]

    @property
    def held_out(self) -> list[str]:
        return [s for s in self.values if not s.startswith(PROBE_PREFIX)]

    @property
    def probes(self) -> list[str]:
        return [s for s in self.values if s.startswith(PROBE_PREFIX)]


def read_curves(run_dir: str | Path) -> Curves:
    """The ``val/<set>/<metric>`` columns of ``RUN/logs/metrics.csv``."""
    path = Path(run_dir) / "logs" / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training log; expected a run directory written by gtahuman.train")
    values: dict[str, dict[str, list[tuple[int, float]]]] = {}
    steps: set[int] = set()
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            for key, cell in row.items():
                parts = (key or "").split("/")
                if len(parts) != 3 or parts[0] != "val" or parts[2] not in METRICS or cell in ("", None):
                    continue
                step = int(float(row["step"]))
                values.setdefault(parts[1], {}).setdefault(parts[2], []).append((step, float(cell)))
                steps.add(step)
    if not values:
        raise ValueError(f"{path}: no val/<set>/<metric> columns; was the run validated (data.val) at least once?")
    for per_metric in values.values():
        for metric, points in per_metric.items():
            per_metric[metric] = sorted(dict(points).items())  # one value per step (a resume may repeat one)
    return Curves(sorted(steps), values)


def _at(points: list[tuple[int, float]], which: int) -> float:
    return points[which][1] if points else math.nan


def verdict(curves: Curves, metric: str = "pa_mpjpe") -> list[str]:
    """Plain sentences: how much the probes and the held-out sets improved from the first to the
    last validation, and the gap between them at the end."""
    lines = []
    held = [curves.values[s][metric] for s in curves.held_out if metric in curves.values[s]]
    probes = [curves.values[s][metric] for s in curves.probes if metric in curves.values[s]]
    if not held:
        return [f"no held-out {metric} recorded"]
    held_first, held_last = _mean([_at(p, 0) for p in held]), _mean([_at(p, -1) for p in held])
    lines.append(f"held-out {metric}: {held_first:.1f} -> {held_last:.1f} "
                 f"({_relative(held_first, held_last)}) from the first to the last validation")
    if not probes:
        lines.append("no train probes recorded (train with data.train_probe=N to see memorisation)")
        return lines
    probe_first, probe_last = _mean([_at(p, 0) for p in probes]), _mean([_at(p, -1) for p in probes])
    lines.append(f"train probes {metric}: {probe_first:.1f} -> {probe_last:.1f} ({_relative(probe_first, probe_last)})")
    gap = held_last - probe_last
    lines.append(f"generalisation gap at the end (held-out minus train): {gap:+.1f}")
    probe_gain, held_gain = probe_first - probe_last, held_first - held_last
    widened = gap - (held_first - probe_first)
    # Memorising: the train error fell and the held-out error kept (almost) still, or the gap
    # between them opened by more than half of what the train error gained.
    if probe_gain > 0 and (held_gain < 0.25 * probe_gain or widened > 0.5 * probe_gain):
        lines.append(f"pattern: MEMORISING: the training error fell by {probe_gain:.1f}, the held-out error "
                     f"by {held_gain:.1f}; the gap opened by {widened:+.1f}")
    elif held_gain > 0:
        lines.append("pattern: learning: the held-out error fell with the training error")
    else:
        lines.append("pattern: not learning: neither error fell")
    return lines


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _relative(first: float, last: float) -> str:
    return f"{100 * (last - first) / first:+.0f} %" if first else "n/a"


def format_table(curves: Curves) -> str:
    sets = curves.held_out + curves.probes
    head = f"{'step':>6} " + " ".join(f"{s[:22]:>24}" for s in sets)
    sub = f"{'':>6} " + " ".join(f"{'PA / MPJPE / orient':>24}" for _ in sets)
    lines = [head, sub]
    for step in curves.steps:
        cells = []
        for s in sets:
            got = {m: dict(curves.values[s].get(m, [])).get(step, math.nan) for m in METRICS}
            cells.append(f"{got['pa_mpjpe']:>7.1f} {got['mpjpe']:>7.1f} {got['orient_deg']:>6.1f}°")
        lines.append(f"{step:>6} " + " ".join(f"{c:>24}" for c in cells))
    return "\n".join(lines)


def baseline_lines(run_dir: Path) -> list[str]:
    """The test sets' result next to the constant predictor and the SMPL mean (metrics.json)."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return ["(run not finished: no metrics.json, no test numbers)"]
    metrics = json.loads(path.read_text())
    lines = []
    for name, summary in metrics.get("test", {}).items():
        constant = metrics.get("constant_baseline", {}).get(name, {})
        smpl_mean = metrics.get("mean_pose_baseline", {}).get(name, {})
        for label, values in (("trained", summary), ("train-mean constant", constant), ("SMPL mean params", smpl_mean)):
            cells = ", ".join(f"{m} {values[m]:.1f}" for m in METRICS if m in values)
            lines.append(f"test {name} {label:<20} {cells}")
        for m in ("mpjpe", "pa_mpjpe"):
            if m in summary and constant.get(m):
                lines.append(f"test {name}: trained / constant {m} = {summary[m] / constant[m]:.2f}")
    return lines


# ------------------------------------------------------------------------- prediction spread
# A model that outputs (nearly) one pose for every image scores like the constant predictor at
# best; the curves alone do not show it. Per body joint: how far predictions and truth spread
# around the truth's mean rotation, and how the two deviations correlate.
MOVING_JOINT_DEG = 2.0  # joints whose truth spreads less than this (they never move) are left out
COLLAPSED_RATIO = 0.3  # predictions spreading less than this share of the truth: one pose for all


@dataclass
class Spread:
    """Body joints (1..23) that move in the truth: mean size (degrees) of the deviations from the
    truth's mean rotation, each set centred on its own mean, of the predictions and of the truth, and the Pearson correlation of the
    two deviation vectors over samples and components (pooled over those joints)."""

    joints: list[int]
    pred_deg: list[float]
    truth_deg: list[float]
    correlation: float
    samples: int

    @property
    def ratio(self) -> float:
        return _mean([p / t for p, t in zip(self.pred_deg, self.truth_deg)])


def prediction_spread(pred_pose, gt_pose) -> Spread:
    """``pred_pose``, ``gt_pose``: (N, 72) axis-angle (root first), as in ``predictions/<set>.npz``."""
    import numpy as np
    from scipy.spatial.transform import Rotation

    pred, truth = (np.asarray(a, np.float64).reshape(len(a), 24, 3) for a in (pred_pose, gt_pose))
    joints, pred_deg, truth_deg, dev_pred, dev_truth = [], [], [], [], []
    for j in range(1, 24):
        centre = Rotation.from_rotvec(truth[:, j]).mean().inv()
        d_truth = (centre * Rotation.from_rotvec(truth[:, j])).as_rotvec()
        d_pred = (centre * Rotation.from_rotvec(pred[:, j])).as_rotvec()
        d_truth, d_pred = d_truth - d_truth.mean(0), d_pred - d_pred.mean(0)
        spread_truth = np.degrees(np.linalg.norm(d_truth, axis=1).mean())
        if spread_truth < MOVING_JOINT_DEG:
            continue
        joints.append(j)
        truth_deg.append(float(spread_truth))
        pred_deg.append(float(np.degrees(np.linalg.norm(d_pred, axis=1).mean())))
        dev_pred.append(d_pred)
        dev_truth.append(d_truth)
    if not joints:
        return Spread([], [], [], math.nan, len(pred))
    a, b = np.concatenate(dev_pred).ravel(), np.concatenate(dev_truth).ravel()
    correlation = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else math.nan
    return Spread(joints, pred_deg, truth_deg, correlation, len(pred))


def spread_lines(run_dir: Path) -> list[str]:
    """One verdict per test set in ``RUN/predictions`` that carries the truth (``gt_pose``)."""
    import numpy as np

    lines = []
    for path in sorted((run_dir / "predictions").glob("*.npz")):
        if path.name.endswith("_features.npz"):
            continue
        with np.load(path, allow_pickle=False) as data:
            if "gt_pose" not in data.files or "pred_pose" not in data.files:
                continue
            keep = data["gt_has_smpl"] > 0 if "gt_has_smpl" in data.files else slice(None)
            spread = prediction_spread(data["pred_pose"][keep], data["gt_pose"][keep])
        if not spread.joints:
            lines.append(f"spread {path.stem}: no body joint moves in the truth")
            continue
        state = ("COLLAPSED: the model gives nearly one pose for every image" if spread.ratio < COLLAPSED_RATIO
                 else "the predictions vary with the images")
        lines.append(f"spread {path.stem}: predicted body joints vary {spread.ratio:.2f}x as much as the truth "
                     f"({_mean(spread.pred_deg):.1f} vs {_mean(spread.truth_deg):.1f} deg over {len(spread.joints)} "
                     f"moving joints), prediction-truth correlation r = {spread.correlation:.2f}; {state}")
    return lines


def plot(curves: Curves, out: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.4), constrained_layout=True)
    for ax, metric in zip(axes, METRICS):
        for s in curves.held_out + curves.probes:
            points = curves.values[s].get(metric, [])
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o", ms=3, linestyle="--" if s.startswith(PROBE_PREFIX) else "-",
                        label=s + (" (train)" if s.startswith(PROBE_PREFIX) else " (held out)"))
        ax.set_xlabel("step")
        ax.set_title(LABELS[metric], fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.learning", description=__doc__.split("\n")[0])
    parser.add_argument("run", help="a run directory (checkpoints/<experiment>/<run_id>)")
    parser.add_argument("--out", default=None, help="figure path (default: RUN/learning.png)")
    args = parser.parse_args(argv)
    run = Path(args.run)
    curves = read_curves(run)
    print(format_table(curves))
    print()
    for line in verdict(curves) + verdict(curves, "orient_deg") + baseline_lines(run) + spread_lines(run):
        print(line)
    figure = plot(curves, Path(args.out) if args.out else run / "learning.png", f"learning curves: {run}")
    print(f"figure: {figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Error per bin of a factor next to the data density per bin (paper Fig. 9, "Impact of data scarcity").

    python -m analysis.per_bin RUN [--set wild_test] [--metric pa_mpjpe] [--bins 12]
                               [--edges cam_elevation=-90,-30,0,30,90] [--no-train-density] [--out DIR]

For each factor (camera elevation and azimuth, pose distance to the mean pose and to the T-pose,
occluded-joint ratio, truncation) the evaluated samples of one set are put into bins; each bin
gets its sample count, its mean error (mm) and its density, and the density of the run's training
mix in the same bins (`analysis.training_mix`). Density = fraction of the in-range samples (of
finite factor value) in a bin. As in the paper, the density of e) occlusion and f) truncation is
drawn in log scale. Bins: ``--bins N`` equal-width bins over each factor's natural range (angles,
ratios) or over the data (pose distances), or explicit ``--edges``. A bin holds [lo, hi), the last
one [lo, hi]; samples outside the edges, or with NaN factor or error, are left out and counted.
Each bin's mean error carries a 95 % t-interval over its samples (``--min-count``: bins with fewer
samples, default 10, are drawn without a point). Frames of one sequence are not independent, so
read the interval as a lower bound on the uncertainty. Panels whose samples fill fewer than two
bins are dropped. Writes ``per_bin_<set>.png`` and ``per_bin_<set>.csv`` (default into
``<run>/analysis/``).
"""
from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy import stats as scipy_stats

from analysis.rundirs import Run, factor_key, load_run
from analysis.training_mix import training_mix
from gtahuman.atomic import atomic_output, atomic_write_text

FIG9_FACTORS = ("cam_elevation", "cam_azimuth", "pose_dist_mean", "pose_dist_tpose", "occluded_ratio", "truncation")
FACTOR_LABELS = {
    "cam_elevation": "camera elevation (deg)", "cam_azimuth": "camera azimuth (deg)",
    "pose_dist_mean": "pose distance to mean pose (mm)", "pose_dist_tpose": "pose distance to T-pose (mm)",
    "occluded_ratio": "occluded-joint ratio", "self_occluded_ratio": "self-occluded-joint ratio",
    "truncation": "truncation (joints outside the image)", "daytime_hours": "time of day (h)",
}
LOG_DENSITY = frozenset({"occluded_ratio", "truncation"})  # paper Fig. 9 e, f
# Natural ranges; factors missing here (pose distances) are binned over the data's own range.
FACTOR_RANGES = {"cam_elevation": (-90.0, 90.0), "cam_azimuth": (-180.0, 180.0), "occluded_ratio": (0.0, 1.0),
                 "self_occluded_ratio": (0.0, 1.0), "truncation": (0.0, 1.0), "daytime_hours": (0.0, 24.0)}
DEFAULT_BINS = {"cam_elevation": 18, "cam_azimuth": 18, "occluded_ratio": 10, "self_occluded_ratio": 10,
                "truncation": 10, "daytime_hours": 24}
FALLBACK_BINS = 15
MIN_COUNT = 10  # bins with fewer evaluated samples get no point on the error curve
Bins = int | Sequence[float] | None


def bin_edges(factor: str, values: np.ndarray, bins: Bins = None) -> np.ndarray:
    """Edges for ``factor``: explicit (increasing), or ``bins`` equal-width bins (default per factor)."""
    if bins is not None and not isinstance(bins, (int, np.integer)):
        edges = np.asarray(bins, dtype=np.float64)
        if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
            raise ValueError(f"bin edges of '{factor}' must be >= 2 increasing numbers, got {list(edges)}")
        return edges
    count = int(bins) if bins is not None else DEFAULT_BINS.get(factor, FALLBACK_BINS)
    if count < 1:
        raise ValueError(f"number of bins of '{factor}' must be >= 1, got {count}")
    if factor in FACTOR_RANGES:
        low, high = FACTOR_RANGES[factor]
    else:
        finite = np.asarray(values, dtype=np.float64)
        finite = finite[np.isfinite(finite)]
        if finite.size == 0:
            raise ValueError(f"factor '{factor}' has no finite value to choose bins from; give explicit edges")
        low, high = float(finite.min()), float(finite.max())
        high = high if high > low else low + 1.0
    return np.linspace(low, high, count + 1)


def assign_bins(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value ([lo, hi), the last bin [lo, hi]); -1 outside the edges or NaN."""
    values = np.asarray(values, dtype=np.float64)
    index = np.searchsorted(edges, values, side="right") - 1
    index[values == edges[-1]] = len(edges) - 2
    index[~np.isfinite(values) | (values < edges[0]) | (values > edges[-1])] = -1
    return index


@dataclass(frozen=True)
class BinStats:
    """One factor's bins: evaluated counts, mean error, densities (fractions summing to 1)."""

    factor: str
    metric: str
    edges: np.ndarray
    count: np.ndarray  # evaluated samples per bin
    mean_error: np.ndarray  # NaN for an empty bin
    eval_density: np.ndarray
    train_density: np.ndarray | None  # None: training factors not used
    left_out: int  # evaluated samples outside the edges or with a NaN factor / error
    std_error: np.ndarray | None = None  # standard error of each bin's mean (NaN below two samples)

    @property
    def half_width(self) -> np.ndarray:
        """Half-width of each bin's 95 % t-interval (NaN below two samples)."""
        se = self.std_error if self.std_error is not None else np.full(len(self.count), np.nan)
        with np.errstate(invalid="ignore"):
            return scipy_stats.t.ppf(0.975, np.maximum(self.count - 1, 1)) * np.where(self.count > 1, se, np.nan)

    @property
    def centers(self) -> np.ndarray:
        return 0.5 * (self.edges[:-1] + self.edges[1:])

    def rows(self) -> list[dict[str, float | int | str]]:
        train = self.train_density if self.train_density is not None else np.full(len(self.count), np.nan)
        return [{"factor": self.factor, "bin": i, "low": self.edges[i], "high": self.edges[i + 1],
                 "center": self.centers[i], "count": int(self.count[i]), f"mean_{self.metric}": self.mean_error[i],
                 "ci95_half_width": self.half_width[i], "eval_density": self.eval_density[i],
                 "train_density": train[i]} for i in range(len(self.count))]


def _density(index: np.ndarray, weights: np.ndarray, bins: int) -> np.ndarray:
    inside = index >= 0
    mass = np.bincount(index[inside], weights=weights[inside], minlength=bins)
    total = mass.sum()
    return mass / total if total > 0 else np.full(bins, np.nan)


def per_bin_statistics(factor: str, values: np.ndarray, errors: np.ndarray, edges: np.ndarray, metric: str = "pa_mpjpe",
                       train_values: np.ndarray | None = None, train_weights: np.ndarray | None = None) -> BinStats:
    """Bins of one factor for evaluated samples (``values``, ``errors``) and, optionally, the
    training mix (``train_values`` with per-sample ``train_weights``, default equal)."""
    values, errors = np.asarray(values, dtype=np.float64), np.asarray(errors, dtype=np.float64)
    if values.shape != errors.shape or values.ndim != 1:
        raise ValueError(f"factor '{factor}': values {values.shape} and errors {errors.shape} must be the same (N,)")
    bins = len(edges) - 1
    index = assign_bins(values, edges)
    index[~np.isfinite(errors)] = -1
    used = index >= 0
    count = np.bincount(index[used], minlength=bins)
    sums = np.bincount(index[used], weights=errors[used], minlength=bins)
    squares = np.bincount(index[used], weights=errors[used] ** 2, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_error = np.where(count > 0, sums / np.maximum(count, 1), np.nan)
        variance = (squares - count * mean_error**2) / np.maximum(count - 1, 1)  # sample variance, ddof 1
        std_error = np.where(count > 1, np.sqrt(np.maximum(variance, 0.0) / np.maximum(count, 1)), np.nan)
    train_density = None
    if train_values is not None:
        train_values = np.asarray(train_values, dtype=np.float64)
        weights = np.ones_like(train_values) if train_weights is None else np.asarray(train_weights, dtype=np.float64)
        train_density = _density(assign_bins(train_values, edges), weights, bins)
    return BinStats(factor, metric, np.asarray(edges, dtype=np.float64), count, mean_error,
                    _density(index, np.ones(len(index)), bins), train_density, int((~used).sum()), std_error)


def analyse_run(run: Run, set_name: str | None = None, metric: str = "pa_mpjpe",
                factors: Sequence[str] = FIG9_FACTORS, bins: Bins | Mapping[str, Bins] = None,
                use_training_mix: bool = True) -> list[BinStats]:
    """Per-bin statistics of every factor on one evaluated set of ``run`` (default: its first test set)."""
    set_name = set_name or run.default_test_set()
    columns = run.predictions(set_name, required=["sample_id", metric, *(factor_key(f) for f in factors)])
    mix = training_mix(run, tuple(factors)) if use_training_mix else None
    result = []
    for factor in factors:
        values = columns[factor_key(factor)]
        train_values, train_weights = mix.weighted(factor) if mix is not None else (None, None)
        chosen = bins.get(factor) if isinstance(bins, Mapping) else bins
        pool = values if train_values is None else np.concatenate([values, train_values])
        edges = bin_edges(factor, pool, chosen)
        result.append(per_bin_statistics(factor, values, columns[metric], edges, metric, train_values, train_weights))
    return result


def plot_per_bin(stats: Sequence[BinStats], title: str = "", columns: int = 3, min_count: int = MIN_COUNT) -> Figure:
    """One panel per factor whose samples fill two bins or more: density bars (training mix, else
    evaluated; log where the paper uses it) with the evaluated density as a step line, and on a
    twin axis the mean error per bin with its 95 % interval and sample count (bins under
    ``min_count`` samples get no point)."""
    stats = [item for item in stats if (item.count > 0).sum() >= 2] or list(stats[:1])
    columns = max(1, min(columns, len(stats)))
    rows = -(-len(stats) // columns)
    figure = Figure(figsize=(4.2 * columns, 3.2 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, item in zip(axes, stats):
        widths = np.diff(item.edges)
        bars = item.train_density if item.train_density is not None else item.eval_density
        ax.bar(item.edges[:-1], bars, width=widths, align="edge", color="tab:blue", alpha=0.45,
               label="training mix" if item.train_density is not None else "evaluated")
        if item.train_density is not None:
            ax.stairs(item.eval_density, item.edges, color="tab:blue", linestyle="--", label="evaluated")
        if item.factor in LOG_DENSITY:
            ax.set_yscale("log", nonpositive="clip")  # "mask" would hide bars standing on 0
        ax.set_xlabel(FACTOR_LABELS.get(item.factor, item.factor))
        ax.set_ylabel("density" + (" (log)" if item.factor in LOG_DENSITY else ""))
        twin = ax.twinx()
        shown = item.count >= min_count
        twin.errorbar(item.centers[shown], item.mean_error[shown], yerr=item.half_width[shown], fmt="o-",
                      color="tab:red", markersize=3, capsize=2, linewidth=1)
        for x, y, n in zip(item.centers[shown], item.mean_error[shown], item.count[shown]):
            twin.annotate(str(int(n)), (x, y), textcoords="offset points", xytext=(0, 5), ha="center",
                          fontsize=6, color="tab:red")
        twin.set_ylabel(f"mean {item.metric.upper().replace('_', '-')} (mm), 95 % CI", color="tab:red")
        ax.legend(fontsize=7, loc="upper left")
        if item.count.sum() == 0:
            ax.text(0.5, 0.5, "no evaluated sample\nwith a finite value", transform=ax.transAxes, ha="center")
    for ax in axes[len(stats):]:
        ax.set_visible(False)
    if title:
        figure.suptitle(title)
    return figure


def write_csv(path: Path, stats: Sequence[BinStats]) -> None:
    rows = [row for item in stats for row in item.rows()]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def save_figure(figure: Figure, path: Path, dpi: int = 110) -> None:
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=dpi)


def _parse_edges(items: Sequence[str]) -> dict[str, list[float]]:
    edges = {}
    for item in items:
        factor, _, numbers = item.partition("=")
        try:
            edges[factor] = [float(x) for x in numbers.split(",")]
        except ValueError:
            raise ValueError(f"--edges {item!r}: expected FACTOR=n1,n2,... (numbers)") from None
    return edges


def main(argv: Sequence[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a finished run directory")
    parser.add_argument("--set", help="evaluated set (default: the run's first test set)")
    parser.add_argument("--metric", default="pa_mpjpe", help="per-sample error column (default pa_mpjpe)")
    parser.add_argument("--factors", nargs="+", default=list(FIG9_FACTORS))
    parser.add_argument("--bins", type=int, help="equal-width bins per factor (default per factor)")
    parser.add_argument("--edges", action="append", default=[], help="FACTOR=e0,e1,... explicit edges (repeatable)")
    parser.add_argument("--no-train-density", action="store_true", help="skip the training-mix density")
    parser.add_argument("--min-count", type=int, default=MIN_COUNT,
                        help=f"bins with fewer evaluated samples get no point (default {MIN_COUNT})")
    parser.add_argument("--out", type=Path, help="output folder (default <run>/analysis)")
    args = parser.parse_args(argv)
    try:
        run = load_run(args.run)
    except FileNotFoundError as err:
        parser.error(str(err))  # a clean usage error (exit 2), not a traceback
    set_name = args.set or run.default_test_set()
    bins: dict[str, Bins] = {f: args.bins for f in args.factors}
    bins.update(_parse_edges(args.edges))
    stats = analyse_run(run, set_name, args.metric, args.factors, bins, use_training_mix=not args.no_train_density)
    out = args.out or run.path / "analysis"
    toy = " (toy body model)" if run.is_toy else ""
    figure = plot_per_bin(stats, f"{run.label}: {set_name}{toy}", min_count=args.min_count)
    paths = [out / f"per_bin_{set_name}.png", out / f"per_bin_{set_name}.csv"]
    save_figure(figure, paths[0])
    write_csv(paths[1], stats)
    for path in paths:
        print(path)
    return paths


if __name__ == "__main__":
    main()

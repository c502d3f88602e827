"""The findings' controls: does an effect appear where the world says it should, and only there?

Two experiments whose answer is known in advance if the suite measures what it claims (issue 18):

- **World controls.** The BT gain (blended training minus real only) on each GTA-Human world the
  runs used (`data.miniworld_variant`). On the default world GTA-Human covers factors of the wild
  test that the studio lacks, so BT should win (positive control); on ``gta_studio`` GTA-Human is
  restricted to the studio's cameras, actions, shapes and looks, so the gain should vanish within
  noise (negative control). Real-only runs do not depend on the world variant (only the GTA-Human
  domain changes), so every BT run is compared with the same real-only cell.
- **Thinned factor** (the paper's Fig. 9 as an experiment, not a correlation): two arms of the
  scarcity sampler that differ in the kept fraction of some bins of one factor. Per bin of that
  factor on the test set, the mean error of each run, then the Welch interval of thinned minus
  unthinned over seeds. The claim holds when the error rises, resolved, in the thinned bins and
  nowhere else.

Both return a `Table` and the page's sentences; neither writes a conclusion in advance.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analysis.comparisons import compare
from analysis.stats import format_difference, welch_interval_from_samples
from analysis.table_format import Cell, Table
from analysis.tables import METRIC_NAMES, Entry, all_labels, group, plain_setting
from gtahuman.miniworld.domains import VARIANTS

REAL_ONLY = "(none: real only)"
ROLES = {"standard": "positive control", "gta_studio": "negative control"}


def world_controls(entries: Sequence[Entry], metrics: Sequence[str] = ("mpjpe", "pa_mpjpe")) -> dict:
    """(method, backbone, GTA-Human world or REAL_ONLY, mixture) -> metric -> Cell, mini-world runs
    with all labels, no adaptation and the mixture sampler (the setting of Table 2)."""

    def key(e: Entry):
        w = e.what
        if w.world == "-" or not (plain_setting(w) and all_labels(w) and w.has_real) or w.mixture not in ("-", "BT"):
            return None
        return (w.method, w.backbone, w.world if w.has_synthetic else REAL_ONLY, w.mixture)

    return group(entries, key, metrics)


def answer_world_controls(entries: Sequence[Entry], metric: str = "pa_mpjpe",
                          metrics: Sequence[str] = ("mpjpe", "pa_mpjpe")) -> tuple[Table, list[str]]:
    cells = world_controls(entries, metrics)
    names = [METRIC_NAMES.get(m, m) for m in metrics]
    table = Table("controls", "Controls: blended training (BT) per GTA-Human world, against real only",
                  ["Method", "Backbone", "GTA-Human world", "Role"], names)
    order = sorted(cells, key=lambda k: (k[0], k[1], k[2] != REAL_ONLY, k[2] != "standard", k[2]))
    lines = []
    for method, backbone, world, mixture in order:
        role = "baseline" if world == REAL_ONLY else ROLES.get(world, "gap split")
        table.add([method, backbone, world, role], [cells[(method, backbone, world, mixture)][m] for m in metrics])
        real = cells.get((method, backbone, REAL_ONLY, "-"))
        if world == REAL_ONLY or real is None:
            continue
        purpose = VARIANTS[world].purpose if world in VARIANTS else "a world variant"
        lines.append(f"- {role}, world `{world}` ({purpose}): " + compare(
            metric, real[metric], cells[(method, backbone, world, mixture)][metric],
            f"{method} BT", f"{method} on real data only"))
    table.drop_constant_label("Backbone")
    if not lines:
        lines = ["- not answered: needs a real-only run and BT runs on mini worlds "
                 "(data.miniworld_variant=standard and gta_studio)."]
    return table, lines


@dataclass(frozen=True)
class ThinnedPair:
    """One scarcity experiment: the factor, its bins, which bins the thinned arm thins, the arms."""

    factor: str
    edges: tuple[float, ...]
    keep: tuple[float, ...]  # the thinned arm's kept fraction per bin
    thinned: tuple[Entry, ...]
    unthinned: tuple[Entry, ...]


def thinned_pairs(entries: Sequence[Entry]) -> list[ThinnedPair]:
    """Scarcity-sampler runs paired by (method, backbone, world, factor, bins, thinned sources):
    the arm keeping every bin whole against each arm thinning some."""
    arms: dict[tuple, dict[tuple[float, ...], list[Entry]]] = {}
    for e in entries:
        if e.what.sampler != "scarcity" or e.what.adaptation is not None:
            continue
        args = e.run.config.data.sampler_args
        edges = tuple(float(x) for x in args.bins)
        keep = args.keep_fraction
        keep = tuple(float(x) for x in keep) if not isinstance(keep, (int, float)) else (float(keep),) * (len(edges) - 1)
        sources = tuple(args.get("apply_to_sources") or ())
        setting = (e.what.method, e.what.backbone, e.what.world, str(args.factor), edges, sources)
        arms.setdefault(setting, {}).setdefault(keep, []).append(e)
    pairs = []
    for (_, _, _, factor, edges, _), by_keep in arms.items():
        whole = tuple(by_keep.get((1.0,) * (len(edges) - 1), ()))
        for keep, runs in by_keep.items():
            if whole and min(keep) < 1.0:
                pairs.append(ThinnedPair(factor, edges, keep, tuple(runs), whole))
    return pairs


def per_bin_means(entry: Entry, factor: str, edges: Sequence[float], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean ``metric`` per bin, samples per bin) of one run's test predictions; NaN for empty bins."""
    columns = entry.run.predictions(entry.set_name, required=(metric, f"factor_{factor}"))
    values, errors = np.asarray(columns[f"factor_{factor}"], float), np.asarray(columns[metric], float)
    bins = np.digitize(values, edges[1:-1])  # bin b = [edges[b], edges[b+1]); outside -> first / last
    inside = np.isfinite(values) & np.isfinite(errors) & (values >= edges[0]) & (values <= edges[-1])
    counts = np.bincount(bins[inside], minlength=len(edges) - 1)
    sums = np.bincount(bins[inside], weights=errors[inside], minlength=len(edges) - 1)
    with np.errstate(invalid="ignore"):
        return sums / counts, counts


def answer_thinning(entries: Sequence[Entry], metric: str = "pa_mpjpe") -> tuple[list[Table], list[str]]:
    tables, lines = [], []
    name = METRIC_NAMES.get(metric, metric)
    for pair in thinned_pairs(entries):
        try:
            thin = [per_bin_means(e, pair.factor, pair.edges, metric) for e in pair.thinned]
            whole = [per_bin_means(e, pair.factor, pair.edges, metric) for e in pair.unthinned]
        except (FileNotFoundError, KeyError) as err:
            lines.append(f"- thinned {pair.factor}: no per-sample predictions with that factor ({err}).")
            continue
        table = Table(f"thinned_{pair.factor}_{metric}", f"Thinned {pair.factor}: {name} per bin of the test set",
                      ["Bin", "Kept in training", "Test samples"], ["Unthinned", "Thinned", "Change (95 % CI)"])
        rising, elsewhere = [], []
        for b in range(len(pair.edges) - 1):
            label = f"[{pair.edges[b]:g}, {pair.edges[b + 1]:g})"
            before, after = Cell(tuple(m[b] for m, _ in whole)), Cell(tuple(m[b] for m, _ in thin))
            change = welch_interval_from_samples(before.values, after.values)
            table.add([label, f"{100 * pair.keep[b]:g} %", str(int(whole[0][1][b]))],
                      [before, after, format_difference(change)])
            if pair.keep[b] < 1.0:
                rising.append((label, change))
            elif change.resolved:
                elsewhere.append((label, change))
        up = [label for label, change in rising if change.resolved and change.diff > 0]
        lines.append(
            f"- {pair.factor}, {name}, {len(pair.thinned)} thinned vs {len(pair.unthinned)} unthinned runs: the error rises, "
            f"resolved, in {len(up)} of the {len(rising)} thinned bins ({', '.join(up) or 'none'}); "
            + (f"resolved changes elsewhere: {', '.join(f'{label} ({c.diff:+.1f} mm)' for label, c in elsewhere)}."
               if elsewhere else "no resolved change in the other bins.")
            + (" The thinned bins behave as the data predicts." if up and len(up) == len(rising) and not elsewhere
               else " This is not the clean pattern the scarcity hypothesis predicts."))
        tables.append(table)
    return tables, lines or ["- not answered: needs scarcity-sampler runs that thin some bins of a factor and "
                             "runs of the same sampler that keep every bin (findings_thinned_mini, "
                             "findings_unthinned_mini)."]


def answer_constant(entries: Sequence[Entry], bar: float = 0.7) -> list[str]:
    """Does every run beat the strongest trivial baseline (the training data's best constant) on its
    test set? Ratios run / constant for MPJPE and PA-MPJPE, and the runs above ``bar`` on PA-MPJPE."""
    lines = []
    for metric in ("mpjpe", "pa_mpjpe"):
        ratios = {e.run.label: e.run.ratio_to_constant(e.set_name, metric) for e in entries}
        known = {label: r for label, r in ratios.items() if np.isfinite(r)}
        if not known:
            continue
        worst = max(known, key=known.get)
        lines.append(f"- {METRIC_NAMES[metric]}: run / best constant from {min(known.values()):.2f} to "
                     f"{max(known.values()):.2f} over {len(known)} runs (worst: {worst})"
                     + (f"; {len(ratios) - len(known)} runs have no constant baseline." if len(known) < len(ratios)
                        else "."))
        if metric == "pa_mpjpe":
            above = sorted(label for label, r in known.items() if r > bar)
            lines.append(f"- {len(known) - len(above)} of {len(known)} runs reach at most {bar:g}x the constant's "
                         f"PA-MPJPE" + (f"; above it: {', '.join(above[:6])}{' ...' if len(above) > 6 else ''}."
                                        if above else "."))
    return lines or ["- not answered: no run reports the best constant predictor (metrics.json constant_baseline)."]

"""Finished runs collected into the paper's tables 2, 6, 7, 8, 9 and Fig. 8 (mean ± std over seeds).

    python -m analysis.tables RUN_OR_FOLDER... [--out DIR] [--set NAME] [--real-pool N]

What a run is comes from its config (`analysis.rundirs.describe_run`), never from its name
alone, so a sweep's trial runs and renamed experiments land in the right cell. Runs that share
a table position (usually seeds) are averaged: ``mean ± std`` (sample std over runs).

- Table 2: method (HMR, HMR+, SPIN) x mixture ("-" real only, BT, FT) with the change against
  the same method's "-" row; supervision of all labels, no adaptation, the mixture sampler.
- Table 6: real only, GTA-Human only, BT, and BT with each domain-adaptation objective.
- Table 7: real ratio x total amount (``sampler=amount``), PA-MPJPE.
- Fig. 8: error against the amount of GTA-Human as a multiple of the real data: amount-sampler
  runs that use the whole real pool (``real_ratio x total_multiple = 1``, or ``real_ratio x
  total = --real-pool``) plus real-only runs (0x). Runs with ``fixed_synthetic_subset`` (nested
  amounts) form their own line, apart from runs that redraw GTA-Human each epoch (shares).

Runs on a control world of the mini world (``data.miniworld_variant`` other than standard) are
left out of every table here; `analysis.findings` compares them in its controls section.
- Table 8: HMR+ with the GTA-Human source supervised by keypoints, SMPL, both, or absent.
- Table 9: HMR+ per backbone, real only against +GTA-Human (BT), and the change.

Numbers are those of ``metrics.json`` for one test set per run (``--set``, default each run's
first). Writes ``table{2,6,7,8,9}.{md,csv}``, ``fig8.{png,csv}`` and ``tables.md`` (all of them).
"""
from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from analysis.per_bin import save_figure
from analysis.rundirs import ADAPTATION_LABELS, CONSTANT_BASELINE, Run, RunDescriptor, describe_run, find_runs
from analysis.table_format import MISSING, Cell, Table
from gtahuman.atomic import atomic_write_text

log = logging.getLogger(__name__)

METRIC_NAMES = {"mpjpe": "MPJPE", "pa_mpjpe": "PA-MPJPE", "pve": "PVE", "orient_deg": "ORIENT (deg, median)"}
METHOD_ORDER = {"HMR": 0, "HMR+": 1, "SPIN": 2, "PARE": 3}
MIXTURE_ORDER = {"-": 0, "BT": 1, "FT": 2, "GTA only": 3}
SUPERVISION_ROWS = {None: ("-", "-"), "keypoints": ("X", "-"), "smpl": ("-", "X"), "both": ("X", "X")}
TOY_NOTE = "numbers from the toy body model and the mini world, not SMPL or real data"


@dataclass(frozen=True)
class Entry:
    """A run, what it is, and the test set its numbers are read from."""

    run: Run
    what: RunDescriptor
    set_name: str

    def value(self, metric: str) -> float:
        return self.run.test_metric(self.set_name, metric)

    def baseline(self, metric: str, key: str = CONSTANT_BASELINE) -> float:
        """The run's baseline on the same set (default the train data's constant; NaN if absent)."""
        return self.run.baseline_metric(self.set_name, metric, key)


def collect(runs: Sequence[Run], set_name: str | None = None) -> tuple[list[Entry], list[str]]:
    """Entries of ``runs`` and notes naming those left out: video runs (Table 3 is not built
    here) and, with ``set_name``, runs without that test set."""
    entries, no_set, video = [], [], []
    for run in runs:
        what = describe_run(run)
        if what.task != "image":
            video.append(run.label)
        elif set_name is not None and set_name not in run.test_sets():
            no_set.append(run.label)
        else:
            entries.append(Entry(run, what, set_name or run.default_test_set()))
    notes = [f"left out (no test set '{set_name}'): {', '.join(no_set)}"] if no_set else []
    return entries, notes + ([f"left out (task=video): {', '.join(video)}"] if video else [])


def group(entries: Sequence[Entry], key: Callable[[Entry], Hashable | None],
          metrics: Sequence[str]) -> dict[Hashable, dict[str, Cell]]:
    """Cells per key (entries whose key is None are not part of the table)."""
    cells: dict[Hashable, dict[str, Cell]] = {}
    for entry in entries:
        k = key(entry)
        if k is None:
            continue
        row = cells.setdefault(k, {m: Cell() for m in metrics})
        for metric in metrics:
            row[metric] = row[metric].plus(entry.value(metric), entry.what.seed, str(entry.run.path))
    return cells


def _common_notes(entries: Sequence[Entry]) -> list[str]:
    sets = sorted({e.set_name for e in entries})
    notes = [f"test set: {', '.join(sets)}; values in mm, mean ± std over runs (seeds)"] if sets else []
    return notes + ([TOY_NOTE] if any(e.what.toy for e in entries) else [])


def all_labels(w: RunDescriptor) -> bool:
    """The synthetic sources (if any) are supervised with every label (Table 8 varies this)."""
    return w.synthetic_supervision in (None, "both")


PAPER_WORLDS = ("standard", "-")  # the default mini world and the user's own data; variants are controls


def paper_world(entries: Sequence[Entry]) -> list[Entry]:
    """Entries whose run used the default mini world or real data: the paper's tables and Fig. 8
    leave the control worlds (``data.miniworld_variant``) to the findings' controls section."""
    return [e for e in entries if e.what.world in PAPER_WORLDS]


def plain_setting(w: RunDescriptor) -> bool:
    """All labels, no adaptation, the default mixture sampler: the setting of Tables 2, 8, 9."""
    return w.adaptation is None and w.sampler == "mixture"


# ------------------------------------------------------------------------------------ tables
def table2(entries: Sequence[Entry], metrics: Sequence[str] = ("mpjpe", "pa_mpjpe")) -> Table:
    def key(e: Entry):
        w = e.what
        ok = plain_setting(w) and all_labels(w) and w.mixture != "GTA only"
        return (w.method, w.mixture, w.backbone) if ok else None

    cells = group(entries, key, metrics)
    names = [METRIC_NAMES.get(m, m) for m in metrics]
    table = Table("table2", "Table 2: data mixture (BT: blended training, FT: finetuning)",
                  ["Method", "Mixture", "Backbone"], names + [f"Δ {n}" for n in names])
    order = sorted(cells, key=lambda k: (METHOD_ORDER.get(k[0], 9), k[2], MIXTURE_ORDER[k[1]]))
    for method, mixture, backbone in order:
        row = cells[(method, mixture, backbone)]
        base = cells.get((method, "-", backbone))
        deltas = [row[m].mean - base[m].mean if base and mixture != "-" else float("nan") for m in metrics]
        table.add([method, mixture, backbone], [row[m] for m in metrics] + deltas)
    table.drop_constant_label("Backbone")
    table.notes += _common_notes(entries) + ["Δ: change against the same method's real-only row (negative = better)"]
    return table


def table6(entries: Sequence[Entry], metrics: Sequence[str] = ("mpjpe", "pa_mpjpe")) -> Table:
    def key(e: Entry):
        w = e.what
        if w.sampler != "mixture" or w.mixture == "FT" or w.evaluated_only or not all_labels(w):
            return None
        if not w.has_synthetic:
            setting = "real only"
        elif not w.has_real:
            setting = "GTA-Human only"
        else:
            setting = "BT" if w.adaptation is None else f"BT + {ADAPTATION_LABELS.get(w.adaptation, w.adaptation)}"
        return (w.method, w.backbone, setting, w.has_real, w.has_synthetic)

    cells = group(entries, key, metrics)
    order = {"real only": 0, "GTA-Human only": 1, "BT": 2}
    table = Table("table6", "Table 6: domain adaptation (real + GTA-Human)",
                  ["Method", "Backbone", "Real", "GTA-Human", "Setting"], [METRIC_NAMES.get(m, m) for m in metrics])
    for k in sorted(cells, key=lambda k: (METHOD_ORDER.get(k[0], 9), k[1], order.get(k[2], 3), k[2])):
        method, backbone, setting, real, synthetic = k
        labels = [method, backbone, "X" if real else "-", "X" if synthetic else "-", setting]
        table.add(labels, [cells[k][m] for m in metrics])
    table.drop_constant_label("Backbone")
    table.notes += _common_notes(entries)
    if not any(e.what.adaptation for e in entries):
        table.notes.append("no run with a domain-adaptation objective (adaptation.method / sim2real_checkpoint)")
    return table


def amount_label(w: RunDescriptor) -> tuple[float, str]:
    """(sort key, column label) of a Table 7 amount."""
    if w.amount_total is not None:
        return float(w.amount_total), f"{w.amount_total / 1000:g}K" if w.amount_total >= 1000 else str(w.amount_total)
    return float(w.amount_multiple or 0.0), f"{w.amount_multiple:g}× real"


def table7(entries: Sequence[Entry], metric: str = "pa_mpjpe") -> Table:
    chosen = [e for e in entries if e.what.sampler == "amount" and e.what.real_ratio is not None
              and e.what.adaptation is None and not e.what.evaluated_only]
    cells = group(chosen, lambda e: (e.what.real_ratio, amount_label(e.what)), [metric])
    ratios = sorted({k[0] for k in cells})
    amounts = sorted({k[1] for k in cells})
    table = Table("table7", f"Table 7: real ratio x total amount ({METRIC_NAMES.get(metric, metric)})",
                  ["Real ratio"], [label for _, label in amounts])
    for ratio in ratios:
        table.add([f"{100 * ratio:.3g}%"], [cells.get((ratio, a), {}).get(metric, Cell()) for a in amounts])
    table.notes += _common_notes(chosen) + [f"{MISSING}: no finished run of that cell"]
    kinds = sorted({(e.what.method, e.what.backbone) for e in chosen})
    if len(kinds) > 1:
        table.notes.append(f"runs of several methods/backbones are pooled: {kinds}")
    return table


def table7_grid(table: Table) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(row labels, column labels, means, stds) of a Table 7 for heat maps (NaN = no run)."""
    means = np.array([[v.mean if isinstance(v, Cell) else np.nan for v in values] for _, values in table.rows])
    stds = np.array([[v.std if isinstance(v, Cell) else np.nan for v in values] for _, values in table.rows])
    shape = (len(table.rows), len(table.value_columns))
    return [labels[0] for labels, _ in table.rows], list(table.value_columns), means.reshape(shape), stds.reshape(shape)


def plot_table7_heatmap(table: Table, title: str = "") -> Figure:
    """Table 7 as a heat map: real ratio (rows) x amount (columns), each cell annotated."""
    ratios, amounts, means, stds = table7_grid(table)
    figure = Figure(figsize=(1.3 * max(len(amounts), 2) + 2.0, 0.6 * max(len(ratios), 2) + 1.6), layout="constrained")
    ax = figure.subplots()
    if means.size == 0:
        ax.text(0.5, 0.5, "no amount-sampler run", transform=ax.transAxes, ha="center")
        return figure
    image = ax.imshow(np.ma.masked_invalid(means), cmap="viridis_r", aspect="auto")
    figure.colorbar(image, ax=ax, label=table.title.split("(")[-1].rstrip(")") + " (mm)")
    low, high = np.nanmin(means), np.nanmax(means)
    for (i, j), mean in np.ndenumerate(means):
        spread = f"\n± {stds[i, j]:.1f}" if np.isfinite(stds[i, j]) else ""
        text = f"{mean:.1f}{spread}" if np.isfinite(mean) else MISSING
        dark = np.isfinite(mean) and high > low and (mean - low) / (high - low) > 0.6  # viridis_r: high = dark
        ax.text(j, i, text, ha="center", va="center", fontsize=8,
                color="white" if dark else "black" if np.isfinite(mean) else "grey")
    ax.set_xticks(range(len(amounts)), amounts)
    ax.set_yticks(range(len(ratios)), ratios)
    ax.set_xlabel("total amount")
    ax.set_ylabel("real ratio")
    ax.set_title(title or table.title, fontsize=9)
    return figure


def table8(entries: Sequence[Entry], metrics: Sequence[str] = ("mpjpe", "pa_mpjpe")) -> Table:
    def key(e: Entry):
        w = e.what
        ok = plain_setting(w) and w.method == "HMR+" and w.mixture in ("-", "BT") and w.has_real
        return (w.backbone, *SUPERVISION_ROWS[w.synthetic_supervision]) if ok else None

    cells = group(entries, key, metrics)
    table = Table("table8", "Table 8: supervision of the GTA-Human source (HMR+)",
                  ["Backbone", "Keypoints", "SMPL"], [METRIC_NAMES.get(m, m) for m in metrics])
    rank = {v: i for i, v in enumerate(SUPERVISION_ROWS.values())}
    for k in sorted(cells, key=lambda k: (k[0], rank[k[1:]])):
        table.add(list(k), [cells[k][m] for m in metrics])
    table.drop_constant_label("Backbone")
    table.notes += _common_notes(entries) + ["row '- -': no GTA-Human in training"]
    return table


def table9(entries: Sequence[Entry], metric: str = "pa_mpjpe") -> Table:
    def key(e: Entry):
        w = e.what
        ok = plain_setting(w) and w.method == "HMR+" and w.mixture in ("-", "BT") and w.has_real
        return (w.backbone, w.mixture) if ok and all_labels(w) else None

    cells = group(entries, key, [metric])
    name = METRIC_NAMES.get(metric, metric)
    table = Table("table9", f"Table 9: backbones, real only vs +GTA-Human ({name}, HMR+)",
                  ["Backbone"], ["Real", "+GTA-Human", "Δ"])
    for backbone in sorted({k[0] for k in cells}):
        real, mixed = (cells.get((backbone, m), {}).get(metric, Cell()) for m in ("-", "BT"))
        table.add([backbone], [real, mixed, mixed.mean - real.mean])
    table.notes += _common_notes(entries)
    return table


# ------------------------------------------------------------------------------------ Fig. 8
def fig8_points(entries: Sequence[Entry], metric: str = "pa_mpjpe",
                real_pool: int | None = None) -> dict[tuple[str, str], dict[float, Cell]]:
    """(method, backbone) -> GTA multiple -> cell (see the module docstring for which runs)."""

    def key(e: Entry):
        w = e.what
        if w.adaptation is not None or w.evaluated_only or w.mixture == "FT" or not all_labels(w):
            return None
        k = w.gta_multiple
        if k is None:
            return None
        if w.sampler == "amount" and not _whole_real_pool(w, real_pool):
            return None
        if w.sampler != "amount" and (k > 0 or w.sampler != "mixture"):
            return None
        # Nested fixed subsets are amounts; redrawn ones are shares of one pool: separate lines.
        backbone = f"{w.backbone}, nested GTA subsets" if w.fixed_synthetic else w.backbone
        return (w.method, backbone, round(k, 3))

    cells = group(paper_world(entries), key, [metric])
    points: dict[tuple[str, str], dict[float, Cell]] = {}
    for (method, backbone, k), row in sorted(cells.items()):
        points.setdefault((method, backbone), {})[k] = row[metric]
    return {line: row for line, row in points.items() if any(k > 0 for k in row)}  # a lone 0x is no trend


def _whole_real_pool(w: RunDescriptor, real_pool: int | None) -> bool:
    if w.real_ratio is None:
        return False
    if w.amount_multiple is not None:
        return math.isclose(w.real_ratio * w.amount_multiple, 1.0, abs_tol=0.01)
    return real_pool is not None and w.amount_total is not None and \
        math.isclose(w.real_ratio * w.amount_total, real_pool, rel_tol=0.01)


def fig8_table(points: dict[tuple[str, str], dict[float, Cell]], metric: str = "pa_mpjpe") -> Table:
    table = Table("fig8", f"Fig. 8: {METRIC_NAMES.get(metric, metric)} against the amount of GTA-Human",
                  ["Method", "Backbone", "GTA-Human (x real)"], [METRIC_NAMES.get(metric, metric)])
    for (method, backbone), row in points.items():
        for k, cell in row.items():
            table.add([method, backbone, f"{k:g}"], [cell])
    table.drop_constant_label("Backbone")
    return table


def plot_fig8(points: dict[tuple[str, str], dict[float, Cell]], metric: str = "pa_mpjpe", title: str = "") -> Figure:
    figure = Figure(figsize=(5.0, 3.6), layout="constrained")
    ax = figure.subplots()
    for (method, backbone), row in points.items():
        xs = sorted(row)
        means = [row[x].mean for x in xs]
        stds = [row[x].std if math.isfinite(row[x].std) else 0.0 for x in xs]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=f"{method} ({backbone})")
    ax.set_xlabel("GTA-Human amount (multiples of the real data)")
    ax.set_ylabel(f"{METRIC_NAMES.get(metric, metric)} (mm)")
    if points:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no run of this kind", transform=ax.transAxes, ha="center")
    ax.set_title(title or "Fig. 8: amount of GTA-Human data", fontsize=10)
    return figure


# ------------------------------------------------------------------------------------ writing
def build_tables(entries: Sequence[Entry], metric: str = "pa_mpjpe") -> list[Table]:
    entries = paper_world(entries)
    return [table2(entries), table6(entries), table7(entries, metric), table8(entries), table9(entries, metric)]


def write_tables(runs: Sequence[Run], out: Path, set_name: str | None = None, metric: str = "pa_mpjpe",
                 real_pool: int | None = None) -> dict[str, Path]:
    """Every table as Markdown + CSV, Fig. 8 as PNG + CSV, and ``tables.md`` with all of them."""
    entries, notes = collect(runs, set_name)
    tables = build_tables(entries, metric)
    points = fig8_points(entries, metric, real_pool)
    tables.append(fig8_table(points, metric))
    written: dict[str, Path] = {}
    for table in tables:
        table.notes += notes
        for suffix, text in (("md", table.to_markdown()), ("csv", table.to_csv())):
            written[f"{table.name}.{suffix}"] = out / f"{table.name}.{suffix}"
            atomic_write_text(written[f"{table.name}.{suffix}"], text)
    toy = " (toy body model)" if any(e.what.toy for e in entries) else ""
    written["fig8.png"] = out / "fig8.png"
    save_figure(plot_fig8(points, metric, f"Fig. 8: amount of GTA-Human{toy}"), written["fig8.png"])
    body = "\n".join(t.to_markdown() for t in tables)
    written["tables.md"] = out / "tables.md"
    atomic_write_text(written["tables.md"], f"# Tables from {len(entries)} runs\n\n{body}\n![Fig. 8](fig8.png)\n")
    return written


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories or folders holding them")
    parser.add_argument("--out", type=Path, default=Path("analysis_out"))
    parser.add_argument("--set", help="test set to report (default: each run's first)")
    parser.add_argument("--metric", default="pa_mpjpe", help="metric of Table 7, Table 9 and Fig. 8")
    parser.add_argument("--real-pool", type=int, help="real samples in all (Fig. 8 with absolute amounts)")
    args = parser.parse_args(argv)
    try:
        runs = find_runs(args.runs)
    except FileNotFoundError as err:
        parser.error(str(err))  # a clean usage error (exit 2), not a traceback
    written = write_tables(runs, args.out, args.set, args.metric, args.real_pool)
    print(f"{len(runs)} runs -> {written['tables.md']}")
    return written


if __name__ == "__main__":
    main()

"""A FINDINGS.md-style report from finished runs: the tables, the figures, and each question of the
study answered from the numbers (no conclusion is written in advance).

    python -m analysis.findings RUN_OR_FOLDER... [--out analysis_out/FINDINGS.md] [--set NAME] [--embedding umap|pca|none]

Questions, each answered only when the runs it needs exist (otherwise the report says which are
missing): does GTA-Human help (Table 2), does domain adaptation add to it (Table 6), does the
amount of GTA-Human matter (Fig. 8), which real ratio is best per amount (Table 7), is SMPL
supervision key (Table 8), do bigger backbones benefit (Table 9), how separable are real and
GTA-Human features (Fig. 7 + a domain classifier), and is the error higher where training data is
scarce (Fig. 9). A difference counts as resolved (at 95 %) when its Welch t-interval over the
per-seed values excludes 0 (`analysis.stats.welch_interval`: Welch–Satterthwaite degrees of
freedom, so with 2–3 seeds the multiplier on the standard error is 2.8–4.3, not 2); the interval,
t and p are printed with it. A side with a single run leaves the difference unresolved (its spread
is unknown). The amount question reports the least-squares slope over every per-seed point with
its 95 % t-interval and says whether the whole interval is below 0. Figures go to
``<out folder>/findings_files/``.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from analysis.comparisons import compare
from analysis.controls import answer_constant, answer_thinning, answer_world_controls
from analysis.domain_classifier import domain_separability
from analysis.learning import plot, read_curves, spread_lines, verdict
from analysis.per_bin import analyse_run, plot_per_bin, save_figure, write_csv
from analysis.rundirs import Run, describe_run, find_runs
from analysis.stats import (
    finite_values,
    format_difference,
    format_slope,
    mean_interval,
    slope_interval,
    welch_interval_from_samples,
)
from analysis.table_format import Table
from analysis.tables import (
    METRIC_NAMES,
    PAPER_WORLDS,
    TOY_NOTE,
    Entry,
    build_tables,
    collect,
    fig8_points,
    fig8_table,
    plain_setting,
    plot_fig8,
    table7_grid,
)
from analysis.umap_features import EMBEDDINGS, embed_runs, plot_panels
from gtahuman.atomic import atomic_write_text


def _cells(table: Table) -> dict[tuple[str, ...], list]:
    return {tuple(labels): values for labels, values in table.rows}


def _column(table: Table, name: str) -> int | None:
    return table.value_columns.index(name) if name in table.value_columns else None


def answer_mixture(table: Table, metric: str) -> list[str]:
    rows, at = _cells(table), _column(table, METRIC_NAMES[metric])
    width = len(table.label_columns)
    lines = []
    for labels, values in rows.items():
        method, mixture = labels[0], labels[1]
        base = rows.get((method, "-", *labels[2:width]))
        if mixture in ("BT", "FT") and base is not None:
            sentence = compare(metric, base[at], values[at], f"{method} {mixture}", f"{method} on real data only")
            lines.append("- " + sentence)
    return lines or ["- not answered: needs a real-only run and a BT or FT run of the same method."]


def answer_adaptation(table: Table, metric: str) -> list[str]:
    rows, at = _cells(table), _column(table, METRIC_NAMES[metric])
    lines = []
    for labels, values in rows.items():
        setting = labels[-1]
        base = rows.get((*labels[:-1], "BT"))
        if setting.startswith("BT + ") and base is not None:
            lines.append("- " + compare(metric, base[at], values[at], setting, "BT without adaptation"))
    return lines or ["- not answered: needs a BT run and a BT run with a domain-adaptation objective."]


def answer_amount(points: dict, metric: str) -> list[str]:
    lines = []
    for (method, backbone), row in points.items():
        xs = np.array(sorted(row), dtype=np.float64)
        if len(xs) < 2:
            continue
        means = np.array([row[x].mean for x in xs])
        per_seed = [(x, value) for x in xs for value in finite_values(row[x].values)]
        trend = slope_interval([x for x, _ in per_seed], [value for _, value in per_seed])
        steps = np.sign(np.diff(means))
        shape = ("falls at every step" if np.all(steps < 0) else "rises at every step" if np.all(steps > 0)
                 else "is not monotonic")
        lines.append(f"- {method} ({backbone}): from {xs[0]:g}x to {xs[-1]:g}x GTA-Human, "
                     + compare(metric, row[xs[0]], row[xs[-1]], f"{xs[-1]:g}x", f"{xs[0]:g}x")
                     + f" The mean error {shape} over {len(xs)} amounts; least-squares slope over the "
                     f"{trend.n} per-seed runs {format_slope(trend)}.")
    return lines or ["- not answered: needs amount-sampler runs using the whole real pool at two or more amounts."]


def answer_ratio(table: Table) -> list[str]:
    ratios, amounts, means, _ = table7_grid(table)
    lines = []
    for j, amount in enumerate(amounts):
        column = means[:, j]
        if np.isfinite(column).sum() >= 2:
            best = int(np.nanargmin(column))
            others = ", ".join(f"{ratios[i]} {column[i]:.1f}" for i in range(len(ratios))
                               if i != best and np.isfinite(column[i]))
            lines.append(f"- {amount}: lowest error at {ratios[best]} real ({column[best]:.1f} mm; {others}).")
    return lines or ["- not answered: needs two or more real ratios at one amount (sampler=amount)."]


def answer_supervision(table: Table, metric: str) -> list[str]:
    rows, at = _cells(table), _column(table, METRIC_NAMES[metric])
    names = {("-", "-"): "no GTA-Human", ("X", "-"): "GTA-Human keypoints only", ("-", "X"): "GTA-Human SMPL only",
             ("X", "X"): "GTA-Human keypoints + SMPL"}
    lines = []
    for labels, values in rows.items():
        head, kind = labels[:-2], labels[-2:]
        smpl_only, none = rows.get((*head, "-", "X")), rows.get((*head, "-", "-"))
        if kind == ("X", "-") and smpl_only is not None:
            lines.append("- " + compare(metric, values[at], smpl_only[at], names[("-", "X")], names[kind]))
        if kind != ("-", "-") and none is not None:
            lines.append("- " + compare(metric, none[at], values[at], names[kind], names[("-", "-")]))
    return lines or ["- not answered: needs Table 8 rows (keypoints-only, SMPL-only or both, and no GTA-Human)."]


def answer_backbones(table: Table, metric: str) -> list[str]:
    lines = ["- " + compare(metric, values[0], values[1], f"+GTA-Human with {labels[0]}", "real only")
             for labels, values in table.rows if values[0].n and values[1].n]
    return lines or ["- not answered: needs real-only and BT runs of one backbone."]


def answer_domain_gap(runs: Sequence[Run], folder: Path, embedding: str | None, link: str) -> list[str]:
    with_both = [r for r in runs if {"real", "synthetic"} <= {r.group_of(s) for s in r.feature_files()}]
    lines, by_setting = [], {}
    for run in with_both:
        result = domain_separability(run, folds=min(5, _smallest_group(run)))
        lines.append(f"- {run.label}: a linear classifier tells real from GTA-Human features with held-out accuracy "
                     f"{result.accuracy:.2f} ± {result.std:.2f} (chance {result.chance:.2f}; "
                     f"{sum(result.counts)} samples).")
        what = describe_run(run)
        setting = f"{what.method} {what.mixture}" + (f" + {what.adaptation.upper()}" if what.adaptation else "")
        by_setting.setdefault(setting, []).append(result.accuracy)
    lines += _accuracy_over_seeds(by_setting)
    if embedding and with_both:  # only runs with both domains' features: a one-domain panel shows no gap
        panels = embed_runs(with_both, EMBEDDINGS[embedding], progress=False)
        save_figure(plot_panels(panels, embedding.upper()), folder / "features.png")
        lines.append(f"\n![features]({link}/features.png)")
    return lines or ["- not answered: no run has features of both real and GTA-Human sets "
                     "(python -m experiments.evaluate ckpt=RUN/checkpoints/best.ckpt set=<real>,<gta>)."]


def _accuracy_over_seeds(by_setting: dict[str, list[float]]) -> list[str]:
    """Per setting with several seeds: mean domain-classifier accuracy and its 95 % t-interval over
    seeds; against the setting without adaptation, the Welch interval of the change."""
    lines = []
    for setting, values in by_setting.items():
        if len(values) >= 2:
            mean, low, high = mean_interval(values)
            lines.append(f"- {setting}, {len(values)} seeds: accuracy {mean:.2f}, 95 % CI [{low:.2f}, {high:.2f}].")
    for setting, values in by_setting.items():
        base = by_setting.get(setting.split(" + ")[0])
        if " + " in setting and base is not None:
            change = welch_interval_from_samples(base, values)
            lines.append(f"- {setting} against {setting.split(' + ')[0]}: accuracy change "
                         f"{format_difference(change, unit='', digits=2)}.")
    return lines


def answer_learning(entries: Sequence[Entry], folder: Path, link: str) -> list[str]:
    """Seed 0 of each setting: do training and held-out errors fall together (learning) or does
    only the training error fall (memorising), and do predictions vary with the images
    (`analysis.learning`)? The BT run's curves as a figure."""
    lines, plotted = [], False
    for entry in entries:
        if entry.what.seed != 0:
            continue
        try:
            curves = read_curves(entry.run.path)
        except (FileNotFoundError, ValueError) as err:
            lines.append(f"- {entry.run.label}: no learning curves ({err}).")
            continue
        said = verdict(curves) + spread_lines(entry.run.path)
        lines.append(f"- {entry.run.label}: " + "; ".join(said) + ".")
        if entry.what.mixture == "BT" and entry.what.sampler == "mixture" and entry.what.adaptation is None \
                and entry.what.world in PAPER_WORLDS and not plotted:
            plot(curves, folder / "learning.png", f"{entry.run.label}: train probes (dashed) vs held out")
            plotted = True
            lines.append(f"\n  ![learning curves]({link}/learning.png)")
    return lines or ["- not answered: no run logged validation curves."]


def _smallest_group(run: Run) -> int:
    sizes = {}
    for name in run.feature_files():
        sizes[run.group_of(name)] = sizes.get(run.group_of(name), 0) + len(run.features(name)[1])
    return max(2, min(sizes.get("real", 0), sizes.get("synthetic", 0)))


def answer_scarcity(entries: Sequence[Entry], folder: Path, link: str, metric: str) -> list[str]:
    lines = []
    firsts: dict[tuple[str, str], Entry] = {}  # one blended run per (method, backbone): seeds look alike
    for e in entries:  # the plain BT recipe on the default world, not a sampler or world control
        w = e.what
        if w.mixture == "BT" and plain_setting(w) and w.world in PAPER_WORLDS and e.run.prediction_sets():
            firsts.setdefault((w.method, w.backbone), e)
    for entry in firsts.values():
        try:
            stats, source = analyse_run(entry.run, entry.set_name, metric), "training mix"
        except (FileNotFoundError, KeyError) as err:
            try:
                stats, source = analyse_run(entry.run, entry.set_name, metric, use_training_mix=False), "evaluated set"
            except (FileNotFoundError, KeyError):
                lines.append(f"- {entry.run.label}: no per-sample predictions with factors ({err}).")
                continue
        name = entry.run.label.replace("/", "_")
        save_figure(plot_per_bin(stats, entry.run.label), folder / f"per_bin_{name}.png")
        write_csv(folder / f"per_bin_{name}.csv", stats)
        parts = []
        for item in stats:
            density = item.train_density if item.train_density is not None else item.eval_density
            used = (item.count > 0) & (density > 0)
            if used.sum() >= 3:
                rho = spearmanr(density[used], item.mean_error[used]).statistic
                parts.append(f"{item.factor} ρ = {rho:+.2f} ({int(used.sum())} bins)")
        lines.append(f"- {entry.run.label}: rank correlation of {source} density and mean error per bin "
                     f"(negative = higher error where data is scarce): {'; '.join(parts) or 'too few filled bins'}."
                     f"\n\n  ![per bin]({link}/per_bin_{name}.png)")
    return lines or ["- not answered: needs a BT run with per-sample predictions."]


def findings_markdown(runs: Sequence[Run], out: Path, set_name: str | None = None, metric: str = "pa_mpjpe",
                      embedding: str | None = "umap") -> str:
    """Write the report to ``out`` (figures and tables into ``<out folder>/findings_files``)."""
    entries, notes = collect(runs, set_name)
    folder, link = out.parent / "findings_files", "findings_files"
    folder.mkdir(parents=True, exist_ok=True)
    two, six, seven, eight, nine = build_tables(entries, metric)
    points = fig8_points(entries, metric)
    save_figure(plot_fig8(points, metric), folder / "fig8.png")
    for table in (two, six, seven, eight, nine, fig8_table(points, metric)):
        atomic_write_text(folder / f"{table.name}.csv", table.to_csv())
    used = [e.run for e in entries]
    controls, control_lines = answer_world_controls(entries, metric)
    thinned, thinned_lines = answer_thinning(entries, metric)
    if metric != "mpjpe":  # camera elevation moves the root's orientation, which PA-MPJPE aligns away
        more, more_lines = answer_thinning(entries, "mpjpe")
        thinned = thinned + more
        thinned_lines = thinned_lines + [line for line in more_lines if line not in thinned_lines]
    for table in (controls, *thinned):
        atomic_write_text(folder / f"{table.name}.csv", table.to_csv())
    sections = [
        ("Does every run beat the best constant predictor?", None, answer_constant(entries)),
        ("Do the runs learn or memorise? (train probes vs held out)", None, answer_learning(entries, folder, link)),
        ("Does GTA-Human help? (Table 2)", two, answer_mixture(two, metric)),
        ("Does domain adaptation add to blended training? (Table 6)", six, answer_adaptation(six, metric)),
        ("Does the amount of GTA-Human matter? (Fig. 8)", fig8_table(points, metric),
         answer_amount(points, metric) + [f"\n![Fig. 8]({link}/fig8.png)"]),
        ("Which real ratio is best at each amount? (Table 7)", seven, answer_ratio(seven)),
        ("Is SMPL supervision key? (Table 8)", eight, answer_supervision(eight, metric)),
        ("Do bigger backbones benefit? (Table 9)", nine, answer_backbones(nine, metric)),
        ("How far apart are real and GTA-Human features? (Fig. 7)", None,
         answer_domain_gap(used, folder, embedding, link)),
        ("Is the error higher where training data is scarce? (Fig. 9)", None,
         answer_scarcity(entries, folder, link, metric)),
        ("Controls: does the BT gain appear only where GTA-Human adds coverage?", controls, control_lines),
        ("Thinning one factor: does the error rise in exactly the thinned bins?", thinned, thinned_lines),
    ]
    toy = any(e.what.toy for e in entries)
    head = [f"# Findings from {len(entries)} runs", "",
            "Generated by `python -m analysis.findings` from the run directories below; every statement is "
            "computed from their numbers.", ""]
    head += [f"- {TOY_NOTE}."] if toy else []
    head += [f"- {n}" for n in notes] + ["", "Runs: " + ", ".join(f"`{r.label}`" for r in used), ""]
    body = []
    for number, (title, table, answers) in enumerate(sections, 1):
        tables = table if isinstance(table, list) else [] if table is None else [table]
        body += [f"## {number}. {title}", ""] + [line for t in tables for line in (t.to_markdown(), "")]
        body += ["**From the numbers:**", ""] + answers + [""]
    text = "\n".join(head + body)
    atomic_write_text(out, text)
    return text


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories or folders holding them")
    parser.add_argument("--out", type=Path, default=Path("analysis_out/FINDINGS.md"),
                        help="the page (figures and CSVs beside it in findings_files/); default "
                             "analysis_out/FINDINGS.md: the tracked docs/FINDINGS.md only when asked")
    parser.add_argument("--set", help="test set (default: each run's first)")
    parser.add_argument("--metric", default="pa_mpjpe")
    parser.add_argument("--embedding", choices=[*EMBEDDINGS, "none"], default="umap")
    args = parser.parse_args(argv)
    findings_markdown(find_runs(args.runs), args.out, args.set, args.metric,
                      None if args.embedding == "none" else args.embedding)
    print(args.out)
    return args.out


if __name__ == "__main__":
    main()

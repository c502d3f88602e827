"""What a sweep leaves in its folder: the trial table (CSV + Markdown), the best trial, for
two parameters a heat map (paper Table 7: real ratio x total amount), and Optuna's own views of
the study: optimisation history, intermediate values (every validation), slices over each
parameter and parameter importances (its matplotlib backend). A view the study cannot give yet
(importances need two complete trials) is listed in trials.md with the reason instead.

Rows are the trials the study has run or is running (queued ones are left out): number, state,
objective, parameters, test metrics, run directory, and why a trial failed, was not applicable
(the paper's N/A cells) or was a retry of an interrupted one.
"""
from __future__ import annotations

import csv
import io
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from omegaconf import DictConfig
from optuna.trial import FrozenTrial, TrialState

from gtahuman.atomic import atomic_open, atomic_write_text
from gtahuman.sweep.config import grid_values

TABLE_CSV, TABLE_MD, BEST_JSON, HEATMAP_PNG = "trials.csv", "trials.md", "best.json", "heatmap.png"
# file -> (Optuna's matplotlib view, complete trials it needs)
OPTUNA_VIEWS = {"history.png": ("plot_optimization_history", 1), "intermediate.png": ("plot_intermediate_values", 1),
                "slice.png": ("plot_slice", 1), "importance.png": ("plot_param_importances", 2)}


def trial_rows(study: optuna.Study, param_names: list[str]) -> list[dict[str, Any]]:
    """One dict per trial (not WAITING), in trial-number order."""
    rows = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if t.state == TrialState.WAITING:
            continue
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and \
            t.datetime_start else None
        row: dict[str, Any] = {"number": t.number, "state": t.state.name, "value": t.value}
        row.update({name: t.params.get(name) for name in param_names})
        row.update({k: v for k, v in sorted(t.user_attrs.items()) if k.startswith("test/")})
        row["duration_s"] = None if duration is None else round(duration, 1)
        row["retry_of"] = t.system_attrs.get("failed_trial")
        row["note"] = t.user_attrs.get("not_applicable") and "N/A" or t.user_attrs.get("fail_reason", "")
        row["run_dir"] = t.user_attrs.get("run_dir", "")
        rows.append(row)
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value).replace("|", "/").replace("\n", " ")


def to_csv(rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return out.getvalue()


def to_markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no trials yet)\n"
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(k)) for k in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not complete:
        return None
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1.0
    return min(complete, key=lambda t: (sign * t.value, t.number))


def _position(values: list[Any], value: Any) -> int | None:
    """Index of ``value`` among the axis values (numbers compared with a tolerance: a range's
    grid points and the sampled values may differ in the last bits)."""
    for k, candidate in enumerate(values):
        if candidate == value or (isinstance(value, (int, float)) and isinstance(candidate, (int, float))
                                  and math.isclose(candidate, value, rel_tol=1e-9, abs_tol=1e-12)):
            return k
    return None


def heatmap_grid(rows: list[dict[str, Any]], row_param: str, col_param: str, row_values: list[Any],
                 col_values: list[Any], column: str = "value") -> np.ndarray:
    """Table of ``column`` over (row value, column value); NaN where no COMPLETE trial is (N/A,
    pruned, not run). Several COMPLETE trials of one cell (cannot happen in a grid) are averaged."""
    sums = np.zeros((len(row_values), len(col_values)))
    counts = np.zeros_like(sums)
    for row in rows:
        i, j = _position(row_values, row[row_param]), _position(col_values, row[col_param])
        if row["state"] == "COMPLETE" and row.get(column) is not None and i is not None and j is not None:
            sums[i, j] += row[column]
            counts[i, j] += 1
    with np.errstate(invalid="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def heatmap_notes(rows: list[dict[str, Any]], row_param: str, col_param: str, row_values: list[Any],
                  col_values: list[Any]) -> np.ndarray:
    """What an empty cell means: "N/A" (the data cannot give this mix), "pruned", or "" (not run)."""
    notes = np.full((len(row_values), len(col_values)), "", dtype=object)
    for row in rows:
        i, j = _position(row_values, row[row_param]), _position(col_values, row[col_param])
        if i is not None and j is not None:
            if row["note"] == "N/A" or (row["state"] == "PRUNED" and notes[i, j] != "N/A"):
                notes[i, j] = "N/A" if row["note"] == "N/A" else "pruned"
    return notes


# What the mixing sweeps' parameters mean, for the heat map's axes (the key follows in brackets)
PARAM_LABELS = {"data.real_ratio": "real share of the samples", "data.sampler_args.total": "total amount (samples)",
                "data.sampler_args.total_multiple": "total amount (x the real pool)",
                "data.sampler_args.synthetic_multiple": "GTA-Human amount (x the real data)"}


def param_label(key: str) -> str:
    return f"{PARAM_LABELS[key]} [{key}]" if key in PARAM_LABELS else key


def draw_heatmap(panels: list[tuple[str, np.ndarray]], notes: np.ndarray, row_param: str, col_param: str,
                 row_values: list[Any], col_values: list[Any], path: Path, title: str) -> Any:
    """Write the heat map to ``path``; returns the Figure."""
    from matplotlib.figure import Figure  # Agg canvas, no pyplot state: safe in any process

    fig = Figure(figsize=(4.2 * len(panels) + 0.8, 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (label, table) in zip(axes[0], panels):
        shown = np.ma.masked_invalid(table)
        image = ax.imshow(shown, cmap="viridis_r", aspect="auto")
        ax.set_xticks(range(len(col_values)), [_cell(v) for v in col_values])
        ax.set_yticks(range(len(row_values)), [_cell(v) for v in row_values])
        ax.set_xlabel(param_label(col_param), fontsize=8)
        ax.set_ylabel(param_label(row_param), fontsize=8)
        ax.set_title(label, fontsize=9)
        for (i, j), v in np.ndenumerate(table):
            ax.text(j, i, notes[i, j] if np.isnan(v) else f"{v:.1f}", ha="center", va="center", fontsize=8,
                    bbox=None if np.isnan(v) else dict(facecolor="white", alpha=0.7, linewidth=0, pad=1))
        fig.colorbar(image, ax=ax, fraction=0.046).set_label(label.split(" (")[0] + " (mm)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:  # workers ending together must not interleave bytes
        fig.savefig(handle, format="png", dpi=110)
    return fig


def draw_optuna_views(study: optuna.Study, out_dir: Path, metric: str) -> tuple[dict[str, Path], dict[str, str]]:
    """Optuna's views of the study as PNGs (written, skipped with the reason)."""
    import matplotlib.pyplot as plt  # Optuna's views draw on pyplot figures; each is closed after saving
    from optuna.visualization import matplotlib as views  # matplotlib: only when a report draws

    complete = sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    written, skipped = {}, {}
    for name, (view, needed) in OPTUNA_VIEWS.items():
        if complete < needed:
            skipped[name] = f"needs {needed} complete trials; the study has {complete}"
            continue
        kwargs = {} if view == "plot_intermediate_values" else {"target_name": f"{metric} (objective)"}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                axes = getattr(views, view)(study, **kwargs)
        except (ValueError, RuntimeError) as err:  # e.g. importances when no parameter varies yet
            skipped[name] = str(err).splitlines()[0]
            continue
        first = np.ravel(axes)[0]
        fig = first.figure
        caution = "; fewer than 10: noise, not evidence" if view == "plot_param_importances" and complete < 10 else ""
        title = fig._suptitle.get_text() if fig._suptitle else (first.get_title() or first.get_title(loc="left"))
        fig.suptitle(f"{title} "
                     f"({complete} complete trials{caution})", fontsize=10)
        if view == "plot_intermediate_values":
            first.set_ylabel(f"{metric} at each validation")
            first.set_xlabel("validation (reported step)")
            first.set_title("")
        elif view != "plot_slice":
            first.set_title("")
            first.set_title("", loc="left")
        with atomic_open(out_dir / name, "wb") as handle:  # workers ending together must not interleave bytes
            fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        written[name.removesuffix(".png")] = out_dir / name
    return written, skipped


def heatmap_axes(cfg: DictConfig) -> tuple[str, str] | None:
    """The two parameters of the heat map: the configured ones, else (a grid sweep) the first
    two of the space; None when there is nothing to draw as a grid."""
    rows, cols = cfg.report.heatmap_rows, cfg.report.heatmap_cols
    if rows and cols:
        return str(rows), str(cols)
    names = list(cfg.space.keys())
    return (names[0], names[1]) if cfg.sampler.name == "grid" and len(names) >= 2 else None


def write_report(study: optuna.Study, cfg: DictConfig, out_dir: Path, metric: str) -> dict[str, Path]:
    """Write trials.csv, trials.md, best.json, Optuna's views and (for two discrete parameters)
    heatmap.png."""
    names = list(cfg.space.keys())
    rows = trial_rows(study, names)
    written = {"csv": out_dir / TABLE_CSV, "markdown": out_dir / TABLE_MD, "best": out_dir / BEST_JSON}
    atomic_write_text(written["csv"], to_csv(rows))
    views, skipped = draw_optuna_views(study, out_dir, metric)
    figures = [f"- `{path.name}`" for path in views.values()] + [f"- `{name}`: not drawn: {why}"
                                                                  for name, why in skipped.items()]
    atomic_write_text(written["markdown"], f"# Sweep {cfg.name}: {metric} ({cfg.direction})\n\n" + to_markdown(rows)
                      + "\n## Figures\n\n" + "\n".join(figures) + "\n")
    written.update(views)
    best = best_trial(study)
    summary = {"study": cfg.name, "metric": metric, "direction": cfg.direction,
               "finished": sum(r["state"] != "RUNNING" for r in rows)}
    if best is not None:
        summary.update(number=best.number, value=best.value, params=best.params,
                       run_dir=best.user_attrs.get("run_dir"),
                       test={k: v for k, v in best.user_attrs.items() if k.startswith("test/")})
    atomic_write_text(written["best"], json.dumps(summary, indent=2, sort_keys=True) + "\n")
    axes = heatmap_axes(cfg)
    if axes is not None and all(a in cfg.space for a in axes):
        row_param, col_param = axes
        row_values, col_values = (grid_values(a, cfg.space[a]) for a in axes)
        panels = [(f"{metric} (objective, best over validations)",
                   heatmap_grid(rows, row_param, col_param, row_values, col_values))]
        suffix = "/" + cfg.report.test_metric
        tests = sorted({k for r in rows for k in r if k.startswith("test/") and k.endswith(suffix)})
        if tests:
            panels.append((f"{tests[0]} (best checkpoint)",
                           heatmap_grid(rows, row_param, col_param, row_values, col_values, tests[0])))
        written["heatmap"] = out_dir / HEATMAP_PNG
        notes = heatmap_notes(rows, row_param, col_param, row_values, col_values)
        draw_heatmap(panels, notes, row_param, col_param, row_values, col_values, written["heatmap"],
                     f"sweep {cfg.name} (mm; N/A: the data cannot give this mix)")
    return written

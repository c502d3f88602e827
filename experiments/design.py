"""What each row of a table trains on, before anyone trains (issue 19).

    python -m experiments.design TABLE [--mini] [--sizes NAME=ROWS,...] [key=value ...]

TABLE: ``table2``, ``table6``, ``table7`` (the real-data rows; ``--mini`` for their ``_mini``
versions) or ``findings`` (the mini findings set, seed 0). For every row: optimiser steps, batch
per loader, and samples seen, unique samples and pool per source, counted from the samplers the
run would build (`gtahuman.data.budget`). For every comparison the table makes: the config keys
that differ between the row and the row it is compared with (its declared factor, and anything
else) and how the budgets differ. A comparison whose rows differ in optimiser steps or in samples
per step is marked UNCONTROLLED: its difference holds more than its factor (counted at the end,
unless the paper's own protocol differs so, `DECLARED`: then it is said, not counted).

Real rows need no files: each source's rows come from the sample counts of docs/DATA.md, by file
name (`NOMINAL_ROWS`; GTA-Human's 4x file is not documented and is assumed 1.2 M), or from
``--sizes name=rows,...``. The mini rows read the prepared mini world (prepared when missing).
Fine-tuning rows count their own stage only; video rows are not counted.
"""
from __future__ import annotations

import posixpath
import sys
from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf

from gtahuman.config import ConfigError, load_config
from gtahuman.data.budget import Budget, config_budget, differences
from gtahuman.data.crop_cache import CROP_MARGIN
from gtahuman.data.mixing import MixPart
from gtahuman.data.sampler_plans import SamplerConfigError
from gtahuman.rundir import flatten

# Rows per annotation file, from docs/DATA.md ("Sample counts", with where each number comes from).
NOMINAL_ROWS = {
    "h36m_mosh_train.npz": 312_188, "mpi_inf_3dhp_train.npz": 96_507, "lsp_train.npz": 1_000,
    "lspet_train.npz": 9_428, "mpii_train.npz": 14_810, "coco_2014_train.npz": 28_344,
    "pw3d_train.npz": 22_735,
    "gta_human_4x.npz": 1_200_000,  # ASSUMED: undocumented (4 x ~300K real); --sizes gta=N when known
}
ASSUMED = {"gta_human_4x.npz"}
BOOKKEEPING = ("experiment", "description", "recipes.", "run.", "eval.")  # config keys that are no factor


@dataclass(frozen=True)
class Row:
    label: str
    experiment: str
    overrides: tuple[str, ...] = ()


def _paper_rows(table: str, mini: bool) -> tuple[list[Row], list[tuple[str, str]]]:
    suffix = "_mini" if mini else ""
    pairs = {
        "table2": [("hmr_bt", "hmr"), ("hmr_plus_bt", "hmr_plus"), ("hmr_ft", "hmr"), ("hmr_plus_ft", "hmr_plus"),
                   ("spin_ft", "spin"), ("pare_ft", "pare")] + ([] if mini else [("hmr_bt", "hmr_matched"),
                                                                                 ("hmr_plus_bt", "hmr_plus_matched")]),
        "table6": [(r, "hmr_bt") for r in ("hmr_real", "hmr_gta", "dann", "jan", "rsd", "cyclegan")]
        + ([] if mini else [("hmr_real_matched", "hmr_bt")]),
        "table7": [(f"real{r}", "real050") for r in ("000", "025", "075", "100")],
    }[table]
    names = list(dict.fromkeys(n for pair in pairs for n in pair))
    rows = [Row(f"{table}_{n}{suffix}", f"{table}_{n}{suffix}") for n in names]
    return rows, [(f"{table}_{a}{suffix}", f"{table}_{b}{suffix}") for a, b in pairs]


# Comparisons whose rows differ in budget by the paper's own protocol: reported, not counted.
DECLARED = {
    "table6_hmr_real": "the paper's protocol: real only trains its epochs on the real data alone (an epoch = "
                       "the largest real source), BT on real + GTA-Human (an epoch = the largest source)",
    "table6_hmr_gta": "the paper's protocol: GTA-Human only trains its epochs on GTA-Human alone",
    "table2_hmr_bt": "the paper's protocol: BT's epochs hold GTA-Human as well as the real data",
    "table2_hmr_plus_bt": "the paper's protocol: BT's epochs hold GTA-Human as well as the real data",
    **{f"table2_{m}_ft": "fine-tuning continues the base row's model with more steps: the comparison is "
                         "the base model with and without them" for m in ("hmr", "hmr_plus", "spin", "pare")},
}


def _findings_rows() -> tuple[list[Row], list[tuple[str, str]]]:
    from experiments.findings import AMOUNT_ROWS, ROWS

    rows = [Row(r.label, r.experiment, r.overrides) for r in (*ROWS, *AMOUNT_ROWS)]
    bt, real = ROWS[0].label, ROWS[1].label
    pairs = [(real, bt), (ROWS[2].label, bt), (ROWS[3].label, bt), (ROWS[5].label, ROWS[4].label)]
    pairs += [(r.label, AMOUNT_ROWS[0].label) for r in AMOUNT_ROWS[1:]]
    return rows, pairs


FIG8_MULTIPLES = (0.0, 0.5, 1.0, 2.0)  # k x GTA-Human on top of all the real data (2.4 at most with 4x)


def _fig8_rows(mini: bool) -> tuple[list[Row], list[tuple[str, str]]]:
    """Fig. 8's amounts (fig8_gta with k = FIG8_MULTIPLES), each compared with k = 0."""
    if mini:
        raise ConfigError("fig8 on the mini world is the findings set's nested amounts: python -m experiments.design findings")
    rows = [Row(f"fig8_gta {k:g}x", "fig8_gta", (f"data.real_ratio={1 / (1 + k):.6g}",
                                                 f"data.sampler_args.synthetic_multiple={k:g}"))
            for k in FIG8_MULTIPLES]
    return rows, [(r.label, rows[0].label) for r in rows[1:]]


def rows_of(table: str, mini: bool) -> tuple[list[Row], list[tuple[str, str]]]:
    """The table's rows and its comparisons (row label, compared-with label)."""
    if table == "findings":
        return _findings_rows()
    if table == "fig8":
        return _fig8_rows(mini)
    if table in ("table2", "table6", "table7"):
        return _paper_rows(table, mini)
    raise ConfigError(f"unknown table '{table}'; valid: fig8, findings, table2, table6, table7")


def source_rows(cfg: Any, sizes: dict[str, int], notes: list[str]) -> list[MixPart]:
    """The train sources as `MixPart`s: given sizes, else the prepared index (mini world, any
    source whose files exist), else the nominal count of its file name."""
    parts = []
    for name, src in cfg.data.train.items():
        file = posixpath.basename(str(src.path).rstrip("/"))
        if name in sizes:
            parts.append(MixPart(name, sizes[name], src.role))
        elif src.kind == "gta_raw" or str(src.path).startswith(str(cfg.data.world_dir)):
            parts.append(_prepared(cfg, name, src))
        elif file in NOMINAL_ROWS:
            rows = NOMINAL_ROWS[file]
            if src.get("split"):  # a held-out split by sequence: about its share of the rows
                kept = 1 - src.heldout_fraction if src.split == "train" else src.heldout_fraction
                rows = round(rows * kept)
                notes.append(f"{name}: the {src.split} part of a {src.heldout_fraction:g} held-out split, "
                             f"about {rows:,} of {NOMINAL_ROWS[file]:,} rows")
            parts.append(MixPart(name, rows, src.role))
            if file in ASSUMED:
                notes.append(f"{name}: {NOMINAL_ROWS[file]:,} rows ASSUMED ({file} is undocumented)")
        else:
            raise ConfigError(f"data.train.{name}: no size known for '{file}'; give --sizes {name}=ROWS")
    return parts


def _prepared(cfg: Any, name: str, src: Any) -> MixPart:
    from gtahuman.data.index import SampleIndex
    from gtahuman.run_data import ensure_assets, prepare_source

    spec = prepare_source(name, src, cfg, ensure_assets(cfg))
    index = SampleIndex.load(spec.index_dir)
    return MixPart(name, len(index), src.role, index)


def row_budget(cfg: Any, sizes: dict[str, int], notes: list[str]) -> Budget:
    return config_budget(cfg, source_rows(cfg, sizes, notes))


def config_differences(a: Any, b: Any) -> list[str]:
    """'key: b's value -> a's value' per differing key; a data source only one side has is one
    line, 'data.train.NAME: (absent) -> present' or the reverse."""
    fa, fb = (flatten(OmegaConf.to_container(c, resolve=True)) for c in (a, b))
    keys = sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k) and not k.startswith(BOOKKEEPING))
    out, said = [], set()
    for k in keys:
        section = _missing_section(k, fb if k not in fb else fa) if (k in fa) != (k in fb) else None
        if section is not None and not section.startswith(("data.train.", "data.val.", "data.test.")):
            section = None  # only a whole data source is one line; other keys are listed one by one
        if section is None:
            out.append(f"{k}: {fb.get(k, '(absent)')} -> {fa.get(k, '(absent)')}")
        elif section not in said:
            said.add(section)
            out.append(f"{section}: (absent) -> present" if k in fa else f"{section}: present -> (absent)")
    return out


def _missing_section(key: str, side: dict[str, Any]) -> str:
    """The shortest prefix of ``key`` of which ``side`` has no key at all."""
    parts = key.split(".")
    for n in range(1, len(parts) + 1):
        prefix = ".".join(parts[:n])
        if not any(k == prefix or k.startswith(prefix + ".") for k in side):
            return prefix
    return key


def uncontrolled(a: Budget, b: Budget) -> list[str]:
    """Budget differences a controlled comparison may not have: steps, or samples per step."""
    said = []
    if a.steps != b.steps:
        said.append(f"optimiser steps {a.steps:,} vs {b.steps:,}")
    per_step_a, per_step_b = sum(a.batch.values()), sum(b.batch.values())
    if per_step_a != per_step_b:
        said.append(f"samples per step {per_step_a} vs {per_step_b}")
    return said


def recipe_line(cfg: Any) -> list[str]:
    """Which training recipe the row follows, and the others it offers (``recipe=NAME``)."""
    if not (cfg.recipe or cfg.recipes):
        return []
    others = ", ".join(name for name in cfg.recipes if name != cfg.recipe)
    return [f"  recipe: {cfg.recipe or 'its own'}" + (f" (also: {others}, with recipe=NAME)" if others else "")]


def describe_row(label: str, cfg: Any, budget: Budget | None, why: str = "") -> list[str]:
    if budget is None:
        return [f"## {label}", f"  not counted: {why}", *recipe_line(cfg)]
    lines = [f"## {label}", f"  steps {budget.steps:,} ({budget.epochs} epochs of {budget.batches_per_epoch:,} batches), "
             f"batch {' + '.join(f'{v} {k}' for k, v in budget.batch.items())}, {budget.total_seen:,} samples seen"]
    for source in budget.pool:
        lines.append(f"  {source:16s} seen {budget.samples_seen[source]:>12,}  unique {budget.unique_samples[source]:>10,}"
                     f"  of {budget.pool[source]:>10,}")
    if cfg.model.get("init_checkpoint"):
        lines.append("  fine-tunes model.init_checkpoint: its pre-training is not counted")
    lines.append(f"  {resolution(cfg)}")
    return lines + recipe_line(cfg)


def resolution(cfg: Any) -> str:
    """What the crops are cut from: the crop cache's px per box side against the training size."""
    if not cfg.data.crop_cache:
        return f"resolution: {cfg.data.img_res} px crops from full frames"
    per_box = cfg.data.crop_res / CROP_MARGIN
    verdict = "full resolution" if per_box >= cfg.data.img_res else f"UPSAMPLED x{cfg.data.img_res / per_box:.2f}"
    return (f"resolution: {cfg.data.img_res} px crops from a {cfg.data.crop_res} px cache of a {CROP_MARGIN:g}x box "
            f"({per_box:.0f} px per box side: {verdict})")


@dataclass(frozen=True)
class Comparison:
    row: str
    baseline: str
    config: list[str]  # config_differences
    budget: list[str] | None  # budget differences; None when a budget was not counted
    uncontrolled: list[str]
    declared: str | None  # the paper's reason, when its own protocol differs so


def load_row(row: Row, overrides: list[str], notes: list[str]) -> Any:
    """The row's config; a ``recipe=NAME`` the row does not offer leaves it on its own (said in a note)."""
    asked = [o.split("=", 1)[1] for o in overrides if o.startswith("recipe=")]
    rest = [o for o in overrides if not o.startswith("recipe=")]
    own = load_config([f"experiment={row.experiment}", *row.overrides, *rest])
    if not asked or asked[-1] == own.recipe:
        return own
    if asked[-1] not in own.recipes:
        offered = ", ".join(([own.recipe] if own.recipe else []) + sorted(own.recipes)) or "its own settings"
        notes.append(f"{row.label}: no recipe={asked[-1]} (its recipes: {offered}); reported with its own")
        return own
    return load_config([f"experiment={row.experiment}", *row.overrides, *overrides])


def compare(table: str, mini: bool, sizes: dict[str, int], overrides: list[str]) -> tuple[list[str], list[Comparison]]:
    """The rows' report lines (notes first) and the table's comparisons."""
    rows, pairs = rows_of(table, mini)
    configs, budgets, notes, lines = {}, {}, [], []
    for row in rows:
        cfg = load_row(row, overrides, notes)
        configs[row.label] = cfg
        why = "a video row (task=video): not counted" if cfg.task == "video" else ""
        budget = None
        if not why:
            try:
                budget = row_budget(cfg, sizes, notes)
            except ConfigError as err:  # a source whose size is not documented: said, the rest reported
                why = str(err)
            except SamplerConfigError as err:  # a cell the sampler refuses (Table 7's N/A): said, not counted
                why = f"refused by the sampler: {err}"
        budgets[row.label] = budget
        lines += describe_row(row.label, cfg, budget, why)
    comparisons = []
    for a, b in pairs:
        counted = budgets[a] is not None and budgets[b] is not None
        comparisons.append(Comparison(
            a, b, config_differences(configs[a], configs[b]),
            differences(budgets[a], budgets[b], tolerance=0.001) if counted else None,
            uncontrolled(budgets[a], budgets[b]) if counted else [],
            DECLARED.get(configs[a].experiment) or DECLARED.get(configs[b].experiment)))
    return [*dict.fromkeys(notes), *lines], comparisons


def report(table: str, mini: bool, sizes: dict[str, int], overrides: list[str]) -> tuple[list[str], int]:
    """The report's lines and the number of UNCONTROLLED comparisons (not counting declared ones)."""
    lines, comparisons = compare(table, mini, sizes, overrides)
    lines += ["", "# comparisons"]
    flagged = 0
    for c in comparisons:
        lines.append(f"## {c.row}  vs  {c.baseline}")
        lines += [f"  config  {d}" for d in c.config] or ["  config  (the same)"]
        if c.budget is None:
            lines.append("  budget  not counted")
            continue
        lines += [f"  budget  {d}" for d in c.budget] or ["  budget  (the same)"]
        if c.uncontrolled and c.declared:
            lines.append(f"  UNCONTROLLED, as declared ({c.declared}): {'; '.join(c.uncontrolled)}")
        elif c.uncontrolled:
            flagged += 1
            lines.append(f"  UNCONTROLLED: {'; '.join(c.uncontrolled)}")
    return lines, flagged


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or "-h" in args or "--help" in args:
        print(__doc__)
        return 0 if args else 2
    mini = "--mini" in args
    sizes: dict[str, int] = {}
    rest = []
    for i, arg in enumerate(args):
        if arg == "--mini" or arg == "--sizes":
            continue
        if i and args[i - 1] == "--sizes":
            for item in arg.split(","):
                name, _, value = item.partition("=")
                sizes[name] = int(value)
            continue
        rest.append(arg)
    table, overrides = rest[0], rest[1:]
    try:
        lines, flagged = report(table, mini, sizes, overrides)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    print(f"\n{flagged} uncontrolled comparison(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One sentence per comparison of two table cells: the change, and whether the seeds resolve it.

Shared by the findings page's questions (`analysis.findings`) and its controls
(`analysis.controls`): a difference is resolved at 95 % when the Welch t-interval of the change
over the two cells' per-seed values excludes 0 (`analysis.stats`); a side with a single run
leaves it unresolved.
"""
from __future__ import annotations

import math

from analysis.stats import finite_values, format_difference, welch_interval_from_samples
from analysis.table_format import Cell
from analysis.tables import METRIC_NAMES


def compare(metric: str, before: Cell, after: Cell, what: str, against: str) -> str:
    """One sentence: how ``after`` differs from ``before`` and whether the seeds resolve it (Welch
    t-interval of the change over the cells' per-seed values, 95 %)."""
    name = METRIC_NAMES.get(metric, metric)
    diff = after.mean - before.mean
    if not math.isfinite(diff):
        return f"{what} vs {against}: no number to compare."
    verb = "lowers" if diff < 0 else "raises" if diff > 0 else "does not change"
    sentence = (f"{what} {verb} {name} by {abs(diff):.1f} mm against {against} "
                f"({before.format()} → {after.format()} mm)")
    before_values, after_values = finite_values(before.values), finite_values(after.values)
    if len(before_values) < 2 and len(after_values) < 2:
        return sentence + "; single runs, so the seed-to-seed spread is unknown."
    if len(before_values) < 2 or len(after_values) < 2:
        single = against if len(before_values) < 2 else what
        return sentence + f"; {single} is a single run, so its seed-to-seed spread is unknown: not resolved."
    change = welch_interval_from_samples(before_values, after_values)
    return sentence + f"; change {format_difference(change)}."

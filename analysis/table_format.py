"""Result tables as data: cells that keep every seed's value, written as Markdown or CSV.

A `Cell` holds the values of the runs that share a table position (seeds of one setting); it
shows ``mean ± std`` (sample standard deviation over runs; the mean alone for a single run, "–"
for none). A `Table` is label columns + value columns of cells, plus notes (toy body model,
runs left out, ...). Used by `analysis.tables` and `analysis.findings`.
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

MISSING = "–"


@dataclass(frozen=True)
class Cell:
    values: tuple[float, ...] = ()
    seeds: tuple[int, ...] = ()
    runs: tuple[str, ...] = ()  # run directories, for tracing a number back

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        finite = [v for v in self.values if math.isfinite(v)]
        return float(np.mean(finite)) if finite else float("nan")

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof=1) over runs; NaN for fewer than two."""
        finite = [v for v in self.values if math.isfinite(v)]
        return float(np.std(finite, ddof=1)) if len(finite) >= 2 else float("nan")

    def format(self, digits: int = 1) -> str:
        if not math.isfinite(self.mean):
            return MISSING
        text = f"{self.mean:.{digits}f}"
        return text + (f" ± {self.std:.{digits}f}" if math.isfinite(self.std) else "")

    def plus(self, value: float, seed: int, run: str) -> Cell:
        return Cell(self.values + (float(value),), self.seeds + (int(seed),), self.runs + (run,))


def format_delta(value: float, digits: int = 1) -> str:
    return MISSING if not math.isfinite(value) else f"{value:+.{digits}f}"


@dataclass
class Table:
    """``rows``: label values (str) and values in ``label_columns`` + ``value_columns`` order. A
    value is a `Cell`, a float (a difference, shown signed) or a text."""

    name: str
    title: str
    label_columns: list[str]
    value_columns: list[str]
    rows: list[tuple[list[str], list[Cell | float | str]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, labels: Sequence[str], values: Sequence[Cell | float | str]) -> None:
        if len(labels) != len(self.label_columns) or len(values) != len(self.value_columns):
            raise ValueError(f"table {self.name}: row {list(labels)} does not match the columns")
        self.rows.append((list(labels), list(values)))

    def drop_constant_label(self, column: str) -> None:
        """Hide a label column (e.g. backbone) when every row has the same value."""
        at = self.label_columns.index(column)
        if len({labels[at] for labels, _ in self.rows}) <= 1:
            del self.label_columns[at]
            for labels, _ in self.rows:
                del labels[at]

    def to_markdown(self, digits: int = 1) -> str:
        header = self.label_columns + self.value_columns
        lines = [f"**{self.title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for labels, values in self.rows:
            lines.append("| " + " | ".join(labels + [format_value(v, digits) for v in values]) + " |")
        if not self.rows:
            lines[2:] = ["(no run of this kind)"]
        lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"

    def to_csv(self) -> str:
        """Labels, then per column of cells its mean, std, n and seeds; other columns as they are."""
        has_cells = [any(isinstance(values[i], Cell) for _, values in self.rows)
                     for i in range(len(self.value_columns))]
        header = list(self.label_columns)
        for column, cells in zip(self.value_columns, has_cells):
            header += [f"{column} mean", f"{column} std", f"{column} n", f"{column} seeds"] if cells else [column]
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        for labels, values in self.rows:
            row: list[object] = list(labels)
            for value, cells in zip(values, has_cells):
                if isinstance(value, Cell):
                    row += [value.mean, value.std, value.n, " ".join(map(str, value.seeds))]
                else:
                    row += [value, "", "", ""] if cells else [value]
            writer.writerow(row)
        return buffer.getvalue()


def format_value(value: Cell | float | str, digits: int) -> str:
    if isinstance(value, Cell):
        return value.format(digits)
    if isinstance(value, float):
        return format_delta(value, digits)
    return str(value)

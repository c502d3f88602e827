"""What preparation left out of a run's data, read back from the manifests of its prepared sources.

``prepare`` drops a sample whose image is missing or unreadable (``bad_images``) or whose box has
no area inside its image (``dropped_bbox``) and records the count and the first few file names
in the index manifest (meta ``prepare.counts`` / ``prepare.examples``). A crop cache records the
rows whose image could not be cut (``bad_rows`` of its manifest): those rows stay in the index
but can never be read (``unreadable_crop``). A run reports all of it, per source, in run.log and
in metrics.json (``dropped_at_prepare``), beside the ``bad_samples`` met while training: a
dataset that silently shrank is otherwise only visible in a cache file nobody opens.

Only manifests are read (a few kB each), never the columns.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from gtahuman.data.index import MANIFEST

DROP_REASONS = ("bad_images", "dropped_bbox")  # prepare counts that remove a sample (not "bbox_clipped")
CROP_REASON = "unreadable_crop"
SHOWN = 5  # file names per reason in metrics.json and run.log


class PreparedSource(Protocol):
    name: str
    index_dir: str
    crop_cache_dir: str | None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # no manifest (an index made in memory) or unreadable: nothing to report
        return {}


def source_drops(index_dir: str | Path, crop_cache_dir: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """``{reason: {"count": n, "first": [file, ...]}}`` of one prepared source, reasons with n > 0."""
    prepare = _read_json(Path(index_dir) / MANIFEST).get("meta", {}).get("prepare", {})
    counts, examples = prepare.get("counts", {}), prepare.get("examples", {})
    drops = {reason: {"count": int(counts[reason]), "first": list(examples.get(reason, []))[:SHOWN]}
             for reason in DROP_REASONS if int(counts.get(reason, 0) or 0) > 0}
    if crop_cache_dir:
        bad_rows = _read_json(Path(crop_cache_dir) / MANIFEST).get("bad_rows", [])
        if bad_rows:
            drops[CROP_REASON] = {"count": len(bad_rows), "first": [str(b.get("path")) for b in bad_rows[:SHOWN]]}
    return drops


def dropped_at_prepare(sources: Iterable[PreparedSource]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{source name: {reason: {"count", "first"}}}`` over the run's sources (train, val, test),
    each prepared index once; sources that lost nothing are left out."""
    report: dict[str, dict[str, dict[str, Any]]] = {}
    seen: dict[str, tuple[str, str | None]] = {}
    for spec in sources:
        where = (str(spec.index_dir), None if spec.crop_cache_dir is None else str(spec.crop_cache_dir))
        name = spec.name
        if name in seen:
            if seen[name] == where:
                continue
            name = f"{spec.name} ({Path(spec.index_dir).name})"  # one name, two different indices
        seen[name] = where
        drops = source_drops(*where)
        if drops:
            report[name] = drops
    return report


def log_dropped(report: dict[str, dict[str, dict[str, Any]]], logger: logging.Logger) -> None:
    """One warning line per source that lost samples: the count per reason and the first files."""
    for name, drops in report.items():
        total = sum(d["count"] for d in drops.values())
        parts = "; ".join(f"{reason} {d['count']}: {', '.join(d['first'])}"
                          + (" ..." if d["count"] > len(d["first"]) else "") for reason, d in drops.items())
        logger.warning("source %s: %d sample(s) dropped at prepare time (%s)", name, total, parts)

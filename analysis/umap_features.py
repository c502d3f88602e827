"""Backbone features of each run embedded in 2D, coloured by domain (paper Fig. 7, "Domain gap").

    python -m analysis.umap_features RUN_OR_FOLDER... [--out DIR] [--sets wild_test gta ...]
                                     [--max-per-set 500] [--seed 0] [--method umap|pca]

One panel per run: the run's sampled backbone features of every set that has them (the test
sets' ``predictions/<set>_features.npz``, and the train sources' after ``python -m
experiments.evaluate ckpt=<run>/checkpoints/best.ckpt set=real_indoor,gta``), embedded by a
seeded UMAP fitted on that run alone (each run's features live in their own space), coloured
by the set's domain (``data.<split>.<set>.domain``, default the set's name). Writes
``umap_features.png`` and ``umap_features.npz`` (embedding (N, 2), panel (N,) index into
run_label, domain, set_name, sample_id). ``--method pca`` is a fast linear stand-in.
"""
from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from tqdm import tqdm

from analysis.per_bin import save_figure
from analysis.rundirs import Run, find_runs
from gtahuman.atomic import atomic_open

EmbedFn = Callable[[np.ndarray, int], np.ndarray]  # (features (N, F), seed) -> (N, 2)
GROUP_ORDER = {"real": 0, "synthetic": 1, "eval": 2}


@dataclass(frozen=True)
class FeatureTable:
    """Features of one run, one row per sample, with where each row came from."""

    features: np.ndarray  # (N, F)
    domain: np.ndarray  # (N,) str
    set_name: np.ndarray  # (N,) str
    group: np.ndarray  # (N,) real | synthetic | eval
    sample_id: np.ndarray  # (N,)


def collect_features(run: Run, sets: Sequence[str] | None = None, max_per_set: int | None = None,
                     seed: int = 0) -> FeatureTable:
    """The features of ``sets`` (default: every set with a features file), at most
    ``max_per_set`` rows each (a seeded random subset)."""
    available = run.feature_files()
    names = list(sets) if sets else sorted(available, key=lambda s: (GROUP_ORDER.get(run.group_of(s), 3), s))
    if not names:
        raise FileNotFoundError(f"{run.path}: no features file (predictions/<set>_features.npz or "
                                "evaluations/*/<set>_features.npz); was model.feature_samples 0?")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("features", "domain", "set_name", "group", "sample_id")}
    for name in names:
        features, ids = run.features(name)
        if max_per_set is not None and len(ids) > max_per_set:
            keep = np.sort(rng.choice(len(ids), max_per_set, replace=False))
            features, ids = features[keep], ids[keep]
        parts["features"].append(features)
        parts["sample_id"].append(ids)
        for key, value in (("domain", run.domain_of(name)), ("set_name", name), ("group", run.group_of(name))):
            parts[key].append(np.full(len(ids), value, dtype=object))
    widths = {f.shape[1] for f in parts["features"]}
    if len(widths) > 1:
        raise ValueError(f"{run.path}: feature files of {names} have different widths {sorted(widths)}")
    return FeatureTable(*(np.concatenate(parts[k]) for k in ("features", "domain", "set_name", "group", "sample_id")))


def umap_embed(features: np.ndarray, seed: int, n_neighbors: int = 15, min_dist: float = 0.1) -> np.ndarray:
    """Seeded 2D UMAP (umap-learn). Small inputs get fewer neighbours and a random init
    (the spectral init needs more points than neighbours)."""
    import umap  # imported here: numba compiles on first use (tens of seconds)

    n = len(features)
    if n < 4:
        raise ValueError(f"UMAP needs at least 4 feature rows, got {n}")
    neighbours = max(2, min(n_neighbors, n - 1))
    reducer = umap.UMAP(n_components=2, n_neighbors=neighbours, min_dist=min_dist, random_state=seed,
                        init="spectral" if n > 2 * neighbours else "random")
    with warnings.catch_warnings():  # a fixed random_state makes umap single-threaded, and says so
        warnings.filterwarnings("ignore", message=".*n_jobs.*overridden.*")
        return np.asarray(reducer.fit_transform(np.asarray(features, dtype=np.float32)), dtype=np.float64)


def pca_embed(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """The two principal components (deterministic: the sign fixed by the largest loading)."""
    centred = np.asarray(features, dtype=np.float64) - np.mean(features, axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2]
    signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])
    embedding = centred @ (axes * signs[:, None]).T
    return embedding if embedding.shape[1] == 2 else np.pad(embedding, ((0, 0), (0, 2 - embedding.shape[1])))


EMBEDDINGS: dict[str, EmbedFn] = {"umap": umap_embed, "pca": pca_embed}


@dataclass(frozen=True)
class Panel:
    title: str
    embedding: np.ndarray  # (N, 2)
    table: FeatureTable


def embed_runs(runs: Sequence[Run], embed: EmbedFn = umap_embed, seed: int = 0, sets: Sequence[str] | None = None,
               max_per_set: int | None = None, progress: bool = True) -> list[Panel]:
    """One embedded panel per run (the embedding is fitted on that run's features alone)."""
    panels = []
    for run in tqdm(runs, desc="embedding features", unit="run", disable=not progress):
        table = collect_features(run, sets, max_per_set, seed)
        embedding = np.asarray(embed(table.features, seed), dtype=np.float64)
        if embedding.shape != (len(table.features), 2):
            raise ValueError(f"embedding of {run.label}: expected shape ({len(table.features)}, 2), "
                             f"got {embedding.shape}")
        panels.append(Panel(run.label + (" (toy body)" if run.is_toy else ""), embedding, table))
    return panels


def plot_panels(panels: Sequence[Panel], method: str = "UMAP", columns: int = 4) -> Figure:
    """Scatter per panel (``columns`` per row); a domain has the same colour in every panel."""
    if not panels:
        raise ValueError("plot_panels: no panel to draw")
    domains = list(dict.fromkeys(d for p in panels for d in p.table.domain))
    colours = {d: f"C{i % 10}" for i, d in enumerate(domains)}
    columns = min(columns, len(panels))
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(4.2 * columns, 4.2 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[len(panels):]:
        ax.remove()
    for ax, panel in zip(axes, panels):
        for domain in domains:
            rows = panel.table.domain == domain
            if rows.any():
                ax.scatter(*panel.embedding[rows].T, s=6, alpha=0.6, color=colours[domain], label=domain)
        ax.set_title(panel.title, fontsize=9)
        ax.set_xlabel(f"{method} 1")
        ax.set_ylabel(f"{method} 2")
        ax.legend(fontsize=7, markerscale=2)
    return figure


def save_embeddings(path: Path, panels: Sequence[Panel]) -> None:
    tables = [p.table for p in panels]
    with atomic_open(path, "wb") as f:
        np.savez(f, embedding=np.concatenate([p.embedding for p in panels]),
                 panel=np.concatenate([np.full(len(t.sample_id), i) for i, t in enumerate(tables)]),
                 run_label=np.array([p.title for p in panels], dtype=str),
                 domain=np.concatenate([t.domain for t in tables]).astype(str),
                 set_name=np.concatenate([t.set_name for t in tables]).astype(str),
                 sample_id=np.concatenate([t.sample_id for t in tables]))


def main(argv: Sequence[str] | None = None, embed: EmbedFn | None = None) -> list[Path]:
    """CLI; ``embed`` replaces ``--method`` (tests inject a cheap one)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories or folders holding them")
    parser.add_argument("--out", type=Path, default=Path("analysis_out"))
    parser.add_argument("--sets", nargs="+", help="sets to embed (default: every set with features)")
    parser.add_argument("--max-per-set", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", choices=sorted(EMBEDDINGS), default="umap")
    parser.add_argument("--n-neighbors", type=int, default=15)
    parser.add_argument("--min-dist", type=float, default=0.1)
    args = parser.parse_args(argv)
    if embed is None and args.method == "umap":
        embed = lambda x, seed: umap_embed(x, seed, args.n_neighbors, args.min_dist)  # noqa: E731
    embed = embed or EMBEDDINGS[args.method]
    try:
        runs = find_runs(args.runs)
    except FileNotFoundError as err:
        parser.error(str(err))  # a clean usage error (exit 2), not a traceback
    if not runs:
        parser.error(f"no finished run directory under {args.runs}")
    panels = embed_runs(runs, embed, args.seed, args.sets, args.max_per_set)
    paths = [args.out / "umap_features.png", args.out / "umap_features.npz"]
    save_figure(plot_panels(panels, args.method.upper()), paths[0])
    save_embeddings(paths[1], panels)
    for path in paths:
        print(path)
    return paths


if __name__ == "__main__":
    main()

"""How much a world's domains vary in what a pose network must generalise over: the side the
body is seen from, the camera's height, the people.

A network learns the body's orientation from the views it is shown. If every sequence films its
person from one side (facing constant, camera fixed), the training set holds only as many
orientations as sequences, and a network memorises them instead of reading them from the
image (issue 18: 76 orientations, held-out facing at chance). These figures make that visible
and testable, per kind of sequence (`plan.KINDS`):

* ``view_cells``: distinct (sequence, 30 deg azimuth bin, 10 deg elevation bin) cells, i.e. how
  many different views of a body the domain holds; with one view per sequence it equals the
  number of sequences;
* ``azimuth_bins``: of the 12 azimuth bins around the body, how many hold at least 1 % of the
  frames (12 = seen from every side);
* ``median_azimuth_span_deg``: the median over sequences of the arc of azimuths one sequence
  covers (0 = facing constant within a sequence);
* ``elevation_p5_deg`` / ``elevation_p95_deg``: the camera's height band, seen from the body;
* ``subjects``, ``sequences``, ``frames``.

Angles come from the camera-frame SMPL parameters with `gtahuman.data.factors.camera_angles`
(the factor the index stores), before rendering: `plan_diversity` stages every sequence of a
plan (motion and camera, no pixels), which is cheap enough for a test of the default world.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from gtahuman.data.factors import camera_angles
from gtahuman.miniworld.simulate import BodyModels, stage_sequence

AZIMUTH_BIN_DEG, ELEVATION_BIN_DEG = 30.0, 10.0
MIN_BIN_SHARE = 0.01  # an azimuth bin counts as covered from 1 % of the frames on


@dataclass(frozen=True)
class DomainDiversity:
    kind: str
    sequences: int
    frames: int
    subjects: int
    view_cells: int
    azimuth_bins: int
    median_azimuth_span_deg: float
    elevation_p5_deg: float
    elevation_p95_deg: float

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def circular_span_deg(azimuth_deg: np.ndarray) -> float:
    """The shortest arc (degrees) holding every angle: 360 minus the largest gap between them."""
    angles = np.sort(np.mod(np.asarray(azimuth_deg, dtype=np.float64), 360.0))
    if len(angles) < 2:
        return 0.0
    gaps = np.diff(np.concatenate([angles, angles[:1] + 360.0]))
    return float(360.0 - gaps.max())


def summarise(kind: str, views: Iterable[tuple[np.ndarray, np.ndarray]], subjects: int) -> DomainDiversity:
    """Figures of one kind from its sequences' per-frame (elevation, azimuth) in degrees."""
    views = list(views)
    if not views:
        return DomainDiversity(kind, 0, 0, subjects, 0, 0, 0.0, float("nan"), float("nan"))
    elevation = np.concatenate([e for e, _ in views])
    azimuth = np.concatenate([a for _, a in views])
    cells = set()
    for index, (e, a) in enumerate(views):
        az_bin = np.floor(np.mod(a, 360.0) / AZIMUTH_BIN_DEG).astype(int)
        el_bin = np.floor(e / ELEVATION_BIN_DEG).astype(int)
        cells.update((index, int(x), int(y)) for x, y in zip(az_bin, el_bin))
    share = np.bincount(np.floor(np.mod(azimuth, 360.0) / AZIMUTH_BIN_DEG).astype(int) % 12, minlength=12)
    share = share / max(len(azimuth), 1)
    return DomainDiversity(
        kind=kind, sequences=len(views), frames=len(azimuth), subjects=int(subjects), view_cells=len(cells),
        azimuth_bins=int((share >= MIN_BIN_SHARE).sum()),
        median_azimuth_span_deg=round(float(np.median([circular_span_deg(a) for _, a in views])), 1),
        elevation_p5_deg=round(float(np.percentile(elevation, 5)), 1),
        elevation_p95_deg=round(float(np.percentile(elevation, 95)), 1))


def sequence_views(global_orient: np.ndarray, transl: np.ndarray, pelvis_rest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(elevation, azimuth) in degrees of the camera seen from the body, per frame."""
    elevation, azimuth = camera_angles(global_orient, transl, pelvis_rest)
    return elevation.astype(np.float64), azimuth.astype(np.float64)


def plan_diversity(jobs, body_dir) -> dict[str, DomainDiversity]:
    """Stage every job of a plan (no rendering) and summarise each kind."""
    bodies = BodyModels(body_dir)
    views: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    subjects: dict[str, set[str]] = {}
    for job in jobs:
        stage = stage_sequence(job.spec, bodies)
        views.setdefault(job.kind, []).append(sequence_views(stage.global_orient, stage.transl, stage.rest_joints[0]))
        subjects.setdefault(job.kind, set()).add(job.spec.subject.name)
    return {kind: summarise(kind, views[kind], len(subjects[kind])) for kind in views}


def format_table(figures: dict[str, DomainDiversity | dict]) -> str:
    """A plain-text table, one row per kind."""
    rows = [f if isinstance(f, dict) else f.as_dict() for f in figures.values()]
    header = (f"{'kind':<11} {'seqs':>5} {'frames':>6} {'subj':>5} {'views':>6} {'az bins':>7} "
              f"{'az span':>7} {'elevation p5..p95':>18}")
    lines = [header]
    for r in rows:
        lines.append(f"{r['kind']:<11} {r['sequences']:>5} {r['frames']:>6} {r['subjects']:>5} {r['view_cells']:>6} "
                     f"{r['azimuth_bins']:>4}/12 {r['median_azimuth_span_deg']:>6.0f}° "
                     f"{r['elevation_p5_deg']:>8.0f}° .. {r['elevation_p95_deg']:.0f}°")
    return "\n".join(lines)

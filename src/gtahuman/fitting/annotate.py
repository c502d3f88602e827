"""Annotate a directory of raw GTA-Human sequences with SMPL: analyse, fit, write; resumable.

    annotate_directory(root, out_dir, body_dir)      # python -m gtahuman.fitting ROOT OUT_DIR ...

For each ``<root>/annotations/seq_*.pkl`` (read and validated by `gta_raw.read_sequence`):

1. the Data Analyser (`analyser`) keeps or drops it, with reasons;
2. kept sequences are fitted from their ``keypoints_3d`` alone (`SMPLify3D`, the body model
   of the sequence's gender unless ``gender`` names one), several sequences per optimisation;
3. ``<out_dir>/annotations/<seq>.pkl`` gets the 15 raw-release keys with ``global_orient``,
   ``body_pose``, ``betas`` (one shape, repeated per frame) and ``transl`` replaced by the fit,
   plus ``smpl_fit_error`` (T,) metres, ``analyser_frame_flags`` (T,) and ``smpl_annotator``
   (settings, body model, gender): it reads back with `read_sequence`, so ``out_dir`` is a GTA
   root in its own right (``images`` links to the source's frames);
4. ``<out_dir>/status/<seq>.json`` records the outcome, written last (atomically): a sequence
   with a status file is finished, and a rerun skips it. Dropped sequences get a status file
   only; an unreadable sequence file gets one marked ``error`` (reported, and retried by the
   next run), and more than ``max_unreadable`` of them stop the run.
   ``<out_dir>/annotation_report.json`` summarises every status at the end.

``workers`` > 1 runs chunks of sequences in that many processes (one torch thread each).
"""
from __future__ import annotations

import json
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from gtahuman.atomic import atomic_open, atomic_write_text
from gtahuman.body.smpl import BodyModel
from gtahuman.data.formats.errors import DataFormatError
from gtahuman.data.formats.gta_raw import ANNOTATION_KEYS, GTASequence, list_sequences, read_sequence
from gtahuman.fitting.analyser import AnalyserThresholds, analyse_gta_sequence
from gtahuman.fitting.keypoint_map import keypoint_map
from gtahuman.fitting.priors import GaussianPosePrior
from gtahuman.fitting.smplify3d import FitSettings, SequenceFit, SMPLify3D

GENDER_CHOICES = ("auto", "neutral", "male", "female")
REPORT_NAME = "annotation_report.json"


@dataclass
class AnnotateOptions:
    settings: FitSettings = field(default_factory=FitSettings)
    thresholds: AnalyserThresholds = field(default_factory=AnalyserThresholds)
    analyse: bool = True  # False: fit every sequence (the analysis is still recorded)
    gender: str = "auto"  # auto: the sequence's is_male; or one body model for all
    chunk_sequences: int = 8  # sequences per task; a task fits each gender's sequences together
    max_unreadable: int = 10  # unreadable sequence files are recorded and retried; more stop the run
    pose_prior_file: str | None = None  # GaussianPosePrior npz; None: the standard prior

    def __post_init__(self) -> None:
        if self.gender not in GENDER_CHOICES:
            raise ValueError(f"gender must be one of {GENDER_CHOICES}; got {self.gender!r}")
        if self.chunk_sequences < 1:
            raise ValueError(f"chunk_sequences must be >= 1; got {self.chunk_sequences}")
        if self.max_unreadable < 0:
            raise ValueError(f"max_unreadable must be >= 0; got {self.max_unreadable}")


class _Fitters:
    """One body model + fitter per gender, built on first use (per process)."""

    def __init__(self, body_dir: str, options: AnnotateOptions) -> None:
        self.body_dir, self.options, self._fitters = body_dir, options, {}
        self.table = keypoint_map("gta")
        self.prior = GaussianPosePrior.load(options.pose_prior_file) if options.pose_prior_file else None

    def __call__(self, gender: str) -> SMPLify3D:
        if gender not in self._fitters:
            model = BodyModel(self.body_dir, gender)
            self._fitters[gender] = SMPLify3D(model, self.table, self.options.settings, self.prior)
        return self._fitters[gender]


def _gender_of(sequence: GTASequence, choice: str) -> str:
    if choice != "auto":
        return choice
    return "male" if sequence.is_male else "female"


def _write_annotation(path: Path, sequence: GTASequence, fit: SequenceFit, flags: np.ndarray,
                      meta: dict[str, Any]) -> None:
    annotation = {key: getattr(sequence, key) for key in ANNOTATION_KEYS}
    frames = sequence.num_frames
    annotation.update(
        global_orient=fit.global_orient, body_pose=fit.body_pose, transl=fit.transl,
        betas=np.repeat(fit.betas[None], frames, axis=0),
        smpl_fit_error=fit.fit_error.astype(np.float32), analyser_frame_flags=flags, smpl_annotator=meta)
    with atomic_open(path, "wb") as f:
        pickle.dump(annotation, f, protocol=4)


def _status_path(out_dir: Path, name: str) -> Path:
    return out_dir / "status" / f"{name}.json"


def _finished(out_dir: Path, name: str) -> bool:
    """A status file without an error: written last, after the sequence's annotation."""
    path = _status_path(out_dir, name)
    return path.is_file() and not json.loads(path.read_text()).get("error")


def annotate_chunk(root: str, out_dir: str, body_dir: str, names: list[str], options: AnnotateOptions,
                   fitters: _Fitters | None = None) -> list[dict[str, Any]]:
    """Analyse, fit and write ``names``; returns their status dicts (also written to disk)."""
    fitters = fitters or _Fitters(body_dir, options)
    root_path, out_path = Path(root), Path(out_dir)
    statuses: dict[str, dict[str, Any]] = {}
    to_fit: dict[str, list[tuple[GTASequence, Any]]] = {}
    for name in names:
        try:
            sequence = read_sequence(root_path, name)
        except DataFormatError as exc:  # recorded, not skipped silently; a rerun tries again
            statuses[name] = {"name": name, "kept": False, "reasons": [f"unreadable: {exc}"], "error": str(exc),
                              "analysis": None, "fit": None}
            continue
        analysis = analyse_gta_sequence(sequence, options.thresholds)
        statuses[name] = {"name": name, "kept": analysis.kept, "reasons": analysis.reasons,
                          "analysis": analysis.to_dict(), "fit": None}
        if analysis.kept or not options.analyse:
            to_fit.setdefault(_gender_of(sequence, options.gender), []).append((sequence, analysis))
    for gender, group in to_fit.items():
        fitter = fitters(gender)
        fits = fitter.fit_many([sequence.keypoints_3d for sequence, _ in group])
        meta = {"annotator": "gtahuman.fitting (SMPLify with 3D keypoint loss)", "gender": gender,
                "body_model_dir": str(body_dir), "body_model_is_toy": bool(fitter.body_model.is_toy),
                "keypoints": "keypoints_3d (gta convention)", "settings": asdict(options.settings),
                "fit_error_units": "metres"}
        for (sequence, analysis), fit in zip(group, fits):
            _write_annotation(out_path / "annotations" / f"{sequence.seq_name}.pkl", sequence, fit,
                              analysis.frame_flags, meta)
            statuses[sequence.seq_name]["fit"] = {
                "gender": gender, "frames": fit.num_frames, "seconds": round(fit.seconds, 4),
                "mean_fit_error_mm": float(np.nanmean(fit.fit_error) * 1000),
                "max_fit_error_mm": float(np.nanmax(fit.fit_error) * 1000),
                "mean_init_error_mm": float(np.nanmean(fit.init_error) * 1000),
                "body_model_is_toy": bool(fitter.body_model.is_toy)}
    for name in names:  # status last: its presence means the sequence is finished
        atomic_write_text(_status_path(out_path, name), json.dumps(statuses[name], indent=1))
    return [statuses[name] for name in names]


_WORKER_FITTERS: _Fitters | None = None


def _worker_init(body_dir: str, options: AnnotateOptions) -> None:
    global _WORKER_FITTERS
    torch.set_num_threads(1)
    _WORKER_FITTERS = _Fitters(body_dir, options)


def _worker_chunk(args: tuple[str, str, str, list[str], AnnotateOptions]) -> list[dict[str, Any]]:
    return annotate_chunk(*args, fitters=_WORKER_FITTERS)


def _link_images(root: Path, out_dir: Path) -> None:
    link, source = out_dir / "images", root / "images"
    if source.is_dir() and not link.exists() and not link.is_symlink():
        out_dir.mkdir(parents=True, exist_ok=True)
        os.symlink(source.resolve(), link, target_is_directory=True)


def annotate_directory(root: str | os.PathLike, out_dir: str | os.PathLike, body_dir: str | os.PathLike,
                       options: AnnotateOptions | None = None, *, workers: int = 1,
                       progress: bool = True) -> dict[str, Any]:
    """Annotate every sequence under ``root`` into ``out_dir`` (see module docstring); returns
    the report (also written to ``<out_dir>/annotation_report.json``)."""
    options = options or AnnotateOptions()
    root, out_dir = Path(root), Path(out_dir)
    if out_dir.resolve() == root.resolve():
        raise ValueError(f"{out_dir}: the output directory must differ from the source root "
                         "(the source annotations are never overwritten)")
    names = list_sequences(root)
    pending = [n for n in names if not _finished(out_dir, n)]
    _link_images(root, out_dir)
    chunks = [pending[i:i + options.chunk_sequences] for i in range(0, len(pending), options.chunk_sequences)]
    args = [(str(root), str(out_dir), str(body_dir), chunk, options) for chunk in chunks]
    bar = tqdm(total=len(pending), unit="seq", desc="SMPL annotator", disable=not progress)
    unreadable: list[str] = []

    def account(done: list[dict[str, Any]]) -> None:
        bar.update(len(done))
        unreadable.extend(s["error"] for s in done if s.get("error"))
        if len(unreadable) > options.max_unreadable:
            write_report(out_dir, [n for n in names if _status_path(out_dir, n).is_file()], options)
            raise RuntimeError(f"{root}: {len(unreadable)} unreadable sequence files (more than max_unreadable="
                               f"{options.max_unreadable}); first: {unreadable[0]}")

    try:
        if workers <= 1 or len(chunks) <= 1:
            fitters = _Fitters(str(body_dir), options)
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # tiny tensors: more threads only add synchronisation
            try:
                for arg in args:
                    account(annotate_chunk(*arg, fitters=fitters))
            finally:
                torch.set_num_threads(threads)
        else:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_worker_init,
                                     initargs=(str(body_dir), options)) as pool:
                for done in pool.map(_worker_chunk, args):
                    account(done)
    finally:
        bar.close()
    return write_report(out_dir, names, options, skipped=len(names) - len(pending))


def write_report(out_dir: Path, names: list[str], options: AnnotateOptions, skipped: int = 0) -> dict[str, Any]:
    """Gather every sequence's status into ``annotation_report.json``."""
    statuses = [json.loads(_status_path(out_dir, n).read_text()) for n in names]
    fitted = [s["fit"] for s in statuses if s["fit"]]
    frames = sum(f["frames"] for f in fitted)
    seconds = sum(f["seconds"] for f in fitted)
    report = {
        "sequences": len(names), "skipped_as_finished": skipped, "fitted": len(fitted),
        "frames_fitted": frames, "fit_seconds": round(seconds, 3),
        "frames_per_second": round(frames / seconds, 2) if seconds else None,
        "unreadable": {s["name"]: s["error"] for s in statuses if s.get("error")},
        "mean_fit_error_mm": (float(np.average([f["mean_fit_error_mm"] for f in fitted],
                                               weights=[f["frames"] for f in fitted])) if fitted else None),
        "body_model_is_toy": any(f.get("body_model_is_toy", False) for f in fitted),
        "analyser_thresholds": asdict(options.thresholds), "analyser_applied": options.analyse,
        "kept": [s["name"] for s in statuses if s["kept"]],
        "dropped": {s["name"]: s["reasons"] for s in statuses if not s["kept"]},
        "fit_settings": asdict(options.settings),
    }
    atomic_write_text(out_dir / REPORT_NAME, json.dumps(report, indent=1))
    return report

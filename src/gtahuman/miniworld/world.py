"""Generate the mini world into a directory, in the real dataset formats, and cache it.

Layout under ``out_dir`` (`WorldPaths`)::

    body/                          toy body model (unless another model dir is given)
    real_indoor/                   SPIN-style, like H36M (+ an LSP/COCO-like 2D-only subset)
        images/<seq>/frame_XXXXX.jpg
        real_indoor_train.npz      imgname center scale part S pose shape has_smpl gender
        real_indoor_val.npz        the held-out subject
        real_kp_train.npz          imgname center scale part (14 LSP + 5 face joints), has_smpl 0
    gta/                           the raw GTA-Human release layout
        annotations/seq_XXXXXXXX.pkl   the 15 keys
        images/seq_XXXXXXXX/XXXXXXXX.jpeg
    wild/                          SPIN-style, like the 3DPW test file
        imageFiles/<seq>/image_XXXXX.jpg
        wild_test.npz, wild_val.npz    imgname center scale part pose shape has_smpl gender
    world.json                     manifest, written last (atomically)

Sequences are rendered by `simulate.simulate_sequence` in worker processes (each has its own
seed key, so the bytes do not depend on the number of workers) and written by `writers`.
A second call with the same size, seed and body model finds the complete manifest and
returns at once.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from gtahuman.atomic import atomic_write_text
from gtahuman.body.assets import check_body_model_dir
from gtahuman.body.toy import toy_description, write_toy_body_assets
from gtahuman.miniworld import writers
from gtahuman.miniworld.diversity import sequence_views, summarise
from gtahuman.miniworld.domains import SIZES, STYLES, VARIANTS, gta_style, scaled_size
from gtahuman.miniworld.plan import Job, action_sets, plan_world
from gtahuman.miniworld.simulate import BodyModels, intrinsics, simulate_sequence

FORMAT_VERSION = 6
MANIFEST, PARTIAL_MARKER = "world.json", "world.partial.json"
DOMAIN_DIRS = ("real_indoor", "gta", "wild")
TOY_BODY_SEED = 0  # the suite's default toy body (cache_dir/toy_body) uses this seed too


class WorldDirectoryError(ValueError):
    """``out_dir`` holds something this call must not overwrite (or no complete world)."""


@dataclass(frozen=True)
class WorldPaths:
    """Where everything of a generated world lives."""

    root: Path
    body_dir: Path
    cached: bool = field(default=False, compare=False)  # True: found complete, nothing generated

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def real_indoor_root(self) -> Path:
        """Image root of the three real_indoor npz files (their ``imgname`` is relative to it)."""
        return self.root / "real_indoor"

    @property
    def real_indoor_train(self) -> Path:
        return self.real_indoor_root / "real_indoor_train.npz"

    @property
    def real_indoor_val(self) -> Path:
        return self.real_indoor_root / "real_indoor_val.npz"

    @property
    def real_kp_train(self) -> Path:
        return self.real_indoor_root / "real_kp_train.npz"

    @property
    def real_kp_truth(self) -> Path:
        """The SMPL the keypoint-only set was rendered from (``pose`` (N, 72), ``shape`` (N, 10),
        ``gender``; rows as in `real_kp_train`): never read by training, only by checks of static
        fits made from its 2D keypoints (``python -m gtahuman.fitting.static_fits ... --truth``)."""
        return self.real_indoor_root / "real_kp_train_truth.npz"

    @property
    def gta_root(self) -> Path:
        """Root of the raw GTA-Human layout (annotations/, images/)."""
        return self.root / "gta"

    @property
    def wild_root(self) -> Path:
        return self.root / "wild"

    @property
    def wild_test(self) -> Path:
        return self.wild_root / "wild_test.npz"

    @property
    def wild_val(self) -> Path:
        return self.wild_root / "wild_val.npz"

    @classmethod
    def load(cls, root: str | os.PathLike) -> WorldPaths:
        """The paths of a complete world (one with a manifest) under ``root``."""
        manifest = Path(root) / MANIFEST
        if not manifest.is_file():
            raise FileNotFoundError(f"{manifest}: no mini-world manifest; generate one with "
                                    f"`python -m gtahuman.miniworld {root}`")
        content = json.loads(manifest.read_text())
        return cls(root=Path(root), body_dir=Path(root) / content["body_model"]["dir"])


# --- workers ----------------------------------------------------------------------------------
_WORKER_BODIES: BodyModels | None = None


def _init_worker(body_dir: str) -> None:
    global _WORKER_BODIES
    torch.set_num_threads(1)  # parallelism is across sequences
    _WORKER_BODIES = BodyModels(body_dir)


def _render_and_write(args: tuple[Job, str]) -> dict[str, Any]:
    job, root = args
    assert _WORKER_BODIES is not None
    data = simulate_sequence(job.spec, _WORKER_BODIES)
    result = writers.write_job(job, data, Path(root))
    result["views"] = sequence_views(data.global_orient, data.transl, data.pelvis_rest)
    return result


def _run_jobs(jobs: list[Job], paths: WorldPaths, workers: int, progress: bool) -> Iterator[dict[str, Any]]:
    bar = tqdm(total=sum(j.spec.num_frames for j in jobs), unit="frame", desc="mini world",
               disable=not progress, file=sys.stderr)
    args = [(job, str(paths.root)) for job in jobs]
    try:
        if workers <= 1:
            threads = torch.get_num_threads()
            _init_worker(str(paths.body_dir))  # one torch thread, as in workers: same float sums
            try:
                for job, result in zip(jobs, map(_render_and_write, args)):
                    bar.update(job.spec.num_frames)
                    yield result
            finally:
                torch.set_num_threads(threads)
            return
        context = multiprocessing.get_context("spawn")  # no fork after torch has started threads
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                 initargs=(str(paths.body_dir),)) as pool:
            for job, result in zip(jobs, pool.map(_render_and_write, args)):
                bar.update(job.spec.num_frames)
                yield result
    finally:
        bar.close()


# --- manifest and cache -----------------------------------------------------------------------
def _body_dir_entry(root: Path, body_dir: Path) -> str:
    """The body dir relative to the world when inside it (a moved world stays valid), else absolute."""
    try:
        return str(body_dir.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(body_dir.resolve())


def _params(size: str, seed: int, body_entry: str, variant: str = "standard") -> dict[str, Any]:
    params = {"format_version": FORMAT_VERSION, "size": size, "seed": int(seed), "body_dir": body_entry}
    if variant != "standard":  # a standard world's cache key stays what it was before variants existed
        params["variant"] = variant
    return params


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _prepare_directory(root: Path, params: dict[str, Any], overwrite: bool) -> bool:
    """True if a complete world with ``params`` is already there; otherwise clear what an
    earlier (interrupted or overwritten) generation left and mark the directory partial."""
    manifest = _read_json(root / MANIFEST)
    if manifest is not None and manifest.get("params") == params:
        return True
    if manifest is not None and not overwrite:
        raise WorldDirectoryError(
            f"{root / MANIFEST}: holds a world with params {manifest.get('params')}, not {params}; "
            "pass overwrite=True (--overwrite) or choose another directory")
    leftovers = [name for name in DOMAIN_DIRS if (root / name).exists()]
    if leftovers and manifest is None and not (root / PARTIAL_MARKER).exists() and not overwrite:
        raise WorldDirectoryError(f"{root}: has {leftovers} but no mini-world manifest; refusing to replace them "
                                  "(pass overwrite=True or choose an empty directory)")
    for name in leftovers:
        shutil.rmtree(root / name)
    (root / MANIFEST).unlink(missing_ok=True)
    atomic_write_text(root / PARTIAL_MARKER, json.dumps({"params": params}, indent=1))
    return False


def _bytes_under(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _camera_table(size_name: str, variant: str) -> dict[str, Any]:
    scale = SIZES[size_name].image_scale
    table = {}
    for name, style in {**STYLES, "gta": gta_style(variant)}.items():
        width, height = scaled_size(style, scale)
        table[name] = {"image_size": [width, height], "fov_deg": style.fov_deg,
                       "intrinsics": intrinsics(style.fov_deg, width, height).tolist(),
                       "moving_camera": style.moving_camera, "background": style.background,
                       "elevation_edges_deg": list(style.elevation.edges),
                       "elevation_weights": list(style.elevation.weights)}
    return table


# --- the entry point --------------------------------------------------------------------------
def generate_world(out_dir: str | os.PathLike, size: str = "default", seed: int = 0, progress: bool = True, *,
                   body_dir: str | os.PathLike | None = None, workers: int | None = None,
                   overwrite: bool = False, variant: str = "standard") -> WorldPaths:
    """Generate (or find cached) the mini world of ``size`` ("tiny", "default", "large") and
    ``seed`` under ``out_dir``. ``variant`` (`domains.VARIANTS`): what the GTA domain covers
    (the controls of the findings set); every other domain is the same in every variant.
    ``body_dir``: an existing body-model directory to render with (default: the toy model,
    written to ``out_dir/body``). ``workers``: processes (default
    min(2, CPUs); 1 renders in this process; more use the "spawn" start method, so call this
    from a script with an ``if __name__ == "__main__"`` guard). The bytes written do not
    depend on ``workers``. Change `FORMAT_VERSION` whenever the generator's output changes,
    so that cached worlds are not mistaken for new ones."""
    if size not in SIZES:
        raise ValueError(f"generate_world: unknown size {size!r}; choose from {sorted(SIZES)}")
    if variant not in VARIANTS:
        raise ValueError(f"generate_world: unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"generate_world: seed must be a non-negative integer, got {seed!r}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    if body_dir is None:
        body_dir = root / "body"
        if not (body_dir / "smpl_mean_params.npz").is_file():
            write_toy_body_assets(body_dir, seed=TOY_BODY_SEED)
    body_dir = Path(body_dir)
    assets = check_body_model_dir(body_dir, genders=("male", "female"), load_models=False)
    paths = WorldPaths(root=root, body_dir=body_dir)
    body_entry = _body_dir_entry(root, body_dir)
    params = _params(size, seed, body_entry, variant)
    if _prepare_directory(root, params, overwrite):
        return replace(paths, cached=True)

    start = time.perf_counter()
    jobs = plan_world(SIZES[size], seed, variant)
    workers = min(2, os.cpu_count() or 1) if workers is None else max(1, int(workers))
    results = list(_run_jobs(jobs, paths, workers, progress))
    files = writers.write_spin_files(jobs, results, paths)
    files["gta"] = writers.gta_summary(jobs, results, paths)
    seconds = time.perf_counter() - start
    diversity = {kind: summarise(kind, [r.pop("views") for r, j in zip(results, jobs) if j.kind == kind],
                                 len({j.spec.subject.name for j in jobs if j.kind == kind})).as_dict()
                 for kind in dict.fromkeys(j.kind for j in jobs)}
    body_note = (toy_description("male/female", TOY_BODY_SEED) if assets.is_toy
                 else "real SMPL model files (licensed; the world is as licensed as they are)")
    manifest = {
        "params": params,
        "generator": "gtahuman.miniworld.generate_world",
        "body_model": {"dir": body_entry, "is_toy": bool(assets.is_toy), "note": body_note},
        "files": files,
        "variant": {"name": variant, **{k: v for k, v in vars(VARIANTS[variant]).items() if k != "name"}},
        "cameras": _camera_table(size, variant),
        "actions": action_sets(jobs),
        "subjects": {kind: sorted({j.spec.subject.name for j in jobs if j.kind == kind})
                     for kind in sorted({j.kind for j in jobs})},
        "diversity": diversity,  # views, azimuth coverage, camera heights per kind (diversity.py)
        "generation_seconds": round(seconds, 2),
        "workers": workers,
        "bytes_on_disk": {name: _bytes_under(root / name) for name in DOMAIN_DIRS},
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_text(paths.manifest, json.dumps(manifest, indent=1, default=_json_default))
    (root / PARTIAL_MARKER).unlink(missing_ok=True)
    return paths


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")

"""The one body-model directory (``body.model_dir``): find, check and describe its files.

Expected tree (model files may also sit in a ``smpl/`` subfolder, as .pkl or .npz, and may
keep the names of the SMPL download, e.g. ``basicModel_neutral_lbs_10_207_0_v1.0.0.pkl``)::

    <model_dir>/
        SMPL_NEUTRAL.npz | SMPL_NEUTRAL.pkl
        SMPL_MALE.npz    | SMPL_MALE.pkl
        SMPL_FEMALE.npz  | SMPL_FEMALE.pkl
        J_regressor_h36m.npy     (17, 6890)
        J_regressor_extra.npy    (9, 6890)
        smpl_mean_params.npz     pose (144,), shape (10,), cam (3,)

`check_body_model_dir` validates everything at once and raises `BodyAssetError` listing
*every* missing or bad file with the expected tree; it also says whether the files are the
generated toy model (they are marked inside) and refuses a mix of toy and real files.

CLI: ``python -m gtahuman.body.assets DIR``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gtahuman.body.model_files import (NUM_VERTICES, TOY_MARKER_KEY, ModelFileError,
                                       load_smpl_model_file, read_npy_header)

GENDERS = ("neutral", "male", "female")
MODEL_FILE_CANDIDATES: dict[str, tuple[str, ...]] = {
    "neutral": ("SMPL_NEUTRAL.npz", "SMPL_NEUTRAL.pkl",
                "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl"),
    "male": ("SMPL_MALE.npz", "SMPL_MALE.pkl", "basicmodel_m_lbs_10_207_0_v1.0.0.pkl"),
    "female": ("SMPL_FEMALE.npz", "SMPL_FEMALE.pkl", "basicModel_f_lbs_10_207_0_v1.0.0.pkl"),
}
MODEL_SUBDIRS = (".", "smpl")
REGRESSOR_SHAPES = {"J_regressor_h36m.npy": (17, NUM_VERTICES),
                    "J_regressor_extra.npy": (9, NUM_VERTICES)}
MEAN_PARAMS_FILE = "smpl_mean_params.npz"
MEAN_PARAM_SHAPES = {"pose": (144,), "shape": (10,), "cam": (3,)}

EXPECTED_TREE = """\
<model_dir>/
    SMPL_NEUTRAL.npz | SMPL_NEUTRAL.pkl   (or in a smpl/ subfolder; also accepted:
                                           basicModel_neutral_lbs_10_207_0_v1.0.0.pkl)
    SMPL_MALE.npz    | SMPL_MALE.pkl      (also: basicmodel_m_lbs_10_207_0_v1.0.0.pkl)
    SMPL_FEMALE.npz  | SMPL_FEMALE.pkl    (also: basicModel_f_lbs_10_207_0_v1.0.0.pkl)
    J_regressor_h36m.npy                  (17, 6890)
    J_regressor_extra.npy                 (9, 6890)
    smpl_mean_params.npz                  pose (144,), shape (10,), cam (3,)
Original chumpy .pkl files load without chumpy; to convert one to npz once:
`python -m gtahuman.body.model_files SRC.pkl DST.npz`.
To try the suite without SMPL, generate the toy model (marked as toy; never a stand-in for
SMPL results): `python -m gtahuman.body.toy <model_dir>`."""


class BodyAssetError(FileNotFoundError):
    """The body-model directory is missing files or holds bad ones (all listed)."""


@dataclass
class BodyAssets:
    """Resolved paths of a checked body-model directory."""

    model_dir: Path
    model_files: dict[str, Path]  # gender -> model file
    j_regressor_h36m: Path
    j_regressor_extra: Path
    mean_params: Path
    is_toy: bool
    toy_description: str | None = None  # what the toy files say about themselves

    def model_file(self, gender: str) -> Path:
        if gender not in self.model_files:
            raise KeyError(f"no {gender} model was checked in {self.model_dir}; "
                           f"checked: {sorted(self.model_files)}")
        return self.model_files[gender]


def find_model_file(model_dir: Path, gender: str) -> Path | None:
    """First existing candidate file for ``gender`` (npz before pkl, top folder before smpl/)."""
    for sub in MODEL_SUBDIRS:
        for name in MODEL_FILE_CANDIDATES[gender]:
            path = model_dir / sub / name
            if path.is_file():
                return path
    return None


def _mean_params_problem(path: Path) -> tuple[str | None, str | None]:
    """(problem or None, toy marker or None) of smpl_mean_params.npz."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            for key, shape in MEAN_PARAM_SHAPES.items():
                if key not in npz.files:
                    return f"{path}: missing key '{key}' (expected shape {shape})", None
                if npz[key].shape != shape:
                    return f"{path}: key '{key}' has shape {npz[key].shape}, expected {shape}", None
            marker = str(npz[TOY_MARKER_KEY]) if TOY_MARKER_KEY in npz.files else None
    except Exception as err:  # unreadable zip, object arrays, ...
        return f"{path}: cannot be read as npz ({err})", None
    return None, marker


def _regressor_problem(path: Path, shape: tuple[int, int]) -> tuple[str | None, str | None]:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        header = read_npy_header(path)
    except Exception as err:
        return f"{path}: cannot be read as .npy ({err})", None
    if array.shape != shape:
        return f"{path}: shape {array.shape}, expected {shape}", None
    if TOY_MARKER_KEY not in header:
        return None, None
    return None, header.split(f"{TOY_MARKER_KEY}:", 1)[1].strip()


def _first_marker(markers: dict[str, str | None], model_files: dict[str, Path]) -> str | None:
    """A model file's toy marker if any (it names the gender), else any file's."""
    names = [p.name for p in model_files.values()] + sorted(markers)
    return next((str(markers[n]) for n in names if markers.get(n)), None)


def check_body_model_dir(
    model_dir: str | Path,
    genders: tuple[str, ...] = GENDERS,
    load_models: bool = True,
) -> BodyAssets:
    """Check ``model_dir`` and return its resolved files, or raise `BodyAssetError` listing
    every problem. ``load_models=False`` skips loading the model files (existence only)."""
    model_dir = Path(model_dir)
    unknown = [g for g in genders if g not in MODEL_FILE_CANDIDATES]
    if unknown:
        raise ValueError(f"unknown gender(s) {unknown}; expected a subset of {GENDERS}")
    problems: list[str] = []
    markers: dict[str, str | None] = {}
    model_files: dict[str, Path] = {}
    if not model_dir.is_dir():
        problems.append(f"{model_dir}: directory does not exist")
    for gender in genders:
        path = find_model_file(model_dir, gender) if model_dir.is_dir() else None
        if path is None:
            names = " or ".join(MODEL_FILE_CANDIDATES[gender][:2])
            problems.append(f"missing {gender} model: {names}")
            continue
        model_files[gender] = path
        if load_models:
            try:
                model = load_smpl_model_file(path)
                markers[path.name] = model.get(TOY_MARKER_KEY)
            except (ModelFileError, OSError) as err:
                problems.append(str(err))
    for name, shape in REGRESSOR_SHAPES.items():
        path = model_dir / name
        if not path.is_file():
            problems.append(f"missing {name} {shape}")
            continue
        problem, markers[name] = _regressor_problem(path, shape)
        if problem:
            problems.append(problem)
    mean_path = model_dir / MEAN_PARAMS_FILE
    if not mean_path.is_file():
        problems.append(f"missing {MEAN_PARAMS_FILE} (pose 144, shape 10, cam 3)")
    else:
        problem, markers[MEAN_PARAMS_FILE] = _mean_params_problem(mean_path)
        if problem:
            problems.append(problem)

    toy_files = sorted(name for name, marker in markers.items() if marker)
    real_files = sorted(name for name, marker in markers.items() if not marker)
    if toy_files and real_files:
        problems.append(f"mixes generated toy files {toy_files} with real SMPL files "
                        f"{real_files}; use one complete set")
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise BodyAssetError(
            f"body model directory {model_dir} is not usable:\n{listing}\n"
            f"Expected:\n{EXPECTED_TREE}")
    return BodyAssets(
        model_dir=model_dir, model_files=model_files,
        j_regressor_h36m=model_dir / "J_regressor_h36m.npy",
        j_regressor_extra=model_dir / "J_regressor_extra.npy", mean_params=mean_path,
        is_toy=bool(toy_files), toy_description=_first_marker(markers, model_files),
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m gtahuman.body.assets MODEL_DIR", file=sys.stderr)
        return 2
    try:
        assets = check_body_model_dir(args[0])
    except BodyAssetError as err:
        print(err, file=sys.stderr)
        return 1
    for gender, path in assets.model_files.items():
        print(f"{gender:8s} {path}")
    print(f"regressors {assets.j_regressor_h36m.name}, {assets.j_regressor_extra.name}; "
          f"mean params {assets.mean_params.name}")
    print(f"TOY body model, not SMPL: {assets.toy_description}" if assets.is_toy
          else "real SMPL files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

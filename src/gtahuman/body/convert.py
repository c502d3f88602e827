"""Build a chumpy-free ``body.model_dir`` from the SMPL download, then check it.

    python -m gtahuman.body.convert SRC [SRC ...] --out DIR

Each SRC is a model file or a folder (searched with its ``smpl/`` and ``models/`` subfolders).
Model files are the SMPL website's pickles (``basicModel_neutral_lbs_10_207_0_v1.0.0.pkl``,
``basicmodel_m_lbs_10_207_0_v1.0.0.pkl``, ``basicModel_f_lbs_10_207_0_v1.0.0.pkl``) or files already
named ``SMPL_{NEUTRAL,MALE,FEMALE}.pkl|npz``; the gender is read from the name. Each is loaded
without chumpy (`gtahuman.body.model_files`) and written as ``DIR/SMPL_<GENDER>.npz``.
``J_regressor_h36m.npy``, ``J_regressor_extra.npy`` and ``smpl_mean_params.npz`` found in the
SRC folders are copied. DIR is then checked as training checks it (`gtahuman.body.assets`):
exit status 0 when it is complete, 1 with every missing or bad file listed.
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

from gtahuman.body.assets import MEAN_PARAMS_FILE, REGRESSOR_SHAPES, BodyAssetError, check_body_model_dir
from gtahuman.body.model_files import ModelFileError, convert_model_file

SUBFOLDERS = (".", "smpl", "models")
OTHER_FILES = (*REGRESSOR_SHAPES, MEAN_PARAMS_FILE)
_GENDER_PATTERNS = (("female", re.compile(r"female|(^|_)f(_|$)")), ("male", re.compile(r"male|(^|_)m(_|$)")),
                    ("neutral", re.compile(r"neutral|(^|_)n(_|$)")))


def gender_of(path: Path) -> str | None:
    """'neutral' | 'male' | 'female' from a model file's name; None if it says none."""
    stem = path.stem.lower()
    for gender, pattern in _GENDER_PATTERNS:  # female first: "female" contains "male"
        if pattern.search(stem):
            return gender
    return None


def find_sources(sources: list[Path]) -> tuple[dict[str, Path], dict[str, Path], list[str]]:
    """(gender -> model file, name -> other file, problems) from files and folders."""
    models: dict[str, Path] = {}
    others: dict[str, Path] = {}
    problems: list[str] = []
    for source in sources:
        if source.is_file():
            candidates = [source]
        elif source.is_dir():
            candidates = sorted(p for sub in SUBFOLDERS if (source / sub).is_dir() for p in (source / sub).iterdir())
        else:
            problems.append(f"{source}: no such file or folder")
            continue
        for path in candidates:
            if path.name in OTHER_FILES:
                others.setdefault(path.name, path)
            elif path.suffix in (".pkl", ".npz") and path.name != MEAN_PARAMS_FILE:
                gender = gender_of(path)
                if gender is None:
                    problems.append(f"{path}: cannot tell the gender from the name (expected neutral/male/female "
                                    "or _m_/_f_ as in the SMPL download); rename it SMPL_<GENDER>.pkl")
                elif gender in models and models[gender] != path:
                    problems.append(f"two {gender} models: {models[gender]} and {path}; give only one")
                else:
                    models[gender] = path
    return models, others, problems


def convert_body_dir(sources: list[Path], out: Path) -> tuple[list[Path], list[str]]:
    """Convert and copy into ``out``; returns (files written, problems)."""
    models, others, problems = find_sources(sources)
    written: list[Path] = []
    if models or others:
        out.mkdir(parents=True, exist_ok=True)
    for gender, path in sorted(models.items()):
        try:
            written.append(convert_model_file(path, out / f"SMPL_{gender.upper()}.npz"))
        except (ModelFileError, OSError, ValueError) as err:
            problems.append(f"{path}: cannot convert: {err}")
    for name, path in sorted(others.items()):
        if path.resolve() != (out / name).resolve():
            shutil.copyfile(path, out / name)
        written.append(out / name)
    return written, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gtahuman.body.convert", description=__doc__.split("\n")[0])
    parser.add_argument("sources", nargs="+", type=Path, help="SMPL model files and/or folders holding them")
    parser.add_argument("--out", type=Path, required=True, help="the body.model_dir to write")
    args = parser.parse_args(argv)
    written, problems = convert_body_dir(args.sources, args.out)
    for path in written:
        print(f"wrote {path}")
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    try:
        assets = check_body_model_dir(args.out)
    except BodyAssetError as err:
        print(err, file=sys.stderr)
        return 1
    kind = f"TOY body model, not SMPL ({assets.toy_description})" if assets.is_toy else "SMPL"
    print(f"{args.out}: complete body.model_dir ({kind}); use body.model_dir={args.out}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())

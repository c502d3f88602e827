"""Check a dataset: counts, checksums, schema rules and a few samples drawn to a PNG.

    python -m gtahuman.data.check INDEX_DIR [--source PATH] [--expect N] [--draw OUT.png]
    python -m gtahuman.data.check KIND SOURCE --body-model-dir DIR [--name NAME] [--image-root DIR]
                                   [--cache-dir DIR] [--expect N] [--draw OUT.png] [--samples 6]

The first form checks an index that is already prepared. The second prepares the raw SOURCE of
KIND (gta_raw, spin_npz, humandata) first, into the very folder training uses for the source
NAME (``<cache-dir>/indices/<NAME>-<hash>``; so a later ``experiments.run`` with the same
``run.cache_dir``, paths and source name finds it prepared), then checks it.

What is checked (each failure is listed; the exit status is 1 if any):

- the manifest: every column file against its recorded size and sha256;
- the source files the index was built from (annotation npz / pkl) against their sha256;
- the schema's rules on every row (finite boxes inside the image, confidences in [0, 1], ...);
- ``--expect N``: the number of rows of the annotation file (the count docs/DATA.md gives per
  dataset; samples dropped by prepare, e.g. for a missing image, are reported beside it).

``--draw OUT.png`` draws ``--samples`` evenly spread samples with their keypoints (left green,
right red) and the SMPL mesh projected (see `gtahuman.data.draw_samples`), and prints per sample
how well mesh and keypoints agree.
"""
from __future__ import annotations

import argparse
import pickle
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gtahuman.data.draw_samples import DrawnSheet, draw_samples
from gtahuman.data.formats.errors import DataFormatError
from gtahuman.data.formats.safe_pickle import safe_load_npz
from gtahuman.data.index import SampleIndex
from gtahuman.data.prepare import load_prepared, prepare_dataset

KINDS = ("gta_raw", "spin_npz", "humandata")
IMAGE_KEYS = {"spin_npz": "imgname", "humandata": "image_path"}  # the per-sample image column


# ----------------------------------------------------------------------- raw-source helpers
def _npz_member_shape(path: Path, key: str) -> tuple[int, ...] | None:
    """Shape of array ``key`` of an npz, read from its header only (no data loaded)."""
    with zipfile.ZipFile(path) as archive:
        name = f"{key}.npy"
        if name not in archive.namelist():
            return None
        with archive.open(name) as member:
            major, _ = np.lib.format.read_magic(member)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, _ = read_header(member)  # the header only, no data
    return tuple(shape)


def annotation_rows(kind: str, path: str | Path) -> int | None:
    """Samples in a raw annotation file (npz kinds) or sequences (gta_raw: annotation pickles);
    None when the file does not say. Cheap: reads one npz header or lists one folder."""
    path = Path(path)
    if kind == "gta_raw":
        folder = path / "annotations"
        return len(list(folder.glob("seq_*.pkl"))) if folder.is_dir() else None
    if kind not in IMAGE_KEYS:
        raise ValueError(f"unknown source kind '{kind}'; choices: {', '.join(KINDS)}")
    shape = _npz_member_shape(path, IMAGE_KEYS[kind])
    return None if shape is None else int(shape[0])


def sample_image_paths(kind: str, path: str | Path, count: int = 3) -> list[str]:
    """A few image paths the annotation names (first, middle, last), relative to its image root."""
    path = Path(path)
    if kind == "gta_raw":
        names = sorted(p.stem for p in (path / "annotations").glob("seq_*.pkl"))
        picks = [names[i] for i in sorted({0, len(names) // 2, len(names) - 1})] if names else []
        return [f"images/{name}/{0:08d}.jpeg" for name in picks[:count]]
    try:  # object members go through the restricted unpickler: nothing in the file runs
        members = safe_load_npz(path, keys=(IMAGE_KEYS[kind],))
    except (zipfile.BadZipFile, zlib.error, pickle.UnpicklingError, EOFError, TypeError) as exc:
        raise DataFormatError(path, None, f"a {kind} annotation (.npz archive)", f"unreadable file ({exc!r})") from None
    if IMAGE_KEYS[kind] not in members:
        return []
    names = np.asarray(members[IMAGE_KEYS[kind]]).reshape(-1)
    if not len(names):
        return []
    rows = sorted({0, len(names) // 2, len(names) - 1})[:count]
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names[rows]]


def default_image_root(kind: str, source: Path) -> Path:
    """Where image paths are relative to when ``image_root`` is not given (as training does)."""
    return source if kind == "gta_raw" else source.parent


def index_dir_for(cache_dir: str | Path, name: str, kind: str, source: str | Path,
                  image_root: str | Path | None, body_dir: str | Path, static_fits: str | Path | None = None) -> Path:
    """The folder ``gtahuman.run_data.prepare_source`` prepares source ``name`` into."""
    from gtahuman.data.prepare import content_key  # the key training uses (gtahuman.run_data.prepare_source)

    source = Path(source).resolve()
    root = Path(image_root).resolve() if image_root else default_image_root(kind, source)
    fits = [Path(static_fits).resolve()] if static_fits else []
    return Path(cache_dir) / "indices" / f"{name}-{content_key(kind, source, root, Path(body_dir).resolve(), *fits)}"


def has_own_smpl(kind: str, path: str | Path) -> bool:
    """Whether an annotation file carries SMPL at all (gta_raw always; an npz kind when it has its
    SMPL member), read from the archive's directory only."""
    if kind == "gta_raw":
        return True
    return _npz_member_shape(Path(path), "pose" if kind == "spin_npz" else "smpl") is not None


# ------------------------------------------------------------------------------- the report
@dataclass
class DatasetReport:
    index_dir: Path
    dataset: str = "?"
    samples: int = 0
    images: int = 0
    sequences: int = 0
    with_smpl: int = 0
    with_keypoints3d: int = 0
    visible_keypoints: float = 0.0  # mean 2D keypoints with confidence > 0 per sample
    genders: dict[str, int] = field(default_factory=dict)
    prepare_counts: dict[str, int] = field(default_factory=dict)  # dropped / clipped, by reason
    annotation_rows: int | None = None  # rows of the npz; for gta_raw, sequences
    kind: str | None = None
    expected: int | None = None
    toy_body: bool = False
    problems: list[str] = field(default_factory=list)
    drawing: DrawnSheet | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        lines = [f"dataset {self.dataset}: {self.index_dir}"]
        if self.samples:
            labels = (f"  with SMPL {self.with_smpl}, with 3D keypoints {self.with_keypoints3d}, "
                      f"2D keypoints per sample {self.visible_keypoints:.1f}, genders {self.genders}")
            lines += [f"  samples {self.samples}, images {self.images}, sequences {self.sequences}", labels]
        if self.annotation_rows is not None:
            unit = "sequences (annotation pickles)" if self.kind == "gta_raw" else "rows"
            lines.append(f"  annotation file: {self.annotation_rows} {unit}"
                         + (f" (expected {self.expected})" if self.expected is not None else ""))
        changed = {k: v for k, v in self.prepare_counts.items() if v and not k.startswith("static_fits_")}
        if changed:
            lines.append(f"  prepare dropped / clipped: {changed}")
        if "static_fits_used" in self.prepare_counts:
            lines.append(f"  static fits: {self.prepare_counts['static_fits_used']} used, "
                         f"{self.prepare_counts.get('static_fits_rejected', 0)} rejected by SPIN's rule")
        if self.toy_body:
            lines.append("  prepared with the TOY body model (not SMPL)")
        if self.drawing is not None:
            lines.append(f"  drew {len(self.drawing.samples)} samples into {self.drawing.path}")
            for s in self.drawing.samples:
                agreement = "no SMPL" if s.agreement is None else f"mesh/keypoint agreement {s.agreement:.2f}"
                lines.append(f"    #{s.row} {s.image_path}: {len(s.joint_ids)} keypoints, {s.camera}, {agreement}"
                             + (f"; {s.error}" if s.error else ""))
        lines += [f"  PROBLEM: {p}" for p in self.problems] or ["  OK: manifest, sources and schema checks passed"]
        return "\n".join(lines)


def _summarise(report: DatasetReport, index: SampleIndex) -> None:
    report.dataset, report.samples = index.meta["dataset"], len(index)
    report.images = int(index.meta.get("image_count", 0))
    sequences = np.asarray(index["sequence_id"])
    report.sequences = int(np.unique(sequences[sequences >= 0]).size)
    report.with_smpl = int(np.asarray(index["has_smpl"]).sum())
    report.with_keypoints3d = int(np.asarray(index["has_keypoints3d"]).sum())
    if len(index):
        report.visible_keypoints = float((np.asarray(index["keypoints2d"])[..., 2] > 0).sum(axis=1).mean())
    codes, counts = np.unique(np.asarray(index["gender"]), return_counts=True)
    names = {-1: "unknown", 0: "male", 1: "female"}
    report.genders = {names.get(int(c), str(c)): int(n) for c, n in zip(codes, counts)}
    report.prepare_counts = dict(index.meta.get("prepare", {}).get("counts", {}))
    report.toy_body = bool(index.meta.get("body_model_is_toy", False))


def check_index(index_dir: str | Path, *, source: str | Path | None = None, expect: int | None = None,
                verify_sources: bool = True) -> DatasetReport:
    """Check a prepared index (see the module docstring); never raises for a bad dataset: every
    problem lands in ``report.problems``."""
    report = DatasetReport(Path(index_dir), expected=expect)
    try:
        index = SampleIndex.load(index_dir, mmap=True, verify="full")
    except (OSError, ValueError) as err:
        report.problems.append(f"index: {err}")
        return report
    _summarise(report, index)
    if verify_sources and "prepare" in index.meta:
        try:
            load_prepared(index_dir, source, verify_sources=True)
        except (OSError, ValueError) as err:
            report.problems.append(f"source files: {err}")
    try:
        index.validate()
    except ValueError as err:
        report.problems.append(f"schema: {err}")
    settings = index.meta.get("prepare", {}).get("settings", {})
    recorded = Path(source) if source is not None else Path(index.meta.get("prepare", {}).get("source", "."))
    report.kind = settings.get("kind")
    if settings.get("kind") in KINDS and recorded.exists():
        report.annotation_rows = annotation_rows(settings["kind"], recorded)
    if expect is not None:
        found = report.annotation_rows if report.annotation_rows is not None else report.samples
        if found != expect:
            where = "annotation file" if report.annotation_rows is not None else "index"
            report.problems.append(f"count: expected {expect} rows, the {where} has {found} (a different file "
                                   "or version than docs/DATA.md describes?)")
    return report


def check_source(kind: str, source: str | Path, *, body_model_dir: str | Path, name: str | None = None,
                 image_root: str | Path | None = None, cache_dir: str | Path = ".cache/gtahuman",
                 domain: str | None = None, expect: int | None = None, progress: bool = True) -> DatasetReport:
    """Prepare ``source`` (resumable; reused when already prepared) and check the index."""
    source = Path(source)
    name = name or (source.name if kind == "gta_raw" else source.stem)
    out = index_dir_for(cache_dir, name, kind, source, image_root, body_model_dir)
    if not source.exists():
        return DatasetReport(out, dataset=name, problems=[f"source: {source} does not exist"])
    root = Path(image_root) if image_root else default_image_root(kind, source.resolve())
    domain = domain or name  # as training: data.<split>.<name>.domain, default the name
    try:
        prepare_dataset(kind, source, out, body_model_dir=body_model_dir, dataset_name=name, domain=domain,
                        image_root=root, progress=progress)
    except (OSError, ValueError, KeyError, RuntimeError) as err:  # readers name file and key
        notes = "".join(f"; {n}" for n in getattr(err, "__notes__", []))
        return DatasetReport(out, dataset=name, problems=[f"prepare: {type(err).__name__}: {err}{notes}"])
    return check_index(out, source=source, expect=expect)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gtahuman.data.check", description=__doc__.split("\n")[0])
    parser.add_argument("target", help="a prepared index folder, or a source KIND (gta_raw, spin_npz, humandata)")
    parser.add_argument("source", nargs="?", help="with KIND: the annotation npz, or the GTA-Human release root")
    parser.add_argument("--source", dest="source_now", default=None,
                        help="index form: where the source is now (default: where it was prepared from)")
    parser.add_argument("--body-model-dir", default=None, help="KIND form: required; both: the mesh in --draw")
    parser.add_argument("--name", default=None, help="the source's name in the config (data.train.<name>)")
    parser.add_argument("--image-root", default=None)
    parser.add_argument("--cache-dir", default=".cache/gtahuman", help="as run.cache_dir")
    parser.add_argument("--domain", default=None, help="as data.<split>.<name>.domain (default: the name)")
    parser.add_argument("--expect", type=int, default=None, help="rows the annotation file should have")
    parser.add_argument("--draw", default=None, metavar="OUT.png")
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.target in KINDS:
        if args.source is None or args.body_model_dir is None:
            parser.error(f"{args.target} needs SOURCE and --body-model-dir (the model prepare poses SMPL with)")
        report = check_source(args.target, args.source, body_model_dir=args.body_model_dir, name=args.name,
                              image_root=args.image_root, cache_dir=args.cache_dir, domain=args.domain,
                              expect=args.expect, progress=not args.no_progress)
    else:
        if args.source is not None:
            parser.error(f"'{args.target}' is not a kind ({', '.join(KINDS)}); an index folder takes no SOURCE")
        report = check_index(args.target, source=args.source_now, expect=args.expect)
    if args.draw and report.samples:
        index = SampleIndex.load(report.index_dir, mmap=True, verify=False)
        root = args.image_root or index.meta.get("prepare", {}).get("settings", {}).get("image_root", ".")
        report.drawing = draw_samples(index, root, args.draw, count=args.samples,
                                      body_model_dir=args.body_model_dir)
        unreadable = [s for s in report.drawing.samples if s.error]
        report.problems += [f"image: {s.error}" for s in unreadable]
    print(report.format())
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

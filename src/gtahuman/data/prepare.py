"""``prepare``: raw dataset files -> one sample index per dataset (resumable, checksummed).

    python -m gtahuman.data.prepare gta_raw /data/gta_human out/gta --body-model-dir body/
    python -m gtahuman.data.prepare spin_npz coco_2014_train.npz out/coco --image-root /data/coco ...

:func:`prepare_dataset` reads a source (kinds in ``prepare_sources.SOURCES``), converts it chunk by
chunk (sequences for GTA, row ranges otherwise) and saves each finished chunk as a small index
under ``out_dir/.prepare_partial/`` (atomically, tagged with the checksums of the source files it
read and the settings). A rerun after an interruption reuses every partial whose tags still match
and redoes the rest. The chunks are then streamed into one index (through memory-mapped columns,
so 1.4 M GTA frames never sit in memory at once), saved in ``out_dir`` with a manifest listing
every source file with its sha256, the image count and the prepare counts (boxes clipped, samples
dropped and why), and the partials are removed. If ``out_dir`` already holds an index built from
the same files with the same settings, it is returned as it is.

:func:`load_prepared` loads an index and refuses it, naming the file, when a source file it was
built from has changed, disappeared or (for GTA) a new annotation file has appeared.

Errors from the readers keep their type and message (which name the file and key); prepare adds a
note naming the dataset, the kind and the chunk, and never skips a bad file.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from gtahuman.data.formats.gta_raw import list_sequences
from gtahuman.data.index import (CATEGORICAL, COLUMNS, MANIFEST, IndexMismatchError, SampleIndex, describe_source_file,
                                 recode_categorical)
from gtahuman.data.prepare_common import IMAGE_MARGIN, BodyContext, Chunk
from gtahuman.data.prepare_sources import SOURCES

log = logging.getLogger(__name__)

PARTIAL_DIR = ".prepare_partial"
PREPARE_VERSION = 3  # 2: self_occluded_ratio from the mesh for sources without flags; 3: frame ids from file names
DEFAULT_CHUNK_SIZE = {"gta_raw": 200, "spin_npz": 50_000, "humandata": 50_000}
DEFAULT_DOMAIN = {"gta_raw": "synthetic", "spin_npz": "real"}


class SourceChangedError(ValueError):
    """A source file differs from the one an index was built from."""


class TooManyBadImagesError(RuntimeError):
    """More samples than allowed had a missing or unreadable image."""


def content_key(*parts: Any) -> str:
    """The short content key of a prepared cache (an index, a crop cache): a hash of what it is made from."""
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:10]


@contextlib.contextmanager
def _context(what: str) -> Iterator[None]:
    """Add ``what`` to any error passing through, keeping its type and message."""
    try:
        yield
    except Exception as err:
        err.add_note(f"while {what}")
        raise


def build_chunk(source: Any, chunk: Chunk) -> SampleIndex:
    """Convert one chunk (module-level so that tests can count or interrupt the calls)."""
    return source.build(chunk)


def _fingerprint(descriptors: list[dict[str, Any]]) -> list[list[Any]]:
    """Checksums without the absolute paths, so a moved dataset still matches."""
    return [[Path(d["path"]).name, d["bytes"], d["sha256"]] for d in descriptors]


def _reusable(path: Path, settings: dict[str, Any], descriptors: list[dict[str, Any]]) -> SampleIndex | None:
    """The partial (or final index) at ``path`` if it was made with these settings from these files."""
    if not (path / MANIFEST).is_file():
        return None
    try:
        index = SampleIndex.load(path, mmap=True, verify="fast")
    except (ValueError, OSError):
        return None  # a damaged partial is simply redone
    tags = index.meta.get("prepare", {})
    if tags.get("settings") != settings or _fingerprint(index.meta["source_files"]) != _fingerprint(descriptors):
        return None
    return index


def _columns_intact(path: Path) -> bool:
    """Every column file's sha256 against the manifest, once each time a run opens a prepared index
    (a same-size change, bit rot or an edit, passes the size check ``load`` makes). A mismatch is
    logged and the index rebuilt from its sources."""
    try:
        SampleIndex.load(path, mmap=True, verify="full")
    except IndexMismatchError as err:
        log.warning("%s; rebuilding the index from its source files", err)
        return False
    return True


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not (out_dir / MANIFEST).is_file():
        others = [p.name for p in out_dir.iterdir() if p.name != PARTIAL_DIR]
        if others:
            raise FileExistsError(f"{out_dir} exists and is neither an index nor an unfinished prepare "
                                  f"(holds {others[:3]}); not writing into it")


def _stream_concat(parts: list[SampleIndex], work: Path) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Columns of all ``parts`` in order, written into memory-mapped .npy files under ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    n = sum(len(p) for p in parts)
    vocabularies: dict[str, list[str]] = {name: [] for name in CATEGORICAL}
    columns = {}
    for name, spec in COLUMNS.items():
        dtype = f"S{max(p[name].dtype.itemsize for p in parts)}" if spec.dtype == "S" else spec.dtype
        shape = (n, *spec.shape)
        out = np.lib.format.open_memmap(work / f"{name}.npy", "w+", dtype, shape) if n else np.zeros(shape, dtype)
        row = 0
        for part in parts:
            values = part[name]
            if name in CATEGORICAL:
                values = recode_categorical(np.asarray(values), part.meta["vocabularies"][name], vocabularies[name])
            out[row:row + len(part)] = values
            row += len(part)
        columns[name] = out
    return columns, vocabularies


def _sum_counts(parts: list[SampleIndex]) -> tuple[dict[str, int], dict[str, list[str]]]:
    counts: dict[str, int] = {}
    examples: dict[str, list[str]] = {}
    for part in parts:
        for reason, number in part.meta.get("prepare_counts", {}).items():
            counts[reason] = counts.get(reason, 0) + number
        for reason, names in part.meta.get("prepare_examples", {}).items():
            examples[reason] = (examples.get(reason, []) + names)[:5]
    return counts, examples


def _install(index: SampleIndex, out_dir: Path) -> None:
    """Save ``index`` as ``out_dir``, replacing it together with its partials."""
    staging = index.save(out_dir / PARTIAL_DIR / "index")
    retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".retired", dir=out_dir.parent))
    os.rename(out_dir, retired / "old")
    os.rename(retired / "old" / PARTIAL_DIR / staging.name, out_dir)
    shutil.rmtree(retired, ignore_errors=True)


def prepare_dataset(
    kind: str,
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    body_model_dir: str | os.PathLike,
    dataset_name: str,
    domain: str,
    image_root: str | os.PathLike | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
    batch_size: int = 512,
    device: str = "cpu",
    max_bad_images: int = 100,
    static_fits: str | os.PathLike | None = None,
) -> SampleIndex:
    """Convert ``source`` of ``kind`` (gta_raw, spin_npz, humandata) into an index in ``out_dir``.

    ``chunk_size``: sequences per chunk for gta_raw, rows otherwise (defaults in
    :data:`DEFAULT_CHUNK_SIZE`). ``batch_size``/``device``: body-model batches. Samples whose image
    is missing or unreadable are dropped and counted; more than ``max_bad_images`` stops the run.
    ``static_fits``: SPIN's ``*_fits.npy`` for a spin_npz or humandata source, joined by row to the
    rows without SMPL of their own (`gtahuman.data.static_fits`; checksummed with the source).
    Returns the saved index, memory-mapped.
    """
    if kind not in SOURCES:
        raise ValueError(f"unknown source kind '{kind}'; choices: {', '.join(SOURCES.names())}")
    source, out_dir = Path(source).resolve(), Path(out_dir).resolve()
    image_root = None if image_root is None else Path(image_root).resolve()
    chunk_size = int(chunk_size or DEFAULT_CHUNK_SIZE[kind])
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    with _context(f"preparing dataset '{dataset_name}' ({kind}) from {source}"):
        _check_out_dir(out_dir)
        body = BodyContext(body_model_dir, batch_size, device)
        meta = {"dataset": dataset_name, "domain": domain}
        if static_fits is not None and kind == "gta_raw":
            raise ValueError(f"{source}: static fits join SPIN npz or HumanData rows; a gta_raw source has SMPL")
        fits = None if static_fits is None else Path(static_fits).resolve()
        src = SOURCES.get(kind)(source, image_root, body, meta, **({"static_fits": fits} if fits else {}))
        described = {path: describe_source_file(path) for path in
                     tqdm(src.source_files, desc="checksums", unit="file", disable=not progress, leave=False)}
        settings = {"version": PREPARE_VERSION, "kind": kind, "dataset": dataset_name, "domain": domain,
                    "image_root": str(image_root or source), "image_margin": IMAGE_MARGIN,
                    **({"static_fits": str(fits)} if fits else {}),
                    "body_model": _fingerprint([describe_source_file(p) for p in body.files])}
        existing = _reusable(out_dir, settings, list(described.values()))
        if existing is not None and _columns_intact(out_dir):
            return existing
        parts = _run_chunks(src, src.chunks(chunk_size), out_dir / PARTIAL_DIR, settings, described,
                            dataset_name, progress, max_bad_images)
        columns, vocabularies = _stream_concat(parts, out_dir / PARTIAL_DIR / "assembly")
        counts, examples = _sum_counts(parts)
        image_count = len(np.unique(columns["image_path"])) if len(parts) else 0
        final_meta = {**meta, "vocabularies": vocabularies, "source_files": list(described.values()),
                      "image_count": image_count, "body_model_is_toy": body.is_toy,
                      "prepare": {"settings": settings, "source": str(source), "counts": counts,
                                  "examples": examples, **src.extra_meta}}
        _install(SampleIndex(columns, final_meta).validate(), out_dir)
        index = SampleIndex.load(out_dir, mmap=True)
    if progress:
        dropped = {k: v for k, v in counts.items() if v}
        print(f"prepared {dataset_name}: {len(index)} samples, {image_count} images -> {out_dir}"
              + (f"; {dropped}" if dropped else "") + (" [toy body model]" if body.is_toy else ""), file=sys.stderr)
    return index


def _run_chunks(src: Any, chunks: list[Chunk], partial_root: Path, settings: dict[str, Any],
                described: dict[Path, dict[str, Any]], dataset_name: str, progress: bool,
                max_bad_images: int) -> list[SampleIndex]:
    parts, bad_images = [], 0
    bar = tqdm(chunks, desc=f"prepare {dataset_name}", unit="chunk", disable=not progress)
    for chunk in bar:
        descriptors = [described[f] for f in chunk.files]
        path = partial_root / chunk.name
        part = _reusable(path, settings, descriptors)
        if part is None:
            with _context(f"converting chunk {chunk.number} ({chunk.label})"):
                built = build_chunk(src, chunk).validate()
            meta = {**built.meta, "source_files": descriptors, "prepare": {"settings": settings, "chunk": chunk.label}}
            SampleIndex(built.columns, meta).save(path)
            part = SampleIndex.load(path, mmap=True)
        bad_images += part.meta.get("prepare_counts", {}).get("bad_images", 0)
        if bad_images > max_bad_images:
            shown = part.meta.get("prepare_examples", {}).get("bad_images", [])
            raise TooManyBadImagesError(f"{bad_images} samples with a missing or unreadable image, more than "
                                        f"max_bad_images={max_bad_images}; e.g. {shown}")
        parts.append(part)
        bar.set_postfix(samples=sum(len(p) for p in parts))
    return parts


def load_prepared(out_dir: str | os.PathLike, source: str | os.PathLike | None = None, *,
                  mmap: bool = True, verify_sources: bool = True) -> SampleIndex:
    """Load a prepared index; with ``verify_sources`` refuse it if its source files changed.

    ``source`` is where the source is now (default: where it was when prepared); files are
    found by their path relative to it. Raises FileNotFoundError for a missing file and
    :class:`SourceChangedError` for a changed or (GTA) unlisted one, naming the file.
    """
    index = SampleIndex.load(out_dir, mmap=mmap)
    if not verify_sources:
        return index
    prepared_from = Path(index.meta["prepare"]["source"])
    now = Path(source).resolve() if source is not None else prepared_from
    recorded = index.meta["source_files"]
    for entry in recorded:
        path = Path(entry["path"])
        if path == prepared_from:
            current = now
        elif path.is_relative_to(prepared_from):
            current = now / path.relative_to(prepared_from)
        else:  # a companion file kept elsewhere (SPIN's static fits): checked where it was
            current = path
        if not current.is_file():
            raise FileNotFoundError(f"{current}: source file of index {out_dir} is missing")
        if current.stat().st_size != entry["bytes"] or describe_source_file(current)["sha256"] != entry["sha256"]:
            raise SourceChangedError(f"{current}: source file changed since index {out_dir} was prepared "
                                     f"(sha256 differs from the manifest); prepare it again")
    if index.meta["prepare"]["settings"]["kind"] == "gta_raw":
        known = {Path(e["path"]).stem for e in recorded}
        new = [name for name in list_sequences(now) if name not in known]
        if new:
            raise SourceChangedError(f"{now / 'annotations' / new[0]}.pkl: source has {len(new)} annotation "
                                     f"file(s) index {out_dir} was not built from; prepare it again")
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gtahuman.data.prepare", description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=SOURCES.names())
    parser.add_argument("source", help="GTA-Human release root, or the .npz file")
    parser.add_argument("out_dir")
    parser.add_argument("--body-model-dir", required=True)
    parser.add_argument("--image-root", default=None, help="folder image paths are relative to")
    parser.add_argument("--dataset-name", default=None, help="default: the name of OUT_DIR")
    parser.add_argument("--domain", default=None, help="synthetic / real (default: by kind; required for humandata)")
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-bad-images", type=int, default=100)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    domain = args.domain or DEFAULT_DOMAIN.get(args.kind)
    if domain is None:
        parser.error(f"--domain is required for kind {args.kind}")
    prepare_dataset(args.kind, args.source, args.out_dir, body_model_dir=args.body_model_dir,
                    dataset_name=args.dataset_name or Path(args.out_dir).name, domain=domain,
                    image_root=args.image_root, chunk_size=args.chunk_size, progress=not args.no_progress,
                    batch_size=args.batch_size, device=args.device, max_bad_images=args.max_bad_images)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Person crops written once at a fixed size, so training never decodes a full frame.

Decoding a 1920x1080 JPEG costs ~10-20 ms per sample; a 256 px crop well under 1 ms. For each
index row, :func:`build_crop_cache` reads the frame, cuts the square of side ``margin x
max(w, h)`` around the bbox centre (black outside the image; the margin leaves pixels for the
augmentation's rescale and rotation), resizes it to ``crop_res`` and stores it as JPEG bytes.
Keypoints are *not* baked in: each row keeps its crop affine (full-image px -> crop px), and the
dataset re-expresses bbox and keypoints through it at read time, so labels can change without
rebuilding.

On disk (a directory): ``crops.bin`` (all JPEGs back to back), ``offsets.npy`` (int64, N+1:
row i is ``crops.bin[offsets[i]:offsets[i+1]]``, empty for a bad row), ``affines.npy``
(float64, N x 2 x 3) and ``manifest.json`` (parameters, the fingerprint of the index it belongs
to, the bad rows with their reasons), written last so its presence marks a finished cache.

Building is resumable: rows are processed in chunks, each written atomically to ``.building/``;
a rerun skips finished chunks (chunks that recorded unreadable images are retried, so fixing the
files and rerunning repairs them). Unreadable frames are counted, named and recorded; beyond
``max_bad_fraction`` of the rows the build stops with an error listing them.
"""
from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import math
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from gtahuman.atomic import atomic_output, atomic_write_bytes, atomic_write_text
from gtahuman.data.frames import UnreadableImageError, bbox_center_side, cut_square, decode_image, jpeg_reduction
from gtahuman.data.index import SampleIndex

log = logging.getLogger(__name__)

FORMAT_NAME = "gtahuman-crop-cache"
FORMAT_VERSION = 1
MANIFEST, BLOB, OFFSETS, AFFINES, STAGING = "manifest.json", "crops.bin", "offsets.npy", "affines.npy", ".building"
CROP_MARGIN = 1.5  # the cached square's side over the box's larger side (room for rescale and rotation)
_NAMED_IN_ERRORS = 20  # bad files listed in an error message; the manifest keeps all


class CropCacheMismatchError(ValueError):
    """A cache paired with another index, built with other parameters, or not a cache."""


class CropCacheBuildError(RuntimeError):
    """Too many unreadable images while building; the message names them."""


def index_fingerprint(index: SampleIndex) -> str:
    """Digest of what the crops depend on (row count, image paths, sizes and boxes). Labels
    can change without invalidating a cache: they go through the affine at read time."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str(len(index)).encode())
    step = 1 << 16
    for column in ("image_path", "image_size", "bbox_xywh"):
        array = index[column]
        digest.update(f"{column}:{array.dtype.str}".encode())
        for start in range(0, len(array), step):
            digest.update(np.ascontiguousarray(array[start:start + step]).tobytes())
    return digest.hexdigest()


# -- building ------------------------------------------------------------------------------------
def _chunk_name(chunk: int) -> str:
    return f"chunk_{chunk:06d}"


def _build_chunk(job: dict[str, Any]) -> dict[str, Any]:
    """Crop rows [start, stop) into ``<staging>/chunk_k.bin`` + ``.json`` (the JSON, written
    last and atomically, marks the chunk finished). Runs in worker processes."""
    res, lengths, bad, blobs = job["crop_res"], [], [], []
    for k, row in enumerate(range(job["start"], job["stop"])):
        path = Path(job["image_root"]) / job["paths"][k]
        try:
            image, reduction = decode_image(
                path, job["sizes"][k], jpeg_reduction(job["sides"][k], res))
            crop = cut_square(image, job["centers"][k], job["sides"][k], res, reduction)
            buffer = io.BytesIO()
            Image.fromarray(crop).save(buffer, format="JPEG", quality=job["quality"])
            blobs.append(buffer.getvalue())
        except UnreadableImageError as err:
            bad.append({"row": row, "path": str(path), "reason": err.reason})
            blobs.append(b"")
        lengths.append(len(blobs[-1]))
    staging, name = Path(job["staging"]), _chunk_name(job["chunk"])
    atomic_write_bytes(staging / f"{name}.bin", b"".join(blobs))
    record = {"chunk": job["chunk"], "start": job["start"], "stop": job["stop"], "lengths": lengths, "bad": bad}
    atomic_write_text(staging / f"{name}.json", json.dumps(record))
    return record


def _finished_chunk(staging: Path, chunk: int, start: int, stop: int) -> dict[str, Any] | None:
    """The record of a finished, intact chunk without unreadable rows (those are retried)."""
    record_path, blob_path = staging / f"{_chunk_name(chunk)}.json", staging / f"{_chunk_name(chunk)}.bin"
    if not record_path.is_file() or not blob_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
    except json.JSONDecodeError:
        return None
    intact = (record.get("start"), record.get("stop")) == (start, stop) and \
        blob_path.stat().st_size == sum(record["lengths"])
    return record if intact and not record["bad"] else None


def _too_many_bad(bad: list[dict[str, Any]], n: int, max_bad_fraction: float) -> CropCacheBuildError:
    named = "\n  ".join(f"{b['path']}: {b['reason']}" for b in bad[:_NAMED_IN_ERRORS])
    more = f"\n  ... and {len(bad) - _NAMED_IN_ERRORS} more" if len(bad) > _NAMED_IN_ERRORS else ""
    return CropCacheBuildError(
        f"crop cache: {len(bad)} of {n} images are unreadable, more than max_bad_fraction="
        f"{max_bad_fraction:g} allows ({math.floor(max_bad_fraction * n)} rows):\n  {named}{more}\n"
        "Fix or remove these files (or rows) and rerun; finished chunks are kept.")


def build_crop_cache(
    index: SampleIndex,
    image_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    crop_res: int = 256,
    margin: float = CROP_MARGIN,
    quality: int = 90,
    workers: int = 0,
    progress: bool = True,
    max_bad_fraction: float = 0.001,
    chunk_rows: int = 1024,
) -> CropCache:
    """Write the crops of every row of ``index`` (frames under ``image_root``) to ``out_dir``.

    Returns the finished :class:`CropCache`. An existing finished cache of the same index and
    parameters is returned as is; one of another index or other parameters is refused.
    ``workers`` > 0 crops chunks in that many processes.
    """
    if crop_res <= 0 or not margin > 0 or not 1 <= quality <= 100 or chunk_rows <= 0:
        raise ValueError(f"build_crop_cache: need crop_res > 0, margin > 0, 1 <= quality <= 100 and "
                         f"chunk_rows > 0; got {crop_res}, {margin}, {quality}, {chunk_rows}")
    if not 0.0 <= max_bad_fraction <= 1.0:
        raise ValueError(f"build_crop_cache: max_bad_fraction must be in [0, 1]; got {max_bad_fraction}")
    out_dir, n = Path(out_dir), len(index)
    params = {"crop_res": int(crop_res), "margin": float(margin), "quality": int(quality),
              "index_fingerprint": index_fingerprint(index), "num_samples": n}
    if (out_dir / MANIFEST).is_file():
        cache = CropCache(out_dir)
        cache.check(index, crop_res=crop_res, margin=margin, quality=quality)
        log.info("crop cache %s is already complete (%d rows)", out_dir, n)
        return cache
    staging = out_dir / STAGING
    build_file = staging / "build.json"
    if build_file.is_file() and json.loads(build_file.read_text()) != params:
        log.warning("crop cache %s: discarding a partial build made for another index or parameters", out_dir)
        shutil.rmtree(staging)
    staging.mkdir(parents=True, exist_ok=True)
    atomic_write_text(build_file, json.dumps(params))

    centers, box_sides = bbox_center_side(index["bbox_xywh"])
    sides = box_sides * margin
    bounds = [(start, min(n, start + chunk_rows)) for start in range(0, n, chunk_rows)]
    records: dict[int, dict[str, Any]] = {}
    for chunk, (start, stop) in enumerate(bounds):
        record = _finished_chunk(staging, chunk, start, stop)
        if record is not None:
            records[chunk] = record
    todo = [chunk for chunk in range(len(bounds)) if chunk not in records]
    if records:
        log.info("crop cache %s: resuming, %d of %d chunks already done", out_dir, len(records), len(bounds))

    def job(chunk: int) -> dict[str, Any]:  # made when submitted: 1.4 M paths never sit in memory at once
        start, stop = bounds[chunk]
        return {"chunk": chunk, "start": start, "stop": stop, "image_root": str(image_root),
                "paths": [index.image_path(i) for i in range(start, stop)],
                "sizes": index["image_size"][start:stop].tolist(), "centers": centers[start:stop],
                "sides": sides[start:stop].tolist(), "crop_res": int(crop_res), "quality": int(quality),
                "staging": str(staging)}

    bad: list[dict[str, Any]] = []
    done_rows = sum(r["stop"] - r["start"] for r in records.values())
    with tqdm(total=n, initial=done_rows, unit="crop", desc=f"crop cache {out_dir.name}", disable=not progress) as bar:
        for record in _run_jobs(todo, job, workers):
            records[record["chunk"]] = record
            bad.extend(record["bad"])
            for entry in record["bad"]:
                log.warning("crop cache: unreadable image %s (row %d): %s", entry["path"], entry["row"], entry["reason"])
            bar.update(record["stop"] - record["start"])
            if len(bad) > max_bad_fraction * n:
                raise _too_many_bad(bad, n, max_bad_fraction)
    affines = square_affines(centers, sides, crop_res)
    return _assemble(out_dir, staging, params, [records[c] for c in sorted(records)], bad, affines)


def _run_jobs(chunks: list[int], job: Callable[[int], dict[str, Any]], workers: int) -> Iterator[dict[str, Any]]:
    """Records of :func:`_build_chunk` in chunk order; with workers, at most 2 x workers chunks
    are in flight (submitted lazily, so memory stays bounded)."""
    if workers <= 0 or len(chunks) <= 1:
        for chunk in chunks:
            yield _build_chunk(job(chunk))
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future] = deque()
        queue = iter(chunks)
        try:
            for chunk in itertools.islice(queue, 2 * workers):
                pending.append(pool.submit(_build_chunk, job(chunk)))
            while pending:
                record = pending.popleft().result()
                for chunk in itertools.islice(queue, 1):
                    pending.append(pool.submit(_build_chunk, job(chunk)))
                yield record
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


def square_affines(centers: np.ndarray, sides: np.ndarray, res: int) -> np.ndarray:
    """Per row the 2x3 map full-image px -> crop px of :func:`cut_square` (vectorised
    ``warp.crop_affine`` without rotation): ``crop = res / side * (p - center) + res / 2``."""
    zoom = res / np.asarray(sides, np.float64)
    affines = np.zeros((zoom.size, 2, 3), np.float64)
    affines[:, 0, 0] = affines[:, 1, 1] = zoom
    affines[:, :, 2] = res / 2.0 - zoom[:, None] * np.asarray(centers, np.float64)
    return affines


def _assemble(out_dir: Path, staging: Path, params: dict[str, Any], records: list[dict[str, Any]],
              bad: list[dict[str, Any]], affines: np.ndarray) -> CropCache:
    """Concatenate the chunks into the final files; the manifest goes last."""
    lengths = [np.asarray(r["lengths"], np.int64) for r in records]
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(lengths))] if lengths else [[0]]).astype(np.int64)
    if offsets.size != params["num_samples"] + 1:
        raise RuntimeError(f"crop cache {out_dir}: chunks cover {offsets.size - 1} rows, the index has "
                           f"{params['num_samples']}")
    with atomic_output(out_dir / BLOB) as tmp, open(tmp, "wb") as blob:
        for record in records:
            with open(staging / f"{_chunk_name(record['chunk'])}.bin", "rb") as part:
                shutil.copyfileobj(part, blob, 1 << 24)
    for name, array in ((OFFSETS, offsets), (AFFINES, affines)):
        with atomic_output(out_dir / name) as tmp, open(tmp, "wb") as f:
            np.save(f, array)
    manifest = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **params, "blob_bytes": int(offsets[-1]),
                "num_bad": len(bad), "bad_rows": sorted(bad, key=lambda b: b["row"])}
    atomic_write_text(out_dir / MANIFEST, json.dumps(manifest, indent=1))
    shutil.rmtree(staging, ignore_errors=True)
    if bad:
        log.warning("crop cache %s: %d unreadable rows recorded; datasets return them with valid=0", out_dir, len(bad))
    return CropCache(out_dir)


# -- reading -------------------------------------------------------------------------------------
class CropCache:
    """Read side of a finished cache: ``read(i) -> (crop uint8 (R, R, 3), affine (2, 3))``.

    The blob, offsets and affines are memory-mapped on first use in each process (a pickled
    cache carries only its directory), so DataLoader workers share the page cache. Bad rows
    (unreadable when built) raise :class:`UnreadableImageError` with the recorded reason.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        manifest_path = self.directory / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{manifest_path} not found: {self.directory} is not a finished crop cache "
                                    "(build it with build_crop_cache; an interrupted build resumes)")
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as err:
            raise CropCacheMismatchError(f"{manifest_path}: not valid JSON ({err})") from None
        if manifest.get("format") != FORMAT_NAME or manifest.get("version") != FORMAT_VERSION:
            raise CropCacheMismatchError(f"{manifest_path}: format {manifest.get('format')!r} version "
                                         f"{manifest.get('version')!r}, expected {FORMAT_NAME!r} {FORMAT_VERSION}")
        self.manifest = manifest
        self.crop_res, self.margin = int(manifest["crop_res"]), float(manifest["margin"])
        self.bad_rows: dict[int, tuple[str, str]] = {
            int(b["row"]): (b["path"], b["reason"]) for b in manifest["bad_rows"]}
        self._pid: int | None = None
        self._blob = self._offsets = self._affines = None

    def __len__(self) -> int:
        return int(self.manifest["num_samples"])

    def __repr__(self) -> str:
        return f"CropCache({str(self.directory)!r}, n={len(self)}, crop_res={self.crop_res}, bad={len(self.bad_rows)})"

    def check(self, index: SampleIndex, **params: Any) -> None:
        """Refuse an index other than the one the cache was built from (or other parameters)."""
        if index_fingerprint(index) != self.manifest["index_fingerprint"] or len(index) != len(self):
            raise CropCacheMismatchError(
                f"{self.directory / MANIFEST}: the cache was built from another index (fingerprint "
                f"{self.manifest['index_fingerprint']}, {len(self)} rows) than the one given "
                f"({index.meta.get('dataset')!r}, {len(index)} rows); rebuild it into a new directory")
        for key, value in params.items():
            if self.manifest[key] != value:
                raise CropCacheMismatchError(f"{self.directory / MANIFEST}: built with {key}={self.manifest[key]!r}, "
                                             f"asked for {value!r}; use another directory or delete this one")

    def _open(self) -> None:
        if self._pid == os.getpid():
            return
        blob_path = self.directory / BLOB
        size = blob_path.stat().st_size
        if size != self.manifest["blob_bytes"]:
            raise CropCacheMismatchError(f"{blob_path}: {size} bytes, the manifest says {self.manifest['blob_bytes']}")
        self._blob = np.memmap(blob_path, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
        self._offsets = np.load(self.directory / OFFSETS, mmap_mode="r")
        self._affines = np.load(self.directory / AFFINES, mmap_mode="r")
        self._pid = os.getpid()

    def affine(self, i: int) -> np.ndarray:
        """The 2x3 map full-image px -> crop px of row ``i`` (defined for bad rows too)."""
        self._open()
        return np.array(self._affines[i])

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Decode row ``i``: (crop uint8 (R, R, 3) RGB, affine (2, 3) full-image px -> crop px)."""
        if not 0 <= i < len(self):
            raise IndexError(f"crop cache {self.directory} has {len(self)} rows; asked for row {i}")
        if i in self.bad_rows:
            path, reason = self.bad_rows[i]
            raise UnreadableImageError(path, f"{reason} (recorded when the crop cache was built)")
        self._open()
        start, stop = int(self._offsets[i]), int(self._offsets[i + 1])
        try:
            with Image.open(io.BytesIO(self._blob[start:stop].tobytes())) as image:
                crop = np.asarray(image.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as err:
            raise UnreadableImageError(f"{self.directory / BLOB}[row {i}]", f"corrupt cached crop ({err})") from None
        return crop, np.array(self._affines[i])

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_pid=None, _blob=None, _offsets=None, _affines=None)  # reopened lazily per process
        return state

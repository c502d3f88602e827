"""The crop cache as litdata shards, for training from streamed storage (object stores, NFS).

:func:`write_crop_shards` converts a finished crop cache (:mod:`.crop_cache`) into litdata's
optimized chunk format: one item per index row, ``{"row": i, "crop": <JPEG bytes>, "affine":
float64 (2, 3)}``, in row order, so litdata's global item ``i`` is row ``i``. The JPEG bytes are
copied, never re-encoded: a crop read from the shards is bit-identical to one read from the cache.
Bad rows (unreadable when the cache was built) are kept as empty items so positions stay aligned;
their reasons travel in the manifest.

On disk (a directory): litdata's ``chunk-*.bin`` + ``index.json`` and our ``gtahuman_shards.json``
(the crop cache's fingerprint, its index fingerprint and parameters, the bad rows). Writing is
atomic: everything goes to a sibling ``.<name>.writing`` directory that is renamed into place at
the end, so a directory either holds finished shards or does not exist; an interrupted write is
started over (it only copies bytes). Shards made from another cache are refused by name.

:class:`CropShards` reads them with ``litdata.StreamingDataset.__getitem__`` (random access, no
litdata shuffling or sharding: the suite's own samplers keep control of order, DDP sharding and
mid-epoch resume) behind the :class:`.crop_cache.CropCache` contract ``read(i) -> (crop uint8
(R, R, 3), affine (2, 3))``, so :class:`.datasets.IndexDataset` takes either. The location is a
local directory or any URL litdata streams from (``s3://bucket/crops``, ``gs://...``,
``azure://...``, ``r2://...``; ``local:/path`` emulates a remote store through a local cache).
Shards are written to a local directory; upload that directory as is (``aws s3 sync out
s3://bucket/crops``) and read it from the URL. Remote chunks are fetched into ``cache_dir`` (litdata's
default cache when None; credentials from the environment or ``storage_options``).
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from gtahuman.atomic import atomic_write_text
from gtahuman.data.crop_cache import (
    AFFINES,
    BLOB,
    OFFSETS,
    CropCache,
    CropCacheMismatchError,
    index_fingerprint,
)
from gtahuman.data.frames import UnreadableImageError
from gtahuman.data.index import SampleIndex

# litdata asks PyPI for newer versions only when LITDATA_CHECK_UPDATES=1; nothing may be fetched at run time.
os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")

log = logging.getLogger(__name__)

FORMAT_NAME = "gtahuman-crop-shards"
FORMAT_VERSION = 1
SHARDS_MANIFEST = "gtahuman_shards.json"
LITDATA_INDEX = "index.json"
DEFAULT_CHUNK_BYTES = "64MB"  # litdata's usual chunk size: few requests per epoch, bounded cache use


class CropShardsMismatchError(CropCacheMismatchError):
    """Shards made from another crop cache (or index), or not crop shards at all."""


def _litdata() -> Any:
    try:
        import litdata  # optional, ~1.5 s to import: only where crop shards are used
    except ImportError:
        raise ImportError("crop shards need litdata: pip install litdata") from None
    return litdata


def is_remote(location: str | os.PathLike) -> bool:
    """True for a URL litdata streams from (``s3://``, ``gs://``, ``local:``, ...), False for a path."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", str(location)) is not None and not Path(str(location)).exists()


def cache_fingerprint(cache: CropCache) -> str:
    """Digest of a finished crop cache: its manifest (index fingerprint, parameters, bad rows),
    row offsets and affines. Two caches of the same index whose frames changed differ in their
    JPEG lengths, so the (cheap) offsets stand in for hashing the whole blob."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps(cache.manifest, sort_keys=True).encode())
    for name in (OFFSETS, AFFINES):
        digest.update(np.ascontiguousarray(np.load(cache.directory / name, mmap_mode="r")).tobytes())
    return digest.hexdigest()


def _refuse_inside_distributed() -> None:
    """litdata's writer names its chunks by (rank, worker) and waits for every rank's index:
    called from one rank of a process group it would wait forever."""
    import torch.distributed as dist  # torch only where shards are written

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        raise RuntimeError("write_crop_shards: write the shards once, from a single process, before training; "
                           f"this process is rank {dist.get_rank()} of {dist.get_world_size()}")


def write_crop_shards(
    crop_cache: CropCache | str | os.PathLike,
    out_dir: str | os.PathLike,
    chunk_bytes: int | str = DEFAULT_CHUNK_BYTES,
    progress: bool = True,
) -> CropShards:
    """Write the rows of a finished crop cache to litdata shards in the local ``out_dir``.

    Returns the :class:`CropShards` reader. Shards already written from this very cache are
    returned as they are; shards from another cache, or a non-empty directory without a shard
    manifest, are refused. ``chunk_bytes`` (``int`` or ``"64MB"``) bounds each chunk file.
    """
    cache = crop_cache if isinstance(crop_cache, CropCache) else CropCache(crop_cache)
    if is_remote(out_dir):
        raise ValueError(f"write_crop_shards: {out_dir} is a URL; write to a local directory, upload it "
                         "(e.g. aws s3 sync) and read it with CropShards(<url>)")
    out_dir = Path(out_dir)
    fingerprint = cache_fingerprint(cache)
    if (out_dir / SHARDS_MANIFEST).is_file():
        shards = CropShards(out_dir)
        shards.check_made_from(cache, fingerprint)
        log.info("crop shards %s are already complete (%d rows)", out_dir, len(shards))
        return shards
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} exists and holds no {SHARDS_MANIFEST}: not a finished crop shard "
                              "directory; give a new or empty directory")
    n = len(cache)
    if n == 0:
        raise ValueError(f"write_crop_shards: crop cache {cache.directory} has no rows")
    _refuse_inside_distributed()

    staging = out_dir.with_name(f".{out_dir.name}.writing")
    if staging.exists():
        log.warning("crop shards %s: discarding an interrupted write in %s", out_dir, staging)
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    _write_items(cache, staging, chunk_bytes, progress)
    written = sum(chunk["chunk_size"] for chunk in json.loads((staging / LITDATA_INDEX).read_text())["chunks"])
    if written != n:
        raise RuntimeError(f"crop shards {out_dir}: litdata wrote {written} items for {n} rows")
    manifest = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "crop_cache": str(cache.directory.absolute()),
                "cache_fingerprint": fingerprint, "index_fingerprint": cache.manifest["index_fingerprint"],
                "num_samples": n, "crop_res": cache.crop_res, "margin": cache.margin,
                "quality": cache.manifest["quality"], "chunk_bytes": chunk_bytes,
                "litdata_version": _litdata().__version__, "bad_rows": cache.manifest["bad_rows"]}
    atomic_write_text(staging / SHARDS_MANIFEST, json.dumps(manifest, indent=1))  # the finished marker
    if out_dir.exists():
        out_dir.rmdir()  # empty (checked above)
    os.replace(staging, out_dir)
    return CropShards(out_dir)


def _write_items(cache: CropCache, directory: Path, chunk_bytes: int | str, progress: bool) -> None:
    """One litdata item per row, in row order, from the cache's memory-mapped files."""
    _litdata()
    from litdata.streaming.writer import BinaryWriter  # optional litdata, as _litdata()

    blob_path = cache.directory / BLOB
    blob = np.memmap(blob_path, dtype=np.uint8, mode="r") if blob_path.stat().st_size else np.zeros(0, np.uint8)
    offsets = np.load(cache.directory / OFFSETS, mmap_mode="r")
    affines = np.load(cache.directory / AFFINES, mmap_mode="r")
    if offsets[-1] != blob.size:
        raise CropCacheMismatchError(f"{blob_path}: {blob.size} bytes, {cache.directory / OFFSETS} ends at {offsets[-1]}")
    writer = BinaryWriter(str(directory), chunk_bytes=chunk_bytes)
    for i in tqdm(range(len(cache)), unit="crop", desc=f"crop shards {directory.name}", disable=not progress):
        crop = blob[int(offsets[i]):int(offsets[i + 1])].tobytes()
        writer.add_item(i, {"row": i, "crop": crop, "affine": np.array(affines[i], np.float64)})
    writer.done()
    writer.merge(num_workers=1)


def _read_manifest(location: str, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    where = f"{location.rstrip('/')}/{SHARDS_MANIFEST}"
    hint = "not a finished crop shard directory (write it with write_crop_shards)"
    if not is_remote(location):
        path = Path(location) / SHARDS_MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {location} is {hint}")
        text = path.read_text()
    else:
        _litdata()
        from litdata.streaming.downloader import get_downloader  # optional litdata, as _litdata()

        with tempfile.TemporaryDirectory(prefix="gtahuman_shards_") as tmp:
            local = os.path.join(tmp, SHARDS_MANIFEST)
            try:
                get_downloader(location, tmp, [], storage_options).download_file(where, local)
                text = Path(local).read_text()
            except Exception as err:  # any storage backend's failure, re-raised with the URL
                raise FileNotFoundError(f"{where}: cannot read it ({type(err).__name__}: {err}); "
                                        f"{location} may be {hint}") from err
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as err:
        raise CropShardsMismatchError(f"{where}: not valid JSON ({err})") from None
    if manifest.get("format") != FORMAT_NAME or manifest.get("version") != FORMAT_VERSION:
        raise CropShardsMismatchError(f"{where}: format {manifest.get('format')!r} version "
                                      f"{manifest.get('version')!r}, expected {FORMAT_NAME!r} {FORMAT_VERSION}")
    return manifest


class CropShards:
    """Read side of crop shards (see the module docstring); a drop-in for :class:`CropCache`.

    The ``StreamingDataset`` is opened on first use in each process (a pickled reader carries
    only its location and manifest), so DataLoader workers each stream on their own. Items are
    decoded one at a time (``batch_decode=0``): access is random, and litdata's default window
    decoding would deserialize up to 256 neighbours per read (~1 ms instead of ~40 us).
    """

    def __init__(
        self,
        location: str | os.PathLike,
        *,
        cache_dir: str | os.PathLike | None = None,
        storage_options: dict[str, Any] | None = None,
        max_cache_size: int | str | None = None,
    ):
        remote = is_remote(location)
        self.location = str(location) if remote else str(Path(location).absolute())
        self.directory: str | Path = self.location if remote else Path(self.location)  # named in messages
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        self.storage_options, self.max_cache_size = storage_options, max_cache_size
        self.manifest = _read_manifest(self.location, storage_options)
        self.crop_res, self.margin = int(self.manifest["crop_res"]), float(self.manifest["margin"])
        self.bad_rows: dict[int, tuple[str, str]] = {
            int(b["row"]): (b["path"], b["reason"]) for b in self.manifest["bad_rows"]}
        self._pid: int | None = None
        self._stream: Any = None

    def __len__(self) -> int:
        return int(self.manifest["num_samples"])

    def __repr__(self) -> str:
        return f"CropShards({self.location!r}, n={len(self)}, crop_res={self.crop_res}, bad={len(self.bad_rows)})"

    def check(self, index: SampleIndex, **params: Any) -> None:
        """Refuse an index other than the one the shards' crop cache was built from."""
        if index_fingerprint(index) != self.manifest["index_fingerprint"] or len(index) != len(self):
            raise CropShardsMismatchError(
                f"crop shards {self.location}: made from a crop cache of another index (fingerprint "
                f"{self.manifest['index_fingerprint']}, {len(self)} rows) than the one given "
                f"({index.meta.get('dataset')!r}, {len(index)} rows); write shards of the right cache elsewhere")
        for key, value in params.items():
            if self.manifest[key] != value:
                raise CropShardsMismatchError(f"crop shards {self.location}: built with {key}={self.manifest[key]!r}, "
                                              f"asked for {value!r}")

    def check_made_from(self, cache: CropCache, fingerprint: str | None = None) -> None:
        """Refuse shards that were not written from ``cache`` (compared by :func:`cache_fingerprint`)."""
        fingerprint = fingerprint or cache_fingerprint(cache)
        if fingerprint != self.manifest["cache_fingerprint"]:
            raise CropShardsMismatchError(
                f"crop shards {self.location} were written from the crop cache {self.manifest['crop_cache']} "
                f"(fingerprint {self.manifest['cache_fingerprint']}), not from {cache.directory} (fingerprint "
                f"{fingerprint}); write its shards to another directory or delete {self.location}")

    def _open(self) -> Any:
        if self._pid != os.getpid():
            stream = _litdata().StreamingDataset(
                self.location, cache_dir=self.cache_dir, shuffle=False, drop_last=False, batch_decode=0,
                storage_options=self.storage_options, max_cache_size=self.max_cache_size)
            if len(stream) != len(self):
                raise CropShardsMismatchError(f"crop shards {self.location}: {LITDATA_INDEX} lists {len(stream)} "
                                              f"items, {SHARDS_MANIFEST} says {len(self)}")
            self._stream, self._pid = stream, os.getpid()
        return self._stream

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Decode row ``i``: (crop uint8 (R, R, 3) RGB, affine (2, 3) full-image px -> crop px)."""
        if not 0 <= i < len(self):
            raise IndexError(f"crop shards {self.location} have {len(self)} rows; asked for row {i}")
        if i in self.bad_rows:
            path, reason = self.bad_rows[i]
            raise UnreadableImageError(path, f"{reason} (recorded when the crop cache was built)")
        item = self._open()[int(i)]
        if item["row"] != i:
            raise CropShardsMismatchError(f"crop shards {self.location}: item {i} holds row {item['row']}; "
                                          "the shards are out of order (rewrite them)")
        try:
            with Image.open(io.BytesIO(bytes(item["crop"]))) as image:
                crop = np.asarray(image.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as err:
            raise UnreadableImageError(f"{self.location}[row {i}]", f"corrupt crop in the shards ({err})") from None
        return crop, np.array(item["affine"], np.float64)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_pid=None, _stream=None)  # reopened lazily per process
        return state


__all__ = [
    "SHARDS_MANIFEST",
    "CropShards",
    "CropShardsMismatchError",
    "cache_fingerprint",
    "is_remote",
    "write_crop_shards",
]

"""A sample index on disk: one ``<column>.npy`` per column and ``manifest.json`` (N, dtypes,
shapes, byte sizes and sha256 of every file, and ``meta``).

`save_columns` writes a new directory beside the target and renames it into place, so an
interrupted save leaves the old index (or none), never a half-written one; `load_columns` checks
the files against the manifest (sizes, or sha256 with ``verify="full"``) and maps them read-only.
`gtahuman.data.index.SampleIndex` is what the rest of the suite uses; this is its file format.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

SCHEMA_VERSION = 1
FORMAT_NAME = "gtahuman-sample-index"
MANIFEST = "manifest.json"


class IndexMismatchError(ValueError):
    """The manifest and the column files of a saved index disagree (or the manifest is bad)."""



def file_sha256(path: str | os.PathLike, chunk_bytes: int = 1 << 24) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


class _HashingWriter:
    """File wrapper hashing what passes through; np.lib.format writes to it in 16 MiB chunks."""

    def __init__(self, f: Any):
        self.f, self.sha, self.bytes = f, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.bytes += len(data)
        return self.f.write(data)


def _write_column(path: Path, array: np.ndarray) -> dict[str, Any]:
    with open(path, "wb") as f:
        writer = _HashingWriter(f)
        np.lib.format.write_array(writer, np.asarray(array), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    return {"file": path.name, "dtype": array.dtype.str, "shape": list(array.shape),
            "bytes": writer.bytes, "sha256": writer.sha.hexdigest()}


def save_columns(columns: Mapping[str, np.ndarray], meta: dict[str, Any], num_samples: int, directory: Path) -> Path:
    """Write ``columns`` and a manifest (with ``meta``) to ``directory`` atomically; return it."""
    if directory.exists() and not (directory / MANIFEST).is_file():
        raise FileExistsError(f"{directory} exists and is not a sample index (no {MANIFEST}); not replacing it")
    directory.parent.mkdir(parents=True, exist_ok=True)
    # The new index is built beside the target and renamed into place; a crash leaves a
    # hidden ".partial" directory, never a directory that loads as a (wrong) index.
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".partial", dir=directory.parent))
    try:
        entries = {name: _write_column(staging / f"{name}.npy", array) for name, array in columns.items()}
        manifest = {"format": FORMAT_NAME, "schema_version": SCHEMA_VERSION, "num_samples": num_samples,
                    "columns": entries, "meta": meta}
        with open(staging / MANIFEST, "w") as f:  # written last: its presence marks a complete index
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        if directory.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".old", dir=directory.parent))
            os.rename(directory, retired / "index")
            os.rename(staging, directory)
            shutil.rmtree(retired, ignore_errors=True)  # open memory maps of the old files stay valid
        else:
            os.rename(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _mismatch(path: Path, what: str) -> IndexMismatchError:
    return IndexMismatchError(f"index does not match the files it came from: {path}: {what}")


def load_columns(directory: Path, mmap: bool, verify: Literal[False, "fast", "full"], expected: set[str]
                 ) -> tuple[dict[str, np.ndarray], dict[str, Any], str]:
    """(columns, meta, the manifest's sha256) of a saved index whose column names must be ``expected``."""
    if verify not in (False, "fast", "full"):
        raise ValueError(f"verify must be False, 'fast' or 'full', got {verify!r}")
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path} not found: {directory} is not a saved sample index "
                                "(or its save did not finish)")
    try:
        manifest = json.loads(manifest_path.read_text())
        n, entries, meta = manifest["num_samples"], manifest["columns"], manifest["meta"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise IndexMismatchError(f"{manifest_path}: not a readable index manifest ({err})") from None
    if manifest.get("format") != FORMAT_NAME or manifest.get("schema_version") != SCHEMA_VERSION:
        raise IndexMismatchError(f"{manifest_path}: format {manifest.get('format')!r} version "
                                 f"{manifest.get('schema_version')!r}, expected {FORMAT_NAME!r} {SCHEMA_VERSION}")
    if set(entries) != expected:
        missing, unknown = sorted(expected - set(entries)), sorted(set(entries) - expected)
        raise IndexMismatchError(f"{manifest_path}: columns differ from schema version {SCHEMA_VERSION}: "
                                 f"missing {missing}, unknown {unknown}")
    columns = {}
    for name, entry in entries.items():
        path = directory / entry["file"]
        if not path.is_file():
            raise _mismatch(path, f"file of column '{name}' is missing")
        if verify and path.stat().st_size != entry["bytes"]:
            raise _mismatch(path, f"{path.stat().st_size} bytes, manifest says {entry['bytes']}")
        if verify == "full" and file_sha256(path) != entry["sha256"]:
            raise _mismatch(path, "sha256 differs from the manifest")
        try:  # numpy cannot map an empty array
            array = np.load(path, mmap_mode="r" if mmap and n else None, allow_pickle=False)
        except ValueError as err:
            raise _mismatch(path, f"not a readable .npy file ({err})") from None
        if array.dtype.str != entry["dtype"] or list(array.shape) != entry["shape"] or len(array) != n:
            raise _mismatch(path, f"holds {array.dtype.str} {array.shape}, manifest says "
                                  f"{entry['dtype']} {tuple(entry['shape'])} with N={n}")
        columns[name] = array
    return columns, meta, file_sha256(manifest_path)

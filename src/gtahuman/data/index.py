"""The sample index: one columnar, memory-mappable table of samples per dataset.

``prepare`` turns each dataset (GTA-Human, SPIN npz, HumanData) into a :class:`SampleIndex`;
datasets, samplers and analyses read only this. Every column is one numpy array whose first
dimension is the sample count N, declared in :data:`COLUMNS`. There are no per-sample Python
objects: image paths are fixed-width ``np.bytes_`` and categorical factors are int16 codes with
their vocabularies in ``meta``. So an index of 1.7 M samples loaded with ``mmap=True`` is a
handful of read-only memory maps, which DataLoader workers share through the page cache instead
of each growing its own copy (a list of dicts would be touched, and so copied, by every worker).

On disk an index is a directory: one ``<column>.npy`` per column and ``manifest.json`` (N,
dtypes, shapes, byte sizes and sha256 of every file, and ``meta``), written and read by
`gtahuman.data.index_files`; the columns' schema is `gtahuman.data.index_schema`. :meth:`SampleIndex.save` writes a new directory beside the target
and renames it into place, so an interrupted save leaves the old index (or none), never a
half-written one.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gtahuman.data.index_schema import (
    CATEGORICAL,
    COLUMNS,
    FACTOR_RANGES,
    KEYPOINT_CONVENTION,
    NUM_KEYPOINTS,
    SMPL_COLUMNS,
    Column,
)  # re-exported: readers take the schema from here
from gtahuman.data.index_files import (
    MANIFEST,
    SCHEMA_VERSION,
    IndexMismatchError,
    file_sha256,
    load_columns,
    save_columns,
)

class IndexValidationError(ValueError):
    """Column contents break the schema's rules; ``problems`` lists every one found."""

    def __init__(self, name: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"sample index '{name}' is invalid:\n  " + "\n  ".join(problems))


def encode_strings(values: Sequence[str] | np.ndarray) -> np.ndarray:
    """Strings -> fixed-width utf-8 ``np.bytes_`` array (never object dtype)."""
    array = np.asanyarray(values)
    if array.dtype.kind == "S":
        return array
    if array.size == 0:
        return np.zeros(array.shape, dtype="S1")
    if array.dtype.kind not in "UO":
        raise TypeError(f"expected strings, got an array of dtype {array.dtype}")
    encoded = [str(v).encode("utf-8") for v in array.ravel()]
    return np.array(encoded, dtype=f"S{max(map(len, encoded), default=1) or 1}").reshape(array.shape)


def encode_categorical(
    values: Sequence[str | None], vocabulary: Sequence[str] = ()
) -> tuple[np.ndarray, list[str]]:
    """Labels -> (int16 codes, vocabulary); ``vocabulary`` is extended with unseen labels.

    None and "" become -1 (unknown).
    """
    vocab = list(vocabulary)
    code_of = {label: code for code, label in enumerate(vocab)}
    codes = np.empty(len(values), dtype=np.int16)
    for i, label in enumerate(values):
        if label is None or label == "":
            codes[i] = -1
            continue
        if label not in code_of:
            code_of[label] = len(vocab)
            vocab.append(label)
        codes[i] = code_of[label]
    if len(vocab) > np.iinfo(np.int16).max:
        raise ValueError(f"{len(vocab)} categories do not fit int16 codes")
    return codes, vocab


def describe_source_file(path: str | os.PathLike) -> dict[str, Any]:
    """The meta entry recording a file an index was built from (path, size, sha256)."""
    path = Path(path)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": file_sha256(path)}


def _conform(name: str, value: Any, n: int | None) -> np.ndarray:
    """Check one column against the schema; cast only where no information is lost in kind."""
    if name not in COLUMNS:
        raise KeyError(f"unknown index column '{name}'; the schema has: {', '.join(COLUMNS)}")
    spec = COLUMNS[name]
    if spec.dtype == "S":
        array = encode_strings(value)
    else:
        array = np.asanyarray(value)  # keeps np.memmap columns memory maps
        if not np.can_cast(array.dtype, spec.dtype, casting="same_kind"):
            raise TypeError(f"column '{name}': expected {spec.dtype}, got {array.dtype} (would change kind)")
        array = array.astype(spec.dtype, copy=False)  # a memmap of the right dtype stays a memmap
    if array.ndim != 1 + len(spec.shape) or array.shape[1:] != spec.shape:
        raise ValueError(f"column '{name}': expected shape (N, {', '.join(map(str, spec.shape))}), got {array.shape}")
    if n is not None and len(array) != n:
        raise ValueError(f"column '{name}' has {len(array)} rows, the other columns {n}")
    return array


class SampleIndex:
    """Columns (name -> array, same first dimension N) plus ``meta``.

    Absent optional columns are filled with their schema ``fill`` (e.g. NaN factors, has_smpl
    False), so every index has every column and indices concatenate column by column.
    ``meta`` holds ``dataset``, ``domain``, ``keypoint_convention``, ``vocabularies`` (one list
    per categorical column), ``source_files`` and ``schema_version``; extra JSON keys are kept.
    """

    def __init__(self, columns: Mapping[str, Any], meta: Mapping[str, Any]):
        missing = [name for name, spec in COLUMNS.items() if spec.required and name not in columns]
        if missing:
            raise KeyError(f"index is missing required column(s): {', '.join(missing)}")
        data: dict[str, np.ndarray] = {}
        for name in COLUMNS:  # schema order; required columns come first and fix N
            if name in columns:
                data[name] = _conform(name, columns[name], len(data["image_path"]) if data else None)
        for name in columns:
            if name not in COLUMNS:
                _conform(name, columns[name], None)  # raises naming the unknown column
        n = len(data["image_path"])
        for name, spec in COLUMNS.items():
            if name not in data:
                data[name] = np.full((n, *spec.shape), spec.fill, dtype=spec.dtype)
        self._columns = data
        self.meta = self._normalise_meta(meta)
        self._source: tuple[str, str] | None = None  # (directory, manifest sha) when loaded with mmap

    @staticmethod
    def _normalise_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
        for key in ("dataset", "domain"):
            if not isinstance(meta.get(key), str) or not meta[key]:
                raise KeyError(f"index meta needs a non-empty string '{key}', got {meta.get(key)!r}")
        try:  # a deep copy that also proves meta can be written to the manifest
            out = json.loads(json.dumps(dict(meta)))
        except (TypeError, ValueError) as err:
            raise TypeError(f"index meta must be JSON-serialisable: {err}") from None
        convention = out.setdefault("keypoint_convention", KEYPOINT_CONVENTION)
        if convention != KEYPOINT_CONVENTION:
            raise ValueError(f"index keypoints must use '{KEYPOINT_CONVENTION}', meta says '{convention}'")
        vocabularies = {k: list(v) for k, v in dict(out.get("vocabularies") or {}).items()}
        for name in CATEGORICAL:
            vocabularies.setdefault(name, [])
        out["vocabularies"] = vocabularies
        out["source_files"] = list(out.get("source_files") or [])
        out["schema_version"] = int(out.get("schema_version", SCHEMA_VERSION))
        return out

    # -- access -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._columns["image_path"])

    def __getitem__(self, column: str) -> np.ndarray:
        if column not in self._columns:
            raise KeyError(f"no column '{column}'; columns: {', '.join(self._columns)}")
        return self._columns[column]

    def __contains__(self, column: object) -> bool:
        return column in self._columns

    @property
    def columns(self) -> dict[str, np.ndarray]:
        return dict(self._columns)

    def image_path(self, i: int) -> str:
        return bytes(self._columns["image_path"][i]).decode("utf-8")

    def label(self, column: str, code: int) -> str | None:
        """The vocabulary label of a categorical code (None for -1)."""
        return None if code < 0 else self.meta["vocabularies"][column][code]

    def row(self, i: int) -> dict[str, Any]:
        """One sample as plain Python values (debugging only; never build these in bulk)."""
        out: dict[str, Any] = {}
        for name, array in self._columns.items():
            value = array[i]
            if name == "image_path":
                out[name] = self.image_path(i)
            elif name in CATEGORICAL:
                out[name] = self.label(name, int(value))
            else:
                out[name] = value.tolist() if isinstance(value, np.ndarray) else value.item()
        return out

    def __repr__(self) -> str:
        return f"SampleIndex(dataset={self.meta['dataset']!r}, domain={self.meta['domain']!r}, n={len(self)})"

    # -- pickling: a memory-mapped index travels as its directory, not its data -----------------
    def __getstate__(self) -> dict[str, Any]:
        if self._source is not None:
            return {"source": self._source}
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "source" in state:
            directory, manifest_sha = state["source"]
            if file_sha256(Path(directory) / MANIFEST) != manifest_sha:
                raise IndexMismatchError(f"{directory}: the index was rewritten after this copy was loaded")
            state = vars(SampleIndex.load(directory, mmap=True, verify=False))
        self.__dict__.update(state)
        self.__dict__.setdefault("_source", None)

    # -- derived indices ------------------------------------------------------------------------
    def subset(self, rows: np.ndarray | Sequence[int]) -> SampleIndex:
        """The samples at ``rows`` (integer positions or a boolean mask), copied into memory."""
        rows = np.asarray(rows)
        if rows.dtype == bool and rows.shape != (len(self),):
            raise ValueError(f"boolean mask of shape {rows.shape} for an index of {len(self)} rows")
        if rows.dtype != bool and not np.issubdtype(rows.dtype, np.integer) and rows.size:
            raise TypeError(f"rows must be integers or a boolean mask, got dtype {rows.dtype}")
        if rows.dtype != bool:
            rows = rows.astype(np.int64)
        return SampleIndex({name: np.asarray(a[rows]) for name, a in self._columns.items()}, self.meta)

    @staticmethod
    def concat(indices: Sequence[SampleIndex], meta: Mapping[str, Any] | None = None) -> SampleIndex:
        """Rows of all ``indices`` in order; categorical vocabularies are merged and recoded.

        Indices of different datasets or domains need an explicit ``meta`` (keep one index per
        dataset and mix them in the sampler, which is what the analyses expect).
        """
        if not indices:
            raise ValueError("concat needs at least one index")
        first = indices[0].meta
        if meta is None:
            for other in indices[1:]:
                for key in ("dataset", "domain"):
                    if other.meta[key] != first[key]:
                        raise ValueError(
                            f"concat of indices with different {key} ({first[key]!r} vs {other.meta[key]!r}) "
                            "needs an explicit meta"
                        )
        merged = dict(first if meta is None else meta)
        vocabularies: dict[str, list[str]] = {}
        columns: dict[str, list[np.ndarray]] = {name: [] for name in COLUMNS}
        for index in indices:
            for name in COLUMNS:
                array = index[name]
                if name in CATEGORICAL:
                    array = recode_categorical(array, index.meta["vocabularies"][name], vocabularies.setdefault(name, []))
                columns[name].append(np.asarray(array))
        sources: list[dict[str, Any]] = []
        for index in indices:
            sources += [s for s in index.meta["source_files"] if s not in sources]
        merged.update(vocabularies=vocabularies, source_files=sources)
        width = max(c.dtype.itemsize for c in columns["image_path"])
        columns["image_path"] = [c.astype(f"S{width}") for c in columns["image_path"]]
        return SampleIndex({name: np.concatenate(parts) for name, parts in columns.items()}, merged)

    # -- checks ---------------------------------------------------------------------------------
    def validate(self, bbox_tolerance_px: float = 1.0, chunk_rows: int = 1 << 18) -> SampleIndex:
        """Check the contents against the schema's rules; raise listing every broken rule.

        Each problem names the column, the rule and the first bad row. Rows are checked in
        chunks of ``chunk_rows`` so a memory-mapped 1.7 M-sample index needs bounded memory.
        """
        problems = []
        for column, rule, bad_rows in _row_rules(self, bbox_tolerance_px):
            first, count = _first_bad_row(len(self), bad_rows, chunk_rows)
            if count:
                problems.append(f"column '{column}': {rule}: first at row {first} ({count} rows in all)")
        if problems:
            raise IndexValidationError(self.meta["dataset"], problems)
        return self

    # -- disk -----------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the index to ``directory`` atomically (see the module docstring); return it.

        An existing directory is replaced only if it holds an index (has a manifest).
        """
        return save_columns(self.columns, self.meta, len(self), Path(directory))

    @classmethod
    def load(
        cls, directory: str | os.PathLike, mmap: bool = True, verify: Literal[False, "fast", "full"] = "fast"
    ) -> SampleIndex:
        """Read a saved index; ``mmap`` maps columns read-only instead of reading them.

        ``verify``: False trusts the manifest, "fast" compares file sizes, "full" also sha256.
        A disagreement raises :class:`IndexMismatchError` naming the file.
        """
        columns, meta, manifest_sha = load_columns(Path(directory), mmap, verify, set(COLUMNS))
        index = cls(columns, meta)
        if mmap:
            index._source = (str(Path(directory).resolve()), manifest_sha)
        return index


def recode_categorical(codes: np.ndarray, vocabulary: list[str], merged: list[str]) -> np.ndarray:
    """Map codes into ``merged`` (extended in place with labels it lacks); -1 stays -1."""
    lookup, extended = encode_categorical(vocabulary, merged)
    merged[:] = extended
    lookup = np.append(lookup, np.int16(-1))  # code -1 is sent to the appended -1
    return lookup[np.where(codes < 0, len(vocabulary), codes)]


def _first_bad_row(n: int, bad_rows: Callable[[slice], np.ndarray], chunk_rows: int) -> tuple[int, int]:
    """Apply ``bad_rows(slice) -> bool per row`` chunk by chunk; return (first bad row, count)."""
    first, count = -1, 0
    for start in range(0, n, chunk_rows):
        hits = np.flatnonzero(bad_rows(slice(start, min(n, start + chunk_rows))))
        if hits.size and first < 0:
            first = start + int(hits[0])
        count += int(hits.size)
    return first, count


def _any_per_row(mask: np.ndarray) -> np.ndarray:
    return mask.reshape(len(mask), -1).any(axis=1)


def _row_rules(index: SampleIndex, tol: float) -> list[tuple[str, str, Callable[[slice], np.ndarray]]]:
    """Every rule as (column, what it demands, rows -> bool array of rows breaking it)."""
    c = index.columns

    def box_outside(s: slice) -> np.ndarray:
        box, size = c["bbox_xywh"][s], c["image_size"][s].astype(np.float32)
        return ((box[:, :2] < -tol) | (box[:, :2] + box[:, 2:] > size + tol)).any(axis=1)

    rules = [
        ("image_size", "width and height must be positive", lambda s: (c["image_size"][s] <= 0).any(axis=1)),
        ("bbox_xywh", "must be finite", lambda s: _any_per_row(~np.isfinite(c["bbox_xywh"][s]))),
        ("bbox_xywh", "width and height must be positive", lambda s: (c["bbox_xywh"][s][:, 2:] <= 0).any(axis=1)),
        ("bbox_xywh", f"must lie inside image_size (+-{tol:g} px)", box_outside),
        ("keypoints2d", "must be finite", lambda s: _any_per_row(~np.isfinite(c["keypoints2d"][s]))),
        ("keypoints2d", "confidence must be in [0, 1]",
         lambda s: _any_per_row(~((c["keypoints2d"][s][..., 2] >= 0) & (c["keypoints2d"][s][..., 2] <= 1)))),
        ("keypoints3d", "must be finite where has_keypoints3d is true",
         lambda s: _any_per_row(~np.isfinite(c["keypoints3d"][s])) & c["has_keypoints3d"][s]),
        ("gender", "must be -1, 0 or 1", lambda s: (c["gender"][s] < -1) | (c["gender"][s] > 1)),
        ("focal_length", "must be finite and >= 0",
         lambda s: ~((c["focal_length"][s] >= 0) & np.isfinite(c["focal_length"][s]))),
        ("sequence_id", "must be >= -1", lambda s: c["sequence_id"][s] < -1),
        ("frame_id", "must be >= -1", lambda s: c["frame_id"][s] < -1),
    ]
    for name in SMPL_COLUMNS:
        rules.append((name, "must be finite where has_smpl is true",
                      lambda s, name=name: _any_per_row(~np.isfinite(c[name][s])) & c["has_smpl"][s]))
    for name in CATEGORICAL:
        size = len(index.meta["vocabularies"][name])
        rules.append((name, f"code must be -1 or index one of the {size} labels in meta vocabularies",
                      lambda s, name=name, size=size: (c[name][s] < -1) | (c[name][s] >= size)))
    for name, (lo, hi) in FACTOR_RANGES.items():
        rules.append((name, f"must be NaN (unknown) or within [{lo:g}, {hi:g}]",
                      lambda s, name=name, lo=lo, hi=hi:
                      ~np.isnan(c[name][s]) & ~((c[name][s] >= lo) & (c[name][s] <= hi))))
    return rules

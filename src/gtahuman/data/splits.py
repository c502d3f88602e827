"""A held-out part of a training source, by sequence, the same on every machine (issue 19).

GTA-Human has no test split: evaluating on ``set=gta`` scores frames the model trained on, which
is how a per-bin error curve over GTA-Human (the paper's Fig. 9) would flatter every bin the
training data covers. A source with ``split: train`` trains on all but a fixed
``heldout_fraction`` of its sequences, and ``split: heldout`` (or ``experiments.evaluate
set=<name>_heldout``) reads exactly those.

The split is by sequence, so that no frame of a held-out sequence (same person, place, camera)
is seen in training; still images (``sequence_id`` -1) are split one by one, by image path. A
sequence is held out when a hash of its key falls below the fraction: the split depends on the
keys alone, not on row order, machine or numpy version, and a larger fraction holds out a
superset. The subset is saved as its own index inside the source's (``<index>/splits/train0.1``,
``<index>/splits/heldout0.1``) and gets its own crop cache.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from gtahuman.data.index import SampleIndex

SPLITS = ("train", "heldout")
_SALT = b"gtahuman-heldout-v1"


def unit_hash(key: str) -> float:
    """A deterministic number in [0, 1) for ``key`` (SHA-256, first 8 bytes)."""
    digest = hashlib.sha256(_SALT + b":" + key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def heldout_mask(sequence_id: np.ndarray, image_path: np.ndarray, fraction: float) -> np.ndarray:
    """(N,) bool: the rows whose sequence (or, for still images, image path) is held out."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"heldout_fraction must lie in (0, 1); got {fraction}")
    sequence_id = np.asarray(sequence_id)
    mask = np.zeros(len(sequence_id), bool)
    ids, inverse = np.unique(sequence_id, return_inverse=True)
    held = np.array([i >= 0 and unit_hash(f"sequence:{int(i)}") < fraction for i in ids], bool)
    mask[:] = held[inverse]
    still = np.flatnonzero(sequence_id < 0)
    for row in still:
        path = image_path[row]
        mask[row] = unit_hash(f"image:{path.decode() if isinstance(path, bytes) else path}") < fraction
    return mask


def split_index(index: SampleIndex, index_dir: Path, part: str, fraction: float) -> tuple[SampleIndex, Path]:
    """The ``part`` ('train' or 'heldout') of ``index`` saved inside ``index_dir`` (once; reused
    while its manifest exists). The caller holds the source's preparation lock."""
    if part not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {part!r}")
    # inside the source's own index folder: a re-prepared source (a new folder) drops stale splits
    directory = index_dir / "splits" / f"{part}{fraction:g}"
    if (directory / "manifest.json").is_file():
        return SampleIndex.load(directory), directory
    held = heldout_mask(np.asarray(index["sequence_id"]), np.asarray(index["image_path"]), fraction)
    rows = held if part == "heldout" else ~held
    if not rows.any():
        raise ValueError(f"{index_dir}: the {part} part of a {fraction:g} held-out split is empty "
                         f"({len(index)} rows, {len(np.unique(index['sequence_id']))} sequences); change heldout_fraction")
    subset = index.subset(rows)
    subset.meta.update(split=part, heldout_fraction=fraction, split_of=index_dir.name)
    subset.save(directory)
    return SampleIndex.load(directory), directory

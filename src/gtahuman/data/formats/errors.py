"""Errors and small checks shared by the format readers and writers.

Every problem found in a file is raised as :class:`DataFormatError`, whose message always names
the file, the key (or index) and what was expected, so a user with a 20,000-file download can
find the one bad file. The helpers here turn raw values into float32 arrays with those checks,
:func:`gtahuman.data.formats.safe_pickle.read_npz` opens an archive with one clear error for
every way it can be broken (and never runs code from it), and :func:`atomic_output` makes writers leave either the old file
or the complete new one.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gtahuman.atomic import atomic_output  # noqa: F401  (re-exported for the format writers)

# A dimension in a shape spec: a concrete size, or None for "any size".
Dim = int | None


class DataFormatError(ValueError):
    """A file does not hold what its format promises.

    ``path`` is the file, ``key`` the entry (key, index, or None for the file as a whole),
    ``expected`` what the format requires and ``got`` what was found.
    """

    def __init__(self, path: str | os.PathLike, key: str | None, expected: str, got: str | None = None):
        self.path = str(path)
        self.key = key
        self.expected = expected
        self.got = got
        where = f"key '{key}'" if key is not None else "(whole file)"
        message = f"{self.path}: {where}: expected {expected}"
        if got is not None:
            message += f", got {got}"
        super().__init__(message)


def require_keys(mapping: Mapping[str, Any], keys: Sequence[str], path: str | os.PathLike, what: str) -> None:
    """Raise naming the first of ``keys`` missing from ``mapping`` (and listing what is there)."""
    for key in keys:
        if key not in mapping:
            present = ", ".join(sorted(map(str, mapping))) or "(nothing)"
            raise DataFormatError(path, key, f"this key in {what}", f"only: {present}")


def describe(value: Any) -> str:
    """Short description of a value for error messages (type, shape, dtype)."""
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    return f"{type(value).__name__} {value!r}"[:120]


def check_shape(array: np.ndarray, shape: Sequence[Dim], path: str | os.PathLike, key: str) -> np.ndarray:
    """Check ``array.shape`` against ``shape`` (None = any size) and return the array."""
    ok = array.ndim == len(shape) and all(want is None or want == got for want, got in zip(shape, array.shape))
    if not ok:
        wanted = "(" + ", ".join("*" if d is None else str(d) for d in shape) + ")"
        raise DataFormatError(path, key, f"shape {wanted}", f"shape {array.shape}")
    return array


def check_finite(array: np.ndarray, path: str | os.PathLike, key: str) -> np.ndarray:
    """Raise naming the first non-finite entry of ``array`` (its index along axis 0)."""
    finite = np.isfinite(array)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        raise DataFormatError(
            path, key, "finite values", f"{array[tuple(bad)]} at index {tuple(int(i) for i in bad)}"
        )
    return array


def as_float32(value: Any, path: str | os.PathLike, key: str, shape: Sequence[Dim] | None = None) -> np.ndarray:
    """Convert ``value`` to a float32 array, checking it is numeric and (optionally) its shape."""
    try:
        array = np.asarray(value)
        if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise TypeError
        array = array.astype(np.float32, copy=False)
    except (TypeError, ValueError):
        raise DataFormatError(path, key, "a numeric array", describe(value)) from None
    if shape is not None:
        check_shape(array, shape, path, key)
    return array


def as_str_array(value: Any, path: str | os.PathLike, key: str) -> np.ndarray:
    """Convert a list / array of strings (or bytes) to a 1-D numpy unicode array."""
    array = np.asarray(value)
    if array.ndim != 1:
        raise DataFormatError(path, key, "a 1-D list of strings", describe(value))
    if array.dtype.kind == "S":
        return np.char.decode(array, "latin1")
    if array.dtype.kind == "U":
        return array
    if array.dtype == object and all(isinstance(v, (str, bytes)) for v in array):
        return np.array([v.decode("latin1") if isinstance(v, bytes) else v for v in array], dtype=str)
    raise DataFormatError(path, key, "a 1-D list of strings", describe(value))


def check_lengths_agree(
    arrays: Mapping[str, Any], path: str | os.PathLike, expected: int | None = None, expected_from: str = ""
) -> int:
    """Check every array in ``arrays`` has the same length along axis 0 and return it.

    With ``expected`` the length must equal it (``expected_from`` names where it came from,
    e.g. ``'__data_len__'`` or ``'num_frames'``).
    """
    for key, array in arrays.items():
        length = len(array)
        if expected is None:
            expected, expected_from = length, f"'{key}'"
        elif length != expected:
            raise DataFormatError(path, key, f"{expected} rows (as {expected_from})", f"{length} rows")
    return -1 if expected is None else expected

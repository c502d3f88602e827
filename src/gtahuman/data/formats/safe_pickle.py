"""Read pickled data (GTA-Human ``seq_*.pkl``, object members of ``.npz`` files) without running code.

A pickle is a small program: every class or function it names is imported and may be called
while it loads, so ``pickle.load`` or ``np.load(..., allow_pickle=True)`` on a downloaded
annotation can run anything (``os.system``, ``eval``, ...). The dataset formats need far less:
numpy arrays and scalars inside plain dicts, lists, tuples, strings and numbers. The unpickler
here resolves only the handful of globals that rebuilding those takes (listed in
:data:`ALLOWED_GLOBALS`) and refuses every other with :class:`UnsafePickleError`, a
:class:`DataFormatError` naming the file, the key and the refused ``module.name``; nothing it
names is imported. Numeric ``.npy`` members never go through pickle (``allow_pickle=False``).
"""
from __future__ import annotations

import collections
import os
import pickle
import zipfile
import zlib
from collections.abc import Collection
from pathlib import Path
from typing import IO, Any

import numpy as np

from gtahuman.data.formats.errors import DataFormatError, describe
from gtahuman.pickle_globals import NUMPY_GLOBALS



def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes, and nothing else (no codec lookup)."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r}: only latin1 text is plain data")
    return text.encode("latin1")


# (module, name) -> the object itself. Python 2 (and protocol 2) pickles say __builtin__ and
# need _codecs.encode for bytes; numpy's core is spelled numpy.core by numpy 1, numpy._core by 2.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **NUMPY_GLOBALS,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): _latin1_encode,
}
for _builtins in ("builtins", "__builtin__"):
    ALLOWED_GLOBALS.update({(_builtins, kind.__name__): kind for kind in (set, frozenset, complex, bytes, bytearray)})


class UnsafePickleError(DataFormatError):
    """A data file's pickle names a global that plain data never needs (``refused``)."""

    def __init__(self, path: str | os.PathLike, key: str | None, refused: str):
        self.refused = refused
        super().__init__(
            path, key, "plain data (numpy arrays, numbers, strings, dicts, lists)",
            f"a pickle that imports '{refused}' (refused: loading data never runs code from the file)",
        )


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], path: str | os.PathLike, key: str | None):
        super().__init__(file, encoding="latin1")  # latin1: Python 2 pickles, as the GTA converter reads them
        self._path, self._key = path, key

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(self._path, self._key, f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(self._path, self._key, f"persistent id {pid!r}")


def safe_load_pickle(file: str | os.PathLike | IO[bytes], where: str | os.PathLike | None = None,
                     key: str | None = None) -> Any:
    """Unpickle ``file`` (a path or a binary file object) with only :data:`ALLOWED_GLOBALS`.

    ``where`` names the file in errors (default: the path). Truncated or foreign data raises
    what ``pickle.load`` raises (EOFError, pickle.UnpicklingError, ...), so callers keep their
    own messages for those; a refused global raises :class:`UnsafePickleError`.
    """
    if isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as handle:
            return safe_load_pickle(handle, file if where is None else where, key)
    return _RestrictedUnpickler(file, "<stream>" if where is None else where, key).load()


def safe_read_npy(file: IO[bytes], where: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """One ``.npy`` from an open binary file positioned at its start (seekable).

    Numeric arrays are read by numpy with ``allow_pickle=False``; an object array's payload,
    the pickle stream after the header, goes through the restricted unpickler.
    """
    start = file.tell()
    version = np.lib.format.read_magic(file)
    header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if header is None or not header(file)[2].hasobject:
        file.seek(start)  # (a version-3 header, utf8 field names: numpy reads it and refuses object data)
        return np.lib.format.read_array(file, allow_pickle=False)
    array = safe_load_pickle(file, where, key)
    if not isinstance(array, np.ndarray):
        raise DataFormatError(where, key, "an object array after the .npy header", type(array).__name__)
    return array


def safe_load_npz(file: str | os.PathLike | IO[bytes], where: str | os.PathLike | None = None,
                  keys: Collection[str] | None = None) -> dict[str, Any]:
    """The members of an ``.npz`` (all, or those of ``keys`` present) as ``np.load`` gives them.

    Members are keyed like ``np.load`` does (``key.npy`` -> ``key``); members that are not
    ``.npy`` data come back as bytes, as ``np.load`` returns them.
    """
    where = (file if isinstance(file, (str, os.PathLike)) else "<stream>") if where is None else where
    out: dict[str, Any] = {}
    with zipfile.ZipFile(file) as archive:
        for name in archive.namelist():
            key = name[:-4] if name.endswith(".npy") else name
            if keys is not None and key not in keys:
                continue
            with archive.open(name) as member:
                if member.read(6) != b"\x93NUMPY":
                    out[key] = archive.read(name)
                    continue
                member.seek(0)
                out[key] = safe_read_npy(member, where, key)
    return out


def read_npz(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """All members of the ``.npz`` at ``path`` (0-d arrays kept).

    Object members (dicts, strings pickled by ``savez``) are unpickled by the restricted
    unpickler of this module, which admits numpy arrays and plain containers
    only: a member that would import anything else raises ``UnsafePickleError`` (a
    DataFormatError naming the file, the key and the refused global) and nothing of it runs.
    A missing file raises FileNotFoundError; anything that is not a complete npz archive
    (a plain .npy, a truncated zip, a corrupt member) raises DataFormatError.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        with open(path, "rb") as handle:
            if handle.read(6) == b"\x93NUMPY":
                handle.seek(0)
                raise DataFormatError(path, None, f"{what} (.npz archive)", describe(safe_read_npy(handle, path)))
        return safe_load_npz(path)
    except (zipfile.BadZipFile, zlib.error, pickle.UnpicklingError, ValueError, TypeError, OSError, EOFError) as exc:
        if isinstance(exc, DataFormatError):
            raise
        raise DataFormatError(path, None, f"{what} (.npz archive)", f"unreadable file ({exc!r})") from None

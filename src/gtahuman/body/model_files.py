"""SMPL model files without chumpy: load the original pickles and the npz form, write both.

The SMPL release ships Python-2 pickles whose arrays are partly **chumpy** ``Ch`` objects
(v_template, shapedirs, ...) and whose ``J_regressor`` is a ``scipy.sparse`` csc matrix.
chumpy does not install on current Python/numpy, so the loader swaps every ``chumpy.*``
class for a stand-in that only records its pickled state: chumpy pickles a ``Ch`` as its
``__dict__`` minus caches, and a plain ``Ch`` keeps its value there under ``'x'``. Sparse
matrices are rebuilt from their stored ``data``/``indices``/``indptr`` whatever scipy
module path the file names (old files say ``scipy.sparse.csc``).

Every loaded model is normalised to plain numpy: float64 dense arrays, int64 faces and
kintree table, and validated (shapes, required keys) with errors naming file and key.
Extra keys (such as the toy-model marker) are kept.

CLI: ``python -m gtahuman.body.model_files SRC.pkl DST.npz`` converts a model once.
"""
from __future__ import annotations

import contextlib
import copyreg
import io
import pickle
import struct
import sys
import types
import zipfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import scipy.sparse

from gtahuman.atomic import atomic_open
from gtahuman.pickle_globals import NUMPY_GLOBALS

NUM_VERTICES = 6890
NUM_JOINTS = 24
NUM_POSE_BASIS = 207  # 23 joints x 9 rotation-matrix entries
TOY_MARKER_KEY = "gtahuman_toy_model"
FLOAT_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights")
REQUIRED_KEYS = FLOAT_KEYS + ("f", "kintree_table")

# Fixed zip timestamp, so the same arrays always give the same npz bytes.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class ModelFileError(ValueError):
    """A body-model file that is missing a key, has a wrong shape or cannot be read."""


# --- reading ------------------------------------------------------------------------------
class _PickledStandIn:
    """Whatever a pickled chumpy/scipy object carried: constructor args and state."""

    source_class = "?"
    args: tuple = ()
    state: Any = None  # class defaults: copyreg._reconstructor bypasses __new__

    def __new__(cls, *args: Any, **kwargs: Any) -> "_PickledStandIn":
        obj = object.__new__(cls)
        obj.args = args
        obj.state = None
        return obj

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _ChumpyStandIn(_PickledStandIn):
    pass


class _SparseStandIn(_PickledStandIn):
    pass


_SPARSE_NAMES = {"csc_matrix", "csr_matrix", "coo_matrix", "csc_array", "csr_array", "coo_array"}
# Classes a model pickle may legitimately need besides numpy's and the stand-ins above.
_ALLOWED_GLOBALS = {
    ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
    ("copyreg", "__newobj__"), ("_codecs", "encode"),
    ("__builtin__", "object"), ("builtins", "object"), ("__builtin__", "set"),
    ("builtins", "set"), ("builtins", "frozenset"), ("__builtin__", "frozenset"),
    ("collections", "OrderedDict"), ("__builtin__", "bytes"), ("builtins", "bytes"),
    ("__builtin__", "bytearray"), ("builtins", "bytearray"),
}


class _ModelUnpickler(pickle.Unpickler):
    """Unpickler that never imports chumpy and only resolves an allow-list of classes."""

    def __init__(self, file: io.BufferedIOBase, source: Path) -> None:
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy."):
            return type(name, (_ChumpyStandIn,), {"source_class": f"{module}.{name}"})
        if module.startswith("scipy.sparse") and name in _SPARSE_NAMES:
            return type(name, (_SparseStandIn,), {"source_class": f"{module}.{name}"})
        if (module, name) in NUMPY_GLOBALS:  # arrays, dtypes, scalars: not "anything under numpy"
            return NUMPY_GLOBALS[(module, name)]
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise ModelFileError(
            f"{self._source}: refuses to unpickle '{module}.{name}' "
            "(not part of an SMPL model file)"
        )


def _sparse_to_dense(obj: _SparseStandIn, source: Path, key: str) -> np.ndarray:
    state = obj.state if isinstance(obj.state, dict) else {}
    shape = state.get("_shape", state.get("shape"))
    kind = obj.source_class.rsplit(".", 1)[-1][:3]
    try:
        if kind in ("csc", "csr"):
            cls = scipy.sparse.csc_matrix if kind == "csc" else scipy.sparse.csr_matrix
            matrix = cls((state["data"], state["indices"], state["indptr"]), shape=shape)
        else:
            coords = state.get("coords") or (state["row"], state["col"])
            matrix = scipy.sparse.coo_matrix((state["data"], tuple(coords)), shape=shape)
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(
            f"{source}: key '{key}' holds a {obj.source_class} whose stored state cannot be "
            f"rebuilt ({err!r})"
        ) from err
    return np.asarray(matrix.todense())


def _to_plain(value: Any, source: Path, key: str) -> Any:
    """Turn chumpy/sparse stand-ins (and real sparse matrices) into numpy arrays."""
    if isinstance(value, _ChumpyStandIn):
        state = value.state if isinstance(value.state, dict) else {}
        if "x" not in state:
            raise ModelFileError(
                f"{source}: key '{key}' is a chumpy {value.source_class} expression without a "
                "stored value 'x'; export the model with plain arrays first"
            )
        return np.array(_to_plain(state["x"], source, key))
    if isinstance(value, _SparseStandIn):
        return _sparse_to_dense(value, source, key)
    if scipy.sparse.issparse(value):
        return np.asarray(value.todense())
    if isinstance(value, np.ndarray) and value.dtype.kind == "U" and value.ndim == 0:
        return str(value)  # strings saved in npz come back as 0-d arrays
    return value


def _load_pickle(path: Path) -> dict[str, Any]:
    with open(path, "rb") as handle:
        try:
            data = _ModelUnpickler(handle, path).load()
        except ModelFileError:
            raise
        except Exception as err:  # truncated file, wrong format, ...
            raise ModelFileError(f"{path}: not a readable SMPL pickle ({err!r})") from err
    if not isinstance(data, dict):
        raise ModelFileError(
            f"{path}: expected a pickled dict of arrays, got {type(data).__name__}")
    return data


def _load_npz(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                try:
                    data[key] = npz[key]
                except ValueError as err:  # object array: only tolerated for optional keys
                    if key in REQUIRED_KEYS:
                        raise ModelFileError(f"{path}: key '{key}' is not a plain array ({err})")
    except ModelFileError:
        raise
    except Exception as err:
        raise ModelFileError(f"{path}: not a readable npz file ({err!r})") from err
    return data


def _check_shape(path: Path, key: str, array: np.ndarray, expected: tuple, text: str) -> None:
    ok = array.ndim == len(expected) and all(
        e is None or s == e for s, e in zip(array.shape, expected)
    )
    if not ok:
        raise ModelFileError(f"{path}: key '{key}' has shape {array.shape}, expected {text}")


def _normalise(path: Path, raw: Mapping[str, Any]) -> dict[str, Any]:
    data = {str(k): _to_plain(v, path, str(k)) for k, v in raw.items()}
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ModelFileError(
            f"{path}: missing key(s) {missing}; an SMPL model needs {list(REQUIRED_KEYS)}"
        )
    for key in FLOAT_KEYS + ("J",):
        if key in data:
            try:
                data[key] = np.ascontiguousarray(data[key], dtype=np.float64)
            except (TypeError, ValueError) as err:
                raise ModelFileError(f"{path}: key '{key}' is not a numeric array ({err})") from err
    for key in ("f", "kintree_table"):
        data[key] = np.ascontiguousarray(data[key], dtype=np.int64)
    n = NUM_VERTICES
    _check_shape(path, "v_template", data["v_template"], (n, 3), f"({n}, 3)")
    _check_shape(path, "shapedirs", data["shapedirs"], (n, 3, None), f"({n}, 3, >=10)")
    if data["shapedirs"].shape[2] < 10:
        raise ModelFileError(f"{path}: key 'shapedirs' has {data['shapedirs'].shape[2]} shape "
                             "components, expected at least 10")
    _check_shape(path, "posedirs", data["posedirs"], (n, 3, NUM_POSE_BASIS),
                 f"({n}, 3, {NUM_POSE_BASIS})")
    _check_shape(path, "J_regressor", data["J_regressor"], (NUM_JOINTS, n), f"({NUM_JOINTS}, {n})")
    _check_shape(path, "weights", data["weights"], (n, NUM_JOINTS), f"({n}, {NUM_JOINTS})")
    _check_shape(path, "f", data["f"], (None, 3), "(num_faces, 3)")
    _check_shape(path, "kintree_table", data["kintree_table"], (2, NUM_JOINTS),
                 f"(2, {NUM_JOINTS})")
    faces = data["f"]
    if faces.size and (faces.min() < 0 or faces.max() >= n):
        raise ModelFileError(f"{path}: key 'f' indexes vertices outside 0..{n - 1}")
    return data


def load_smpl_model_file(path: str | Path) -> dict[str, Any]:
    """Load an SMPL model (.pkl, chumpy or not, or .npz) into plain, validated numpy arrays."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SMPL model file not found: {path}")
    if path.suffix == ".npz":
        raw = _load_npz(path)
    elif path.suffix == ".pkl":
        raw = _load_pickle(path)
    else:
        raise ModelFileError(
            f"{path}: unknown model file type '{path.suffix}', expected .pkl or .npz")
    return _normalise(path, raw)


def to_smplx_struct(arrays: Mapping[str, Any]) -> types.SimpleNamespace:
    """The attribute struct ``smplx.SMPL(..., data_struct=...)`` reads its buffers from."""
    return types.SimpleNamespace(**{k: arrays[k] for k in REQUIRED_KEYS})


# --- writing ------------------------------------------------------------------------------
def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
    return buffer.getvalue()


def write_smpl_npz(path: str | Path, arrays: Mapping[str, Any]) -> Path:
    """Write ``arrays`` as a compressed npz, byte-for-byte reproducible (fixed zip times).

    Sparse matrices are stored dense; strings as 0-d unicode arrays (no pickles inside)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, value in arrays.items():
            if scipy.sparse.issparse(value):
                value = value.toarray()
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, _npy_bytes(np.asarray(value)))
    return path


def write_marked_npy(path: str | Path, array: np.ndarray, marker: str) -> Path:
    """Save ``array`` as .npy (version 1.0) with ``# marker`` inside the header.

    numpy parses the header with ``ast.literal_eval``, which ignores the trailing comment, so
    any reader loads the array unchanged while `read_npy_header` can still find the mark."""
    array = np.ascontiguousarray(array)
    if "\n" in marker or not marker.isascii():
        raise ValueError("npy header marker must be one line of ASCII")
    header = (f"{{'descr': {np.lib.format.dtype_to_descr(array.dtype)!r}, "
              f"'fortran_order': False, 'shape': {array.shape!r}, }} # {marker}")
    preamble = 10  # magic (6) + version (2) + header length (2)
    header += " " * ((-(preamble + len(header) + 1)) % 64) + "\n"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as handle:  # a kill mid-write leaves the old file or none, never half of one
        handle.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("ascii"))
        handle.write(array.tobytes())
    return path


def read_npy_header(path: str | Path) -> str:
    """The raw header text of an .npy file (where `write_marked_npy` puts its mark)."""
    with open(path, "rb") as handle:
        magic = handle.read(8)
        if magic[:6] != b"\x93NUMPY":
            raise ModelFileError(f"{path}: not an .npy file")
        size_format = "<H" if magic[6] == 1 else "<I"
        (length,) = struct.unpack(size_format, handle.read(struct.calcsize(size_format)))
        return handle.read(length).decode("latin1")


class _FakeChumpyCh:
    """Pickles exactly like a plain ``chumpy.ch.Ch``: its class path and a state dict."""

    def __init__(self, value: np.ndarray) -> None:
        self.state = {"x": np.asarray(value, dtype=np.float64), "_dirty_vars": set(),
                      "_itr": None, "_depends_on_deps": {}, "_make_dense": False,
                      "_make_sparse": False}

    def __reduce_ex__(self, protocol: int) -> tuple:
        return copyreg.__newobj__, (type(self),), self.state


@contextlib.contextmanager
def _fake_chumpy_module() -> Iterator[None]:
    """Make ``chumpy.ch.Ch`` resolve to `_FakeChumpyCh` while pickling, then restore."""
    names = ("chumpy", "chumpy.ch")
    saved = {name: sys.modules.get(name) for name in names}
    package, module = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")
    package.__path__ = []  # type: ignore[attr-defined]
    package.ch = module  # type: ignore[attr-defined]
    module.Ch = _FakeChumpyCh  # type: ignore[attr-defined]
    original = (_FakeChumpyCh.__module__, _FakeChumpyCh.__qualname__)
    _FakeChumpyCh.__module__, _FakeChumpyCh.__qualname__ = "chumpy.ch", "Ch"
    sys.modules.update({"chumpy": package, "chumpy.ch": module})
    try:
        yield
    finally:
        _FakeChumpyCh.__module__, _FakeChumpyCh.__qualname__ = original
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def write_chumpy_style_pkl(
    path: str | Path,
    arrays: Mapping[str, Any],
    chumpy_keys: tuple[str, ...] = ("v_template", "shapedirs", "posedirs", "J", "weights"),
) -> Path:
    """Write a pickle laid out like the original SMPL release, without chumpy installed.

    ``chumpy_keys`` become ``chumpy.ch.Ch`` objects, ``J_regressor`` a scipy csc matrix, the
    rest plain arrays/strings; protocol 2 as in the Python-2 files. Mainly for tests and
    the toy model's ``fmt="pkl"``."""
    payload: dict[str, Any] = {}
    for key, value in arrays.items():
        if key in chumpy_keys:
            payload[key] = _FakeChumpyCh(np.asarray(value))
        elif key == "J_regressor":
            payload[key] = scipy.sparse.csc_matrix(np.asarray(value))
        else:
            payload[key] = value
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _fake_chumpy_module():
        data = pickle.dumps(payload, protocol=2)
    path.write_bytes(data)
    return path


def convert_model_file(src: str | Path, dst: str | Path) -> Path:
    """Convert an SMPL model (chumpy pickle or npz) into a chumpy-free npz at ``dst``."""
    dst = Path(dst)
    if dst.suffix != ".npz":
        raise ValueError(f"{dst}: the converted model must be an .npz file")
    return write_smpl_npz(dst, load_smpl_model_file(src))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m gtahuman.body.model_files SRC.pkl DST.npz", file=sys.stderr)
        return 2
    out = convert_model_file(args[0], args[1])
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The numpy globals that rebuilding pickled arrays and scalars takes, and nothing else.

Shared by the two restricted unpicklers: data files (`gtahuman.data.formats.safe_pickle`) and SMPL
model files (`gtahuman.body.model_files`). A wildcard such as "anything under numpy" would let a
crafted file call e.g. ``numpy.testing``'s helpers that exec strings; these five are enough for
arrays (``ndarray.__reduce__``, protocol 5's buffers), dtypes and numpy scalars.
"""
from __future__ import annotations

from typing import Any

import numpy as np

try:  # numpy >= 2 (numpy.core is a deprecated alias there)
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

# (module, name) -> the object; numpy's core is spelled numpy.core by numpy 1, numpy._core by 2.
NUMPY_GLOBALS: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
for _core in ("numpy.core", "numpy._core"):
    NUMPY_GLOBALS[(f"{_core}.multiarray", "_reconstruct")] = _multiarray._reconstruct  # ndarray.__reduce__
    NUMPY_GLOBALS[(f"{_core}.multiarray", "scalar")] = _multiarray.scalar  # np.float64, np.str_, ...
    NUMPY_GLOBALS[(f"{_core}.numeric", "_frombuffer")] = _numeric._frombuffer  # arrays, protocol 5

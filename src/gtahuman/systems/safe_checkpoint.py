"""Read a checkpoint someone else wrote without running code from it.

``torch.load(weights_only=True)`` refuses a file that pickles any Python object outside torch's
allow-list, and other code bases' checkpoints do: Lightning's hyper-parameter dicts, argparse
namespaces, PARE's own classes. ``torch.load(weights_only=False)`` would import and call whatever
the file names, which is how a crafted checkpoint runs its payload (issue 20). `load_untrusted`
goes between the two: the tensors and plain containers are rebuilt, and every other class the
file names becomes an inert stand-in (a dict subclass that records what it was given and does
nothing else), so the state dict comes out and no callable of the file's choosing runs.
"""
from __future__ import annotations

import os
import pickle
import types
from typing import Any

import torch

# What a checkpoint may call while it is rebuilt: torch's tensor/storage rebuilders, storage and
# dtype classes (looked up by name, never called with data from the file beyond their own
# arguments), and the containers pickle itself uses.
_ALLOWED: dict[str, frozenset[str]] = {
    "torch._utils": frozenset({"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
                               "_rebuild_parameter_with_state", "_rebuild_device_tensor_from_numpy"}),
    "collections": frozenset({"OrderedDict"}),
    "builtins": frozenset({"set", "frozenset", "slice", "complex", "bytearray"}),
    "copyreg": frozenset({"_reconstructor"}),
}


def _allowed_torch(name: str) -> bool:
    """Storage classes (torch.FloatStorage ...), dtypes, torch.Size and torch.device."""
    return name.endswith("Storage") or name in ("Size", "device") or isinstance(getattr(torch, name, None), torch.dtype)


class StandIn(dict):
    """What an unknown class of the file becomes: it accepts any arguments and state, keeps them
    (``args``, ``state``, and dict items for dict subclasses) and has no behaviour."""

    untrusted_name = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<stand-in for {self.untrusted_name}>"


def _stand_in(module: str, name: str) -> type:
    return types.new_class(name, (StandIn,), exec_body=lambda ns: ns.update(untrusted_name=f"{module}.{name}"))


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if name in _ALLOWED.get(module, ()) or (module == "torch" and _allowed_torch(name)):
            return super().find_class(module, name)
        return _stand_in(module, name)


class _RestrictedPickleModule:
    """What ``torch.load(pickle_module=...)`` needs: an Unpickler (and ``load`` for legacy files)."""

    Unpickler = _RestrictedUnpickler
    UnpicklingError = pickle.UnpicklingError

    @staticmethod
    def load(file: Any, **kwargs: Any) -> Any:
        return _RestrictedUnpickler(file, **kwargs).load()


def load_untrusted(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load`` of ``path`` with only tensors, storages and plain containers rebuilt; any
    other class named in the file is a `StandIn` (nothing of the file's runs)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:  # python objects inside: rebuild them as inert stand-ins
        return torch.load(path, map_location=map_location, weights_only=False, pickle_module=_RestrictedPickleModule)

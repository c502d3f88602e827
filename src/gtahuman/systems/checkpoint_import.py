"""Load HMR weights from other code bases' checkpoints into an `HMRSystem`, key by key.

Three layouts are understood (``fmt='auto'`` tells them apart by their keys):

* ``suite``: this suite's Lightning checkpoints (``{'state_dict': ...}`` with
  ``backbone.model.*``, ``head.*``, ``discriminator.*``) or a bare ``system.state_dict()``.
* ``spin``: SPIN's ``HMR`` module (a file that may wrap it in ``{'model': ...}``): ResNet keys
  ``conv1``, ``bn1``, ``layer1..4`` at the top level -> ``backbone.model.*``; regressor keys
  ``fc1``, ``fc2``, ``decpose``, ``decshape``, ``deccam`` and the buffers ``init_pose``,
  ``init_shape``, ``init_cam`` -> ``head.*`` (our head keeps SPIN's names).
* ``mmhuman3d``: ``{'state_dict': ...}`` with ``backbone.*`` (mmcv ResNet = torchvision names),
  ``head.*`` (same names as SPIN's regressor) and ``discriminator.*``, whose sub-module names
  are translated to `SMPLPoseDiscriminator`'s (see ``_MMHUMAN3D_DISCRIMINATOR``).

A DDP ``module.`` prefix is stripped everywhere. Every key that does not land is reported by
name: in the file but not placed (``unmatched``), placed but of the wrong shape
(``shape_mismatch``), in the model but not in the file (``missing``). A report that is not
clean is a `CheckpointImportWarning` listing the keys, or a `CheckpointImportError` with
``strict=True``. Missing keys of parts the file cannot contain (a SPIN file has no
discriminator) are listed but do not make the import unclean.
"""
from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gtahuman.systems.safe_checkpoint import load_untrusted

FORMATS = ("auto", "suite", "spin", "mmhuman3d")
_SPIN_HEAD_KEYS = ("fc1.", "fc2.", "decpose.", "decshape.", "deccam.", "init_pose", "init_shape", "init_cam")
# mmhuman3d SMPLDiscriminator sub-module names -> ours (models/discriminators.py). Note that
# mmhuman3d's per-joint conv block has no ReLU between its two 1x1 convs while ours has one,
# so imported discriminator weights score poses differently; the generator is unaffected.
_MMHUMAN3D_DISCRIMINATOR = (
    (r"pose_discriminator\.conv_blocks\.conv_0\.", "joint_embed.0."),
    (r"pose_discriminator\.conv_blocks\.conv_1\.", "joint_embed.2."),
    (r"pose_discriminator\.fc_layer\.(\d+)\.", r"joint_heads.\1."),
    (r"full_pose_discriminator\.fc_blocks\.regressor_fc_0\.", "full_pose.0."),
    (r"full_pose_discriminator\.fc_blocks\.regressor_fc_1\.", "full_pose.2."),
    (r"full_pose_discriminator\.fc_blocks\.regressor_fc_2\.", "full_pose.4."),
    (r"shape_discriminator\.fc_blocks\.regressor_fc_0\.", "shape.0."),
    (r"shape_discriminator\.fc_blocks\.regressor_fc_1\.", "shape.2."),
)
# Parts a given layout can hold; missing keys of other parts are expected, not an error.
_PARTS_IN_FORMAT = {
    "suite": ("backbone.", "head.", "discriminator.", "adaptation."),
    "spin": ("backbone.", "head."),
    "mmhuman3d": ("backbone.", "head.", "discriminator."),
}


class CheckpointImportError(ValueError):
    """A checkpoint could not be read, or did not match and ``strict=True``."""


class CheckpointImportWarning(UserWarning):
    """A checkpoint did not match the system key for key."""


@dataclass
class ImportReport:
    """What happened to every key of an imported state dict (keys in the system's names,
    except ``unmatched``, which keeps the file's names)."""

    source: str
    fmt: str
    matched: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)  # in the file, no place in the system
    shape_mismatch: list[str] = field(default_factory=list)  # "key: file (..) vs system (..)"
    missing: list[str] = field(default_factory=list)  # expected in this layout, absent from the file
    not_in_format: list[str] = field(default_factory=list)  # parts this layout cannot hold

    @property
    def clean(self) -> bool:
        return not (self.unmatched or self.shape_mismatch or self.missing)

    def summary(self) -> str:
        lines = [f"{self.source} ({self.fmt} layout): loaded {len(self.matched)} tensors"]
        for title, keys in (
            ("UNMATCHED in file (ignored)", self.unmatched),
            ("SHAPE MISMATCH (left as they were)", self.shape_mismatch),
            ("MISSING from file (left as they were)", self.missing),
        ):
            if keys:
                lines.append(f"  {title}: {len(keys)}: " + ", ".join(keys))
        if self.not_in_format:
            lines.append(f"  not part of a {self.fmt} checkpoint (left as they were): {len(self.not_in_format)} keys")
        return "\n".join(lines)


def place_tensor(file_key: str, target: str | None, value: torch.Tensor, system_state: Mapping[str, torch.Tensor],
                 to_load: dict[str, torch.Tensor], report: Any) -> None:
    """Queue ``value`` for the system's ``target`` key when the system has it at the same shape;
    otherwise record why not in ``report`` (an import report with ``unmatched``, which keeps the
    file's key, and ``shape_mismatch``)."""
    if target is None or target not in system_state:
        report.unmatched.append(file_key)
    elif value.shape != system_state[target].shape:
        report.shape_mismatch.append(
            f"{target}: file {tuple(value.shape)} vs system {tuple(system_state[target].shape)}")
    else:
        to_load[target] = value


def load_reported(module: nn.Module, to_load: dict[str, torch.Tensor], report: Any, strict: bool,
                  mismatch: str) -> None:
    """Load what matched; with ``strict``, refuse any mismatch instead (``mismatch`` opens the
    error); a non-strict import that left keys out warns with the report (at the caller's
    caller: the user's line)."""
    if strict and not report.clean:
        raise CheckpointImportError(f"{mismatch} (strict):\n" + report.summary())
    module.load_state_dict(to_load, strict=False)
    if not report.clean:
        warnings.warn(report.summary(), CheckpointImportWarning, stacklevel=3)


def read_state_dict(state_dict_or_path: Mapping[str, Any] | str | os.PathLike) -> tuple[dict[str, torch.Tensor], str, bool]:
    """-> (flat state dict, a name for messages, whether it came from a Lightning checkpoint)."""
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        path = Path(state_dict_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint to import not found: {path}")
        # python objects inside (hyper-parameters, PARE's classes) become inert stand-ins: no code
        # of the file runs (issue 20)
        obj: Any = load_untrusted(path)
        source = str(path)
    else:
        obj, source = state_dict_or_path, "state dict"
    is_lightning = isinstance(obj, Mapping) and "pytorch-lightning_version" in obj
    for container in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(container), Mapping):
            obj = obj[container]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointImportError(f"{source}: expected a state dict (name -> tensor), possibly under "
                                    f"'state_dict' or 'model'; got {type(obj).__name__}")
    tensors = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointImportError(f"{source}: key '{key}': expected a tensor, got {type(value).__name__}")
        tensors[key.removeprefix("module.")] = value
    return tensors, source, is_lightning


def detect_format(keys: list[str], from_lightning: bool = False) -> str:
    """'suite' | 'mmhuman3d' | 'spin' from the key names; CheckpointImportError otherwise."""
    if from_lightning or any(k.startswith("backbone.model.") for k in keys):
        return "suite"
    if any(k.startswith(("backbone.", "head.")) for k in keys):
        return "mmhuman3d"
    if any(k.startswith(_SPIN_HEAD_KEYS) for k in keys) or any(k.startswith(("conv1.", "layer1.")) for k in keys):
        return "spin"
    raise CheckpointImportError(
        "cannot tell the checkpoint layout from its keys (first: " + ", ".join(keys[:5]) + "); "
        "pass fmt='suite', 'spin' or 'mmhuman3d'")


def _rename(key: str, fmt: str) -> str | None:
    """The system key for a file key in layout ``fmt`` (None: no place for it)."""
    if fmt == "suite":
        return key
    if fmt == "spin":
        return f"head.{key}" if key.startswith(_SPIN_HEAD_KEYS) else f"backbone.model.{key}"
    # mmhuman3d
    if key.startswith("backbone."):
        return "backbone.model." + key[len("backbone."):]
    if key.startswith("head."):
        return key
    if key.startswith("discriminator."):
        rest = key[len("discriminator."):]
        for pattern, replacement in _MMHUMAN3D_DISCRIMINATOR:
            renamed, count = re.subn("^" + pattern, replacement, rest)
            if count:
                return "discriminator." + renamed
    return None


def import_hmr_state_dict(
    system: nn.Module,
    state_dict_or_path: Mapping[str, Any] | str | os.PathLike,
    fmt: str = "auto",
    strict: bool = False,
) -> ImportReport:
    """Copy the weights of a SPIN / mmhuman3d / suite checkpoint into ``system`` (in place) and
    return the `ImportReport`. Keys that do not fit are left as they were and reported."""
    if fmt not in FORMATS:
        raise ValueError(f"init format must be one of {FORMATS}, got {fmt!r}")
    file_state, source, from_lightning = read_state_dict(state_dict_or_path)
    if fmt == "auto":
        fmt = detect_format(list(file_state), from_lightning)
    system_state = system.state_dict()
    report = ImportReport(source=source, fmt=fmt)
    to_load: dict[str, torch.Tensor] = {}
    for key, value in file_state.items():
        place_tensor(key, _rename(key, fmt), value, system_state, to_load, report)
    parts = _PARTS_IN_FORMAT[fmt]
    for key in system_state:
        if key in to_load or any(m.startswith(key + ":") for m in report.shape_mismatch):
            continue
        # BatchNorm counters are absent from old checkpoints and carry no weights.
        if key.endswith("num_batches_tracked"):
            continue
        (report.missing if key.startswith(parts) else report.not_in_format).append(key)
    report.matched = sorted(to_load)
    load_reported(system, to_load, report, strict, "checkpoint does not match the system")
    return report

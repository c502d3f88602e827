"""Load a PARE checkpoint in its public layout into a PARE `HMRSystem` (or a bare `PARE` module).

Two public layouts hold the same network under different prefixes:

* PARE's own release (a Lightning checkpoint of its trainer): ``state_dict`` with
  ``model.backbone.*``, ``model.head.*`` and SMPL buffers (``model.smpl.*`` / ``smpl.*``);
* mmhuman3d (``hrnet_w32_conv_pare_*.pth``, the paper's "PARE" start point): ``state_dict``
  with ``backbone.*``, ``head.*`` (and possibly body-model buffers).

Key mapping (after dropping a DDP ``module.`` and PARE's ``model.`` prefix), onto the system's
``regressor.`` (or the module's own names):

=====================================  =======================================================
file                                   here
=====================================  =======================================================
``backbone.upsample_stage_{2,3,4}.*``  ``backbone.upsample_stage_{2,3,4}.*`` (same blocks)
``backbone.<HRNet name>``              ``backbone.model.<HRNet name>`` (timm keeps HRNet's names)
``head.<name>``                        ``head.<name>`` (`PAREHead` keeps PareHead's names)
=====================================  =======================================================

Known extras are listed as ignored, with the reason: the pose-HRNet heatmap layer
``backbone.final_layer.*`` (PARE's forward never uses it), ``head.temperature`` (soft-argmax
temperature, unused with part attention) and SMPL buffers (the suite builds its body model from
``body.model_dir``). ``head.pose_mlp.bias``, which PARE's layer lacks, is set to zero (what PARE
computes). Everything else that does not land is reported by name: in the file with no place
(``unmatched``), of the wrong shape (``shape_mismatch``), expected but absent (``missing``). An
unclean import warns (`CheckpointImportWarning`) or, with ``strict=True``, raises.

Assumes the released configuration ``use_mean_pose=False, use_mean_camshape=False`` (PARE
regresses pose, shape and camera directly); a model trained with those options on would need the
mean folded into the biases, which this importer does not do.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gtahuman.models.pare_head import PAREHead
from gtahuman.systems.checkpoint_import import (
    CheckpointImportError,
    load_reported,
    place_tensor,
    read_state_dict,
)

_UPSAMPLE = re.compile(r"^backbone\.(upsample_stage_\d+\..+)$")
# (pattern on the file key after prefix stripping, why it is not loaded)
_IGNORED = (
    (re.compile(r"^backbone\.final_layer\."), "pose-HRNet heatmap layer, unused by PARE's forward"),
    (re.compile(r"^head\.temperature$"), "soft-argmax temperature, unused with part attention"),
    (re.compile(r"^(head\.)?(smpl|body_model_train|body_model_test)\."), "SMPL buffers (body model comes from body.model_dir)"),
)
# Parameters PARE's network does not have, with the value that reproduces PARE's output.
_FILLED_ZERO = ("head.pose_mlp.bias",)


@dataclass
class PAREImportReport:
    """What happened to every key (system names, except ``unmatched`` / ``ignored`` which keep
    the file's names)."""

    source: str
    matched: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)  # "key: file (..) vs system (..)"
    missing: list[str] = field(default_factory=list)
    ignored: dict[str, str] = field(default_factory=dict)  # file key -> reason
    filled: list[str] = field(default_factory=list)  # absent from PARE, set to PARE's implicit value

    @property
    def clean(self) -> bool:
        return not (self.unmatched or self.shape_mismatch or self.missing)

    def summary(self) -> str:
        lines = [f"{self.source} (PARE layout): loaded {len(self.matched)} tensors"]
        for title, keys in (("UNMATCHED in file (ignored)", self.unmatched),
                            ("SHAPE MISMATCH (left as they were)", self.shape_mismatch),
                            ("MISSING from file (left as they were)", self.missing)):
            if keys:
                lines.append(f"  {title}: {len(keys)}: " + ", ".join(keys))
        reasons: dict[str, int] = {}
        for reason in self.ignored.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        lines += [f"  ignored ({reason}): {count} keys" for reason, count in reasons.items()]
        if self.filled:
            lines.append("  set to zero (not in PARE's network): " + ", ".join(self.filled))
        return "\n".join(lines)


def pare_key_to_suite(key: str) -> str | None:
    """The suite name (relative to the regressor) of a PARE file key, already stripped of its
    ``module.`` / ``model.`` prefixes; None when the key has no place here."""
    upsample = _UPSAMPLE.match(key)
    if upsample:
        return f"backbone.{upsample.group(1)}"
    if key.startswith("backbone."):
        return "backbone.model." + key[len("backbone."):]
    if key.startswith("head."):
        return key
    return None


def _strip(key: str) -> str:
    key = key.removeprefix("module.")
    return key.removeprefix("model.")


def import_pare_state_dict(
    target: nn.Module,
    state_dict_or_path: Mapping[str, Any] | str | os.PathLike,
    strict: bool = False,
) -> PAREImportReport:
    """Copy a public PARE checkpoint into ``target`` (an `HMRSystem` with ``arch='pare'``, whose
    weights live under ``regressor.``, or a `PARE` module) in place; returns the report."""
    regressor = getattr(target, "regressor", None)
    prefix = "regressor." if isinstance(regressor, nn.Module) else ""
    if not isinstance(getattr(regressor if prefix else target, "head", None), PAREHead):
        raise CheckpointImportError(f"{type(target).__name__} is not a PARE model (no {prefix}head of type "
                                    "PAREHead); build the system with arch='pare'")
    file_state, source, _ = read_state_dict(state_dict_or_path)
    own_state = target.state_dict()
    report = PAREImportReport(source=source)
    to_load: dict[str, torch.Tensor] = {}
    for file_key, value in file_state.items():
        key = _strip(file_key)
        reason = next((why for pattern, why in _IGNORED if pattern.search(key)), None)
        if reason is not None:
            report.ignored[file_key] = reason
            continue
        suite_key = pare_key_to_suite(key)
        place_tensor(file_key, None if suite_key is None else prefix + suite_key, value, own_state, to_load, report)
    for name in _FILLED_ZERO:
        key = prefix + name
        if key in own_state and key not in to_load:
            to_load[key] = torch.zeros_like(own_state[key])
            report.filled.append(key)
    mismatched = {entry.split(":")[0] for entry in report.shape_mismatch}
    report.missing = [k for k in own_state if k.startswith(prefix) and k not in to_load and k not in mismatched
                      and not k.endswith("num_batches_tracked")]  # BN counters carry no weights
    report.matched = sorted(k for k in to_load if k not in report.filled)
    load_reported(target, to_load, report, strict, "PARE checkpoint does not match the model")
    return report

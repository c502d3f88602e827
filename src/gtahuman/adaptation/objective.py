"""What every domain-adaptation objective looks like, and the 'none' objective.

`HMRSystem` builds an objective by name (``ADAPTATIONS.build(name, feature_dim=F, **args)``) and
calls it once per training step on the two halves of a domain-adaptation batch:

    loss, logs = objective(source_features, target_features, source_params, target_params, step)

* ``*_features``: backbone features (B, F) of the source (real) and target (synthetic) images;
* ``*_params``: the regressor's output [pose 6D (144), betas (10), camera (3)] = (B, 157);
* ``step``: the trainer's global step, which drives warm-up schedules (so a resumed run
  continues its schedule instead of restarting it).

The returned loss already carries the paper's loss weight (the objective's ``weight`` argument);
the system multiplies it by ``adaptation.weight`` (1.0 by default). ``logs`` holds scalars that
the system logs as ``train/adaptation/<key>``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from gtahuman.registry import Registry

# Objectives by name (``adaptation.method``), each registered where it is defined; a new one is one
# new module that registers itself here (and is imported once: gtahuman.adaptation imports the suite's).
ADAPTATIONS: Registry[nn.Module] = Registry("adaptation objective")


class AdaptationObjective(nn.Module):
    """Base class: subclasses implement `forward` with the signature below."""

    def forward(self, source_features: Tensor, target_features: Tensor, source_params: Tensor | None = None,
                target_params: Tensor | None = None, step: int = 0) -> tuple[Tensor, dict[str, Tensor | float]]:
        raise NotImplementedError


@ADAPTATIONS.register("none")
class NoAdaptation(AdaptationObjective):
    """'none': a zero loss, so a sweep can switch domain adaptation off by name."""

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.feature_dim = int(feature_dim)

    def forward(self, source_features: Tensor, target_features: Tensor, source_params: Tensor | None = None,
                target_params: Tensor | None = None, step: int = 0) -> tuple[Tensor, dict[str, Tensor | float]]:
        check_domain_pair("none", source_features, target_features, self.feature_dim)
        return source_features.new_zeros(()), {}


def check_domain_pair(objective: str, source: Tensor, target: Tensor, feature_dim: int | None = None,
                      min_batch: int = 1, what: str = "features") -> None:
    """Both domains as (B, D) with the same B >= ``min_batch`` (every loss here pairs the two
    halves of one batch) and, when given, D == ``feature_dim``."""
    for side, tensor in (("source", source), ("target", target)):
        if tensor.ndim != 2:
            raise ValueError(f"adaptation objective '{objective}': {side} {what} must be (B, D); "
                             f"got shape {tuple(tensor.shape)}")
        if feature_dim is not None and tensor.shape[1] != feature_dim:
            raise ValueError(f"adaptation objective '{objective}': {side} {what} have {tensor.shape[1]} columns; "
                             f"expected feature_dim={feature_dim} (the backbone's feature size it was built with)")
    if source.shape != target.shape:
        raise ValueError(f"adaptation objective '{objective}': source and target {what} must have the same shape "
                         f"(equal batch sizes); got {tuple(source.shape)} and {tuple(target.shape)}")
    if source.shape[0] < min_batch:
        raise ValueError(f"adaptation objective '{objective}': needs a batch of at least {min_batch} per domain; "
                         f"got {source.shape[0]}")


def full_precision(tensor: Tensor) -> Tensor:
    """float16/bfloat16 -> float32 (SVDs, exponentials of distances); float32/64 unchanged."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor

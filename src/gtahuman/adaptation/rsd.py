"""RSD (Chen, Wang, Wang, Long, ICML 2021): representation subspace distance for domain-adaptive
regression, with base-mismatch penalisation (BMP).

Paper (GTA-Human sec. 4.1): "we use the default trade-off coefficient 0.1, and set its loss
weight to 1e-4" -> BMP weight 0.1 inside the objective (TLlib's default), outer weight 1e-4.
Steps (reference/domain_adaptation.md sec. 3), for source / target features f_s, f_t of (B, F):

1. U_s, U_t: left singular vectors of f_s^T, f_t^T (reduced SVD, F x B); no centring, only the
   column space of the B samples matters;
2. U_s^T U_t = P_s diag(c) P_t^T: c are the cosines of the principal angles between the two
   subspaces (P_t is torch.svd's V, i.e. Vh^T of torch.linalg.svd);
3. RSD = sum_i sqrt(1 - c_i^2) (sum of the sines);
4. BMP = || |P_s| - |P_t| ||_F (elementwise absolute values remove the sign ambiguity);
5. output = RSD + trade_off x BMP.

It needs B < F: with B >= F both bases span the whole space, every cosine is 1 and the sines
round to NaN. Values equal TLlib's wherever those are finite; where 1 - c^2 rounds below zero
(identical subspaces) the sine is 0 instead of NaN, and the square root's gradient is capped
(TLlib has no guard). The SVD gradient itself is only finite for distinct singular values.
"""
from __future__ import annotations

import torch
from torch import Tensor

from gtahuman.adaptation.objective import (
    ADAPTATIONS,
    AdaptationObjective,
    check_domain_pair,
    full_precision,
)

# The square root's gradient 1 / (2 sqrt(x)) is taken at sqrt(x) >= this floor (a sine of 1e-6).
SINE_GRADIENT_FLOOR = 1e-6


class _SqrtOfNonNegative(torch.autograd.Function):
    """sqrt(max(x, 0)), with the gradient 1 / (2 max(sqrt(x), floor)) (finite at x -> 0)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        root = x.clamp(min=0.0).sqrt()
        ctx.save_for_backward(root)
        return root

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:  # type: ignore[override]
        (root,) = ctx.saved_tensors
        return grad_output / (2.0 * root.clamp(min=SINE_GRADIENT_FLOOR))


class _ZeroNonFiniteGradient(torch.autograd.Function):
    """Identity forward; backward replaces non-finite gradient entries with 0. The SVD's gradient
    divides by differences of squared singular values, so features with repeated ones (a
    rank-deficient batch: dead units, duplicate samples) give inf/NaN, which would otherwise
    poison every weight of the backbone in one step (seen on the mini world at step 156)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:  # type: ignore[override]
        return torch.nan_to_num(grad_output, nan=0.0, posinf=0.0, neginf=0.0)


def representation_subspace_distance(source: Tensor, target: Tensor, trade_off: float = 0.1
                                     ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(RSD + trade_off x BMP, RSD, BMP, principal-angle cosines) for (B, F) features, B < F."""
    check_domain_pair("rsd", source, target)
    batch, width = source.shape
    if batch >= width:
        raise ValueError(f"adaptation objective 'rsd': the batch per domain must be smaller than the feature size "
                         f"(B samples must span a proper subspace of the F-dim feature space); got B={batch}, "
                         f"F={width}. Lower the per-device data.batch_size or use a backbone with more features")
    basis_source = torch.linalg.svd(source.mT, full_matrices=False).U  # (F, B)
    basis_target = torch.linalg.svd(target.mT, full_matrices=False).U
    rotation_source, cosines, rotation_target_h = torch.linalg.svd(basis_source.mT @ basis_target)
    rotation_target = rotation_target_h.mT  # torch.svd's V (not Vh): using Vh changes BMP
    sines = _SqrtOfNonNegative.apply(1.0 - cosines.pow(2))
    distance = sines.sum()
    mismatch = torch.linalg.matrix_norm(rotation_source.abs() - rotation_target.abs())  # Frobenius
    return distance + trade_off * mismatch, distance, mismatch, cosines


@ADAPTATIONS.register("rsd")
class RSD(AdaptationObjective):
    """Representation subspace distance on backbone features; see the module docstring.

    Arguments: ``feature_dim``; ``weight`` (paper: 1e-4, the outer loss weight); ``bmp_trade_off``
    (paper: 0.1, the BMP weight inside). Logs ``rsd``, ``bmp`` (unweighted), ``objective``
    (rsd + trade-off x bmp), ``mean_cosine`` of the principal angles, and ``weight``.
    """

    def __init__(self, feature_dim: int, weight: float = 1e-4, bmp_trade_off: float = 0.1) -> None:
        super().__init__()
        self.feature_dim, self.weight, self.bmp_trade_off = int(feature_dim), float(weight), float(bmp_trade_off)

    def forward(self, source_features: Tensor, target_features: Tensor, source_params: Tensor | None = None,
                target_params: Tensor | None = None, step: int = 0) -> tuple[Tensor, dict[str, Tensor | float]]:
        check_domain_pair("rsd", source_features, target_features, self.feature_dim)
        with torch.autocast(source_features.device.type, enabled=False):  # SVDs in full precision
            objective, distance, mismatch, cosines = representation_subspace_distance(
                _ZeroNonFiniteGradient.apply(full_precision(source_features)),
                _ZeroNonFiniteGradient.apply(full_precision(target_features)), self.bmp_trade_off)
        logs: dict[str, Tensor | float] = {"rsd": distance.detach(), "bmp": mismatch.detach(),
                                           "objective": objective.detach(), "mean_cosine": cosines.detach().mean(),
                                           "weight": self.weight}
        return self.weight * objective, logs

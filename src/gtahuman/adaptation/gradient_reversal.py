"""Gradient reversal (Ganin & Lempitsky) with TLlib's warm-start ramp.

Forward is the identity; backward multiplies the incoming gradient by ``-coefficient``. The
warm-start layer computes the coefficient from the training step (reference/domain_adaptation.md
sec. 1.1):

    lambda(i) = (hi - lo) * tanh(alpha * i / (2 * max_iters)) + lo
              = 2 (hi - lo) / (1 + exp(-alpha * i / max_iters)) - (hi - lo) + lo

With TLlib's defaults (alpha 1, lo 0, hi 1, max_iters 1000): 0 at i = 0, 0.462 at 1000, 0.762
at 2000, 0.987 at 5000. Ganin's own schedule 2 / (1 + exp(-10 p)) - 1 over progress p is
alpha = 10 with max_iters = the total number of steps.

Unlike TLlib, whose layer counts its own calls in a plain Python int (lost on resume), the step
is passed in (the trainer's global step), so a resumed run continues the ramp where it stopped.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def warm_start_coefficient(step: int, alpha: float = 1.0, lo: float = 0.0, hi: float = 1.0,
                           max_iters: int = 1000) -> float:
    """The ramp lambda(step), rising from ``lo`` at step 0 towards ``hi``."""
    if max_iters <= 0:
        raise ValueError(f"warm_start_coefficient: max_iters must be > 0, got {max_iters}")
    if step < 0:
        raise ValueError(f"warm_start_coefficient: step must be >= 0, got {step}")
    return (hi - lo) * math.tanh(alpha * step / (2.0 * max_iters)) + lo


class _ReverseGradient(torch.autograd.Function):
    """y = x; dL/dx = -coefficient * dL/dy (the coefficient gets no gradient)."""

    @staticmethod
    def forward(ctx, x: Tensor, coefficient: float) -> Tensor:  # type: ignore[override]
        ctx.coefficient = coefficient
        return x.clone()  # a copy, not a view: later in-place ops must not reach the input

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return -ctx.coefficient * grad_output, None


def reverse_gradient(x: Tensor, coefficient: float = 1.0) -> Tensor:
    """Identity in the forward pass; gradient multiplied by ``-coefficient`` in the backward pass."""
    return _ReverseGradient.apply(x, float(coefficient))


class WarmStartGradientReversal(nn.Module):
    """Gradient reversal whose coefficient follows `warm_start_coefficient` of the given step.

    ``last_coefficient`` holds the value used by the latest forward call (for logging).
    """

    def __init__(self, alpha: float = 1.0, lo: float = 0.0, hi: float = 1.0, max_iters: int = 1000) -> None:
        super().__init__()
        if max_iters <= 0:
            raise ValueError(f"WarmStartGradientReversal: max_iters must be > 0, got {max_iters}")
        self.alpha, self.lo, self.hi, self.max_iters = float(alpha), float(lo), float(hi), int(max_iters)
        self.last_coefficient = self.coefficient(0)

    def coefficient(self, step: int) -> float:
        return warm_start_coefficient(step, self.alpha, self.lo, self.hi, self.max_iters)

    def forward(self, x: Tensor, step: int) -> Tensor:
        self.last_coefficient = self.coefficient(int(step))
        return reverse_gradient(x, self.last_coefficient)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, lo={self.lo}, hi={self.hi}, max_iters={self.max_iters}"

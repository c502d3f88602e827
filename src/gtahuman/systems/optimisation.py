"""Optimisers and learning-rate schedules of the image systems (HMR, HMR+, PARE).

Adam as in SPIN / mmhuman3d, the linear scaling rule the paper uses for its 32-GPU batch, and
three schedules: ``constant`` (the paper's), ``step`` (multiply by ``gamma`` at epoch
milestones) and ``cosine`` (per step, linear warm-up then half a cosine to zero).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

SCHEDULES = ("constant", "step", "cosine")


def effective_learning_rate(lr: float, per_device_batch: int | None, world_size: int = 1,
                            accumulate: int = 1, base_batch_size: int | None = None) -> float:
    """Linear scaling rule: lr x (per-device batch x world size x accumulate) / base batch
    (paper: batch 2048 = 4 x SPIN's, lr 2e-4). ``base_batch_size=None`` leaves lr as given."""
    if base_batch_size is None:
        return lr
    if per_device_batch is None:
        raise ValueError("base_batch_size is set, so the per-device batch_size must be given "
                         "to scale the learning rate")
    return lr * per_device_batch * world_size * accumulate / base_batch_size


def adam(params: Any, lr: float, weight_decay: float) -> torch.optim.Adam:
    """Adam, fused where this torch build and device support it (CPU since torch 2.4)."""
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def cosine_with_warmup(total_steps: int, warmup_steps: int = 0) -> Callable[[int], float]:
    """lr factor at optimiser step ``i``: linear warm-up over ``warmup_steps``, then half a cosine
    from 1 to 0 at ``total_steps``."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
        return 0.5 * (1.0 + float(np.cos(np.pi * progress)))
    return factor


def lr_schedulers(optimizers: Sequence[torch.optim.Optimizer], schedule: str, *, milestones: Sequence[int] = (),
                  gamma: float = 0.1, warmup_steps: int = 0, total_steps: int = 1) -> list[dict[str, Any]]:
    """Lightning scheduler configs, one per optimiser ([] for 'constant')."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if schedule == "constant":
        return []
    if schedule == "cosine":
        factor = cosine_with_warmup(max(total_steps, 1), warmup_steps)
        return [{"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, factor), "interval": "step"}
                for opt in optimizers]
    return [{"scheduler": torch.optim.lr_scheduler.MultiStepLR(opt, list(milestones), gamma), "interval": "epoch"}
            for opt in optimizers]

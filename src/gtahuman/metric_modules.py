"""DDP-syncable torchmetrics classes over the pure functions of `gtahuman.metrics`.

The mean-error classes keep a *global* mean over valid (sample, joint) entries, the mmhuman3d
definition; with every joint valid and the same J per sample this equals the mean of the
per-sample means, which is what `evaluation.summarize` reports. `AccelError` gathers whole
sequences before differencing; `PerSampleErrors` keeps every sample's errors by id, so results
gathered from several processes come back in one order, without duplicates.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from gtahuman.metrics import (
    check_pair,
    joint_errors,
    joint_weights,
    sequence_acceleration_error,
    similarity_procrustes,
)

__all__ = ["MPJPE", "PAMPJPE", "PVE", "AccelError", "PerSampleErrors"]


class _GlobalMeanError(Metric):
    """Sum of errors and count of valid entries (both 'sum'-reduced across processes)."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = False

    def __init__(self, unit_scale: float = 1000.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.unit_scale = unit_scale  # metres -> millimetres by default
        # float64 accumulators: 35k x 14 float32 terms lose digits otherwise.
        self.add_state("error_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def _accumulate(self, errors: Tensor, mask: Tensor | None) -> None:
        weights = joint_weights(mask, errors[..., None])
        weights = torch.ones_like(errors) if weights is None else weights
        self.error_sum += (errors.double() * weights.double()).sum()
        self.count += weights.double().sum()

    def compute(self) -> Tensor:
        return self.error_sum / self.count * self.unit_scale  # NaN before any valid entry


class MPJPE(_GlobalMeanError):
    """Global mean joint error over valid (sample, joint) entries, x unit_scale (mm)."""

    def update(self, pred: Tensor, gt: Tensor, mask: Tensor | None = None) -> None:
        self._accumulate(joint_errors(pred, gt), mask)


class PAMPJPE(_GlobalMeanError):
    """MPJPE after per-sample similarity Procrustes alignment (fit on valid joints)."""

    def update(self, pred: Tensor, gt: Tensor, mask: Tensor | None = None) -> None:
        self._accumulate(joint_errors(similarity_procrustes(pred, gt, mask), gt), mask)


class PVE(_GlobalMeanError):
    """Mean per-vertex error over all (sample, vertex) entries, no alignment."""

    def update(self, pred_vertices: Tensor, gt_vertices: Tensor) -> None:
        self._accumulate(joint_errors(pred_vertices, gt_vertices), None)


class AccelError(Metric):
    """Acceleration error within sequences, x unit_scale (mm per frame²).

    Frames are kept (cat states) with their sequence and frame ids, because a distributed
    sampler hands neighbouring frames to different processes and batches; compute() gathers
    them, drops duplicate (sequence, frame) pairs (sampler padding), sorts them and averages
    the error over triplets of consecutive frames of one sequence.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = False

    def __init__(self, unit_scale: float = 1000.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.unit_scale = unit_scale
        for name in ("pred", "gt", "sequence_ids", "frame_ids"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, pred: Tensor, gt: Tensor, sequence_ids: Tensor, frame_ids: Tensor) -> None:
        pred, gt = check_pair(pred, gt)
        n = pred.shape[0]
        for name, ids in (("sequence_ids", sequence_ids), ("frame_ids", frame_ids)):
            if ids.shape != (n,) or torch.is_floating_point(ids):
                raise ValueError(f"{name}: expected integer shape ({n},), got {ids.dtype} {tuple(ids.shape)}")
        self.pred.append(pred)
        self.gt.append(gt)
        self.sequence_ids.append(sequence_ids.long())
        self.frame_ids.append(frame_ids.long())

    def compute(self) -> Tensor:
        if isinstance(self.pred, list) and not self.pred:
            return torch.tensor(float("nan"), dtype=torch.float64)
        seq, frame = dim_zero_cat(self.sequence_ids), dim_zero_cat(self.frame_ids)
        # Lexicographic (sequence, frame) order via two stable sorts.
        order = torch.sort(frame, stable=True).indices
        order = order[torch.sort(seq[order], stable=True).indices]
        seq, frame = seq[order], frame[order]
        keep = torch.ones_like(seq, dtype=torch.bool)
        keep[1:] = (seq[1:] != seq[:-1]) | (frame[1:] != frame[:-1])
        order = order[keep]
        errors = sequence_acceleration_error(
            dim_zero_cat(self.pred)[order], dim_zero_cat(self.gt)[order], seq[keep], frame_ids=frame[keep]
        )
        return errors.double().nanmean() * self.unit_scale


class PerSampleErrors(Metric):
    """Per-sample errors with their sample ids, for writing out and per-bin analysis.

    update(sample_ids (B,), name=(B,) tensor for every name given at construction). Values are
    stored as given (pass millimetres from `evaluation.evaluate_joints`). compute() returns
    {"sample_id": (N,), name: (N,), ...} sorted by id, keeping the first copy of a repeated id
    (a distributed sampler pads the last batch with repeats).
    """

    full_state_update = False
    is_differentiable = False

    def __init__(self, names: Sequence[str], **kwargs) -> None:
        super().__init__(**kwargs)
        if not names or "sample_id" in names:
            raise ValueError(f"names: expected a non-empty list without 'sample_id', got {list(names)}")
        self.names = tuple(names)
        self.add_state("sample_ids", default=[], dist_reduce_fx="cat")
        for name in self.names:
            self.add_state(f"errors_{name}", default=[], dist_reduce_fx="cat")

    def update(self, sample_ids: Tensor, **errors: Tensor) -> None:
        if set(errors) != set(self.names):
            raise KeyError(f"PerSampleErrors.update: expected errors {sorted(self.names)}, got {sorted(errors)}")
        n = sample_ids.shape[0]
        if sample_ids.ndim != 1 or torch.is_floating_point(sample_ids):
            raise ValueError(f"sample_ids: expected a 1-D integer tensor, got {sample_ids.dtype} {tuple(sample_ids.shape)}")
        for name, values in errors.items():
            if values.shape != (n,):
                raise ValueError(f"errors '{name}': expected shape ({n},), got {tuple(values.shape)}")
            getattr(self, f"errors_{name}").append(values.detach().double())
        self.sample_ids.append(sample_ids.long())

    def compute(self) -> dict[str, Tensor]:
        if isinstance(self.sample_ids, list) and not self.sample_ids:
            empty = torch.empty(0, dtype=torch.float64)
            return {"sample_id": torch.empty(0, dtype=torch.long), **{n: empty for n in self.names}}
        ids = dim_zero_cat(self.sample_ids)
        order = torch.sort(ids, stable=True).indices
        sorted_ids = ids[order]
        keep = torch.ones_like(sorted_ids, dtype=torch.bool)
        keep[1:] = sorted_ids[1:] != sorted_ids[:-1]
        order = order[keep]
        result = {"sample_id": ids[order]}
        for name in self.names:
            result[name] = dim_zero_cat(getattr(self, f"errors_{name}"))[order]
        return result

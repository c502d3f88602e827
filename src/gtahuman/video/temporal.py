"""VIBE's temporal generator: a GRU over per-frame features, then the frame model's SMPL head.

`TemporalEncoder` (reference/spin_vibe_hmr2.md 2.2): GRU(feature_dim -> hidden_size,
``num_layers``, optionally bidirectional) over (B, T, F), ReLU, a Linear back to F
(2H -> F when bidirectional), and with ``residual`` the input features added back. VIBE's
shipped config: 2 layers, hidden 1024, unidirectional, with the linear and the residual.

Difference from VIBE, on purpose: with ``zero_init`` (default) the Linear starts at zero, so the
untrained temporal model *is* the frame model (output = head(features)); training then only
learns what the sequence adds. VIBE starts that Linear at PyTorch's random default, which
perturbs SPIN's features on the first steps. ``zero_init=False`` gives VIBE's start.

`TemporalRegressor` = encoder + `HMRHead` applied to every frame (IEF, 6D pose), initialised
from the frame model's head (`load_frame_head`), as VIBE loads SPIN's regressor.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from gtahuman.models import HMRHead, HMROutput


class TemporalEncoder(nn.Module):
    """(B, T, F) features -> (B, T, F) temporally informed features (see module docstring)."""

    def __init__(self, feature_dim: int, hidden_size: int = 1024, num_layers: int = 2,
                 bidirectional: bool = False, residual: bool = True, zero_init: bool = True) -> None:
        super().__init__()
        for name, value in (("feature_dim", feature_dim), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if value < 1:
                raise ValueError(f"TemporalEncoder: {name} must be >= 1, got {value}")
        self.feature_dim, self.residual = feature_dim, residual
        self.gru = nn.GRU(feature_dim, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                          batch_first=True)
        self.linear = nn.Linear(hidden_size * (2 if bidirectional else 1), feature_dim)
        if zero_init:
            nn.init.zeros_(self.linear.weight)
            nn.init.zeros_(self.linear.bias)

    def temporal_contribution(self, features: Tensor) -> Tensor:
        """What the GRU path adds (or, without ``residual``, the whole output): Linear(ReLU(GRU))."""
        hidden, _ = self.gru(features)
        return self.linear(torch.relu(hidden))

    def forward(self, features: Tensor) -> Tensor:
        if features.ndim != 3 or features.shape[-1] != self.feature_dim:
            raise ValueError(f"TemporalEncoder: expected features (B, T, {self.feature_dim}), "
                             f"got {tuple(features.shape)}")
        out = self.temporal_contribution(features)
        return out + features if self.residual else out


class TemporalRegressor(nn.Module):
    """Encoder + per-frame HMR head: (B, T, F) -> `HMROutput` with (B, T) leading dims."""

    def __init__(self, feature_dim: int, mean_params: Mapping[str, Any] | str | os.PathLike | None = None,
                 n_iter: int = 3, hidden_size: int = 1024, num_layers: int = 2, bidirectional: bool = False,
                 residual: bool = True, zero_init: bool = True, head_dropout: float = 0.5) -> None:
        super().__init__()
        self.encoder = TemporalEncoder(feature_dim, hidden_size, num_layers, bidirectional, residual, zero_init)
        self.head = HMRHead(feature_dim, mean_params=mean_params, n_iter=n_iter, dropout=head_dropout)

    def forward(self, features: Tensor) -> tuple[HMROutput, Tensor]:
        """Returns (per-frame SMPL output, the encoder's features (B, T, F))."""
        encoded = self.encoder(features)
        return self.head(encoded), encoded

    def load_frame_head(self, head_state: Mapping[str, Tensor]) -> None:
        """Copy a frame model's `HMRHead` weights and mean parameters (strict: same layout)."""
        own = self.head.state_dict()
        missing = sorted(set(own) - set(head_state))
        unexpected = sorted(set(head_state) - set(own))
        wrong = [f"{k}: {tuple(head_state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
                 if k in head_state and head_state[k].shape != v.shape]
        if missing or unexpected or wrong:
            raise ValueError(f"frame model head does not fit the temporal head: missing {missing}, "
                             f"unexpected {unexpected}, shape mismatches {wrong} (is feature_dim the frame "
                             "backbone's?)")
        self.head.load_state_dict(dict(head_state))


def frame_head_state(frame_model: nn.Module) -> dict[str, Tensor]:
    """The ``head.*`` weights of a frame model (an `HMRSystem`), keys without the prefix."""
    head = getattr(frame_model, "head", None)
    if not isinstance(head, HMRHead):
        raise TypeError(f"frame model {type(frame_model).__name__} has no HMRHead 'head' to initialise from")
    return {k: v.detach().clone() for k, v in head.state_dict().items()}


__all__ = ["TemporalEncoder", "TemporalRegressor", "frame_head_state"]

"""VIBE's motion discriminator (optional: ``video.motion_discriminator``, off by default).

reference/spin_vibe_hmr2.md 2.3: the input is the axis-angle body pose without the global
orientation, 69 numbers per frame over the window; a GRU (hidden 1024, 2 layers) reads it and
the per-frame outputs are pooled over time, by self-attention (VIBE's config: 3 layers of
Linear + tanh + dropout 0.2, the last one scoring each frame, softmax over time, weighted sum)
or by ``concat`` (average and max pooling of ReLU(GRU outputs)). A Linear gives one score.
Losses: least squares GAN (`gtahuman.models.lsgan_*`), weighted 0.5 in VIBE. Real motion comes
from AMASS in VIBE; here from windows of ground-truth SMPL poses (see `video.train`).

The author reports a small gain only (PA-MPJPE 55.9 with it, 56.8 without, issue #99), hence
the switch.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from gtahuman.body.rotations import matrix_to_axis_angle

BODY_POSE_DIM = 69
POOLINGS = ("attention", "concat")


class SelfAttentionPooling(nn.Module):
    """(B, T, H) -> (B, H): softmax over time of a small MLP's per-frame score."""

    def __init__(self, size: int, layers: int = 3, dropout: float = 0.2) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"SelfAttentionPooling: layers must be >= 1, got {layers}")
        blocks: list[nn.Module] = []
        for _ in range(layers - 1):
            blocks += [nn.Linear(size, size), nn.Tanh(), nn.Dropout(dropout)]
        blocks += [nn.Linear(size, 1), nn.Tanh(), nn.Dropout(dropout)]
        self.score = nn.Sequential(*blocks)

    def forward(self, sequence: Tensor) -> Tensor:
        weights = torch.softmax(self.score(sequence).squeeze(-1), dim=1)  # (B, T)
        return (sequence * weights.unsqueeze(-1)).sum(dim=1)


class MotionDiscriminator(nn.Module):
    """(B, T, 69) body-pose motion -> (B, 1) realness score."""

    def __init__(self, input_dim: int = BODY_POSE_DIM, hidden_size: int = 1024, num_layers: int = 2,
                 pooling: str = "attention", attention_layers: int = 3, attention_dropout: float = 0.2) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"MotionDiscriminator: pooling must be one of {POOLINGS}, got {pooling!r}")
        self.input_dim, self.pooling = input_dim, pooling
        self.gru = nn.GRU(input_dim, hidden_size, num_layers=num_layers, batch_first=True)
        if pooling == "attention":
            self.attention = SelfAttentionPooling(hidden_size, attention_layers, attention_dropout)
            self.output = nn.Linear(hidden_size, 1)
        else:
            self.attention = None
            self.output = nn.Linear(2 * hidden_size, 1)

    def forward(self, motion: Tensor) -> Tensor:
        if motion.ndim != 3 or motion.shape[-1] != self.input_dim:
            raise ValueError(f"MotionDiscriminator: expected motion (B, T, {self.input_dim}), "
                             f"got {tuple(motion.shape)}")
        hidden, _ = self.gru(motion)
        if self.attention is not None:
            pooled = self.attention(hidden)
        else:
            hidden = torch.relu(hidden)
            pooled = torch.cat([hidden.mean(dim=1), hidden.amax(dim=1)], dim=1)
        return self.output(pooled)


def body_motion(rotmat: Tensor) -> Tensor:
    """(B, T, 24, 3, 3) rotations -> (B, T, 69) axis-angle of the 23 body joints (global
    orientation dropped, as VIBE's theta[:, :, 6:75])."""
    if rotmat.ndim != 5 or rotmat.shape[2:] != (24, 3, 3):
        raise ValueError(f"body_motion: expected rotations (B, T, 24, 3, 3), got {tuple(rotmat.shape)}")
    b, t = rotmat.shape[:2]
    return matrix_to_axis_angle(rotmat[:, :, 1:].float()).reshape(b, t, BODY_POSE_DIM)


__all__ = ["BODY_POSE_DIM", "POOLINGS", "MotionDiscriminator", "SelfAttentionPooling", "body_motion"]

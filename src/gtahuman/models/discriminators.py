"""Discriminators: HMR's SMPL pose/shape prior and DANN's domain classifier.

``SMPLPoseDiscriminator`` is the adversarial body prior of the original HMR, as used by
mmhuman3d's GTA-Human HMR recipes: it sees the 23 body-joint rotation matrices (no global
orientation, so camera viewpoint is not judged) and the 10 betas, and gives 25 scores:

* columns 0..22: one per joint. A 1x1 conv 9->32->32 (ReLU after each), shared by all joints,
  embeds each rotation; 23 separate Linear(32->1) heads score each embedding on its own;
* column 23: full pose, MLP 23*32=736 -> 1024 -> 1024 -> 1 over all joint embeddings;
* column 24: betas, MLP 10 -> 5 -> 1.

It is trained with least-squares GAN targets (real 1, fake 0), see the loss helpers below.

``DomainDiscriminator`` is TLlib's DANN discriminator ("3-layer MLP"): Linear-BN-ReLU blocks
and a final Linear to one logit per sample (TLlib ends with a Sigmoid; we return the logit so
the loss can use the numerically stable ``binary_cross_entropy_with_logits``).
"""

from __future__ import annotations

import torch
from torch import nn

NUM_BODY_JOINTS = 23
NUM_BETAS = 10
JOINT_EMBED = 32


class SMPLPoseDiscriminator(nn.Module):
    """Scores (B, 25) for body rotations (B, 23, 3, 3) (or (B, 23, 9)) and betas (B, 10)."""

    def __init__(self, hidden: int = 1024) -> None:
        super().__init__()
        self.joint_embed = nn.Sequential(
            nn.Conv2d(9, JOINT_EMBED, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(JOINT_EMBED, JOINT_EMBED, kernel_size=1),
            nn.ReLU(inplace=True),
        )
        self.joint_heads = nn.ModuleList(nn.Linear(JOINT_EMBED, 1) for _ in range(NUM_BODY_JOINTS))
        self.full_pose = nn.Sequential(
            nn.Linear(NUM_BODY_JOINTS * JOINT_EMBED, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, 1),
        )
        self.shape = nn.Sequential(nn.Linear(NUM_BETAS, 5), nn.ReLU(inplace=True), nn.Linear(5, 1))

    def forward(self, body_rotmat: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        batch = body_rotmat.shape[0]
        if body_rotmat.shape[1:] not in ((NUM_BODY_JOINTS, 3, 3), (NUM_BODY_JOINTS, 9)):
            raise ValueError(
                "SMPLPoseDiscriminator: expected body rotations (B, 23, 3, 3) without the global "
                f"orientation, got {tuple(body_rotmat.shape)}"
            )
        if betas.shape != (batch, NUM_BETAS):
            raise ValueError(f"SMPLPoseDiscriminator: expected betas ({batch}, 10), got {tuple(betas.shape)}")
        # (B, 23, 9) -> (B, 9, 1, 23): each joint is one "pixel", so the 1x1 convs are shared.
        pixels = body_rotmat.reshape(batch, NUM_BODY_JOINTS, 9).transpose(1, 2).unsqueeze(2)
        embeddings = self.joint_embed(pixels).squeeze(2).transpose(1, 2)  # (B, 23, 32)
        joint_scores = torch.cat([head(embeddings[:, j]) for j, head in enumerate(self.joint_heads)], dim=1)
        full_pose_score = self.full_pose(embeddings.reshape(batch, -1))
        shape_score = self.shape(betas)
        return torch.cat([joint_scores, full_pose_score, shape_score], dim=1)


def lsgan_discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """mean((real - 1)^2) + mean(fake^2), means over all elements (mmhuman3d's LSGAN
    ``GANLoss`` for the real and the fake batch, summed)."""
    return ((real_scores - 1.0) ** 2).mean() + (fake_scores**2).mean()


def lsgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """mean((fake - 1)^2): the generator wants its samples scored as real."""
    return ((fake_scores - 1.0) ** 2).mean()


class DomainDiscriminator(nn.Module):
    """DANN domain classifier: (B, in_features) -> (B, 1) logits (source = 1, target = 0).

    ``num_layers`` counts Linear layers (TLlib: 3). With ``batch_norm=False`` each BN becomes
    ReLU + Dropout(0.5), as TLlib's option.
    """

    def __init__(
        self, in_features: int, hidden: int = 1024, num_layers: int = 3, batch_norm: bool = True
    ) -> None:
        super().__init__()
        if num_layers < 2:
            raise ValueError(f"DomainDiscriminator: num_layers must be >= 2, got {num_layers}")
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(width, hidden))
            if batch_norm:
                layers += [nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            else:
                layers += [nn.ReLU(inplace=True), nn.Dropout(0.5)]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)

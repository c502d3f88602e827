"""HMR with a 2D keypoint branch: the IEF head reads where the joints are, not only pooled features.

Why it exists (issue 18): a backbone trained from scratch for ~1,000 CPU steps and read through
global average pooling learns to tell its training images apart by colour long before it learns
where the limbs are; its predictions collapse onto one pose. Dense, local supervision is what
teaches a small CNN geometry fast (heatmap pose estimators train from scratch; integral
regression, Sun et al. 2018, reads coordinates off a heatmap by a soft-argmax). So this regressor

1. takes the backbone's stride-8, -16 and -32 maps (a plain VGG-style CNN, or a timm CNN's
   ``features_only``), brings them to stride 8 by bilinear interpolation and concatenates them;
2. predicts one heatmap per keypoint (1x1 -> 3x3 -> 1x1 convolutions) and reads each keypoint's
   (x, y) as the heatmap's softmax-weighted mean cell centre, in SPIN's normalised crop
   coordinates ([-1, 1], the convention of the batch's ``keypoints2d``);
3. lifts the keypoints with a small MLP (2D -> 3D needs a nonlinearity; HMR's IEF layers have
   none between them) and feeds [pooled stride-32 feature, lifted keypoints] to `HMRHead`.

The system supervises the soft-argmax keypoints directly against the batch's 2D keypoints
(``loss_weights.keypoints2d_direct``; every source has them, also the keypoint-only one), and the SMPL
output as for HMR. Gradients flow end to end: the keypoints are a bottleneck the 3D losses can
also shape. This is not the paper's HMR; it is the mini world's from-scratch CPU model, and every
report names the arch.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gtahuman.models.hmr_head import HMRHead, HMROutput

# smpl_54's first 29 joints: the 24 SMPL joints, the nose, the eyes and the ears (the face tells
# which way a person looks).
DEFAULT_KEYPOINTS = 29
_OUT_INDICES = (1, 2, 3, 4)  # strides 4, 8, 16, 32


@dataclass
class KeypointHMROutput(HMROutput):
    """`HMROutput` plus the keypoint branch's (B, K, 2) soft-argmax coordinates in [-1, 1]."""

    keypoints2d_direct: Tensor | None = None
    keypoint_logits: Tensor | None = None  # (B, K, h, w) heatmap logits, for a dense heatmap loss


def _cell_centres(count: int, device: torch.device) -> Tensor:
    """Centres of ``count`` equal cells spanning [-1, 1]: ``(2 i + 1) / count - 1``."""
    return (2 * torch.arange(count, device=device, dtype=torch.float32) + 1) / count - 1


def soft_argmax(logits: Tensor) -> Tensor:
    """(B, K, h, w) heatmap logits -> (B, K, 2) expected (x, y) of the per-map softmax, at cell
    centres ``(2 i + 1) / n - 1`` (cell i of n spans [i, i + 1] / n of the crop)."""
    batch, count, height, width = logits.shape
    probabilities = logits.flatten(2).float().softmax(dim=-1).reshape(batch, count, height, width)
    xs, ys = _cell_centres(width, logits.device), _cell_centres(height, logits.device)
    x = (probabilities.sum(dim=2) * xs).sum(dim=-1)
    y = (probabilities.sum(dim=3) * ys).sum(dim=-1)
    return torch.stack([x, y], dim=-1)


def heatmap_cross_entropy(logits: Tensor, keypoints2d: Tensor, sample_mask: Tensor, sigma_cells: float = 1.0) -> Tensor:
    """Dense heatmap supervision: cross-entropy between each map's softmax and a Gaussian of
    ``sigma_cells`` cells around the labelled keypoint (normalised to sum to 1 over the map).

    ``logits`` (B, K, h, w); ``keypoints2d`` (B, >=K, 3) = (x, y, conf) in [-1, 1] crop
    coordinates. Weighted by conf; keypoints whose Gaussian falls off the map (less than half its
    mass on it) are left out. Mean over the counted keypoints of the samples in ``sample_mask``.
    """
    batch, count, height, width = logits.shape
    labels = keypoints2d[:, :count].float()
    xs, ys = _cell_centres(width, logits.device), _cell_centres(height, logits.device)
    sx, sy = 2.0 * sigma_cells / width, 2.0 * sigma_cells / height  # a cell is 2 / n wide
    gx = torch.exp(-0.5 * ((xs - labels[..., 0:1]) / sx) ** 2)  # (B, K, w)
    gy = torch.exp(-0.5 * ((ys - labels[..., 1:2]) / sy) ** 2)  # (B, K, h)
    target = (gy[..., :, None] * gx[..., None, :]).flatten(2)
    on_map = target.sum(-1) / (2 * torch.pi * sigma_cells ** 2) > 0.5
    target = target / target.sum(-1, keepdim=True).clamp(min=1e-12)
    log_p = logits.flatten(2).float().log_softmax(-1)
    weight = labels[..., 2] * on_map * sample_mask.reshape(-1, 1).to(torch.float32)
    per_keypoint = -(target * log_p).sum(-1)
    return (per_keypoint * weight).sum() / weight.sum().clamp(min=1e-9)


def _check_images(images: Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"hmr_kp backbone: expected images (B,3,H,W), got {tuple(images.shape)}")


def _at_stride_eight(maps: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Stride 4, 8, 16, 32 maps -> (the stride 8-32 maps bilinearly resized to stride 8 and
    concatenated, the stride-32 map, the stride-4 map)."""
    fine, maps = maps[0], maps[1:]
    size = maps[0].shape[-2:]
    merged = [maps[0]] + [F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps[1:]]
    return torch.cat(merged, dim=1), maps[-1], fine


class StrideEightFeatures(nn.Module):
    """A timm CNN's stride 8, 16 and 32 maps, interpolated to stride 8 and concatenated, plus the
    stride-32 map itself (for the pooled feature) and the stride-4 map (for finer heatmaps)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        try:
            self.model = timm.create_model(name, pretrained=False, features_only=True, out_indices=_OUT_INDICES)
        except (RuntimeError, ValueError, IndexError) as err:
            raise ValueError(f"hmr_kp backbone '{name}': timm cannot give its stride 4/8/16/32 maps ({err})") from err
        channels = self.model.feature_info.channels()
        self.fine_channels = int(channels[0])
        self.map_channels = int(sum(channels[1:]))
        self.feature_dim = int(channels[-1])  # the pooled stride-32 feature's width

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        _check_images(images)
        return _at_stride_eight(self.model(images))


def _conv_bn_relu(inputs: int, outputs: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False), nn.BatchNorm2d(outputs),
                         nn.ReLU(inplace=True))


class PlainPyramid(nn.Module):
    """A plain VGG-style CNN (3x3 conv, BN, ReLU; two per stage) with the interface of
    `StrideEightFeatures`. Measured on the mini world's 2D keypoints (issue 18): from scratch it
    beats the mean-keypoint constant on held-out crops within 400 steps, where timm's
    mobilenetv3_small_050 (squeeze-excitation, hard-swish, 8-24 channels below stride 32) had
    not after 600."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        self.stride4 = nn.Sequential(_conv_bn_relu(3, w, 2), _conv_bn_relu(w, w), _conv_bn_relu(w, 2 * w, 2),
                                     _conv_bn_relu(2 * w, 2 * w))
        self.stride8 = nn.Sequential(_conv_bn_relu(2 * w, 4 * w, 2), _conv_bn_relu(4 * w, 4 * w))
        self.stride16 = nn.Sequential(_conv_bn_relu(4 * w, 8 * w, 2), _conv_bn_relu(8 * w, 8 * w))
        self.stride32 = nn.Sequential(_conv_bn_relu(8 * w, 8 * w, 2), _conv_bn_relu(8 * w, 8 * w))
        self.fine_channels, self.map_channels, self.feature_dim = 2 * w, 20 * w, 8 * w

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        _check_images(images)
        four = self.stride4(images)
        eight = self.stride8(four)
        sixteen = self.stride16(eight)
        return _at_stride_eight([four, eight, sixteen, self.stride32(sixteen)])


# The backbones hmr_kp takes: plain<width> (`PlainPyramid`) and timm CNNs with stride 8/16/32 maps.
KEYPOINT_BACKBONES: tuple[str, ...] = ("plain8", "plain16", "plain24", "plain32", "mobilenetv3_small_050",
                                       "resnet10t", "resnet18", "resnet50")


def build_pyramid(name: str) -> nn.Module:
    """A name of `KEYPOINT_BACKBONES` -> its stride-8 feature pyramid."""
    if name not in KEYPOINT_BACKBONES:
        raise KeyError(f"hmr_kp backbone '{name}' unknown; valid names: {', '.join(KEYPOINT_BACKBONES)}")
    return PlainPyramid(int(name[5:])) if name.startswith("plain") else StrideEightFeatures(name)


class KeypointHeatmaps(nn.Module):
    """Concatenated stride-8 maps (and the stride-4 map) -> (B, K, h, w) heatmap logits.

    ``stride=8``: 1x1 -> 3x3 -> 1x1 convolutions at stride 8 (12 x 12 cells for a 96 px crop).
    ``stride=4``: the 3x3 layer's output is upsampled x2 and concatenated with the backbone's
    stride-4 map, and one more 3x3 layer refines it there (a U-Net skip; 24 x 24 cells), so a
    keypoint is placed on a 4 px grid instead of an 8 px one. Measured on the quickstart (seeds 0
    and 1, issue 18): wild_test 2D error 5.7 px either way, PA-MPJPE 52.9 / 52.3 against 52.1 /
    53.3 mm at stride 8: the grid is not what limits the 2D keypoints."""

    def __init__(self, in_channels: int, num_keypoints: int, channels: int = 64, stride: int = 8,
                 fine_channels: int = 0) -> None:
        super().__init__()
        if stride not in (4, 8):
            raise ValueError(f"hmr_kp: heatmap_stride must be 4 or 8, got {stride}")
        self.stride = stride
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.refine = (nn.Sequential(nn.Conv2d(channels + fine_channels, channels, 3, padding=1, bias=False),
                                     nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
                       if stride == 4 else nn.Identity())
        self.out = nn.Conv2d(channels, num_keypoints, 1)

    def forward(self, features: Tensor, fine: Tensor | None = None) -> Tensor:
        hidden = self.layers(features)
        if self.stride == 4:
            if fine is None:
                raise ValueError("hmr_kp: heatmap_stride 4 needs the backbone's stride-4 map")
            hidden = F.interpolate(hidden, size=fine.shape[-2:], mode="bilinear", align_corners=False)
            hidden = self.refine(torch.cat([hidden, fine], dim=1))
        return self.out(hidden)


class KeypointHMR(nn.Module):
    """``forward(img) -> (KeypointHMROutput, features (B, feature_dim))``; see the module doc.

    ``backbone`` is a name in `KEYPOINT_BACKBONES`; ``mean_params`` is the IEF start (`HMRHead`'s ``init_pose`` / ``init_shape``)."""

    def __init__(self, backbone: str = "mobilenetv3_small_050", mean_params: Mapping[str, Any] | str | os.PathLike | None = None,
                 n_iter: int = 3, num_keypoints: int = DEFAULT_KEYPOINTS, heatmap_channels: int = 64,
                 lift_hidden: int = 512, head_dropout: float = 0.0, pooled_features: bool = True,
                 heatmap_stride: int = 8) -> None:
        super().__init__()
        if not 1 <= num_keypoints <= 54:
            raise ValueError(f"hmr_kp: num_keypoints must be 1..54 (the first of smpl_54), got {num_keypoints}")
        self.num_keypoints = num_keypoints
        self.backbone = build_pyramid(backbone)
        self.heatmaps = KeypointHeatmaps(self.backbone.map_channels, num_keypoints, heatmap_channels,
                                         stride=heatmap_stride, fine_channels=self.backbone.fine_channels)
        self.lift = nn.Sequential(nn.Linear(2 * num_keypoints, lift_hidden), nn.ReLU(inplace=True),
                                  nn.Linear(lift_hidden, lift_hidden), nn.ReLU(inplace=True))
        self.pooled_features = pooled_features
        self.feature_dim = self.backbone.feature_dim * pooled_features + lift_hidden
        self.head = HMRHead(self.feature_dim, mean_params=mean_params, n_iter=n_iter, dropout=head_dropout)

    def forward(self, img: Tensor) -> tuple[KeypointHMROutput, Tensor]:
        maps, deepest, fine = self.backbone(img)
        logits = self.heatmaps(maps, fine)
        keypoints = soft_argmax(logits)
        lifted = self.lift(keypoints.flatten(1).to(deepest.dtype))
        features = torch.cat([deepest.mean(dim=(2, 3)), lifted], dim=1) if self.pooled_features else lifted
        out = self.head(features)
        return KeypointHMROutput(out.pose_6d, out.rotmat, out.betas, out.cam, out.iterations,
                                 keypoints2d_direct=keypoints, keypoint_logits=logits), features

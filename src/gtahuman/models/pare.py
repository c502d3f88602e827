"""PARE, the part-attention regressor (Kocabas et al. 2021): multi-scale backbone + `PAREHead`.

The paper's PARE rows (Table 2: PARE 50.9 -> PARE FT 46.8 mm PA-MPJPE on 3DPW) use HRNet-W32
("hrnet_w32-conv" in PARE's code): the four branch outputs of HRNet's last stage (strides 4, 8,
16, 32) brought to stride 4 by [2x bilinear upsampling, 3x3 conv, BN, ReLU] blocks (one per
halving: ``upsample_stage_2`` has one, ``_3`` two, ``_4`` three) and concatenated (32 + 64 +
128 + 256 = 480 channels, 56 x 56 for a 224 crop). `MultiScaleBackbone` does this on any timm
CNN with ``features_only``; for the mini world on a CPU, ``hrnet_w18_small`` (1.5 M parameters)
or ``mobilenetv3_small_050`` stand in. ``upsample='interp'`` is PARE's parameter-free variant
("hrnet_w32-interp").

Nothing is downloaded: ImageNet (or COCO-pose) backbone weights come from a local file
(``weights_path``, timm / HRNet layout, loaded key by key with a report, as for `Backbone`).
A whole PARE checkpoint is imported with `gtahuman.systems.pare_import`.

`part_segmentation_loss` is PARE's part-mask supervision of the 2D branch.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gtahuman.models.backbones import (
    BACKBONES,
    Backbone,
    WeightsLoadReport,
    load_backbone_weights,
)
from gtahuman.models.pare_head import NUM_PARTS, PAREHead, PAREOutput

# Names PARE accepts as its backbone -> (timm model, extra timm keyword arguments). HRNet's
# feature_location='' gives the raw branch outputs (not the classification head's widened ones).
MULTI_SCALE_BACKBONES: dict[str, tuple[str, dict[str, Any]]] = {
    "hrnet_w32": ("hrnet_w32", {"feature_location": ""}),  # the paper's (PARE's) backbone
    "hrnet_w18_small": ("hrnet_w18_small", {"feature_location": ""}),  # CPU / mini world
    "resnet50": ("resnet50", {}),
    "resnet18": ("resnet18", {}),
    "resnet10t": ("resnet10t", {}),
    "mobilenetv3_small_050": ("mobilenetv3_small_050", {}),
}
UPSAMPLE_MODES = ("conv", "interp")
_OUT_INDICES = (1, 2, 3, 4)  # strides 4, 8, 16, 32


def _upsample_block(channels: int, doublings: int) -> nn.Sequential:
    """PARE's ``_make_upsample_layer``: [Upsample x2 (bilinear, corners aligned), 3x3 conv, BN, ReLU]."""
    modules: list[nn.Module] = []
    for _ in range(doublings):
        modules += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                    nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                    nn.ReLU(inplace=True)]
    return nn.Sequential(*modules)


class MultiScaleBackbone(nn.Module):
    """A timm CNN's stride 4-32 feature maps, upsampled to stride 4 and concatenated.

    ``feature_dim`` is the concatenated channel count (480 for HRNet-W32). The timm model sits
    at ``model`` (key names as in timm / HRNet), the upsampling blocks at ``upsample_stage_2..4``
    (PARE's names).
    """

    def __init__(
        self,
        name: str = "hrnet_w32",
        upsample: str = "conv",
        weights_path: str | os.PathLike | None = None,
        strict_weights: bool = False,
    ) -> None:
        super().__init__()
        if name not in MULTI_SCALE_BACKBONES:
            raise KeyError(f"PARE backbone '{name}' unknown; valid names: {', '.join(sorted(MULTI_SCALE_BACKBONES))}")
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"PARE backbone: upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        timm_name, extra = MULTI_SCALE_BACKBONES[name]
        self.timm_name, self.upsample = timm_name, upsample
        self.model = timm.create_model(timm_name, pretrained=False, features_only=True, out_indices=_OUT_INDICES,
                                       **extra)
        channels = self.model.feature_info.channels()
        self.feature_dim = int(sum(channels))
        if upsample == "conv":
            for level, width in enumerate(channels[1:], start=1):
                self.add_module(f"upsample_stage_{level + 1}", _upsample_block(width, level))
        self.weights_report: WeightsLoadReport | None = None
        if weights_path is not None:
            # Same loader as `Backbone` (it reads only ``.model``): every mismatching key named.
            self.weights_report = load_backbone_weights(self, Path(weights_path), strict=strict_weights)  # type: ignore[arg-type]

    def forward(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"PARE backbone {self.timm_name}: expected images (B,3,H,W), got {tuple(images.shape)}")
        if self.timm_name.startswith("hrnet") and (images.shape[-1] % 32 or images.shape[-2] % 32):
            raise ValueError(f"PARE backbone {self.timm_name}: image sides must be a multiple of 32 (HRNet's "
                             f"branches are fused by exact 2x resampling), got {tuple(images.shape[-2:])}")
        maps = self.model(images)
        size = maps[0].shape[-2:]
        merged = [maps[0]]
        for level, feature in enumerate(maps[1:], start=1):
            if self.upsample == "conv":
                feature = getattr(self, f"upsample_stage_{level + 1}")(feature)
            # Sizes not divisible by 32 leave the doubled maps a pixel off; interpolation closes it.
            if feature.shape[-2:] != size:
                feature = F.interpolate(feature, size=size, mode="bilinear", align_corners=True)
            merged.append(feature)
        return torch.cat(merged, dim=1)


class PARE(nn.Module):
    """Image regressor ``forward(img) -> (PAREOutput, pooled part features (B, feature_dim))``.

    ``backbone``: `MultiScaleBackbone`; ``head``: `PAREHead` (its ``init_pose`` / ``init_shape``
    are the mean parameters). ``attention_resolution`` is the side of the part maps (img_res / 4).
    """

    def __init__(
        self,
        backbone: str = "hrnet_w32",
        backbone_args: Mapping[str, Any] | None = None,
        mean_params: Mapping[str, Any] | str | os.PathLike | None = None,
        img_res: int = 224,
        branch_filters: int = 128,
        branch_layers: int = 2,
        smpl_features: int = 64,
    ) -> None:
        super().__init__()
        self.backbone = MultiScaleBackbone(backbone, **dict(backbone_args or {}))
        self.head = PAREHead(self.backbone.feature_dim, mean_params=mean_params, branch_filters=branch_filters,
                             branch_layers=branch_layers, smpl_features=smpl_features)
        self.feature_dim = self.head.feature_dim
        self.img_res = img_res
        self.attention_resolution = -(-img_res // 4)

    def forward(self, img: Tensor) -> tuple[PAREOutput, Tensor]:
        return self.head(self.backbone(img))


def part_segmentation_loss(part_logits: Tensor, part_labels: Tensor, sample_mask: Tensor) -> Tensor:
    """Cross-entropy of the 2D branch's segmentation against part masks (PARE's part loss).

    ``part_logits`` (B, 1 + 24, h, w); ``part_labels`` (B, H, W) integers: 0 background, k = 1..24
    SMPL part k - 1, -1 unlabelled (ignored); taken at (h, w) by nearest-neighbour sampling when
    H, W differ. Mean over the labelled pixels of the samples in ``sample_mask`` (B,); exactly 0
    (with a zero gradient) when there are none.
    """
    if part_labels.ndim != 3 or part_labels.shape[0] != part_logits.shape[0]:
        raise ValueError(f"batch key 'part_labels': expected (B, H, W) with B={part_logits.shape[0]}, "
                         f"got {tuple(part_labels.shape)}")
    if part_labels.numel() and (int(part_labels.min()) < -1 or int(part_labels.max()) > NUM_PARTS):
        raise ValueError(f"batch key 'part_labels': expected integers in [-1, {NUM_PARTS}] (-1 unlabelled, "
                         f"0 background, 1-{NUM_PARTS} SMPL parts), got [{int(part_labels.min())}, "
                         f"{int(part_labels.max())}]")
    size = part_logits.shape[-2:]
    labels = part_labels.long()
    if labels.shape[-2:] != size:
        labels = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
    mask = sample_mask.reshape(-1, 1, 1).to(torch.bool)
    labels = torch.where(mask, labels, torch.full_like(labels, -1))
    per_pixel = F.cross_entropy(part_logits.float(), labels, ignore_index=-1, reduction="none")
    counted = (labels >= 0).sum()
    return per_pixel.sum() / counted.clamp(min=1)


# HRNet as a plain (pooled) backbone too, so a config's model.backbone names one registry for
# every arch; skipped if gtahuman.models.backbones registers them itself.
def _register_pooled_hrnet(name: str) -> None:
    def build(weights_path: str | Path | None = None, channels_last: bool = False, strict_weights: bool = False,
              drop_path_rate: float = 0.0) -> Backbone:
        del drop_path_rate  # HRNet has no stochastic depth; accepted like the other entries
        return Backbone(name, default_input_size=224, weights_path=weights_path, channels_last=channels_last,
                        strict_weights=strict_weights)

    build.__doc__ = f"timm '{name}' with its classification head's 2048-d pooled feature (no classifier)."
    BACKBONES.register(name)(build)


for _name in ("hrnet_w32", "hrnet_w18_small"):
    if _name not in BACKBONES:
        _register_pooled_hrnet(_name)

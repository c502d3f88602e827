"""`REGRESSORS`: image regressors other than HMR's backbone + IEF head, built by name.

``HMRSystem(arch=NAME)`` (config ``model.arch``) builds ``REGRESSORS.build(NAME, backbone=...,
backbone_args=..., mean_params=..., n_iter=..., img_res=...)``. Every entry takes those keyword
arguments and returns an ``nn.Module`` with

* ``forward(img (B, 3, R, R)) -> (HMROutput or a subclass, pooled features (B, feature_dim))``;
* ``feature_dim`` (what domain adaptation and the feature dumps see);
* ``backbone`` and ``head`` sub-modules, the head holding the mean parameters as
  ``init_pose`` (1, 144) and ``init_shape`` (1, 10) (the mean-pose baseline reads them).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from torch import nn

from gtahuman.models.keypoint_hmr import DEFAULT_KEYPOINTS, KeypointHMR
from gtahuman.models.pare import PARE
from gtahuman.registry import Registry

REGRESSORS: Registry[nn.Module] = Registry("regressor")


@REGRESSORS.register("pare")
def build_pare(
    backbone: str = "hrnet_w32",
    backbone_args: Mapping[str, Any] | None = None,
    mean_params: Mapping[str, Any] | str | os.PathLike | None = None,
    n_iter: int = 1,
    img_res: int = 224,
    branch_filters: int = 128,
    branch_layers: int = 2,
    smpl_features: int = 64,
) -> PARE:
    """PARE; the defaults are its HRNet configuration (two 128-filter conv layers per branch, 64
    SMPL features per part); ``branch_filters`` / ``branch_layers`` / ``smpl_features`` shrink it.

    ``backbone``: a name in `gtahuman.models.pare.MULTI_SCALE_BACKBONES` (paper: hrnet_w32);
    ``backbone_args``: ``upsample`` ('conv' | 'interp'), ``weights_path``, ``strict_weights``.
    ``n_iter`` is accepted for the common signature and not used: PARE regresses in one shot
    (its released models do not iterate).
    """
    del n_iter
    return PARE(backbone=backbone, backbone_args=backbone_args, mean_params=mean_params, img_res=img_res,
                branch_filters=branch_filters, branch_layers=branch_layers, smpl_features=smpl_features)


@REGRESSORS.register("hmr_kp")
def build_keypoint_hmr(
    backbone: str = "mobilenetv3_small_050",
    backbone_args: Mapping[str, Any] | None = None,
    mean_params: Mapping[str, Any] | str | os.PathLike | None = None,
    n_iter: int = 3,
    img_res: int = 224,
    num_keypoints: int = DEFAULT_KEYPOINTS,
    heatmap_channels: int = 64,
    lift_hidden: int = 512,
    head_dropout: float = 0.0,
    pooled_features: bool = True,
    heatmap_stride: int = 8,
) -> KeypointHMR:
    """HMR whose IEF head also reads 2D keypoints found by a heatmap branch (the mini world's
    from-scratch CPU model, `gtahuman.models.keypoint_hmr`). ``backbone``: a name in
    `KEYPOINT_BACKBONES` (plain<width> or a timm CNN); ``backbone_args`` must be empty (no weights
    loading yet);
    ``img_res`` is accepted for the common signature (the network is fully convolutional);
    ``pooled_features=False`` gives the IEF head the lifted keypoints only (no appearance);
    ``heatmap_stride`` 8 or 4 (a stride-4 refinement layer on the backbone's stride-4 map)."""
    if backbone_args:
        raise ValueError(f"hmr_kp: backbone_args are not supported (got {sorted(backbone_args)})")
    del img_res
    return KeypointHMR(backbone=backbone, mean_params=mean_params, n_iter=n_iter, num_keypoints=num_keypoints,
                       heatmap_channels=heatmap_channels, lift_hidden=lift_hidden, head_dropout=head_dropout,
                       pooled_features=pooled_features, heatmap_stride=heatmap_stride)


def build_regressor(name: str, **kwargs: Any) -> nn.Module:
    """``REGRESSORS.build`` with a short name for callers."""
    return REGRESSORS.build(name, **kwargs)

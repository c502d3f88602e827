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


def build_regressor(name: str, **kwargs: Any) -> nn.Module:
    """``REGRESSORS.build`` with a short name for callers."""
    return REGRESSORS.build(name, **kwargs)

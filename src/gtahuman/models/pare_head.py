"""PARE's head: part attention from a 2D branch pools a 3D branch's features per body part.

PARE (Kocabas et al., ICCV 2021) reads SMPL from a high-resolution feature map in two branches:

* the 2D part branch (``keypoint_deconv_layers`` -> ``keypoint_final_layer``) predicts a
  segmentation of the crop into background + the 24 SMPL parts (``part_logits``, supervised
  with part masks where a dataset has them); the 24 part channels, each softmax-normalised over
  the image plane, are the part attention maps;
* the 3D branch (``smpl_deconv_layers``) gives per-pixel features; each part's attention map
  pools them into one feature vector per part (``attention_pool``).

Pose: every joint has its own linear regressor from its part's feature to its 6D rotation
(``pose_mlp``, a locally connected layer: weights not shared between joints). Shape and camera:
one linear layer each on all parts' pooled ``smpl_final_layer`` features, flattened.

Layer names, kernel sizes and the locally connected weight's layout follow PARE's ``PareHead``
in its HRNet configuration (two 3x3 conv layers of 128 filters per branch, 64 SMPL features), so
its checkpoints load by name (`gtahuman.systems.pare_import`). One addition: ``pose_mlp`` has a
bias, initialised, like the shape and camera biases, to the mean parameters with near-zero
weights, so an untrained head predicts the mean pose as `HMRHead` does (PARE starts from random
outputs); an imported PARE model gets the bias PARE implicitly has (zero).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gtahuman.body.rotations import rot6d_to_matrix
from gtahuman.models.hmr_head import (
    BETAS_DIM,
    CAM_DIM,
    MEAN_PARAM_SIZES,
    NUM_JOINTS,
    HMROutput,
    MeanParamsError,
    default_mean_params,
    load_mean_params,
)

NUM_PARTS = NUM_JOINTS  # one part per SMPL joint (its skinning region), as in PARE
_SMALL_INIT_GAIN = 0.01  # as HMRHead's decoders: start at the mean parameters


@dataclass
class PAREOutput(HMROutput):
    """`HMROutput` plus PARE's 2D branch (both at the head's feature-map resolution)."""

    part_logits: Tensor | None = None  # (B, 1 + 24, h, w): background first, then SMPL parts
    part_attention: Tensor | None = None  # (B, 24, h, w), each map sums to one over (h, w)


def resolve_mean_params(mean_params: Mapping[str, Any] | str | os.PathLike | None) -> dict[str, np.ndarray]:
    """None -> the suite's defaults; a mapping or an ``smpl_mean_params.npz`` path -> checked
    float32 vectors ``pose`` (144), ``shape`` (10), ``cam`` (3)."""
    if mean_params is None:
        return default_mean_params()
    if not isinstance(mean_params, Mapping):
        return load_mean_params(mean_params)
    params = {}
    for key, size in MEAN_PARAM_SIZES.items():
        if key not in mean_params:
            raise MeanParamsError(f"mean_params dict: key '{key}': missing; expected {size} values")
        params[key] = np.asarray(mean_params[key], dtype=np.float32).reshape(-1)
        if params[key].shape != (size,):
            raise MeanParamsError(f"mean_params dict: key '{key}': expected {size} values, "
                                  f"got shape {np.shape(mean_params[key])}")
    return params


def part_attention(attention_logits: Tensor) -> Tensor:
    """(B, P, h, w) logits -> attention maps, each softmax-normalised over the (h, w) plane."""
    batch, parts = attention_logits.shape[:2]
    return F.softmax(attention_logits.reshape(batch, parts, -1), dim=-1).reshape(attention_logits.shape)


def attention_pool(features: Tensor, attention: Tensor) -> Tensor:
    """Per-part weighted sum of ``features`` (B, C, h, w) under ``attention`` (B, P, h, w)
    -> (B, C, P) (PARE's ``KeypointAttention`` with softmax maps)."""
    return torch.einsum("bphw,bchw->bcp", attention, features)


class LocallyConnectedJoints(nn.Module):
    """A separate linear map per joint: (B, C_in, J) -> (B, C_out, J).

    The weight keeps the layout of PARE's ``LocallyConnected2d`` with a 1x1 kernel on a (J, 1)
    grid, (1, C_out, C_in, J, 1, 1), so PARE checkpoints load unchanged; the bias is (1, C_out, J, 1).
    """

    def __init__(self, in_channels: int, out_channels: int, num_joints: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(1, out_channels, in_channels, num_joints, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, out_channels, num_joints, 1))
        # Xavier-uniform bound of one joint's (C_out x C_in) matrix, scaled down.
        bound = _SMALL_INIT_GAIN * (6.0 / (in_channels + out_channels)) ** 0.5
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.einsum("bcj,ocj->boj", x, self.weight[0, :, :, :, 0, 0])
        return out + self.bias[..., 0]


def conv_branch(in_channels: int, filters: int, layers: int) -> nn.Sequential:
    """PARE's ``_make_conv_layer`` for HRNet: [3x3 conv (no bias), BN, ReLU] x ``layers``."""
    modules: list[nn.Module] = []
    for _ in range(layers):
        modules += [nn.Conv2d(in_channels, filters, 3, padding=1, bias=False), nn.BatchNorm2d(filters),
                    nn.ReLU(inplace=True)]
        in_channels = filters
    return nn.Sequential(*modules)


class PAREHead(nn.Module):
    """Two-branch part-attention regressor on a (B, C, h, w) feature map; see the module docstring.

    ``feature_dim`` is the size of the pooled feature returned next to the output: all parts'
    shape/camera features, flattened (``num_parts x smpl_features``), the input of the shape
    and camera regressors (what HMR's pooled backbone feature is to its head).
    """

    def __init__(
        self,
        in_channels: int,
        mean_params: Mapping[str, Any] | str | os.PathLike | None = None,
        branch_filters: int = 128,
        branch_layers: int = 2,
        smpl_features: int = 64,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.feature_dim = NUM_PARTS * smpl_features
        self.keypoint_deconv_layers = conv_branch(in_channels, branch_filters, branch_layers)
        self.smpl_deconv_layers = conv_branch(in_channels, branch_filters, branch_layers)
        self.keypoint_final_layer = nn.Conv2d(branch_filters, 1 + NUM_PARTS, 1)  # background + parts
        self.smpl_final_layer = nn.Conv2d(branch_filters, smpl_features, 1)
        self.pose_mlp = LocallyConnectedJoints(branch_filters, 6, NUM_JOINTS)
        self.shape_mlp = nn.Linear(self.feature_dim, BETAS_DIM)
        self.cam_mlp = nn.Linear(self.feature_dim, CAM_DIM)

        params = resolve_mean_params(mean_params)
        self.register_buffer("init_pose", torch.from_numpy(params["pose"])[None])
        self.register_buffer("init_shape", torch.from_numpy(params["shape"])[None])
        self.register_buffer("init_cam", torch.from_numpy(params["cam"])[None])
        with torch.no_grad():
            for layer, mean in ((self.shape_mlp, self.init_shape), (self.cam_mlp, self.init_cam)):
                nn.init.xavier_uniform_(layer.weight, gain=_SMALL_INIT_GAIN)
                layer.bias.copy_(mean[0])
            # init_pose is (24 joints x 6) row-major; the bias is (1, 6, 24, 1).
            self.pose_mlp.bias.copy_(self.init_pose.reshape(NUM_JOINTS, 6).T[None, :, :, None])

    def forward(self, feature_map: Tensor) -> tuple[PAREOutput, Tensor]:
        """(B, C, h, w) -> (output, pooled shape/camera features (B, feature_dim))."""
        if feature_map.ndim != 4 or feature_map.shape[1] != self.in_channels:
            raise ValueError(f"PAREHead: expected a feature map (B, {self.in_channels}, h, w), "
                             f"got {tuple(feature_map.shape)}")
        batch = feature_map.shape[0]
        part_logits = self.keypoint_final_layer(self.keypoint_deconv_layers(feature_map))
        # The background channel only serves the segmentation loss.
        attention = part_attention(part_logits[:, 1:])
        smpl_feats = self.smpl_deconv_layers(feature_map)
        pose_feats = attention_pool(smpl_feats, attention)  # (B, filters, 24)
        cam_shape_feats = attention_pool(self.smpl_final_layer(smpl_feats), attention)  # (B, 64, 24)
        # PARE flattens (B, features, parts) channel-major; kept so imported weights line up.
        pooled = cam_shape_feats.flatten(1)
        pose_6d = self.pose_mlp(pose_feats).transpose(1, 2).reshape(batch, NUM_JOINTS * 6)
        betas, cam = self.shape_mlp(pooled), self.cam_mlp(pooled)
        rotmat = rot6d_to_matrix(pose_6d.reshape(batch, NUM_JOINTS, 6))
        output = PAREOutput(pose_6d=pose_6d, rotmat=rotmat, betas=betas, cam=cam,
                            part_logits=part_logits, part_attention=attention)
        return output, pooled

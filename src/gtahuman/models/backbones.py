"""Image backbones: a registry of timm models that turn (B,3,H,W) crops into (B,F) features.

The paper's Table 9 compares ResNet-50/101/152 and DeiT-S/B under HMR; the small CNNs
(``resnet18``, ``resnet10t``, ``mobilenetv3_small_050``) exist so the procedural mini world
trains in minutes on a laptop CPU at 64-128 px.

Nothing is ever downloaded: ``pretrained`` is not even an option. ImageNet (or any other)
weights come from a local file via ``weights_path``, in timm or torchvision layout (for ResNets
the two share key names), optionally wrapped in ``{"state_dict": ...}`` / ``{"model": ...}``
and prefixed with ``module.`` / ``backbone.`` (DDP and mmhuman3d checkpoints; from a whole-model
checkpoint only the ``backbone.`` part is taken). Every key that does not match is reported by
name.
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from gtahuman.registry import Registry

BACKBONES: Registry[Backbone] = Registry("backbone")

# Prefixes stripped from checkpoint keys, outermost first (DDP, mmhuman3d/mmcv, our own wrapper).
_KEY_PREFIXES = ("module.", "backbone.", "model.")
# Containers that checkpoints nest their state dict in.
_STATE_DICT_CONTAINERS = ("state_dict", "model", "state_dict_ema")


class WeightsMismatchWarning(UserWarning):
    """A weights file did not match the backbone key for key."""


@dataclass
class WeightsLoadReport:
    """What happened when a weights file was loaded into a backbone."""

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the model, not in the file
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model
    shape_mismatch: list[str] = field(default_factory=list)  # "key: file (..) vs model (..)"
    ignored_classifier: list[str] = field(default_factory=list)  # ImageNet head, expected extra

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatch)

    def summary(self) -> str:
        lines = [f"{self.path}: loaded {len(self.loaded)} tensors"]
        for title, keys in (
            ("MISSING from file (left at init)", self.missing),
            ("UNEXPECTED in file (ignored)", self.unexpected),
            ("SHAPE MISMATCH (left at init)", self.shape_mismatch),
        ):
            if keys:
                lines.append(f"  {title}: {len(keys)}: " + ", ".join(keys))
        if self.ignored_classifier:
            lines.append("  classifier keys ignored: " + ", ".join(self.ignored_classifier))
        return "\n".join(lines)


class Backbone(nn.Module):
    """A timm model without its classifier: ``forward`` gives pooled (B, feature_dim) features.

    ``feature_map`` gives the last stage before pooling as (B, C, h, w) (for ViTs the patch
    tokens laid out on their grid), for dense heads such as PARE.

    ``pool_grid`` (CNNs): 0 keeps timm's global average pooling; g > 0 average-pools the last
    stage onto a g x g grid and flattens it (feature_dim = C g^2), so the head still sees *where*
    things are in the crop (which side of the torso is light, where the head is). A global
    average discards that layout, and a network trained from scratch for minutes cannot
    rebuild it from pooled channels: it then predicts the body's facing at chance (issue 18).
    """

    def __init__(
        self,
        timm_name: str,
        *,
        default_input_size: int = 224,
        weights_path: str | Path | None = None,
        channels_last: bool = False,
        strict_weights: bool = False,
        pool_grid: int = 0,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        if pool_grid < 0:
            raise ValueError(f"backbone {timm_name}: pool_grid must be >= 0 (0 = global average), got {pool_grid}")
        self.timm_name = timm_name
        self.pool_grid = int(pool_grid)
        self.default_input_size = default_input_size
        self.channels_last = channels_last
        # num_classes=0 removes the classifier and keeps timm's pooling (and MobileNetV3's
        # post-pool conv head), so the model outputs features directly.
        self.model = timm.create_model(timm_name, pretrained=False, num_classes=0, **timm_kwargs)
        self.feature_dim: int = int(getattr(self.model, "head_hidden_size", None) or self.model.num_features)
        self.is_transformer = hasattr(self.model, "num_prefix_tokens")
        if self.pool_grid:
            if self.is_transformer:
                raise ValueError(f"backbone {timm_name}: pool_grid is for CNNs (a ViT has its own tokens)")
            self.feature_dim = int(self.model.num_features) * self.pool_grid ** 2
        self.weights_report: WeightsLoadReport | None = None
        if weights_path is not None:
            self.weights_report = load_backbone_weights(self, weights_path, strict=strict_weights)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"backbone {self.timm_name}: expected images (B,3,H,W), got {tuple(images.shape)}"
            )
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.pool_grid:
            grid = nn.functional.adaptive_avg_pool2d(self.feature_map(images), self.pool_grid)
            return grid.flatten(1)
        return self.model(self._prepare(images))

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        features = self.model.forward_features(self._prepare(images))
        if not self.is_transformer:
            return features
        patches = features[:, self.model.num_prefix_tokens :]  # drop CLS (and distillation) tokens
        patch_h, patch_w = self.model.patch_embed.patch_size
        height, width = images.shape[-2] // patch_h, images.shape[-1] // patch_w
        return patches.transpose(1, 2).reshape(patches.shape[0], patches.shape[2], height, width)


# --------------------------------------------------------------------------- weight loading


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for container in _STATE_DICT_CONTAINERS:
        if isinstance(obj, dict) and container in obj and isinstance(obj[container], dict):
            obj = obj[container]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(
            f"{path}: expected a state dict (name -> tensor), possibly under one of "
            f"{_STATE_DICT_CONTAINERS}; got {type(obj).__name__}"
        )
    return obj


def _strip_prefixes(key: str) -> str:
    for prefix in _KEY_PREFIXES:
        key = key.removeprefix(prefix)
    return key


def load_backbone_weights(backbone: Backbone, path: str | Path, *, strict: bool = False) -> WeightsLoadReport:
    """Load a local checkpoint into ``backbone.model``; warn (or raise if ``strict``) on any
    key that does not match, naming every one of them."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(f"{path}: not loadable as plain tensors (weights_only=True): {error}") from error
    file_state = _unwrap_state_dict(raw, path)
    # A whole-model checkpoint (HMR system, mmhuman3d): keep only its backbone part.
    if any(k.removeprefix("module.").startswith("backbone.") for k in file_state):
        file_state = {
            k: v for k, v in file_state.items() if k.removeprefix("module.").startswith("backbone.")
        }
    file_state = {_strip_prefixes(k): v for k, v in file_state.items()}
    model_state = backbone.model.state_dict()
    classifier = backbone.model.pretrained_cfg.get("classifier") or ""
    classifier_prefixes = tuple(
        f"{c}." for c in ([classifier] if isinstance(classifier, str) else classifier) if c
    )

    report = WeightsLoadReport(path=str(path))
    to_load: dict[str, torch.Tensor] = {}
    for key, value in file_state.items():
        if key not in model_state:
            bucket = report.ignored_classifier if key.startswith(classifier_prefixes) else report.unexpected
            bucket.append(key)
        elif value.shape != model_state[key].shape:
            report.shape_mismatch.append(
                f"{key}: file {tuple(value.shape)} vs model {tuple(model_state[key].shape)}"
            )
        else:
            to_load[key] = value
    report.missing = [k for k in model_state if k not in to_load and k not in file_state]
    report.loaded = sorted(to_load)
    if strict and not report.clean:
        raise ValueError("weights do not match the backbone (strict):\n" + report.summary())
    backbone.model.load_state_dict(to_load, strict=False)
    if not report.clean:
        warnings.warn(report.summary(), WeightsMismatchWarning, stacklevel=2)
    return report


# --------------------------------------------------------------------------- registry entries


def _register_timm(name: str, timm_name: str, default_input_size: int) -> None:
    def build(
        weights_path: str | Path | None = None,
        channels_last: bool = False,
        strict_weights: bool = False,
        drop_path_rate: float = 0.0,
        pool_grid: int = 0,
    ) -> Backbone:
        return Backbone(
            timm_name,
            default_input_size=default_input_size,
            weights_path=weights_path,
            channels_last=channels_last,
            strict_weights=strict_weights,
            drop_path_rate=drop_path_rate,
            pool_grid=pool_grid,
        )

    build.__doc__ = f"timm '{timm_name}' without classifier (natural input {default_input_size} px)."
    BACKBONES.register(name)(build)


# Paper backbones (Table 9), natural input 224 px.
for _name in ("resnet50", "resnet101", "resnet152"):
    _register_timm(_name, _name, 224)
# Small CPU backbones for the mini world, natural input 128 px (fully convolutional: 64 works too).
_register_timm("resnet18", "resnet18", 128)
_register_timm("resnet10t", "resnet10t", 128)
_register_timm("mobilenetv3_small_050", "mobilenetv3_small_050", 128)


def _register_deit(name: str, timm_name: str) -> None:
    def build(
        weights_path: str | Path | None = None,
        channels_last: bool = False,
        strict_weights: bool = False,
        drop_path_rate: float = 0.0,
        pool: str = "token",
        img_size: int = 224,
    ) -> Backbone:
        """``pool``: 'token' (CLS token, DeiT's own) or 'avg' (mean of patch tokens).
        ``img_size`` fixes the position-embedding grid (multiple of 16)."""
        if pool not in ("token", "avg"):
            raise ValueError(f"backbone {name}: pool must be 'token' or 'avg', got {pool!r}")
        if img_size % 16:
            raise ValueError(f"backbone {name}: img_size must be a multiple of 16, got {img_size}")
        return Backbone(
            timm_name,
            default_input_size=img_size,
            weights_path=weights_path,
            channels_last=channels_last,
            strict_weights=strict_weights,
            drop_path_rate=drop_path_rate,
            global_pool=pool,
            img_size=img_size,
        )

    BACKBONES.register(name)(build)


_register_deit("deit_small", "deit_small_patch16_224")
_register_deit("deit_base", "deit_base_patch16_224")


def build_backbone(name: str, **kwargs: Any) -> Backbone:
    """``BACKBONES.build`` with a short name for callers."""
    return BACKBONES.build(name, **kwargs)

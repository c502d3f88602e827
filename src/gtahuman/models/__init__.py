"""Model components: image backbones (registry), the HMR regressor head, and discriminators."""

from gtahuman.models.backbones import (
    BACKBONES,
    Backbone,
    WeightsLoadReport,
    WeightsMismatchWarning,
    build_backbone,
    load_backbone_weights,
)
from gtahuman.models.discriminators import (
    DomainDiscriminator,
    SMPLPoseDiscriminator,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
)
from gtahuman.models.hmr_head import (
    HMRHead,
    HMROutput,
    MeanParamsError,
    default_mean_params,
    load_mean_params,
)

__all__ = [
    "BACKBONES",
    "Backbone",
    "DomainDiscriminator",
    "HMRHead",
    "HMROutput",
    "MeanParamsError",
    "SMPLPoseDiscriminator",
    "WeightsLoadReport",
    "WeightsMismatchWarning",
    "build_backbone",
    "default_mean_params",
    "load_backbone_weights",
    "load_mean_params",
    "lsgan_discriminator_loss",
    "lsgan_generator_loss",
]

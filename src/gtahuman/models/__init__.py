"""Model components: image backbones (registry), the HMR regressor head, other image regressors
(REGRESSORS: PARE), and discriminators."""

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
from gtahuman.models.pare import (
    MULTI_SCALE_BACKBONES,
    PARE,
    MultiScaleBackbone,
    part_segmentation_loss,
)
from gtahuman.models.pare_head import PAREHead, PAREOutput
from gtahuman.models.regressors import REGRESSORS, build_regressor

__all__ = [
    "BACKBONES",
    "MULTI_SCALE_BACKBONES",
    "PARE",
    "REGRESSORS",
    "Backbone",
    "DomainDiscriminator",
    "HMRHead",
    "HMROutput",
    "MeanParamsError",
    "MultiScaleBackbone",
    "PAREHead",
    "PAREOutput",
    "SMPLPoseDiscriminator",
    "WeightsLoadReport",
    "WeightsMismatchWarning",
    "build_backbone",
    "build_regressor",
    "default_mean_params",
    "load_backbone_weights",
    "load_mean_params",
    "lsgan_discriminator_loss",
    "lsgan_generator_loss",
    "part_segmentation_loss",
]

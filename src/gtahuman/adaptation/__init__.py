"""Domain adaptation (paper Table 6): objectives added to HMR's loss, and sim2real translation.

``ADAPTATIONS`` (defined in `objective`, each objective registered in its own module) builds an
objective by name with the backbone's feature size and its own typed arguments
(``adaptation.args`` in the config); the paper's loss weights are the defaults:

* ``none``: zero loss (switch DA off by name);
* ``dann``: domain discriminator through warm-start gradient reversal, weight 0.1 (Ganin et al.);
* ``jan``: joint multi-kernel MMD of backbone features and SMPL parameters, weight 0.001;
* ``rsd``: representation subspace distance + 0.1 BMP, weight 1e-4 (Chen et al. 2021).

CycleGAN sim2real is not an objective but a translation of the synthetic images: `cyclegan`
trains it (``python -m gtahuman.adaptation.cyclegan``), `sim2real` applies the trained generator
once to the synthetic crop caches (offline) or to each batch's synthetic samples (online),
selected by ``adaptation.sim2real_checkpoint`` / ``adaptation.sim2real_mode``.

See `objective` for the call signature `HMRSystem` uses.
"""
from __future__ import annotations

from gtahuman.adaptation.dann import DANN
from gtahuman.adaptation.gradient_reversal import (
    WarmStartGradientReversal,
    reverse_gradient,
    warm_start_coefficient,
)
from gtahuman.adaptation.jan import JAN, GaussianKernel, JointMultipleKernelMMD
from gtahuman.adaptation.objective import ADAPTATIONS, AdaptationObjective, NoAdaptation
from gtahuman.adaptation.rsd import RSD, representation_subspace_distance
from gtahuman.adaptation.cyclegan_data import UnpairedCropDataModule
from gtahuman.adaptation.cyclegan_nets import ImagePool, PatchDiscriminator, ResnetGenerator
from gtahuman.adaptation.sim2real import (
    Sim2RealSetup,
    Sim2RealTransform,
    apply_sim2real,
    load_generator,
    translate_crop_cache,
    translate_synthetic_rows,
)


def __getattr__(name: str):
    # The CycleGAN trainer is imported on first use, so that `python -m gtahuman.adaptation.cyclegan`
    # runs a module the package has not imported already (runpy warns about that otherwise).
    if name in ("CycleGANSystem", "train_cyclegan"):
        from gtahuman.adaptation import cyclegan

        return getattr(cyclegan, name)
    raise AttributeError(f"module 'gtahuman.adaptation' has no attribute '{name}'")

__all__ = [
    "ADAPTATIONS",
    "CycleGANSystem",
    "ImagePool",
    "PatchDiscriminator",
    "ResnetGenerator",
    "Sim2RealSetup",
    "Sim2RealTransform",
    "UnpairedCropDataModule",
    "apply_sim2real",
    "load_generator",
    "train_cyclegan",
    "translate_crop_cache",
    "translate_synthetic_rows",
    "DANN",
    "JAN",
    "RSD",
    "AdaptationObjective",
    "GaussianKernel",
    "JointMultipleKernelMMD",
    "NoAdaptation",
    "WarmStartGradientReversal",
    "representation_subspace_distance",
    "reverse_gradient",
    "warm_start_coefficient",
]

"""Domain adaptation (paper Table 6): objectives added to HMR's loss.

``ADAPTATIONS`` (defined in `objective`, each objective registered in its own module) builds an
objective by name with the backbone's feature size and its own typed arguments
(``adaptation.args`` in the config); the paper's loss weights are the defaults:

* ``none``: zero loss (switch DA off by name);
* ``dann``: domain discriminator through warm-start gradient reversal, weight 0.1 (Ganin et al.);
* ``jan``: joint multi-kernel MMD of backbone features and SMPL parameters, weight 0.001;
* ``rsd``: representation subspace distance + 0.1 BMP, weight 1e-4 (Chen et al. 2021).

CycleGAN sim2real is not an objective but a translation of the synthetic images: it lives in its
own package, `gtahuman.sim2real`.

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

__all__ = [
    "ADAPTATIONS",
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

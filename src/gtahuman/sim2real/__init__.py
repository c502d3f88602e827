"""CycleGAN sim2real (paper Table 6): synthetic crops restyled to look real, then trained on.

Not a training objective (those are `gtahuman.adaptation`) but a translation of the images:

* `cyclegan` trains the translation (``python -m gtahuman.sim2real.cyclegan``) from unpaired real
  and synthetic crop caches (`data`: the unpaired pools; `nets`: generator, discriminator, pool);
* `translate` applies the trained generator, once to the synthetic crop caches (offline,
  ``adaptation.sim2real_mode=offline``: `apply_sim2real`) or to each training batch's synthetic
  rows (online: `SyntheticRowTranslation`, which the run hands to `HMRSystem`), selected by
  ``adaptation.sim2real_checkpoint``.
"""
from __future__ import annotations

from gtahuman.sim2real.data import UnpairedCropDataModule
from gtahuman.sim2real.nets import ImagePool, PatchDiscriminator, ResnetGenerator
from gtahuman.sim2real.translate import (
    Sim2RealSetup,
    Sim2RealTransform,
    SyntheticRowTranslation,
    apply_sim2real,
    load_generator,
    translate_crop_cache,
    translate_synthetic_rows,
)


def __getattr__(name: str):
    # The CycleGAN trainer is imported on first use, so that `python -m gtahuman.sim2real.cyclegan`
    # runs a module the package has not imported already (runpy warns about that otherwise).
    if name in ("CycleGANSystem", "train_cyclegan"):
        from gtahuman.sim2real import cyclegan  # on first use: see the comment above

        return getattr(cyclegan, name)
    raise AttributeError(f"module 'gtahuman.sim2real' has no attribute '{name}'")


__all__ = [
    "CycleGANSystem", "ImagePool", "PatchDiscriminator", "ResnetGenerator", "Sim2RealSetup", "Sim2RealTransform",
    "SyntheticRowTranslation", "UnpairedCropDataModule", "apply_sim2real", "load_generator", "train_cyclegan",
    "translate_crop_cache", "translate_synthetic_rows",
]

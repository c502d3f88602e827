"""The registry of epoch samplers (``data.sampler`` names), kept apart so that each sampler module
registers itself where it is defined without importing the others."""
from __future__ import annotations

from collections.abc import Callable

from gtahuman.registry import Registry

from .sampler_plans import EpochSampler

SAMPLERS: Registry[EpochSampler] = Registry("sampler")


def register_sampler(name: str) -> Callable[[type], type]:
    """Register a sampler class and remember its name (for describe() and state checks)."""

    def deco(cls: type) -> type:
        cls.registered_name = name
        return SAMPLERS.register(name)(cls)

    return deco

"""``train(cfg) -> metrics``: the one function that ``experiments.run``, sweeps and tests call.

It checks the whole config before any work (every value in range, every name registered, every
``???`` given), then runs the task the config names: ``task=image`` (`gtahuman.train_image`: HMR,
HMR+, PARE and the domain-adaptation rows on person crops) or ``task=video`` (`gtahuman.video.train`:
the VIBE-style temporal model of Table 3, which trains its frame model with `train_image` first).
The pieces a run is made of live beside it: `gtahuman.run_data` (body model, mini world, indices,
crop caches, the data module), `gtahuman.run_trainer` (the Trainer, the run directory, the test
pass and what it writes) and `gtahuman.run_callbacks` (what the Trainer carries).
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import lightning as L
from omegaconf import DictConfig

from gtahuman.config import require_complete
from gtahuman.config_checks import validate_config
from gtahuman.train_image import train_image

warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)


def train(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> dict[str, Any]:
    """Run one experiment described by ``cfg`` (see gtahuman.config); returns its metrics.
    ``callbacks``: extra Lightning callbacks for the fit (a sweep's validation reporter / pruner)."""
    validate_config(cfg)  # every value, before any work (cheap): sweeps and tests call train() directly
    require_complete(cfg)
    if cfg.task == "video":
        from gtahuman.video.train import train_video  # the video stack only for a video row

        return train_video(cfg)
    if cfg.task != "image":
        raise ValueError(f"config key 'task' must be 'image' or 'video', got {cfg.task!r}")
    return train_image(cfg, callbacks)

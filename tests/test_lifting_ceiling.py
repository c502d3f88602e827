"""experiments.lifting_ceiling: the Procrustes-mean constant by hand, and the command on the tiny world."""
from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from experiments.lifting_ceiling import ceiling, main, procrustes_mean
from gtahuman.metrics import pa_mpjpe


def test_procrustes_mean_of_rotated_copies_is_the_skeleton() -> None:
    rng = np.random.default_rng(0)
    skeleton = rng.normal(0, 0.3, (24, 3))
    rotations = Rotation.random(5, random_state=1).as_matrix()
    copies = np.einsum("nij,kj->nki", rotations, skeleton) + rng.normal(0, 1, (5, 1, 3))  # rotated, moved
    mean = procrustes_mean(copies)
    error = pa_mpjpe(torch.as_tensor(mean).expand(5, 24, 3), torch.as_tensor(copies))
    torch.testing.assert_close(error, torch.zeros(5, dtype=error.dtype), atol=1e-9, rtol=0)
    # a plain mean of the rotated copies is no skeleton at all: the reason for the Procrustes mean
    plain = copies.mean(axis=0)
    assert pa_mpjpe(torch.as_tensor(plain)[None], torch.as_tensor(skeleton)[None]).item() > 0.05


def test_command_on_the_tiny_world(tiny_config, single_thread, capsys) -> None:
    cfg = tiny_config()
    [result] = ceiling(cfg, [0.0], steps=20)
    assert result["constant"] > 0 and np.isfinite(result["pa_mpjpe"])
    assert set(result["groups"]) <= {"walk", "run", "reach", "crouch", "sit", "wave", "jump", "turn", "idle"}
    overrides = [f"run.cache_dir={cfg.run.cache_dir}", "data.miniworld=tiny"]
    assert main([*overrides, "--noise", "0.1", "--steps", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("noise 0.10: lifted PA-MPJPE") and lines[-1].startswith("ratio: ")

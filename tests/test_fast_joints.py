"""FastJoints54 (joints from the few vertices the regressors read) against the full body model."""
from __future__ import annotations

import pytest
import torch

from gtahuman.body.fast_joints import FastJoints54
from gtahuman.body.rotations import axis_angle_to_matrix
from gtahuman.body.smpl import BodyModel


@pytest.fixture(scope="module")
def bodies(toy_body_dir):
    full = BodyModel(toy_body_dir, "neutral").double()
    return full, FastJoints54(full).double()


def random_pose(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    rotmats = axis_angle_to_matrix(0.6 * torch.randn(batch, 24, 3, generator=gen, dtype=torch.float64))
    return rotmats, 1.5 * torch.randn(batch, 10, generator=gen, dtype=torch.float64)


def test_joints_equal_the_full_model(bodies):
    full, fast = bodies
    rotmats, betas = random_pose(6, seed=0)
    expected = full(betas, rotmats[:, 1:], rotmats[:, :1]).joints54
    got = fast(betas, rotmats[:, 1:], rotmats[:, :1])
    assert got.shape == (6, 54, 3)
    # buffers are precomputed in float32: agreement to well under a micrometre
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    # and it reads a small part of the mesh (that is the point)
    assert fast.num_used_vertices < 0.1 * full.smpl.v_template.shape[0]


def test_gradients_equal_the_full_model(bodies):
    full, fast = bodies
    rotmats, betas = random_pose(3, seed=1)
    weights = torch.randn(3, 54, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    grads = []
    for run in (lambda r, b: full(b, r[:, 1:], r[:, :1]).joints54, lambda r, b: fast(b, r[:, 1:], r[:, :1])):
        r, b = rotmats.clone().requires_grad_(True), betas.clone().requires_grad_(True)
        (run(r, b) * weights).sum().backward()
        grads.append((r.grad, b.grad))
    torch.testing.assert_close(grads[1][0], grads[0][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads[1][1], grads[0][1], atol=1e-5, rtol=1e-5)


def test_shared_betas_broadcast_and_bad_shapes(bodies):
    full, fast = bodies
    rotmats, betas = random_pose(4, seed=3)
    one = betas[:1]
    torch.testing.assert_close(fast(one, rotmats[:, 1:], rotmats[:, :1]),
                               fast(one.expand(4, -1), rotmats[:, 1:], rotmats[:, :1]))
    with pytest.raises(ValueError, match=r"\(B, 23, 3, 3\)"):
        fast(betas, rotmats[:, 2:], rotmats[:, :1])

"""The adversarial prior as one component (systems/pose_prior.py): its losses against the LSGAN
formulas computed here, what it detaches, its state dict, its errors, and the variant rule the
run assembly asks instead of naming the variant."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gtahuman.models import SMPLPoseDiscriminator
from gtahuman.systems.hmr import VARIANTS
from gtahuman.systems.pose_prior import (
    ADVERSARIAL_VARIANTS,
    AdversarialPrior,
    sample_prior,
    uses_adversarial_prior,
)


@pytest.fixture()
def prior_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "prior_poses.npz"
    np.savez(path, body_pose=rng.normal(scale=0.3, size=(12, 69)).astype(np.float32),
             betas=rng.normal(size=(12, 10)).astype(np.float32))
    return str(path)


def fakes(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, 23, 3, 3, generator=gen))
    return q.requires_grad_(True), torch.randn(n, 10, generator=gen).requires_grad_(True)


def test_losses_equal_the_lsgan_formulas_on_the_same_real_samples(prior_file) -> None:
    torch.manual_seed(0)
    prior = AdversarialPrior(prior_file)
    fake_rot, fake_betas = fakes(5)
    torch.manual_seed(7)
    d_loss = prior.discriminator_loss(fake_rot, fake_betas)
    torch.manual_seed(7)  # the same draw of real rows
    prior.load()
    real_rot, real_betas = sample_prior(prior._poses, 5, torch.device("cpu"))
    expected = ((prior(real_rot, real_betas) - 1) ** 2).mean() + (prior(fake_rot, fake_betas) ** 2).mean()
    torch.testing.assert_close(d_loss, expected)
    torch.testing.assert_close(prior.generator_loss(fake_rot, fake_betas),
                               ((prior(fake_rot, fake_betas) - 1) ** 2).mean())


def test_the_discriminator_step_trains_only_the_discriminator(prior_file) -> None:
    prior = AdversarialPrior(prior_file)
    fake_rot, fake_betas = fakes(4)
    prior.discriminator_loss(fake_rot, fake_betas).backward()
    assert fake_rot.grad is None and fake_betas.grad is None  # predictions detached
    assert all(p.grad is not None for p in prior.parameters())
    fake_rot, fake_betas = fakes(4, seed=2)
    prior.generator_loss(fake_rot, fake_betas).backward()
    assert fake_rot.grad is not None and float(fake_rot.grad.abs().sum()) > 0


def test_a_batch_without_valid_predictions_gives_a_connected_zero(prior_file) -> None:
    prior = AdversarialPrior(prior_file)
    fake_rot, fake_betas = fakes(3)
    loss = prior.generator_loss(fake_rot[:0], fake_betas[:0])
    assert float(loss) == 0.0 and loss.requires_grad
    loss.backward()
    assert float(fake_betas.grad.abs().sum()) == 0.0
    # the discriminator trains on one real sample alone (the pose network cannot score an empty batch)
    torch.manual_seed(3)
    d_loss = prior.discriminator_loss(fake_rot[:0], fake_betas[:0])
    torch.manual_seed(3)
    real_rot, real_betas = sample_prior(prior._poses, 1, torch.device("cpu"))
    torch.testing.assert_close(d_loss, ((prior(real_rot, real_betas) - 1) ** 2).mean())


def test_state_dict_is_the_discriminators_and_holds_no_poses(prior_file) -> None:
    prior = AdversarialPrior(prior_file)
    prior.load()
    assert list(prior.state_dict()) == list(SMPLPoseDiscriminator().state_dict())


def test_missing_or_malformed_prior_files_fail_naming_what_is_wrong(tmp_path) -> None:
    with pytest.raises(ValueError, match="prior_poses_path"):
        AdversarialPrior(None).load()
    bad = tmp_path / "bad.npz"
    np.savez(bad, body_pose=np.zeros((3, 69), np.float32))
    with pytest.raises(KeyError, match="betas"):
        AdversarialPrior(str(bad)).load()


def test_every_variant_is_classified_and_only_hmr_uses_the_prior() -> None:
    assert ADVERSARIAL_VARIANTS <= set(VARIANTS)
    assert [v for v in VARIANTS if uses_adversarial_prior(v)] == ["hmr"]

"""DANN (Ganin & Lempitsky 2015): a domain discriminator on backbone features, trained through
gradient reversal, so the backbone learns features the discriminator cannot tell apart.

Paper (GTA-Human sec. 4.1): "a 3-layer MLP to classify the domain of given features extracted
from the backbone. The loss weight of the adversarial part is progressively increased to 0.1".
Implemented as TLlib's DomainAdversarialLoss (reference/domain_adaptation.md sec. 1), read the
way the reference finds most plausible:

* discriminator Linear(F, 1024) -> BN -> ReLU -> Linear(1024, 1024) -> BN -> ReLU -> Linear(1024, 1)
  (`gtahuman.models.DomainDiscriminator`, logits), one pass over [source; target] so its
  BatchNorm sees both domains;
* loss = 1/2 [BCE(d_s, 1) + BCE(d_t, 0)] (source = real = 1), each a mean over its B rows;
* gradient reversal with the warm-start ramp lambda(step): 0 -> 1 (alpha 1, max_iters 1000);
* ``weight`` = 0.1 (TLlib's ``trade_off``) multiplies the loss.

So the discriminator descends 0.1 x BCE, and the backbone ascends it with the effective weight
0.1 x lambda(step), which rises from 0 to 0.1: the "progressively increased" weight. The other
reading (``weight=1.0, grl_hi=0.1``) only differs in the discriminator's own step size; pass
those arguments to get it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gtahuman.adaptation.gradient_reversal import WarmStartGradientReversal
from gtahuman.adaptation.objective import ADAPTATIONS, AdaptationObjective, check_domain_pair
from gtahuman.models import DomainDiscriminator


def domain_adversarial_loss(source_logits: Tensor, target_logits: Tensor) -> tuple[Tensor, Tensor]:
    """(1/2 [BCE(source, 1) + BCE(target, 0)], accuracy in [0, 1]) from discriminator logits.

    Accuracy is the mean of the per-domain accuracies; a logit of exactly 0 (p = 0.5) counts as
    'source', as in TLlib.
    """
    ones, zeros = torch.ones_like(source_logits), torch.zeros_like(target_logits)
    loss = 0.5 * (F.binary_cross_entropy_with_logits(source_logits, ones)
                  + F.binary_cross_entropy_with_logits(target_logits, zeros))
    with torch.no_grad():
        accuracy = 0.5 * ((source_logits >= 0).float().mean() + (target_logits < 0).float().mean())
    return loss, accuracy


@ADAPTATIONS.register("dann")
class DANN(AdaptationObjective):
    """Domain-adversarial objective on backbone features (see the module docstring).

    Arguments: ``feature_dim`` (backbone feature size), ``weight`` (paper: 0.1), the
    discriminator's ``hidden_size`` / ``num_layers`` (Linear layers) / ``batch_norm``, and the
    gradient-reversal ramp ``grl_alpha``, ``grl_lo``, ``grl_hi``, ``grl_max_iters`` (TLlib's
    defaults; the step is the trainer's global step).
    Logs: ``domain_loss`` (unweighted BCE), ``discriminator_accuracy``, ``grl_coefficient``
    (lambda), ``weight`` and ``effective_weight`` (weight x lambda, what the backbone feels).
    """

    def __init__(self, feature_dim: int, weight: float = 0.1, hidden_size: int = 1024, num_layers: int = 3,
                 batch_norm: bool = True, grl_alpha: float = 1.0, grl_lo: float = 0.0, grl_hi: float = 1.0,
                 grl_max_iters: int = 1000) -> None:
        super().__init__()
        if feature_dim <= 0:
            raise ValueError(f"DANN: feature_dim must be > 0, got {feature_dim}")
        self.feature_dim, self.weight = int(feature_dim), float(weight)
        self.discriminator = DomainDiscriminator(self.feature_dim, hidden=hidden_size, num_layers=num_layers,
                                                 batch_norm=batch_norm)
        self.reversal = WarmStartGradientReversal(grl_alpha, grl_lo, grl_hi, grl_max_iters)

    def forward(self, source_features: Tensor, target_features: Tensor, source_params: Tensor | None = None,
                target_params: Tensor | None = None, step: int = 0) -> tuple[Tensor, dict[str, Tensor | float]]:
        check_domain_pair("dann", source_features, target_features, self.feature_dim)
        n_source = source_features.shape[0]
        features = self.reversal(torch.cat([source_features, target_features]), step)
        logits = self.discriminator(features).squeeze(1)
        domain_loss, accuracy = domain_adversarial_loss(logits[:n_source], logits[n_source:])
        coefficient = self.reversal.last_coefficient
        logs: dict[str, Tensor | float] = {
            "domain_loss": domain_loss.detach(), "discriminator_accuracy": accuracy,
            "grl_coefficient": coefficient, "weight": self.weight, "effective_weight": self.weight * coefficient}
        return self.weight * domain_loss, logs

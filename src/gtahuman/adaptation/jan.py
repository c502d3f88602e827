"""JAN (Long et al. 2017): joint multi-kernel MMD between the source and target distributions of
several layers at once (here: backbone features and the regressed SMPL parameters).

Paper (GTA-Human sec. 4.1): "the default Gaussian kernel with a bandwidth 0.92, and set its loss
weight to 0.001". Following TLlib's default JAN configuration (reference/domain_adaptation.md
sec. 2): the feature layer carries five adaptive Gaussian kernels (sigma^2 = alpha x mean squared
distance, alpha = 2^-3 ... 2^1) and the output layer one fixed kernel with sigma = 0.92
(sigma^2 = 0.8464). Kernels are summed within a layer and multiplied across layers:

    K = prod_l sum_k K_{l,k},   K_{l,k}(x, x') = exp(-|x - x'|^2 / (2 sigma_{l,k}^2))

over the 2B rows [source; target]. Estimators (``linear=False`` is the default here, as in
TLlib's examples; the paper does not say which one it used):

* quadratic: the unbiased MMD^2_u of K, i.e. sum_ij K_ij W_ij with W = 1/(B(B-1)) within a
  domain off the diagonal and -1/B^2 across domains;
* linear: TLlib's cyclic variant, (1/B) sum_i [k(s_i,s_i') + k(t_i,t_i') - k(s_i,t_i') - k(s_i',t_i)]
  with i' = (i + 1) mod B.

Both add TLlib's constant 2/(B-1) ("to keep the loss positive"; it carries no gradient).
The SMPL output layer is [pose 6D, betas, camera] (157 numbers): with sigma = 0.92, tuned for
softmax vectors, its kernel may be nearly diagonal, so ``output_kernel_offdiag_mean`` is logged.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from gtahuman.adaptation.objective import (
    ADAPTATIONS,
    AdaptationObjective,
    check_domain_pair,
    full_precision,
)

# TLlib's feature-layer kernels: sigma^2 = alpha x mean squared distance, alpha = 2^-3 ... 2^1.
FEATURE_KERNEL_ALPHAS = (0.125, 0.25, 0.5, 1.0, 2.0)
OUTPUT_KERNEL_SIGMA = 0.92


def pairwise_squared_distances(x: Tensor) -> Tensor:
    """(n, d) -> (n, n) squared Euclidean distances, by broadcasting (exact zeros on the
    diagonal, unlike the |a|^2 + |b|^2 - 2ab expansion)."""
    return (x.unsqueeze(0) - x.unsqueeze(1)).pow(2).sum(-1)


class GaussianKernel(nn.Module):
    """exp(-|x_i - x_j|^2 / (2 sigma^2)) over the rows of x.

    ``sigma`` given: a fixed bandwidth. ``sigma=None``: adaptive, sigma^2 = ``alpha`` x the mean
    of all n^2 squared distances (diagonal included), recomputed each call without gradient.
    """

    def __init__(self, sigma: float | None = None, alpha: float = 1.0) -> None:
        super().__init__()
        if sigma is not None and sigma <= 0:
            raise ValueError(f"GaussianKernel: sigma must be > 0 (or None for an adaptive bandwidth), got {sigma}")
        if alpha <= 0:
            raise ValueError(f"GaussianKernel: alpha must be > 0, got {alpha}")
        self.sigma = None if sigma is None else float(sigma)
        self.alpha = float(alpha)

    def squared_bandwidth(self, squared_distances: Tensor) -> Tensor:
        if self.sigma is not None:
            return squared_distances.new_tensor(self.sigma ** 2)
        return self.alpha * squared_distances.detach().mean()

    def forward(self, x: Tensor, squared_distances: Tensor | None = None) -> Tensor:
        """Kernel matrix (n, n); pass ``squared_distances`` to share them between kernels."""
        d2 = pairwise_squared_distances(x) if squared_distances is None else squared_distances
        return torch.exp(-d2 / (2.0 * self.squared_bandwidth(d2)))

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}" if self.sigma is not None else f"adaptive, alpha={self.alpha}"


def mmd_index_weights(batch: int, linear: bool = False, dtype: torch.dtype = torch.float32,
                      device: torch.device | str | None = None) -> Tensor:
    """The (2B, 2B) weights W with MMD^2 = sum_ij K_ij W_ij (rows [source; target])."""
    if batch < 2:
        raise ValueError(f"mmd_index_weights: the MMD estimators need a batch of at least 2 per domain, got {batch}")
    b = batch
    weights = torch.zeros(2 * b, 2 * b, dtype=dtype, device=device)
    if linear:
        i = torch.arange(b, device=device)
        j = (i + 1) % b  # cyclic neighbour; entries are assigned, not accumulated (TLlib)
        weights[i, j] = 1.0 / b
        weights[b + i, b + j] = 1.0 / b
        weights[i, b + j] = -1.0 / b
        weights[j, b + i] = -1.0 / b
        return weights
    weights[:b, :b] = 1.0 / (b * (b - 1))
    weights[b:, b:] = 1.0 / (b * (b - 1))
    weights.fill_diagonal_(0.0)
    weights[:b, b:] = -1.0 / (b * b)
    weights[b:, :b] = -1.0 / (b * b)
    return weights


class JointMultipleKernelMMD(nn.Module):
    """Joint MMD over layers: ``kernels[l]`` are the kernels of layer l (summed), layers multiply.

    ``forward(source_layers, target_layers)`` takes equal-length sequences of (B, d_l) tensors.
    After a call, ``last_offdiag_means[l]`` is the mean off-diagonal entry of layer l's kernel
    sum (detached), a check that a layer's kernel is not degenerate.
    """

    def __init__(self, kernels: Sequence[Sequence[GaussianKernel]], linear: bool = False) -> None:
        super().__init__()
        if not kernels or any(len(layer) == 0 for layer in kernels):
            raise ValueError("JointMultipleKernelMMD: give at least one layer, each with at least one kernel")
        self.kernels = nn.ModuleList(nn.ModuleList(layer) for layer in kernels)
        self.linear = bool(linear)
        self.last_offdiag_means: list[Tensor] = []

    def forward(self, source_layers: Sequence[Tensor], target_layers: Sequence[Tensor]) -> Tensor:
        if not len(source_layers) == len(target_layers) == len(self.kernels):
            raise ValueError(f"JointMultipleKernelMMD: built for {len(self.kernels)} layers; got "
                             f"{len(source_layers)} source and {len(target_layers)} target layers")
        batch = source_layers[0].shape[0]
        joint: Tensor | None = None
        self.last_offdiag_means = []
        for layer, (source, target) in enumerate(zip(source_layers, target_layers)):
            check_domain_pair("jan", source, target, min_batch=2, what=f"layer-{layer} inputs")
            if source.shape[0] != batch:
                raise ValueError(f"JointMultipleKernelMMD: layer {layer} has batch {source.shape[0]}, layer 0 has {batch}")
            rows = torch.cat([source, target])
            d2 = pairwise_squared_distances(rows)
            summed = sum(kernel(rows, d2) for kernel in self.kernels[layer])
            with torch.no_grad():
                n = summed.shape[0]
                self.last_offdiag_means.append((summed.sum() - summed.diagonal().sum()) / (n * (n - 1)))
            joint = summed if joint is None else joint * summed
        assert joint is not None
        weights = mmd_index_weights(batch, self.linear, joint.dtype, joint.device)
        return (joint * weights).sum() + 2.0 / (batch - 1)


@ADAPTATIONS.register("jan")
class JAN(AdaptationObjective):
    """Joint MMD of (backbone features, regressed SMPL parameters); see the module docstring.

    Arguments: ``feature_dim``; ``weight`` (paper: 0.001); ``feature_kernel_alphas`` (adaptive
    kernels of the feature layer); ``output_sigma`` (fixed kernel of the output layer, paper
    0.92); ``use_output_layer=False`` drops the output layer (plain multi-kernel MMD, DAN);
    ``linear`` picks the linear-time estimator. Logs ``jmmd`` (unweighted), ``weight``,
    ``feature_kernel_offdiag_mean`` and ``output_kernel_offdiag_mean``.
    """

    def __init__(self, feature_dim: int, weight: float = 0.001,
                 feature_kernel_alphas: Sequence[float] = FEATURE_KERNEL_ALPHAS,
                 output_sigma: float = OUTPUT_KERNEL_SIGMA, use_output_layer: bool = True,
                 linear: bool = False) -> None:
        super().__init__()
        if not feature_kernel_alphas:
            raise ValueError("JAN: feature_kernel_alphas must name at least one kernel")
        self.feature_dim, self.weight, self.use_output_layer = int(feature_dim), float(weight), bool(use_output_layer)
        layers = [[GaussianKernel(alpha=float(a)) for a in feature_kernel_alphas]]
        if self.use_output_layer:
            layers.append([GaussianKernel(sigma=float(output_sigma))])
        self.jmmd = JointMultipleKernelMMD(layers, linear=linear)

    def forward(self, source_features: Tensor, target_features: Tensor, source_params: Tensor | None = None,
                target_params: Tensor | None = None, step: int = 0) -> tuple[Tensor, dict[str, Tensor | float]]:
        check_domain_pair("jan", source_features, target_features, self.feature_dim, min_batch=2)
        source_layers, target_layers = [source_features], [target_features]
        if self.use_output_layer:
            if source_params is None or target_params is None:
                raise ValueError("adaptation objective 'jan': the output layer needs source_params and target_params "
                                 "(the regressed SMPL parameters); pass them or set use_output_layer=False")
            source_layers.append(source_params)
            target_layers.append(target_params)
        with torch.autocast(source_features.device.type, enabled=False):  # exp of distances in full precision
            jmmd = self.jmmd([full_precision(t) for t in source_layers], [full_precision(t) for t in target_layers])
        logs: dict[str, Tensor | float] = {"jmmd": jmmd.detach(), "weight": self.weight,
                                           "feature_kernel_offdiag_mean": self.jmmd.last_offdiag_means[0]}
        if self.use_output_layer:
            logs["output_kernel_offdiag_mean"] = self.jmmd.last_offdiag_means[1]
        return self.weight * jmmd, logs

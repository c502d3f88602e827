"""Domain-adaptation objectives (paper Table 6): DANN, JAN, RSD and 'none'.

Checked against values computed here independently of the modules: the warm-start ramp in
TLlib's logistic form, JAN's estimators as plain loops over sample pairs, RSD with NumPy's SVD
(and its sines once more from QR bases), all in float64. Ends with a short adaptation run of
`train()` on the tiny world with DANN, whose per-step log must follow the ramp.
"""
from __future__ import annotations

import csv
import functools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gtahuman.adaptation import (
    ADAPTATIONS,
    DANN,
    JAN,
    RSD,
    WarmStartGradientReversal,
    reverse_gradient,
)
from gtahuman.adaptation.dann import domain_adversarial_loss
from gtahuman.config import experiment_names, load_config
from gtahuman.models import build_backbone, build_regressor
from gtahuman.train import train
from gtahuman.train_image import adaptation_arguments, configured_world_size

PARAMS = 157  # [pose 6D (144), betas (10), camera (3)], as HMRSystem passes them


def random_pair(batch: int, width: int, seed: int, dtype: torch.dtype = torch.float32, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    make = lambda: (scale * torch.randn(batch, width, generator=g, dtype=dtype)).requires_grad_(True)
    return make(), make()


# ----------------------------------------------------------------------------- every objective
@pytest.mark.parametrize("name", ADAPTATIONS.names())
def test_every_objective_runs_forward_and_backward_without_nan(name: str) -> None:
    assert set(ADAPTATIONS.names()) == {"none", "dann", "jan", "rsd"}
    torch.manual_seed(0)
    objective = ADAPTATIONS.build(name, feature_dim=64)
    f_s, f_t = random_pair(8, 64, seed=1)
    p_s, p_t = random_pair(8, PARAMS, seed=2, scale=0.05)
    loss, logs = objective(f_s, f_t, p_s, p_t, step=300)
    assert loss.shape == () and torch.isfinite(loss)
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in logs.values())
    (loss + 0.0 * (f_s.sum() + f_t.sum() + p_s.sum() + p_t.sum())).backward()
    grads = [f_s.grad, f_t.grad, p_s.grad, p_t.grad] + [p.grad for p in objective.parameters()]
    assert all(torch.isfinite(g).all() for g in grads if g is not None)
    if name == "none":
        assert loss.item() == 0.0 and not logs
    else:  # the loss really depends on the features
        assert f_s.grad.abs().sum() > 0 and f_t.grad.abs().sum() > 0


def test_paper_loss_weights_are_the_defaults() -> None:
    # Paper sec. 4.1: DANN's weight rises to 0.1, JAN 0.001, Chen et al. 1e-4 with trade-off 0.1.
    assert ADAPTATIONS.build("dann", feature_dim=8).weight == 0.1
    assert ADAPTATIONS.build("jan", feature_dim=8).weight == 0.001
    rsd = ADAPTATIONS.build("rsd", feature_dim=8)
    assert (rsd.weight, rsd.bmp_trade_off) == (1e-4, 0.1)
    with pytest.raises(KeyError, match="valid names: dann, jan, none, rsd"):
        ADAPTATIONS.build("coral", feature_dim=8)


def test_objectives_refuse_mismatched_domains() -> None:
    f_s, f_t = random_pair(8, 16, seed=0)
    for name in ("dann", "jan", "rsd", "none"):
        with pytest.raises(ValueError, match="expected feature_dim=32"):
            ADAPTATIONS.build(name, feature_dim=32)(f_s, f_t, None, None, 0)
        with pytest.raises(ValueError, match="equal batch sizes"):
            ADAPTATIONS.build(name, feature_dim=16)(f_s, f_t[:6], None, None, 0)


# ----------------------------------------------------------------------------- gradient reversal
def tllib_ramp(i: int, alpha: float = 1.0, lo: float = 0.0, hi: float = 1.0, max_iters: int = 1000) -> float:
    return 2.0 * (hi - lo) / (1.0 + math.exp(-alpha * i / max_iters)) - (hi - lo) + lo


def test_ramp_values_match_the_reference() -> None:
    # reference/domain_adaptation.md 1.1: 0.0, 0.245, 0.462, 0.762, 0.905, 0.987, 0.9999
    layer = WarmStartGradientReversal()
    expected = {0: 0.0, 500: 0.245, 1000: 0.462, 2000: 0.762, 3000: 0.905, 5000: 0.987, 10000: 0.9999}
    for step, value in expected.items():
        assert layer.coefficient(step) == pytest.approx(value, abs=5e-4)
        assert layer.coefficient(step) == pytest.approx(tllib_ramp(step), abs=1e-12)
    ganin = WarmStartGradientReversal(alpha=10.0, max_iters=200)  # Ganin: 2 / (1 + exp(-10 p)) - 1
    assert ganin.coefficient(100) == pytest.approx(2 / (1 + math.exp(-5.0)) - 1, abs=1e-12)
    low = WarmStartGradientReversal(lo=0.02, hi=0.1)
    assert low.coefficient(0) == pytest.approx(0.02) and low.coefficient(10**6) == pytest.approx(0.1)


@pytest.mark.parametrize("step", [0, 250, 1000, 4000])
def test_reversal_is_identity_forward_and_flips_and_scales_the_gradient(step: int) -> None:
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(4, 3, dtype=torch.float64)
    layer = WarmStartGradientReversal()
    y = layer(x, step)
    assert torch.equal(y, x) and y.data_ptr() != x.data_ptr()
    y.backward(upstream)
    torch.testing.assert_close(x.grad, -tllib_ramp(step) * upstream, rtol=0, atol=1e-15)
    assert layer.last_coefficient == pytest.approx(tllib_ramp(step), abs=1e-15)

    z = torch.ones(2, requires_grad=True)
    reverse_gradient(z, 0.3).sum().backward()
    torch.testing.assert_close(z.grad, torch.full((2,), -0.3))


# ----------------------------------------------------------------------------- DANN
def test_domain_adversarial_loss_and_accuracy_by_hand() -> None:
    source = torch.tensor([2.0, -1.0, 0.0], dtype=torch.float64)  # logit 0 (p = 0.5) counts as source
    target = torch.tensor([-3.0, 0.5], dtype=torch.float64)
    loss, accuracy = domain_adversarial_loss(source, target)
    log_sigmoid = lambda v: -math.log1p(math.exp(-v))
    expected = -0.5 * (sum(log_sigmoid(v) for v in (2.0, -1.0, 0.0)) / 3 + sum(log_sigmoid(-v) for v in (-3.0, 0.5)) / 2)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert accuracy.item() == pytest.approx(0.5 * (2 / 3 + 1 / 2))


def test_dann_discriminator_descends_while_features_get_the_reversed_ramped_gradient() -> None:
    torch.manual_seed(0)
    dann = DANN(feature_dim=16, hidden_size=32).double()
    f_s, f_t = random_pair(6, 16, seed=3, dtype=torch.float64)
    step = 1500
    loss, logs = dann(f_s, f_t, None, None, step)
    loss.backward()
    lam = tllib_ramp(step)
    assert logs["grl_coefficient"] == pytest.approx(lam) and logs["effective_weight"] == pytest.approx(0.1 * lam)

    # The same discriminator without reversal: plain BCE gradients (BatchNorm over all 2B rows).
    features = torch.cat([f_s, f_t]).detach().requires_grad_(True)
    logits = dann.discriminator(features).squeeze(1)
    plain, _ = domain_adversarial_loss(logits[:6], logits[6:])
    assert plain.item() == pytest.approx(logs["domain_loss"].item(), abs=1e-12)
    assert loss.item() == pytest.approx(0.1 * plain.item(), abs=1e-12)
    d_features, *d_params = torch.autograd.grad(plain, [features, *dann.discriminator.parameters()])
    torch.testing.assert_close(torch.cat([f_s.grad, f_t.grad]), -0.1 * lam * d_features, rtol=1e-9, atol=1e-15)
    for param, grad in zip(dann.discriminator.parameters(), d_params):
        torch.testing.assert_close(param.grad, 0.1 * grad, rtol=1e-9, atol=1e-15)


# ----------------------------------------------------------------------------- JAN
def jmmd_by_loops(fs: np.ndarray, ft: np.ndarray, ps: np.ndarray, pt: np.ndarray, linear: bool) -> float:
    """The JAN estimator straight from its formulas (reference sec. 2), one pair at a time."""
    b = len(fs)
    feats, params = np.concatenate([fs, ft]), np.concatenate([ps, pt])
    n = 2 * b
    d_feat = [[float(np.sum((feats[i] - feats[j]) ** 2)) for j in range(n)] for i in range(n)]
    mean_d = sum(map(sum, d_feat)) / n ** 2
    alphas, sigma = (2 ** -3, 2 ** -2, 2 ** -1, 1.0, 2.0), 0.92

    def k(i: int, j: int) -> float:
        feature_part = sum(math.exp(-d_feat[i][j] / (2 * a * mean_d)) for a in alphas)
        output_part = math.exp(-float(np.sum((params[i] - params[j]) ** 2)) / (2 * sigma ** 2))
        return feature_part * output_part

    if linear:
        total = 0.0
        for i in range(b):
            nxt = (i + 1) % b
            total += k(i, nxt) + k(b + i, b + nxt) - k(i, b + nxt) - k(nxt, b + i)
        return total / b + 2 / (b - 1)
    within = sum(k(i, j) + k(b + i, b + j) for i in range(b) for j in range(b) if i != j)
    across = sum(k(i, b + j) for i in range(b) for j in range(b))
    return within / (b * (b - 1)) - 2 * across / b ** 2 + 2 / (b - 1)


@pytest.mark.parametrize("linear", [False, True])
def test_jan_matches_the_estimator_written_as_loops(linear: bool) -> None:
    rng = np.random.default_rng(7)
    b, width = 5, 9
    fs, ft = rng.normal(size=(b, width)), rng.normal(0.4, 1.2, size=(b, width))
    ps, pt = rng.normal(0, 0.3, size=(b, 4)), rng.normal(0.2, 0.3, size=(b, 4))
    jan = JAN(feature_dim=width, linear=linear)
    loss, logs = jan(*(torch.tensor(a) for a in (fs, ft, ps, pt)), step=0)
    expected = jmmd_by_loops(fs, ft, ps, pt, linear)
    assert loss.dtype == torch.float64
    assert logs["jmmd"].item() == pytest.approx(expected, abs=1e-6, rel=0)
    assert loss.item() == pytest.approx(0.001 * expected, abs=1e-9, rel=0)
    # Nearly diagonal output kernel on far-apart parameters: the logged check says so.
    _, far = jan(*(torch.tensor(a) for a in (fs, ft, 30 * ps, 30 * pt)), step=0)
    assert far["output_kernel_offdiag_mean"] < 1e-3 < logs["output_kernel_offdiag_mean"]


def test_jan_is_smaller_for_matching_than_for_shifted_domains() -> None:
    torch.manual_seed(0)
    f_s, p_s = torch.randn(16, 8), 0.1 * torch.randn(16, 4)
    jan = JAN(feature_dim=8)
    same, _ = jan(f_s, torch.randn(16, 8), p_s, 0.1 * torch.randn(16, 4))
    shifted, _ = jan(f_s, torch.randn(16, 8) + 2.0, p_s, 0.1 * torch.randn(16, 4) + 0.5)
    assert same < shifted


# ----------------------------------------------------------------------------- RSD
def rsd_by_numpy(fs: np.ndarray, ft: np.ndarray, trade_off: float) -> tuple[float, float]:
    u_s = np.linalg.svd(fs.T, full_matrices=False)[0]
    u_t = np.linalg.svd(ft.T, full_matrices=False)[0]
    p_s, cosines, vh = np.linalg.svd(u_s.T @ u_t)
    p_t = vh.T
    rsd = float(np.sum(np.sqrt(1 - cosines ** 2)))
    bmp = float(np.sqrt(np.sum((np.abs(p_s) - np.abs(p_t)) ** 2)))
    return rsd, bmp


def test_rsd_matches_numpy_and_qr_principal_angles() -> None:
    rng = np.random.default_rng(11)
    fs, ft = rng.normal(size=(6, 20)), rng.normal(size=(6, 20)) + 0.5 * rng.normal(size=(1, 20))
    rsd = RSD(feature_dim=20)
    loss, logs = rsd(torch.tensor(fs), torch.tensor(ft), None, None, 0)
    distance, mismatch = rsd_by_numpy(fs, ft, 0.1)
    assert logs["rsd"].item() == pytest.approx(distance, abs=1e-6, rel=0)
    assert logs["bmp"].item() == pytest.approx(mismatch, abs=1e-6, rel=0)
    assert loss.item() == pytest.approx(1e-4 * (distance + 0.1 * mismatch), abs=1e-10, rel=0)
    # The sines do not depend on the basis: orthonormal bases from QR give the same angles.
    q_s, q_t = np.linalg.qr(fs.T)[0], np.linalg.qr(ft.T)[0]
    cosines = np.linalg.svd(q_s.T @ q_t, compute_uv=False)
    assert logs["rsd"].item() == pytest.approx(float(np.sum(np.sqrt(1 - cosines ** 2))), abs=1e-6, rel=0)


def test_rsd_is_zero_for_identical_domains() -> None:
    f = torch.randn(8, 32, dtype=torch.float64)
    loss, logs = RSD(feature_dim=32)(f, f.clone(), None, None, 0)
    assert abs(logs["rsd"].item()) < 1e-6 and abs(logs["bmp"].item()) < 1e-6 and abs(loss.item()) < 1e-10
    # The same subspace spanned by other samples: zero distance, but BMP sees the bases move.
    mixed = torch.tensor(np.random.default_rng(0).normal(size=(8, 8))) @ f
    _, logs = RSD(feature_dim=32)(f, mixed, None, None, 0)
    assert abs(logs["rsd"].item()) < 1e-6 and logs["bmp"].item() > 0.1


def test_rsd_refuses_a_batch_as_large_as_the_feature_size() -> None:
    f_s, f_t = random_pair(8, 8, seed=0)
    with pytest.raises(ValueError, match=r"smaller than the feature size.*B=8, F=8"):
        RSD(feature_dim=8)(f_s, f_t, None, None, 0)


# ----------------------------------------------------------------------------- Table 6 configs
TABLE6 = [n for n in experiment_names() if n.startswith("table6_") and not n.endswith("_matched")]
@functools.lru_cache(maxsize=None)
def feature_width(arch: str, backbone: str) -> int:
    """The width of the features the DA objective sees (HMRSystem.feature_dim) for an arch."""
    if arch == "hmr":
        return build_backbone(backbone).feature_dim
    return build_regressor(arch, backbone=backbone).feature_dim



PAPER_ARGS = {"dann": {"weight": 0.1}, "jan": {"weight": 1e-3, "jmmd.linear": False},
              "rsd": {"weight": 1e-4, "bmp_trade_off": 0.1}}


@pytest.mark.parametrize("name", TABLE6)
def test_table6_rows_build_their_objective_with_the_paper_settings(name: str) -> None:
    assert len(TABLE6) == 14  # 7 rows (HMR, HMR 1x, BT, CycleGAN, Chen et al., JAN, Ganin et al.) x real/mini
    cfg = load_config([f"experiment={name}"])
    method = cfg.adaptation.method
    assert (cfg.data.mode == "adaptation") == (method is not None) and cfg.model.variant == "hmr"
    assert (cfg.adaptation.sim2real_checkpoint is not None) == ("cyclegan" in name)
    if method is None:
        return
    args = adaptation_arguments(cfg)
    assert args["loss_adaptation"] == 1.0 and method in name
    width = feature_width(str(cfg.model.arch), str(cfg.model.backbone))
    objective = ADAPTATIONS.build(method, feature_dim=width, **args["adaptation_args"])
    for attribute, value in PAPER_ARGS[method].items():
        owner, _, leaf = attribute.rpartition(".")
        assert getattr(getattr(objective, owner) if owner else objective, leaf) == value
    per_device = cfg.data.batch_size // configured_world_size(cfg)
    assert per_device < width  # RSD's requirement; every row keeps it
    f_s, f_t = random_pair(4, width, seed=0)
    p_s, p_t = random_pair(4, PARAMS, seed=1, scale=0.05)
    loss, _ = objective(f_s, f_t, p_s, p_t, step=10)
    assert torch.isfinite(loss)


# ----------------------------------------------------------------------------- training
def test_dann_training_run_logs_the_adaptation_terms(tiny_config, single_thread) -> None:
    # The adaptation source sampler sees only the real sources: their own partition, no real_ratio
    # (source and target batches have the same size, so the mix is 1:1 anyway).
    cfg = tiny_config("run.run_id=dann", "data.mode=adaptation", "adaptation.method=dann",
                      "data.real_ratio=null", "data.sampler_args.partition=[0.6,0.4]", "trainer.max_steps=6",
                      "adaptation.args.hidden_size=64", "adaptation.args.grl_max_iters=4")
    metrics = train(cfg)
    with open(Path(metrics["run_dir"]) / "logs" / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    assert len(rows) == 6
    keys = ["train/loss", "train/adaptation", "train/adaptation/domain_loss",
            "train/adaptation/discriminator_accuracy", "train/adaptation/grl_coefficient",
            "train/adaptation/effective_weight"]
    for row in rows:
        assert all(np.isfinite(float(row[k])) for k in keys), row
        assert 0.0 <= float(row["train/adaptation/discriminator_accuracy"]) <= 1.0
    # The ramp follows the trainer's step (grl_max_iters=4 so that 6 steps climb visibly).
    coefficients = [float(r["train/adaptation/grl_coefficient"]) for r in rows]
    assert coefficients == pytest.approx([math.tanh(s / 8) for s in range(6)], abs=1e-6)
    assert float(rows[0]["train/adaptation"]) == pytest.approx(0.1 * float(rows[0]["train/adaptation/domain_loss"]),
                                                               rel=1e-5)


def test_rsd_gradient_stays_finite_for_repeated_singular_values():
    """A batch with zero rows (or equal singular values) makes the SVD's gradient NaN (checked
    on the bare function below); the objective hands the backbone finite gradients instead."""
    from gtahuman.adaptation import RSD
    from gtahuman.adaptation.rsd import representation_subspace_distance

    gen = torch.Generator().manual_seed(0)
    source = torch.randn(8, 16, generator=gen, dtype=torch.float64)
    source[4:] = 0.0  # four empty samples: a 4-fold zero singular value
    target = torch.randn(8, 16, generator=gen, dtype=torch.float64)
    bare = source.clone().requires_grad_(True)
    representation_subspace_distance(bare, target.clone())[0].backward()
    assert not torch.isfinite(bare.grad).all()  # the hazard is real
    source.requires_grad_(True)
    target.requires_grad_(True)
    loss, _ = RSD(16)(source, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(source.grad).all() and torch.isfinite(target.grad).all()


def test_a_new_objective_is_one_module_that_registers_itself(tiny_config, single_thread) -> None:
    """What ARCHITECTURE.md promises: a DA objective is one new module (here, this test's) that
    registers itself in ADAPTATIONS; the config, the system and the run need no other change."""
    import csv
    from pathlib import Path

    from gtahuman.adaptation.objective import ADAPTATIONS, AdaptationObjective, check_domain_pair
    from gtahuman.train import train

    seen = []

    class MeanFeatureGap(AdaptationObjective):  # a toy: the squared distance of the domains' mean features
        def __init__(self, feature_dim: int, scale: float = 1.0) -> None:
            super().__init__()
            self.feature_dim, self.scale = feature_dim, scale

        def forward(self, source_features, target_features, source_params=None, target_params=None, step=0):
            check_domain_pair("mean_gap", source_features, target_features, self.feature_dim)
            seen.append((tuple(source_features.shape), tuple(target_features.shape), step))
            gap = (source_features.mean(0) - target_features.mean(0)).pow(2).sum()
            return self.scale * gap, {"gap": gap.detach()}

    ADAPTATIONS.register("mean_gap")(MeanFeatureGap)
    try:
        metrics = train(tiny_config("data.mode=adaptation", "adaptation.method=mean_gap", "adaptation.args={scale: 2.0}",
                                    "data.epoch_length=32", "trainer.max_epochs=1", "run.run_id=toy-objective"))
    finally:
        del ADAPTATIONS._entries["mean_gap"]
    assert metrics["global_step"] == len(seen) > 0
    assert all(s[0] == s[1] and s[0][0] == 4 for s in seen)  # half of the batch of 8 from each domain
    assert [s[2] for s in seen] == list(range(len(seen)))  # called once per step, with the step
    with open(Path(metrics["run_dir"]) / "logs" / "metrics.csv", newline="") as f:
        logged = [r for r in csv.DictReader(f) if r.get("train/adaptation/gap")]
    assert logged  # its logs reach the run's curves

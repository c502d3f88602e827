"""PARE (gtahuman.models.pare, pare_head, regressors; systems.pare_import; HMRSystem arch='pare').

Small CPU setting throughout: HRNet-W18-small at 64 px (part maps 16 x 16). The public-layout
state dict is written here from PARE's module names (HRNet's own names for the backbone, PARE's
``upsample_stage_k`` blocks and ``PareHead`` layers), independently of the importer's mapping.
"""
from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import timm
import torch
from torch import nn

from gtahuman.data.datamodule import MixedDataModule
from gtahuman.models import (
    REGRESSORS,
    PAREOutput,
    build_regressor,
    part_segmentation_loss,
)
from gtahuman.models.pare_head import (
    LocallyConnectedJoints,
    attention_pool,
    part_attention,
)
from gtahuman.systems import CheckpointImportError, CheckpointImportWarning, HMRSystem
from gtahuman.systems.pare_import import import_pare_state_dict
from gtahuman.run_data import ensure_assets, prepare_source
from gtahuman.train import train

IMG_RES = 64
HRNET_W18_SMALL_BRANCHES = (16, 32, 64, 128)  # channels of its four last-stage branches

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def system(toy_body_dir: Path) -> HMRSystem:
    torch.manual_seed(0)
    # part_labels='batch': only labels the batch carries (rendered labels: tests/test_part_labels.py)
    return HMRSystem(str(toy_body_dir), arch="pare", backbone="hrnet_w18_small", img_res=IMG_RES,
                     part_labels="batch").eval()


def fake_batch(n: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """Labels of the right shapes; the values only need to be finite."""
    g = torch.Generator().manual_seed(seed)
    keypoints2d = torch.cat([IMG_RES * torch.rand(n, 54, 2, generator=g), torch.ones(n, 54, 1)], -1)
    keypoints3d = torch.cat([0.3 * torch.randn(n, 54, 3, generator=g), torch.ones(n, 54, 1)], -1)
    return {"img": torch.randn(n, 3, IMG_RES, IMG_RES, generator=g), "keypoints2d": keypoints2d,
            "keypoints3d": keypoints3d, "smpl_global_orient": 0.3 * torch.randn(n, 3, generator=g),
            "smpl_body_pose": 0.3 * torch.randn(n, 69, generator=g), "smpl_betas": torch.randn(n, 10, generator=g),
            "has_smpl": torch.ones(n), "valid": torch.ones(n)}


# ----------------------------------------------------------------------------- model


def test_output_shapes_and_untrained_prediction_is_the_mean(system: HMRSystem) -> None:
    assert "pare" in REGRESSORS and system.backbone.feature_dim == sum(HRNET_W18_SMALL_BRANCHES)
    with torch.no_grad():
        output, features = system(torch.randn(2, 3, IMG_RES, IMG_RES))
    assert isinstance(output, PAREOutput)
    assert output.rotmat.shape == (2, 24, 3, 3) and output.pose_6d.shape == (2, 144)
    assert output.betas.shape == (2, 10) and output.cam.shape == (2, 3)
    assert features.shape == (2, system.feature_dim) == (2, system.regressor.feature_dim) == (2, 24 * 64)
    assert output.part_logits.shape == (2, 25, 16, 16) and output.part_attention.shape == (2, 24, 16, 16)
    assert system.regressor.attention_resolution == 16
    eye = torch.eye(3).expand(2, 24, 3, 3)
    torch.testing.assert_close(output.rotmat @ output.rotmat.transpose(-1, -2), eye, atol=1e-5, rtol=0)
    # Near-zero regressor weights over mean-valued biases: the untrained head says "mean body".
    head = system.head
    torch.testing.assert_close(output.pose_6d, head.init_pose.expand(2, -1), atol=0.05, rtol=0)
    torch.testing.assert_close(output.cam, head.init_cam.expand(2, -1), atol=0.05, rtol=0)
    # Weights live once, under regressor.* (backbone / head are aliases, not sub-modules).
    assert all(k.startswith("regressor.") for k in system.state_dict())


@pytest.mark.parametrize(("backbone", "args", "res", "channels"), [
    ("mobilenetv3_small_050", {}, 72, 8 + 16 + 24 + 288),  # 72 / 32 not whole: maps re-aligned
    ("hrnet_w18_small", {"upsample": "interp"}, 64, sum(HRNET_W18_SMALL_BRANCHES)),
])
def test_other_backbones_and_sizes(backbone: str, args: dict, res: int, channels: int) -> None:
    model = build_regressor("pare", backbone=backbone, backbone_args=args, mean_params=None, n_iter=3, img_res=res)
    with torch.no_grad():
        output, _ = model.eval()(torch.randn(1, 3, res, res))
    assert model.backbone.feature_dim == channels and output.part_logits.shape == (1, 25, res // 4, res // 4)
    learned_upsampling = any(name.startswith("upsample_stage_") for name, _ in model.backbone.named_children())
    assert learned_upsampling == (args.get("upsample", "conv") == "conv")
    with pytest.raises(KeyError, match="hrnet_w32"):
        build_regressor("pare", backbone="deit_small", img_res=res)
    if backbone.startswith("hrnet"):  # HRNet's fuse layers need sides divisible by 32
        with pytest.raises(ValueError, match="multiple of 32.*72"):
            model(torch.randn(1, 3, 72, 72))


def test_attention_maps_sum_to_one_and_pool_by_hand(system: HMRSystem) -> None:
    logits = torch.zeros(1, 1, 2, 2)
    logits[0, 0, 0, 1] = math.log(3.0)  # softmax weights 1/6, 3/6, 1/6, 1/6
    features = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 2, 2)
    weights = part_attention(logits)
    torch.testing.assert_close(weights.flatten(), torch.tensor([1, 3, 1, 1]) / 6.0)
    assert attention_pool(features, weights).item() == pytest.approx((1 + 6 + 3 + 4) / 6)

    with torch.no_grad():
        output, _ = system(torch.randn(2, 3, IMG_RES, IMG_RES))
    sums = output.part_attention.sum(dim=(-1, -2))
    torch.testing.assert_close(sums, torch.ones(2, 24))
    assert (output.part_attention >= 0).all()
    # the maps are the part channels (background dropped) of the segmentation, softmaxed over space
    expected = torch.softmax(output.part_logits[:, 1:].flatten(2), dim=-1).reshape(2, 24, 16, 16)
    torch.testing.assert_close(output.part_attention, expected)


def test_locally_connected_matches_pares_unfold_formula() -> None:
    torch.manual_seed(1)
    layer = LocallyConnectedJoints(in_channels=5, out_channels=6, num_joints=4)
    nn.init.normal_(layer.weight)
    nn.init.normal_(layer.bias)
    x = torch.randn(3, 5, 4)
    # PARE's LocallyConnected2d forward on (B, C, J, 1) with a 1x1 kernel, written out.
    unfolded = x.unsqueeze(-1).unfold(2, 1, 1).unfold(3, 1, 1).contiguous().view(3, 5, 4, 1, 1)
    pare = (unfolded.unsqueeze(1) * layer.weight).sum([2, -1]) + layer.bias
    torch.testing.assert_close(layer(x), pare[..., 0])
    # joint j uses only its own weights: a per-joint matrix product
    for j in range(4):
        torch.testing.assert_close(layer(x)[:, :, j], x[:, :, j] @ layer.weight[0, :, :, j, 0, 0].T + layer.bias[0, :, j, 0])


# ----------------------------------------------------------------------------- part loss


def test_part_segmentation_loss_hand_values() -> None:
    logits = torch.zeros(2, 25, 1, 2, requires_grad=True)
    with torch.no_grad():
        logits[0, 3, 0, 0] = 2.0  # pixel (0, 0) of sample 0 favours class 3
    labels = torch.tensor([[[3, 9, 0, 0], [7, 7, 7, 7]], [[1, 1, 1, 1], [1, 1, 1, 1]]])  # (2, 2, 4)
    labels[0, 0, 2] = -1  # nearest sampling to (1, 2) reads columns 0 and 2 of row 0
    # sample 0: pixel (0,0) label 3 -> -log(e^2 / (e^2 + 24)); pixel (0,1) unlabelled; sample 1 masked.
    expected = -math.log(math.exp(2.0) / (math.exp(2.0) + 24))
    loss = part_segmentation_loss(logits, labels, torch.tensor([True, False]))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    both = part_segmentation_loss(logits, labels, torch.tensor([True, True]))
    assert both.item() == pytest.approx((expected + 2 * math.log(25)) / 3, rel=1e-6)
    none = part_segmentation_loss(logits, labels, torch.zeros(2, dtype=torch.bool))
    none.backward()
    assert none.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))
    with pytest.raises(ValueError, match="part_labels.*-1, 24"):
        part_segmentation_loss(logits, labels + 30, torch.ones(2))


def test_system_adds_the_part_term_only_when_the_batch_has_part_labels(system: HMRSystem) -> None:
    batch = fake_batch()
    with torch.no_grad():
        output, _ = system(batch["img"])
        plain = system.compute_losses(batch, output)
        labels = torch.randint(0, 25, (3, IMG_RES, IMG_RES), generator=torch.Generator().manual_seed(2))
        has = torch.tensor([1.0, 0.0, 1.0])
        with_parts = system.compute_losses({**batch, "part_labels": labels, "has_part_labels": has}, output)
    assert "parts" not in plain and "parts" in with_parts
    # Independently: labels at the 16 x 16 maps are every 4th pixel (nearest); samples 0 and 2 count.
    log_p = torch.log_softmax(output.part_logits, dim=1)
    picked = log_p.gather(1, labels[:, None, ::4, ::4])[:, 0]  # (3, 16, 16)
    expected = -picked[[0, 2]].mean()
    assert with_parts["parts"].item() == pytest.approx(expected.item(), rel=1e-5)
    added = with_parts["total"] - plain["total"]
    assert added.item() == pytest.approx(system.loss_weights.parts * expected.item(), rel=1e-4)


# ----------------------------------------------------------------------------- public checkpoint


def public_pare_state_dict() -> dict[str, torch.Tensor]:
    """PARE (HRNet-W18-small backbone, PARE's HRNet head settings) in its public key layout,
    with random values, plus the extras a released file carries."""
    g = torch.Generator().manual_seed(3)
    rand = lambda *shape: torch.randn(*shape, generator=g)
    hrnet = timm.create_model("hrnet_w18_small", pretrained=False, features_only=True, feature_location="")
    state = {f"backbone.{k}": rand(*v.shape) if v.is_floating_point() else v.clone()
             for k, v in hrnet.state_dict().items()}

    def batchnorm(prefix: str, channels: int) -> None:
        for name in ("weight", "bias", "running_mean"):
            state[f"{prefix}.{name}"] = rand(channels)
        state[f"{prefix}.running_var"] = rand(channels).abs() + 0.5
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(7)

    # _make_upsample_layer: per doubling [Upsample, Conv2d (bias=False), BatchNorm2d, ReLU]
    for stage, channels in zip((2, 3, 4), HRNET_W18_SMALL_BRANCHES[1:]):
        for layer in range(stage - 1):
            state[f"backbone.upsample_stage_{stage}.{4 * layer + 1}.weight"] = rand(channels, channels, 3, 3)
            batchnorm(f"backbone.upsample_stage_{stage}.{4 * layer + 2}", channels)
    inputs = sum(HRNET_W18_SMALL_BRANCHES)
    for branch in ("keypoint_deconv_layers", "smpl_deconv_layers"):  # [Conv2d, BN, ReLU] x 2
        state[f"head.{branch}.0.weight"] = rand(128, inputs, 3, 3)
        batchnorm(f"head.{branch}.1", 128)
        state[f"head.{branch}.3.weight"] = rand(128, 128, 3, 3)
        batchnorm(f"head.{branch}.4", 128)
    state.update({
        "head.keypoint_final_layer.weight": rand(25, 128, 1, 1), "head.keypoint_final_layer.bias": rand(25),
        "head.smpl_final_layer.weight": rand(64, 128, 1, 1), "head.smpl_final_layer.bias": rand(64),
        "head.pose_mlp.weight": rand(1, 6, 128, 24, 1, 1),
        "head.shape_mlp.weight": rand(10, 24 * 64), "head.shape_mlp.bias": rand(10),
        "head.cam_mlp.weight": rand(3, 24 * 64), "head.cam_mlp.bias": rand(3),
        "head.init_pose": rand(1, 144), "head.init_shape": rand(1, 10), "head.init_cam": rand(1, 3),
    })
    extras = {"head.temperature": torch.tensor(1.0), "backbone.final_layer.weight": rand(17, 16, 1, 1),
              "backbone.final_layer.bias": rand(17), "smpl.v_template": rand(6890, 3)}
    return {**state, **extras}


def test_public_layout_loads_with_every_key_matched(tmp_path: Path, toy_body_dir: Path) -> None:
    public = public_pare_state_dict()
    path = tmp_path / "pare_checkpoint.ckpt"  # PARE's own release: a Lightning file, model.* keys
    torch.save({"state_dict": {f"model.{k}": v for k, v in public.items()}, "epoch": 3}, path)
    torch.manual_seed(0)
    fresh = HMRSystem(str(toy_body_dir), arch="pare", backbone="hrnet_w18_small", img_res=IMG_RES,
                      init_checkpoint=str(path), init_format="pare")
    fresh.setup("fit")  # where fine-tuning applies model.init_checkpoint
    report = fresh.init_report
    assert report.clean and not (report.unmatched or report.missing or report.shape_mismatch), report.summary()
    assert report.filled == ["regressor.head.pose_mlp.bias"]
    assert set(report.ignored) == {"model.head.temperature", "model.backbone.final_layer.weight",
                                   "model.backbone.final_layer.bias", "model.smpl.v_template"}
    own = fresh.state_dict()
    assert set(report.matched) | set(report.filled) == set(own)  # every tensor of the model
    assert len(report.matched) == len(public) - 4
    for key, value in public.items():
        if key.startswith(("backbone.upsample_stage_", "head.")):
            target = f"regressor.{key}"
        else:
            target = f"regressor.backbone.model.{key.removeprefix('backbone.')}"
        if key not in ("head.temperature", "backbone.final_layer.weight", "backbone.final_layer.bias",
                       "smpl.v_template"):
            assert torch.equal(own[target], value), key
    assert torch.equal(own["regressor.head.pose_mlp.bias"], torch.zeros(1, 6, 24, 1))


def test_import_reports_every_key_that_does_not_land() -> None:
    model = build_regressor("pare", backbone="hrnet_w18_small", img_res=IMG_RES)  # a bare PARE module
    public = public_pare_state_dict()  # mmhuman3d flavour: no 'model.' prefix
    public["head.pose_attention.weight"] = torch.zeros(3)  # a layer this PARE does not have
    public["head.cam_mlp.bias"] = torch.zeros(4)  # wrong shape
    del public["head.shape_mlp.weight"]
    with pytest.warns(CheckpointImportWarning, match="head.pose_attention.weight") as caught:
        report = import_pare_state_dict(model, {"state_dict": public})
    message = str(caught[0].message)
    assert "head.cam_mlp.bias: file (4,)" in message and "head.shape_mlp.weight" in message
    assert report.unmatched == ["head.pose_attention.weight"] and report.missing == ["head.shape_mlp.weight"]
    assert not report.clean
    torch.testing.assert_close(model.head.pose_mlp.weight, public["head.pose_mlp.weight"])  # the rest landed
    with pytest.raises(CheckpointImportError, match="strict"):
        import_pare_state_dict(model, public, strict=True)
    with pytest.raises(CheckpointImportError, match="not a PARE model"):
        import_pare_state_dict(nn.Linear(2, 2), public)


# ----------------------------------------------------------------------------- training


def test_training_steps_on_the_tiny_world_lower_the_loss(tiny_config) -> None:
    """32 steps (batch 8, 64 px): the supervised loss of un-augmented training batches of
    real_indoor and gta falls below 0.9 x the initial network's (seeds 0-4: 0.65-0.83), and so
    does its SMPL-pose term (0.68-0.82). The bounds were set with the regressor starting at the
    SMPL mean parameters, so that start is kept here (the quickstart's train-mean start begins
    at the constant, whose loss 32 steps barely lower: issue 18)."""
    cfg = tiny_config("model.arch=pare", "model.backbone=hrnet_w18_small", "run.run_id=pare",
                      "data.epoch_length=256", "trainer.max_epochs=1", "model.init_estimate=smpl_mean_params")
    metrics = train(cfg)
    assert metrics["global_step"] == 32 and np.isfinite(metrics["test"]["wild_test"]["mpjpe"])
    run = Path(metrics["run_dir"])
    assert (run / "predictions" / "wild_test_features.npz").is_file()

    body_dir = ensure_assets(cfg)
    sets = {name: prepare_source(name, cfg.data.train[name], cfg, body_dir) for name in ("real_indoor", "gta")}
    dm = MixedDataModule(test_sets=sets, batch_size=64, img_res=cfg.data.img_res, augment=False)
    trained = HMRSystem.load_from_checkpoint(str(run / "checkpoints" / "last.ckpt"), map_location="cpu")
    assert trained.hparams.arch == "pare"
    L.seed_everything(cfg.run.seed, verbose=False)  # as train() does before building the system
    initial = HMRSystem(**trained.hparams)
    totals = {"initial": [0.0, 0.0], "trained": [0.0, 0.0]}
    for loader in dm.test_dataloader():
        batch = next(iter(loader))
        for label, model in (("initial", initial), ("trained", trained)):
            with torch.no_grad():
                terms = model.eval().compute_losses(batch, model(batch["img"])[0])
            totals[label][0] += float(terms["total"])
            totals[label][1] += float(terms["pose"])
    (total_before, pose_before), (total_after, pose_after) = totals["initial"], totals["trained"]
    assert total_after < 0.9 * total_before, totals
    assert pose_after < 0.9 * pose_before, totals

    # Fine-tuning start point (the mini PARE FT rows): this suite's checkpoint, layout detected.
    finetune = HMRSystem(**{**trained.hparams, "init_checkpoint": str(run / "checkpoints" / "last.ckpt"),
                            "init_format": "auto"})
    finetune.setup("fit")
    assert finetune.init_report.fmt == "suite" and finetune.init_report.clean
    with torch.no_grad():
        image = torch.randn(2, 3, cfg.data.img_res, cfg.data.img_res)
        torch.testing.assert_close(finetune.eval()(image)[0].pose_6d, trained.eval()(image)[0].pose_6d)

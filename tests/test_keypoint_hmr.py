"""HMR with a 2D keypoint branch (gtahuman.models.keypoint_hmr; HMRSystem arch='hmr_kp')."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gtahuman.models import REGRESSORS, build_regressor
from gtahuman.models.keypoint_hmr import KeypointHMROutput, PlainPyramid, soft_argmax
from gtahuman.systems import HMRSystem
from gtahuman.systems.losses import keypoint_2d_l1_loss

IMG_RES = 64
pytestmark = pytest.mark.usefixtures("single_thread")


def test_soft_argmax_reads_cell_centres() -> None:
    logits = torch.full((1, 2, 4, 8), -1e4)
    logits[0, 0, 1, 6] = 0.0  # row 1 of 4, column 6 of 8
    logits[0, 1, 3, 0] = 0.0
    logits[0, 1, 3, 1] = 0.0  # two equal peaks: their midpoint
    by_hand = torch.tensor([[[13 / 8 - 1, 3 / 4 - 1], [2 / 8 - 1, 7 / 4 - 1]]])
    torch.testing.assert_close(soft_argmax(logits), by_hand)
    # A flat map: the crop's centre.
    torch.testing.assert_close(soft_argmax(torch.zeros(1, 1, 5, 6)), torch.zeros(1, 1, 2), atol=1e-6, rtol=0)


def test_l1_loss_weights_by_confidence_and_compares_the_first_joints() -> None:
    pred = torch.tensor([[[0.5, 0.0], [0.0, 0.0]]])
    gt = torch.tensor([[[0.0, 0.0, 1.0], [1.0, -1.0, 0.0], [9.0, 9.0, 1.0]]])  # 3 labels, 2 predicted
    # sum conf |d| over the 2 joints x 2 coordinates, divided by the sample's 4 entries: 0.5 / 4.
    assert keypoint_2d_l1_loss(pred, gt, torch.ones(1, dtype=torch.bool)).item() == pytest.approx(0.125)
    with pytest.raises(ValueError, match="keypoint_2d_l1_loss"):
        keypoint_2d_l1_loss(torch.zeros(1, 4, 2), gt, torch.ones(1, dtype=torch.bool))


@pytest.mark.parametrize("backbone", ["plain8", "mobilenetv3_small_050"])
def test_regressor_outputs_and_a_head_without_residuals_says_the_start(backbone: str) -> None:
    torch.manual_seed(0)
    model = build_regressor("hmr_kp", backbone=backbone, mean_params=None, n_iter=3, img_res=IMG_RES,
                            num_keypoints=5, lift_hidden=16)
    with torch.no_grad():
        for decoder in (model.head.decpose, model.head.decshape, model.head.deccam):
            decoder.weight.zero_()
            decoder.bias.zero_()
        output, features = model.eval()(torch.randn(2, 3, IMG_RES, IMG_RES))
    assert "hmr_kp" in REGRESSORS and isinstance(output, KeypointHMROutput)
    assert output.keypoints2d_direct.shape == (2, 5, 2) and output.keypoints2d_direct.abs().max() < 1
    assert output.rotmat.shape == (2, 24, 3, 3) and features.shape == (2, model.feature_dim)
    torch.testing.assert_close(output.pose_6d, model.head.init_pose.expand(2, -1))  # zero residuals: the start
    with pytest.raises(ValueError, match="backbone_args"):
        build_regressor("hmr_kp", backbone="plain8", backbone_args={"weights_path": "x"})
    with pytest.raises(ValueError, match="num_keypoints"):
        build_regressor("hmr_kp", backbone="plain8", num_keypoints=60)


def test_plain_pyramid_maps_are_at_stride_eight() -> None:
    maps, deepest, fine = PlainPyramid(4)(torch.randn(1, 3, IMG_RES, IMG_RES))
    assert maps.shape == (1, 80, 8, 8) and deepest.shape == (1, 32, 2, 2) and fine.shape == (1, 8, 16, 16)


@pytest.mark.parametrize("stride, cells", [(8, IMG_RES // 8), (4, IMG_RES // 4)])
def test_heatmap_stride_sets_the_grid_the_keypoints_are_read_on(stride: int, cells: int) -> None:
    torch.manual_seed(0)
    model = build_regressor("hmr_kp", backbone="plain8", num_keypoints=5, lift_hidden=16, heatmap_stride=stride)
    output, _ = model.eval()(torch.randn(2, 3, IMG_RES, IMG_RES))
    assert output.keypoint_logits.shape == (2, 5, cells, cells)
    with pytest.raises(ValueError, match="heatmap_stride"):
        build_regressor("hmr_kp", backbone="plain8", heatmap_stride=2)


def test_system_supervises_the_direct_keypoints_and_the_gradient_reaches_the_heatmaps(toy_body_dir: Path) -> None:
    torch.manual_seed(0)
    system = HMRSystem(str(toy_body_dir), arch="hmr_kp", backbone="plain8", img_res=IMG_RES,
                       regressor_args={"num_keypoints": 24, "lift_hidden": 16}, loss_weights={"keypoints2d_direct": 7.0})
    g = torch.Generator().manual_seed(1)
    n = 3
    batch = {"img": torch.randn(n, 3, IMG_RES, IMG_RES, generator=g),
             "keypoints2d": torch.cat([torch.rand(n, 54, 2, generator=g) * 2 - 1, torch.ones(n, 54, 1)], -1),
             "keypoints3d": torch.cat([0.3 * torch.randn(n, 54, 3, generator=g), torch.ones(n, 54, 1)], -1),
             "smpl_global_orient": 0.3 * torch.randn(n, 3, generator=g),
             "smpl_body_pose": 0.3 * torch.randn(n, 69, generator=g), "smpl_betas": torch.randn(n, 10, generator=g),
             "has_smpl": torch.ones(n), "valid": torch.tensor([1.0, 1.0, 0.0])}
    output, _ = system.train()(batch["img"])
    terms = system.compute_losses(batch, output)
    direct = output.keypoints2d_direct.detach()
    by_hand = (direct[:2] - batch["keypoints2d"][:2, :24, :2]).abs().mean()  # the invalid sample is out
    assert terms["keypoints2d_direct"].item() == pytest.approx(by_hand.item(), rel=1e-5)
    without = {k: v for k, v in terms.items() if k not in ("total", "keypoints2d_direct")}
    weights = {"keypoints2d": 300.0, "keypoints3d": 300.0, "pose": 60.0, "betas": 0.06, "camera": 60.0}
    rest = sum(weights[k] * v for k, v in without.items())
    assert terms["total"].item() == pytest.approx(rest.item() + 7.0 * by_hand.item(), rel=1e-4)
    terms["keypoints2d_direct"].backward()
    final_conv = system.regressor.heatmaps.out.weight
    assert final_conv.grad is not None and final_conv.grad.abs().sum() > 0


def test_heatmap_cross_entropy_by_hand() -> None:
    from gtahuman.models.keypoint_hmr import heatmap_cross_entropy

    mask = torch.ones(1, dtype=torch.bool)
    flat = torch.zeros(1, 2, 6, 6)
    labels = torch.tensor([[[0.0, 0.0, 1.0], [5.0, 0.0, 1.0]]])  # the second is far off the map: left out
    assert heatmap_cross_entropy(flat, labels, mask).item() == pytest.approx(float(torch.log(torch.tensor(36.0))))
    # A label at the centre of cell (row 2, column 3) of 6 x 6, sigma 1 cell: the target is the
    # normalised Gaussian of the cell distances; logits peaked at that cell.
    logits = torch.zeros(1, 1, 6, 6)
    logits[0, 0, 2, 3] = 4.0
    label = torch.tensor([[[7 / 6 - 1, 5 / 6 - 1, 0.5]]])
    rows, cols = torch.meshgrid(torch.arange(6.0), torch.arange(6.0), indexing="ij")
    target = torch.exp(-0.5 * ((rows - 2) ** 2 + (cols - 3) ** 2))
    target = target / target.sum()
    by_hand = -(target * torch.log_softmax(logits.flatten(), 0).reshape(6, 6)).sum()
    assert heatmap_cross_entropy(logits, label, mask).item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert heatmap_cross_entropy(logits, label, torch.zeros(1, dtype=torch.bool)).item() == 0.0


def test_training_on_the_tiny_world_lowers_the_keypoint_error_and_checkpoints_rebuild(tiny_config) -> None:
    """64 steps (batch 8, 64 px) of the quickstart's arch: the direct 2D keypoint error on
    un-augmented training batches falls below 0.8 x the initial network's, and the checkpoint
    rebuilds the system (hyper-parameters) and serves as a fine-tuning start (suite layout)."""
    import lightning as L
    import numpy as np

    from gtahuman.data.datamodule import MixedDataModule
    from gtahuman.run_data import ensure_assets, prepare_source
    from gtahuman.train import train

    cfg = tiny_config("model.arch=hmr_kp", "model.backbone=plain8", "run.run_id=hmr_kp",
                      "model.loss_weights.keypoints2d_heatmap=5.0")
    metrics = train(cfg)
    assert metrics["global_step"] == 128 and np.isfinite(metrics["test"]["wild_test"]["pa_mpjpe"])
    run = Path(metrics["run_dir"])
    body_dir = ensure_assets(cfg)
    sets = {name: prepare_source(name, cfg.data.train[name], cfg, body_dir) for name in ("real_indoor", "gta")}
    dm = MixedDataModule(test_sets=sets, batch_size=64, img_res=cfg.data.img_res, augment=False)
    trained = HMRSystem.load_from_checkpoint(str(run / "checkpoints" / "last.ckpt"), map_location="cpu")
    assert trained.hparams.arch == "hmr_kp" and trained.loss_weights.keypoints2d_heatmap == 5.0
    L.seed_everything(cfg.run.seed, verbose=False)
    initial = HMRSystem(**trained.hparams)
    errors = {"initial": 0.0, "trained": 0.0}
    for loader in dm.test_dataloader():
        batch = next(iter(loader))
        for label, model in (("initial", initial), ("trained", trained)):
            with torch.no_grad():
                errors[label] += float(model.eval().compute_losses(batch, model(batch["img"])[0])["keypoints2d_direct"])
    assert errors["trained"] < 0.8 * errors["initial"], errors

    finetune = HMRSystem(**{**trained.hparams, "init_checkpoint": str(run / "checkpoints" / "last.ckpt")})
    finetune.setup("fit")
    assert finetune.init_report.fmt == "suite" and finetune.init_report.clean
    image = torch.randn(2, 3, cfg.data.img_res, cfg.data.img_res)
    with torch.no_grad():
        torch.testing.assert_close(finetune.eval()(image)[0].pose_6d, trained.eval()(image)[0].pose_6d)

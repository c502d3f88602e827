"""The mesh splat (gtahuman.body.part_render): PARE's part labels from the ground-truth mesh and
self-occlusion flags for datasets without them."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from gtahuman.body.smpl import BodyModel
from gtahuman.body.toy import toy_part_labels
from gtahuman.data.datamodule import MixedDataModule
from gtahuman.models import part_segmentation_loss
from gtahuman.systems import HMRSystem
from gtahuman.body.part_render import (
    fit_weak_perspective,
    self_occluded_joints,
    splat_nearest,
    splat_part_labels,
    vertex_parts,
)
from gtahuman.run_data import ensure_assets, prepare_source

pytestmark = pytest.mark.usefixtures("single_thread")

SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)


def test_weak_perspective_fit_recovers_a_known_camera_and_ignores_invisible_joints() -> None:
    g = torch.Generator().manual_seed(0)
    joints = torch.randn(3, 10, 3, generator=g, dtype=torch.float64)
    scale = torch.tensor([0.8, 2.5, 1.1], dtype=torch.float64)
    shift = torch.tensor([[0.1, -0.2], [0.0, 0.3], [-0.5, 0.05]], dtype=torch.float64)
    xy = scale[:, None, None] * joints[..., :2] + shift[:, None]
    conf = torch.ones(3, 10, 1, dtype=torch.float64)
    conf[0, :4] = 0.0
    xy[0, :4] += 5.0  # garbage where invisible: must not move the fit
    conf[2, 3:] = 0.0  # only 3 visible joints: too few
    fitted_scale, fitted_shift, ok = fit_weak_perspective(joints, torch.cat([xy, conf], -1))
    torch.testing.assert_close(fitted_scale[:2], scale[:2])
    torch.testing.assert_close(fitted_shift[:2], shift[:2])
    assert ok.tolist() == [True, True, False]
    # A mirrored target (x flipped) cannot come from the camera: negative scale, not ok.
    mirrored = torch.cat([-xy[1:2], conf[1:2]], -1)
    assert not fit_weak_perspective(joints[1:2], mirrored)[2].item()


def test_splat_keeps_the_nearest_vertex_per_cell_and_leaves_the_rest_background() -> None:
    # 4 x 4 grid over [-1, 1]: cell (row, col) = floor((v + 1) * 2), identity camera.
    vertices = torch.tensor([[[-0.9, -0.9, 3.0],   # cell (0, 0), part 5
                              [-0.8, -0.7, 2.0],   # same cell, nearer: part 7 wins
                              [0.6, -0.1, 4.0],    # cell (1, 3), part 2
                              [1.5, 0.0, 1.0]]])   # outside the crop
    parts = torch.tensor([5, 7, 2, 9])
    labels = splat_part_labels(vertices, parts, torch.ones(1), torch.zeros(1, 2), resolution=4)
    expected = torch.zeros(1, 4, 4, dtype=torch.long)
    expected[0, 0, 0] = 7 + 1
    expected[0, 1, 3] = 2 + 1
    assert torch.equal(labels, expected)
    # Scale and shift apply before binning: s = 0.5, t = (0.5, 0.5) takes the first two vertices
    # to (0.05, 0.05) and (0.1, 0.15), both in cell (2, 2); the third to (0.8, 0.45): cell (2, 3);
    # the fourth to (1.25, 0.5): still outside.
    moved = splat_part_labels(vertices, parts, torch.tensor([0.5]), torch.tensor([[0.5, 0.5]]), resolution=4)
    expected = torch.zeros(1, 4, 4, dtype=torch.long)
    expected[0, 2, 2] = 7 + 1
    expected[0, 2, 3] = 2 + 1
    assert torch.equal(moved, expected)


def test_vertex_parts_are_the_dominant_skinning_joint(toy_body_dir) -> None:
    body = BodyModel(str(toy_body_dir), "neutral")
    parts = vertex_parts(body.smpl.lbs_weights).numpy()
    # The toy body was built with explicit part labels; its skinning follows them.
    np.testing.assert_array_equal(parts, toy_part_labels())
    assert set(parts.tolist()) == set(range(24))
    with pytest.raises(ValueError, match="lbs_weights"):
        vertex_parts(torch.ones(10, 23))


@pytest.fixture(scope="module")
def mini_batch(tiny_config):
    """Un-augmented batches of real_indoor and gta (64 px crops) and the body model's folder."""
    cfg = tiny_config()
    body_dir = ensure_assets(cfg)
    sets = {name: prepare_source(name, cfg.data.train[name], cfg, body_dir) for name in ("real_indoor", "gta")}
    dm = MixedDataModule(test_sets=sets, batch_size=24, img_res=cfg.data.img_res, augment=False)
    dm.setup("test")
    batches = []
    for dataset in dm._eval["test"]:  # 24 frames spread over each set's sequences, not its first two
        rows = np.linspace(0, len(dataset) - 1, 24).round().astype(int)
        batches.append(default_collate([dataset[int(i)] for i in rows]))
    batch = {k: torch.cat([b[k] for b in batches]) for k in batches[0] if isinstance(batches[0][k], torch.Tensor)}
    return batch, body_dir


def test_rendered_labels_put_each_visible_joint_on_its_own_or_a_neighbouring_part(mini_batch) -> None:
    """On real mini-world crops, each visible SMPL joint's 2D keypoint (the data's, not the fit's)
    falls on the body, and, unless the body's own surface hides it (the far arm of a person seen
    from the side lies under the near arm or the torso), mostly on the joint's own part or one
    it borders (parent or child)."""
    batch, body_dir = mini_batch
    system = HMRSystem(str(body_dir), arch="pare", backbone="mobilenetv3_small_050", img_res=64)
    gt_pose = torch.cat([batch["smpl_global_orient"], batch["smpl_body_pose"]], 1).float()
    resolution = 16
    labels, fitted = system.render_part_labels(batch, gt_pose, batch["smpl_betas"].float(), resolution)
    assert labels.shape == (48, resolution, resolution) and bool(fitted.all())
    keypoints = batch["keypoints2d"][:, :24]
    visible = keypoints[..., 2] > 0
    with torch.no_grad():
        posed = BodyModel(str(body_dir), "neutral")(batch["smpl_betas"].float(), gt_pose[:, 3:], gt_pose[:, :3])
    hidden = self_occluded_joints(posed.vertices, posed.joints54[:, :24], resolution=64, tolerance=0.12)
    cells = torch.floor((keypoints[..., :2] + 1) * 0.5 * resolution).long().clamp(0, resolution - 1)
    rows = torch.arange(48)[:, None].expand(48, 24)
    at_joint = labels[rows, cells[..., 1], cells[..., 0]]  # (48, 24) label under each keypoint
    on_body = (at_joint > 0)[visible].float().mean().item()
    neighbours = [{j, SMPL_PARENTS[j]} | {c for c, p in enumerate(SMPL_PARENTS) if p == j} for j in range(24)]
    near = torch.tensor([[int(at_joint[b, j]) - 1 in neighbours[j] for j in range(24)] for b in range(48)])
    own_or_neighbour = near[visible & ~hidden].float().mean().item()
    assert on_body > 0.95, on_body
    assert own_or_neighbour > 0.75, own_or_neighbour
    # Bodies cover a sizeable share of a person crop, and every sample sees several parts.
    coverage = (labels > 0).float().mean(dim=(1, 2))
    assert 0.1 < coverage.min().item() and coverage.max().item() < 0.5, coverage  # side views of slim bodies: ~0.15
    assert min(len(torch.unique(labels[b])) for b in range(48)) >= 8


def test_pare_system_trains_on_rendered_labels_unless_told_to_use_the_batchs(mini_batch) -> None:
    batch, body_dir = mini_batch
    batch = {**batch, "has_smpl": torch.tensor([1.0, 0.0] * 24)}
    rendered = HMRSystem(str(body_dir), arch="pare", backbone="mobilenetv3_small_050", img_res=64).eval()
    batch_only = HMRSystem(**{**rendered.hparams, "part_labels": "batch"}).eval()
    batch_only.load_state_dict(rendered.state_dict())
    with torch.no_grad():
        output, _ = rendered(batch["img"])
        terms = rendered.compute_losses(batch, output)
        without = batch_only.compute_losses(batch, output)
        gt_pose = torch.cat([batch["smpl_global_orient"], batch["smpl_body_pose"]], 1).float()
        labels, _ = rendered.render_part_labels(batch, gt_pose, batch["smpl_betas"].float(), 16)
        # Only the samples with SMPL count.
        expected = part_segmentation_loss(output.part_logits, labels, batch["has_smpl"] > 0)
    assert "parts" not in without
    assert terms["parts"].item() == pytest.approx(expected.item(), rel=1e-6)
    added = terms["total"] - without["total"]
    assert added.item() == pytest.approx(rendered.loss_weights.parts * expected.item(), rel=1e-4)
    with pytest.raises(ValueError, match="part_labels must be one of"):
        HMRSystem(str(body_dir), arch="pare", backbone="mobilenetv3_small_050", img_res=64, part_labels="masks")



# ----------------------------------------------------------------------------- self-occlusion


def test_self_occlusion_hides_joints_behind_the_surface_by_more_than_the_tolerance() -> None:
    # A plate of vertices at z = 0 over [-1, 1]^2 and three joints at its centre.
    side = torch.linspace(-1, 1, 41)
    plate = torch.stack(torch.meshgrid(side, side, indexing="xy"), -1).reshape(-1, 2)
    vertices = torch.cat([plate, torch.zeros(len(plate), 1)], -1)[None]
    joints = torch.tensor([[[0.0, 0.0, 0.5],     # 0.5 behind the plate: hidden
                            [0.0, 0.0, 0.1],     # 0.1 behind, within the 0.12 tolerance: seen
                            [0.0, 0.0, -1.0],    # in front of it: seen
                            [0.6, -0.6, 0.3]]])  # behind, off-centre: hidden
    assert self_occluded_joints(vertices, joints, resolution=16, tolerance=0.12).tolist() == [[True, False, False, True]]
    # Cut a hole around the centre: nothing is in front of the first joint any more.
    holed = vertices[:, (plate.abs() > 0.2).any(-1)]
    assert self_occluded_joints(holed, joints, resolution=16, tolerance=0.12)[0, 0].item() is False
    # splat_nearest's depth map: the plate's depth where it lands, inf elsewhere.
    _, depth = splat_nearest(holed, torch.zeros(holed.shape[1], dtype=torch.long), torch.ones(1), torch.zeros(1, 2), 10)
    assert depth[0, 0, 0].item() == 0.0 and depth[0, 5, 5].item() == float("inf")


def test_mesh_self_occlusion_follows_the_worlds_rendered_flags(tiny_config) -> None:
    """On GTA frames of the tiny world, the share of the 24 SMPL joints hidden by the mesh (no
    image, no camera) ranks frames like the world's self-occlusion flags, which come from its
    rendered depth over the 100 game joints (tiny world, 48 frames: Spearman 0.63; default world,
    605 frames: 0.58)."""
    from scipy.stats import spearmanr

    from gtahuman.data.index import SampleIndex
    from gtahuman.data.prepare_common import BodyContext

    cfg = tiny_config()
    body_dir = ensure_assets(cfg)
    spec = prepare_source("gta", cfg.data.train.gta, cfg, body_dir)
    index = SampleIndex.load(spec.index_dir, mmap=True)
    arrays = [np.asarray(index[k]) for k in ("smpl_betas", "smpl_body_pose", "smpl_global_orient")]
    mesh = BodyContext(body_dir).self_occluded_ratio(*arrays)
    game = np.asarray(index["self_occluded_ratio"])
    assert np.all((mesh >= 0) & (mesh <= 1)) and len(mesh) >= 40
    rho = spearmanr(mesh, game).statistic
    assert rho > 0.4, rho
    # The wild set (SPIN npz, no flags) now carries the mesh's figure for every SMPL sample.
    wild = SampleIndex.load(prepare_source("wild_test", cfg.data.test.wild_test, cfg, body_dir).index_dir, mmap=True)
    ratio = np.asarray(wild["self_occluded_ratio"])
    assert np.isfinite(ratio).all() and 0.05 < ratio.mean() < 0.6 and ratio.std() > 0.02

"""Tests for gtahuman.models: backbones, weight loading, HMR head, discriminators."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from gtahuman.models import (
    BACKBONES,
    DomainDiscriminator,
    HMRHead,
    MeanParamsError,
    SMPLPoseDiscriminator,
    WeightsMismatchWarning,
    load_mean_params,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
)

# ----------------------------------------------------------------------------- backbones


PAPER_FEATURE_DIMS = {
    "resnet50": 2048,
    "resnet101": 2048,
    "resnet152": 2048,
    "deit_small": 384,
    "deit_base": 768,
}


@pytest.mark.parametrize("name", BACKBONES.names())
def test_backbone_gives_pooled_features(name: str) -> None:
    torch.manual_seed(0)
    backbone = BACKBONES.build(name).eval()
    assert backbone.feature_dim == PAPER_FEATURE_DIMS.get(name, backbone.feature_dim)
    # CNNs are fully convolutional: 64 px keeps the big ones cheap; ViTs need their grid size.
    size = backbone.default_input_size if backbone.is_transformer else 64
    with torch.no_grad():
        features = backbone(torch.randn(2, 3, size, size))
    assert features.shape == (2, backbone.feature_dim)
    assert torch.isfinite(features).all()
    assert not torch.allclose(features[0], features[1])  # depends on the image


def test_unknown_backbone_lists_valid_names() -> None:
    with pytest.raises(KeyError) as info:
        BACKBONES.build("resnet51")
    assert "resnet51" in str(info.value) and "resnet50" in str(info.value) and "deit_small" in str(info.value)


@pytest.mark.parametrize("name", ["resnet10t", "mobilenetv3_small_050"])
def test_channels_last_matches_default_layout(name: str) -> None:
    torch.manual_seed(0)
    plain = BACKBONES.build(name).eval()
    fast = BACKBONES.build(name, channels_last=True).eval()
    fast.load_state_dict(plain.state_dict())
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fast(images), plain(images), rtol=1e-4, atol=1e-5)


def test_feature_map_shapes() -> None:
    cnn = BACKBONES.build("resnet18").eval()
    vit = BACKBONES.build("deit_small", img_size=64).eval()
    with torch.no_grad():
        assert cnn.feature_map(torch.randn(1, 3, 64, 64)).shape == (1, 512, 2, 2)
        assert vit.feature_map(torch.randn(1, 3, 64, 64)).shape == (1, 384, 4, 4)


def test_deit_mean_pooling_averages_patch_tokens() -> None:
    torch.manual_seed(0)
    backbone = BACKBONES.build("deit_small", img_size=64, pool="avg").eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        tokens = backbone.model.forward_features(images)
        # timm (as DeiT/MAE) moves the final LayerNorm after the pooling when pooling by mean.
        expected = backbone.model.fc_norm(tokens[:, 1:].mean(dim=1))
        torch.testing.assert_close(backbone(images), expected)


# ----------------------------------------------------------------------------- weight loading


def test_weights_path_roundtrip_gives_equal_outputs(tmp_path) -> None:
    torch.manual_seed(0)
    source = BACKBONES.build("resnet10t").eval()
    path = tmp_path / "backbone.pth"
    torch.save(source.state_dict(), path)  # our own layout: "model." prefix
    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", WeightsMismatchWarning)
        loaded = BACKBONES.build("resnet10t", weights_path=str(path)).eval()
    assert loaded.weights_report is not None and loaded.weights_report.clean
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), source(images), rtol=0, atol=0)


def test_torchvision_layout_checkpoint_loads(tmp_path) -> None:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "tv_resnet18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path)
    backbone = BACKBONES.build("resnet18", weights_path=path).eval()
    report = backbone.weights_report
    assert report.clean and sorted(report.ignored_classifier) == ["fc.bias", "fc.weight"]
    reference.fc = torch.nn.Identity()  # torchvision pooled features, computed independently
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(backbone(images), reference(images), rtol=1e-5, atol=1e-5)


def test_whole_model_checkpoint_takes_backbone_part(tmp_path) -> None:
    torch.manual_seed(0)
    source = BACKBONES.build("resnet10t").eval()
    state = {f"backbone.{k}": v for k, v in source.state_dict().items()}  # backbone.model.*
    state["head.fc1.weight"] = torch.zeros(2, 2)
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "system.ckpt")
    loaded = BACKBONES.build("resnet10t", weights_path=tmp_path / "system.ckpt").eval()
    assert loaded.weights_report.clean
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), source(images), rtol=0, atol=0)


def test_mismatched_weights_are_reported_by_name(tmp_path) -> None:
    state = BACKBONES.build("resnet10t").model.state_dict()
    del state["layer1.0.conv1.weight"]
    state["bogus.extra"] = torch.zeros(3)
    state["bn1.weight"] = torch.zeros(7)
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.warns(WeightsMismatchWarning) as record:
        backbone = BACKBONES.build("resnet10t", weights_path=path)
    message = str(record[0].message)
    for key in ("layer1.0.conv1.weight", "bogus.extra", "bn1.weight"):
        assert key in message
    report = backbone.weights_report
    assert report.missing == ["layer1.0.conv1.weight"]
    assert report.unexpected == ["bogus.extra"]
    assert len(report.shape_mismatch) == 1 and report.shape_mismatch[0].startswith("bn1.weight")
    # Tensors that matched were loaded, the mismatched one kept its init.
    torch.testing.assert_close(backbone.model.layer1[0].bn1.weight, state["layer1.0.bn1.weight"])
    assert torch.equal(backbone.model.bn1.weight, torch.ones_like(backbone.model.bn1.weight))  # BN init
    with pytest.raises(ValueError, match="bogus.extra"):
        BACKBONES.build("resnet10t", weights_path=path, strict_weights=True)


def test_missing_weights_file_is_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        BACKBONES.build("resnet10t", weights_path=tmp_path / "nope.pth")


# ----------------------------------------------------------------------------- HMR head


def _random_rotations(n: int, seed: int) -> np.ndarray:
    return Rotation.random(n, random_state=seed).as_matrix()


def _write_mean_params(path, rotations: np.ndarray, drop: str | None = None) -> dict[str, np.ndarray]:
    # SPIN layout: first two columns of R, read row-major (r00, r01, r10, r11, r20, r21).
    values = {
        "pose": rotations[:, :, :2].reshape(-1).astype(np.float32),
        "shape": np.linspace(-1, 1, 10).astype(np.float32),
        "cam": np.array([0.9, 0.1, -0.2], np.float32),
    }
    np.savez(path, **{k: v for k, v in values.items() if k != drop})
    return values


def _numpy_gram_schmidt(pose6d: np.ndarray) -> np.ndarray:
    six = pose6d.reshape(-1, 6).astype(np.float64)
    a1, a2 = six[:, 0::2], six[:, 1::2]
    b1 = a1 / np.linalg.norm(a1, axis=1, keepdims=True)
    b2 = a2 - (b1 * a2).sum(1, keepdims=True) * b1
    b2 /= np.linalg.norm(b2, axis=1, keepdims=True)
    return np.stack([b1, b2, np.cross(b1, b2)], axis=-1)


def test_head_output_shapes_image_and_video() -> None:
    head = HMRHead(64).eval()
    out = head(torch.randn(4, 64), return_iterations=True)
    assert out.pose_6d.shape == (4, 144) and out.rotmat.shape == (4, 24, 3, 3)
    assert out.betas.shape == (4, 10) and out.cam.shape == (4, 3)
    assert len(out.iterations) == 3 and torch.equal(out.iterations[-1].cam, out.cam)
    video_features = torch.randn(2, 5, 64)
    video = head(video_features)
    assert video.pose_6d.shape == (2, 5, 144) and video.rotmat.shape == (2, 5, 24, 3, 3)
    assert video.betas.shape == (2, 5, 10) and video.cam.shape == (2, 5, 3)
    frames = head(video_features.reshape(10, 64))  # video == its frames one by one
    torch.testing.assert_close(video.rotmat.reshape(10, 24, 3, 3), frames.rotmat)
    torch.testing.assert_close(video.cam.reshape(10, 3), frames.cam)


def test_head_rotations_are_proper() -> None:
    torch.manual_seed(0)
    head = HMRHead(32).eval()
    torch.nn.init.normal_(head.decpose.weight, std=0.3)  # far from the mean pose
    rotmat = head(torch.randn(8, 32)).rotmat.double()
    identity = torch.eye(3, dtype=torch.float64).expand_as(rotmat)
    torch.testing.assert_close(rotmat @ rotmat.transpose(-1, -2), identity, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        torch.linalg.det(rotmat), torch.ones(8, 24, dtype=torch.float64), atol=1e-5, rtol=0
    )


def test_zero_decoders_return_file_mean_params_exactly(tmp_path) -> None:
    rotations = _random_rotations(24, seed=3)
    values = _write_mean_params(tmp_path / "smpl_mean_params.npz", rotations)
    head = HMRHead(16, mean_params=tmp_path / "smpl_mean_params.npz").eval()
    for decoder in (head.decpose, head.decshape, head.deccam):
        torch.nn.init.zeros_(decoder.weight)
        torch.nn.init.zeros_(decoder.bias)
    out = head(torch.randn(3, 16))
    for got, key in ((out.pose_6d, "pose"), (out.betas, "shape"), (out.cam, "cam")):
        assert torch.equal(got, torch.from_numpy(values[key]).expand_as(got))
    # The 6D of an exact rotation maps back to that rotation (scipy, independent).
    np.testing.assert_allclose(out.rotmat[0].detach().numpy(), rotations, atol=1e-6)


def test_rot6d_layout_matches_hand_gram_schmidt() -> None:
    head = HMRHead(
        8,
        mean_params={
            "pose": np.random.default_rng(0).normal(size=144),
            "shape": np.zeros(10),
            "cam": np.array([1.0, 0, 0]),
        },
    )
    for decoder in (head.decpose, head.decshape, head.deccam):
        torch.nn.init.zeros_(decoder.weight)
        torch.nn.init.zeros_(decoder.bias)
    out = head.eval()(torch.randn(1, 8))
    np.testing.assert_allclose(
        out.rotmat[0].detach().numpy(), _numpy_gram_schmidt(head.init_pose.numpy()), atol=1e-5
    )


def test_default_mean_params_are_upright_rest_pose() -> None:
    head = HMRHead(8).eval()
    for decoder in (head.decpose, head.decshape, head.deccam):
        torch.nn.init.zeros_(decoder.weight)
        torch.nn.init.zeros_(decoder.bias)
    out = head(torch.randn(1, 8))
    # global orientation: 180 degrees about x (SMPL y-up -> camera y-down); body joints rest
    torch.testing.assert_close(out.rotmat[0, 0], torch.diag(torch.tensor([1.0, -1.0, -1.0])))
    torch.testing.assert_close(out.rotmat[0, 1:], torch.eye(3).expand(23, 3, 3))
    torch.testing.assert_close(out.cam[0], torch.tensor([0.9, 0.0, 0.0]))
    assert torch.equal(out.betas, torch.zeros(1, 10))


def test_gradient_reaches_every_feature_row() -> None:
    head = HMRHead(32)
    features = torch.randn(4, 32, requires_grad=True)
    out = head(features)
    (out.rotmat.square().sum() + out.betas.square().sum() + out.cam.square().sum()).backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()
    assert (features.grad.abs().sum(dim=1) > 0).all()


def test_mean_params_missing_key_is_named(tmp_path) -> None:
    path = tmp_path / "smpl_mean_params.npz"
    _write_mean_params(path, _random_rotations(24, seed=0), drop="cam")
    with pytest.raises(MeanParamsError) as info:
        load_mean_params(path)
    assert "'cam'" in str(info.value) and str(path) in str(info.value)
    with pytest.raises(MeanParamsError, match="'cam'"):
        HMRHead(8, mean_params=path)


def test_mean_params_wrong_size_and_missing_file(tmp_path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, pose=np.zeros(72), shape=np.zeros(10), cam=np.zeros(3))
    with pytest.raises(MeanParamsError, match=r"'pose'.*144"):
        load_mean_params(path)
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        load_mean_params(tmp_path / "absent.npz")


# ----------------------------------------------------------------------------- discriminators


def test_pose_discriminator_scores_are_per_joint() -> None:
    torch.manual_seed(0)
    disc = SMPLPoseDiscriminator().eval()
    rotmat = torch.from_numpy(_random_rotations(2 * 23, seed=1)).float().reshape(2, 23, 3, 3)
    betas = torch.randn(2, 10)
    base = disc(rotmat, betas)
    assert base.shape == (2, 25)
    joint = 7
    moved = rotmat.clone()
    moved[:, joint] = torch.from_numpy(_random_rotations(2, seed=2)).float()
    changed = (disc(moved, betas) - base).abs() > 1e-7
    expected = torch.zeros(2, 25, dtype=torch.bool)
    expected[:, joint] = True
    expected[:, 23] = True  # the full-pose score sees every joint
    assert torch.equal(changed, expected)
    changed = (disc(rotmat, betas + 1.0) - base).abs() > 1e-7
    assert torch.equal(changed[0], torch.arange(25) == 24)  # betas: only the shape score


def test_lsgan_losses_hand_computed() -> None:
    real = torch.tensor([[1.0, 0.5], [0.0, 2.0]])
    fake = torch.tensor([[0.0, 1.0], [-1.0, 0.5]])
    # real: (0 + .25 + 1 + 1)/4 = .5625 ; fake: (0 + 1 + 1 + .25)/4 = .5625
    torch.testing.assert_close(lsgan_discriminator_loss(real, fake), torch.tensor(1.125))
    # (1 + 0 + 4 + .25)/4
    torch.testing.assert_close(lsgan_generator_loss(fake), torch.tensor(1.3125))


def test_domain_discriminator_matches_tllib_size() -> None:
    disc = DomainDiscriminator(2048, hidden=1024)
    assert sum(p.numel() for p in disc.parameters()) == 3_152_897  # TLlib's count for (2048, 1024)
    assert sum(isinstance(m, torch.nn.Linear) for m in disc.modules()) == 3
    assert disc(torch.randn(6, 2048)).shape == (6, 1)
    plain = DomainDiscriminator(16, hidden=8, num_layers=4, batch_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in plain.modules())
    assert sum(isinstance(m, torch.nn.Linear) for m in plain.modules()) == 4


def test_pool_grid_keeps_the_layout_of_the_last_stage() -> None:
    """pool_grid=g: the last stage average-pooled onto g x g cells and flattened (where things
    are stays in the features), computed here by hand from the feature map."""
    torch.manual_seed(0)
    backbone = BACKBONES.build("mobilenetv3_small_050", pool_grid=2).eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        features = backbone(images)
        stage = backbone.feature_map(images)
    assert backbone.feature_dim == stage.shape[1] * 4 == features.shape[1]
    cells = torch.nn.functional.adaptive_avg_pool2d(stage, 2)  # computed here by hand
    torch.testing.assert_close(features, cells.flatten(1))
    torch.testing.assert_close(features.reshape(2, -1, 4).mean(-1), stage.mean((2, 3)))  # same channels' average
    with pytest.raises(ValueError, match="pool_grid"):
        BACKBONES.build("resnet18", pool_grid=-1)

"""Crop/augment transforms: image, 2D, 3D and SMPL targets stay consistent; draws are right.

Independent checks: flips are rebuilt here from joint *names* (not the library's permutation),
rotations via scipy, bilinear sampling by a direct numpy loop, projections by hand.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from scipy.stats import norm

from gtahuman.body.conventions import get_names
from gtahuman.data.transforms import (
    AugmentConfig,
    AugParams,
    MissingSampleKeyError,
    TestTransform,
    TrainTransform,
    apply,
    denormalize_image,
    finish_images,
    sample_augmentation,
)
from gtahuman.data.warp import compose_affines, crop_affine, mirror_affine, transform_points, warp_image, warp_image_uint8

CONV = "smpl_54"
NAMES = get_names(CONV)
J = len(NAMES)


def mirror_name(name: str) -> str:
    if "left_" in name:
        return name.replace("left_", "right_")
    return name.replace("right_", "left_")


def mirror_perm(names: list[str]) -> np.ndarray:
    return np.array([names.index(mirror_name(n)) if mirror_name(n) in names else i
                     for i, n in enumerate(names)])


PERM54 = mirror_perm(NAMES)
PERM_SMPL = mirror_perm(get_names("smpl"))
M = np.diag([-1.0, 1.0, 1.0])


def make_sample(rng, image, center, scale, kp2d, kp3d=None, pose=None):
    pose = rng.normal(0, 0.3, 72) if pose is None else pose
    if kp3d is None:
        kp3d = np.concatenate([rng.normal(0, 0.4, (J, 3)), np.ones((J, 1))], 1)
    return {"image": image, "center": np.asarray(center, float), "scale": float(scale),
            "keypoints2d": kp2d, "keypoints3d": kp3d, "smpl_global_orient": pose[:3],
            "smpl_body_pose": pose[3:], "smpl_betas": rng.normal(size=10), "has_smpl": 1,
            "image_path": "synthetic.jpg"}


# --- geometry primitives ------------------------------------------------------------------

def test_crop_affine_hand_computed():
    a, a_inv = crop_affine((50.0, 40.0), 100.0, 90.0, 200)
    pts = np.array([[50.0, 40.0], [60.0, 40.0], [50.0, 50.0], [0.0, -10.0]])
    # zoom 2; +90 deg turns the content counter-clockwise as displayed (y down):
    # right of centre -> above it, below centre -> right of it; the box corner -> a crop corner.
    expected = np.array([[100.0, 100.0], [100.0, 80.0], [120.0, 100.0], [0.0, 200.0]])
    np.testing.assert_allclose(transform_points(a, pts), expected, atol=1e-9)
    np.testing.assert_allclose(transform_points(a_inv, expected), pts, atol=1e-9)


def naive_bilinear_warp(image, affine, res):
    """Per-pixel reference: zero outside, pixel values at centres (j + .5, i + .5)."""
    inv = np.linalg.inv(np.vstack([affine, [0, 0, 1]]))[:2]
    h, w, c = image.shape
    out = np.zeros((res, res, c))
    for v in range(res):
        for u in range(res):
            x, y = inv @ np.array([u + 0.5, v + 0.5, 1.0]) - 0.5
            x0, y0 = math.floor(x), math.floor(y)
            for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                    if 0 <= yy < h and 0 <= xx < w:
                        out[v, u] += wy * wx * image[yy, xx]
    return out


@pytest.mark.parametrize("rot,side,center", [
    (0.0, 30.0, (26.0, 18.0)), (37.0, 50.0, (10.0, 30.0)),  # inside; over the top-left corner
    (-120.0, 14.0, (40.0, 5.0)), (10.0, 40.0, (200.0, 9.0))])  # upscaled; off the image
def test_warp_matches_naive_bilinear_including_borders(rot, side, center):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    affine, _ = crop_affine(center, side, rot, 24)
    np.testing.assert_allclose(warp_image(image, affine, 24),
                               naive_bilinear_warp(image.astype(float), affine, 24), atol=2e-3)


# --- image and 2D keypoints agree ---------------------------------------------------------

def dot_image(rng):
    """Gaussian dots on a 9x6 grid; green = brightness, red/blue = green * joint code."""
    h, w = 180, 200
    grid = np.stack(np.meshgrid(np.arange(9), np.arange(6)), -1).reshape(-1, 2)[:J]
    centres = 100.0 + (grid - (4, 2.5)) * 16.0 + rng.uniform(-2, 2, (J, 2))
    centres[:, 1] -= 10.0
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    green, red, blue = np.zeros((h, w)), np.zeros((h, w)), np.zeros((h, w))
    for j, (cx, cy) in enumerate(centres):
        blob = 250.0 * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * 1.3 ** 2))
        green += blob
        red += blob * (1 + j % 8) / 9.0
        blue += blob * (1 + j // 8) / 9.0
    image = np.clip(np.rint(np.stack([red, green, blue], -1)), 0, 255).astype(np.uint8)
    return image, np.concatenate([centres, np.ones((J, 1))], 1)


@pytest.mark.parametrize("params", [
    AugParams(), AugParams(flip=True), AugParams(rot_deg=35.0, scale_mult=0.8),
    AugParams(flip=True, rot_deg=-52.0, scale_mult=1.2),
    AugParams(flip=True, rot_deg=12.0, scale_mult=0.75)])
def test_dots_land_on_transformed_keypoints_with_mirrored_labels(params):
    rng = np.random.default_rng(7)
    image, kp2d = dot_image(rng)
    cfg = AugmentConfig(img_res=128)
    out = apply(make_sample(rng, image, (100.0, 90.0), 170.0, kp2d), params, cfg, CONV)
    crop = denormalize_image(out["img"], cfg)
    px = out["keypoints2d_crop"].numpy()
    checked = 0
    for k in range(J):
        x, y = px[k, :2]
        if not (4 <= x <= 124 and 4 <= y <= 124):
            continue
        u0, v0 = int(x), int(y)
        window = crop[v0 - 3:v0 + 4, u0 - 3:u0 + 4, 1]
        dv, du = np.unravel_index(np.argmax(window), window.shape)
        u, v = u0 - 3 + du, v0 - 3 + dv
        assert math.hypot(u + 0.5 - x, v + 0.5 - y) <= 1.5, (k, (u, v), (x, y))
        r, g, b = crop[v, u]
        code = round(r / g * 9) - 1 + 8 * (round(b / g * 9) - 1)
        expected = PERM54[k] if params.flip else k  # output left_* shows the input right_* dot
        assert code == expected, (NAMES[k], code, expected)
        checked += 1
    assert checked >= 40


# --- 3D, 2D and SMPL targets agree -------------------------------------------------------

def projected_sample(rng):
    """2D = pinhole projection of 3D (focal 1000) with the principal point at the box centre;
    3D = global orient applied to a body template, plus a translation."""
    template = rng.normal(0, 0.3, (J, 3))
    orient = Rotation.random(random_state=3).as_rotvec() * 0.7
    pose = np.concatenate([orient, rng.normal(0, 0.3, 69)])
    points = template @ Rotation.from_rotvec(orient).as_matrix().T + (0.2, -0.1, 6.0)
    center = np.array([130.0, 95.0])
    uv = 1000.0 * points[:, :2] / points[:, 2:] + center
    conf = np.ones((J, 1))
    conf[5] = 0.0
    kp2d = np.concatenate([uv, conf], 1)
    kp3d = np.concatenate([points, conf], 1)
    image = np.zeros((200, 260, 3), np.uint8)
    return make_sample(rng, image, center, 180.0, kp2d, kp3d, pose), template


@pytest.mark.parametrize("params", [AugParams(rot_deg=40.0, scale_mult=1.1), AugParams(flip=True),
                                    AugParams(flip=True, rot_deg=-25.0, scale_mult=0.8)])
def test_projection_of_3d_matches_2d_and_orient_matches_3d(params):
    rng = np.random.default_rng(11)
    sample, template = projected_sample(rng)
    res = 96
    out = apply(sample, params, AugmentConfig(img_res=res), CONV)
    kp3d, px = out["keypoints3d"].double().numpy(), out["keypoints2d_crop"].double().numpy()
    focal = 1000.0 * res / (180.0 * params.scale_mult)
    valid = kp3d[:, 3] > 0
    projected = focal * kp3d[valid, :2] / kp3d[valid, 2:3] + res / 2
    np.testing.assert_allclose(px[valid, :2], projected, atol=1e-3)
    np.testing.assert_allclose(out["keypoints2d"].numpy()[valid, :2], 2 * px[valid, :2] / res - 1,
                               atol=1e-6)
    invalid = PERM54[5] if params.flip else 5
    assert not valid[invalid] and np.all(out["keypoints2d"].numpy()[invalid] == 0)
    # Root-relative 3D = new global orient applied to the (mirrored if flipped) template.
    ref = template[PERM54] * (-1, 1, 1) if params.flip else template
    orient = Rotation.from_rotvec(out["smpl_global_orient"].double().numpy()).as_matrix()
    rel = kp3d[:, :3] - kp3d[:1, :3]
    expected = (ref - ref[:1]) @ orient.T
    np.testing.assert_allclose(rel[valid], expected[valid], atol=1e-5)


def test_flipped_pose_is_mirror_conjugate_per_joint():
    rng = np.random.default_rng(5)
    sample, _ = projected_sample(rng)
    rot = 33.0
    out = apply(sample, AugParams(flip=True, rot_deg=rot), AugmentConfig(img_res=64), CONV)
    pose_in = np.concatenate([sample["smpl_global_orient"], sample["smpl_body_pose"]])
    pose_in = pose_in.reshape(24, 3)
    pose_out = np.concatenate([out["smpl_global_orient"].double().numpy(),
                               out["smpl_body_pose"].double().numpy()]).reshape(24, 3)
    rz = Rotation.from_euler("z", -rot, degrees=True).as_matrix()
    mats_in = Rotation.from_rotvec(pose_in).as_matrix()
    mats_in[0] = rz @ mats_in[0]  # only the root turns with the image
    expected = M @ mats_in[PERM_SMPL] @ M
    np.testing.assert_allclose(Rotation.from_rotvec(pose_out).as_matrix(), expected, atol=1e-5)


def mirror_full_frame(sample):
    """mmhuman3d's order: mirror the whole frame and its labels (x -> W - x here)."""
    width = sample["image"].shape[1]
    kp2d = sample["keypoints2d"][PERM54].copy()
    kp2d[:, 0] = width - kp2d[:, 0]
    kp3d = sample["keypoints3d"][PERM54] * (-1, 1, 1, 1)
    pose = np.concatenate([sample["smpl_global_orient"], sample["smpl_body_pose"]]).reshape(24, 3)
    pose = (pose[PERM_SMPL] * (1, -1, -1)).reshape(72)
    center = np.array([width - sample["center"][0], sample["center"][1]])
    return dict(sample, image=sample["image"][:, ::-1], keypoints2d=kp2d, keypoints3d=kp3d,
                center=center, smpl_global_orient=pose[:3], smpl_body_pose=pose[3:])


@pytest.mark.parametrize("dtype, atol", [(np.float32, 0.05), (np.uint8, 1.0)])  # uint8: OpenCV rounds
def test_flipping_the_crop_equals_cropping_the_mirrored_frame(dtype, atol):
    rng = np.random.default_rng(9)
    sample, _ = projected_sample(rng)
    sample["image"] = rng.integers(0, 256, sample["image"].shape, dtype=np.uint8).astype(dtype)
    cfg = AugmentConfig(img_res=80)
    ours = apply(sample, AugParams(flip=True, rot_deg=28.0, scale_mult=0.9), cfg, CONV)
    theirs = apply(mirror_full_frame(sample), AugParams(rot_deg=-28.0, scale_mult=0.9), cfg, CONV)
    np.testing.assert_allclose(denormalize_image(ours["img"], cfg),
                               denormalize_image(theirs["img"], cfg), atol=atol)
    for key in ("keypoints2d", "keypoints3d", "smpl_global_orient", "smpl_body_pose"):
        np.testing.assert_allclose(ours[key].numpy(), theirs[key].numpy(), atol=2e-5, err_msg=key)


# --- parameter draws ------------------------------------------------------------------------

def test_augmentation_draw_statistics():
    rng = np.random.default_rng(2024)
    draws = [sample_augmentation(rng, AugmentConfig()) for _ in range(20000)]
    flip = np.array([d.flip for d in draws])
    rot = np.array([d.rot_deg for d in draws])
    scale = np.array([d.scale_mult for d in draws])
    colour = np.array([d.channel_mult for d in draws])
    # Binomial std at n = 20000 is <= 0.0035; tolerances are ~5 sigma.
    assert abs(flip.mean() - 0.5) < 0.018
    assert abs((rot == 0).mean() - 0.6) < 0.018
    nonzero = rot[rot != 0]
    assert np.abs(nonzero).max() == 60.0
    assert abs(np.mean(np.abs(nonzero) == 60.0) - 2 * norm.sf(2.0)) < 0.012  # clipped at 2 sigma
    assert abs(np.median(np.abs(nonzero)) - 30 * norm.ppf(0.75)) < 1.0
    assert scale.min() == 0.75 and scale.max() == 1.25
    clipped = (scale == 0.75) | (scale == 1.25)
    assert abs(clipped.mean() - 2 * norm.sf(1.0)) < 0.018  # clipped at 1 sigma
    assert abs(scale.mean() - 1.0) < 0.005
    assert colour.min() >= 0.6 and colour.max() <= 1.4
    np.testing.assert_allclose(colour.mean(0), 1.0, atol=0.01)
    np.testing.assert_allclose(colour.std(0), 0.8 / math.sqrt(12), atol=0.006)  # uniform width 0.8
    assert abs(np.corrcoef(colour[:, 0], colour[:, 1])[0, 1]) < 0.04  # independent channels


def test_train_transform_is_reproducible_per_seed_epoch_index():
    rng = np.random.default_rng(3)
    sample, _ = projected_sample(rng)
    sample["image"] = rng.integers(0, 256, sample["image"].shape, dtype=np.uint8)
    transform = TrainTransform(AugmentConfig(img_res=48), CONV, seed=5)
    first, again = transform(sample, index=17, epoch=2), transform(sample, index=17, epoch=2)
    for key in ("img", "keypoints2d", "keypoints3d", "smpl_global_orient"):
        assert torch.equal(first[key], again[key])
    transform.set_epoch(2)
    assert transform.params_for(17) == transform.params_for(17, epoch=2)
    others = {transform.params_for(i, epoch=e) for i in range(8) for e in range(3)}
    assert len(others) == 24  # distinct draws per (epoch, index)
    assert TrainTransform(seed=6).params_for(17, 2) != transform.params_for(17, 2)
    # The channel multipliers reach the image.
    params = transform.params_for(17, 2)
    plain = apply(sample, AugParams(params.flip, params.rot_deg, params.scale_mult),
                  transform.cfg, CONV)
    noisy_crop = denormalize_image(first["img"], transform.cfg)
    plain_crop = denormalize_image(plain["img"], transform.cfg)
    ratio = noisy_crop / np.maximum(plain_crop, 1e-6)
    bright = (plain_crop > 20) & (noisy_crop < 254)  # away from rounding and the 255 clip
    for c in range(3):
        np.testing.assert_allclose(ratio[..., c][bright[..., c]], params.channel_mult[c], rtol=1e-3)


# --- test transform -------------------------------------------------------------------------

def test_test_transform_is_identity_on_a_cached_crop():
    rng = np.random.default_rng(4)
    res = 64
    image = rng.integers(0, 256, (res, res, 3), dtype=np.uint8)
    kp2d = np.concatenate([rng.uniform(0, res, (J, 2)), np.ones((J, 1))], 1)
    sample = make_sample(rng, image, (res / 2, res / 2), res, kp2d)
    transform = TestTransform(AugmentConfig(img_res=res))
    out = transform(sample, index=3)
    assert not out["is_flipped"] and out["rot_deg"] == 0
    np.testing.assert_allclose(denormalize_image(out["img"], transform.cfg), image, atol=1e-3)
    np.testing.assert_allclose(out["keypoints2d_crop"].numpy(), kp2d, atol=1e-4)
    np.testing.assert_allclose(out["keypoints2d"].numpy()[:, :2], kp2d[:, :2] / 32 - 1, atol=1e-6)
    np.testing.assert_allclose(out["keypoints3d"].numpy(), sample["keypoints3d"], atol=1e-6)
    np.testing.assert_allclose(out["smpl_global_orient"].numpy(), sample["smpl_global_orient"],
                               atol=1e-6)
    np.testing.assert_allclose(out["crop_affine"].numpy(), [[1, 0, 0], [0, 1, 0]], atol=1e-6)
    # Mean-coloured pixels normalise to zero (ImageNet statistics on RGB / 255).
    grey = dict(sample, image=np.broadcast_to(np.array([124, 116, 104], np.uint8), (res, res, 3)))
    expected = (np.array([124, 116, 104]) / 255 - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225)
    np.testing.assert_allclose(transform(grey)["img"].mean((1, 2)).numpy(), expected, atol=1e-5)
    assert torch.equal(transform(sample)["img"], transform(sample, index=9)["img"])


# --- errors ---------------------------------------------------------------------------------

def test_bad_input_is_named():
    rng = np.random.default_rng(0)
    image, kp2d = dot_image(rng)
    sample = make_sample(rng, image, (100, 90), 150, kp2d)
    cfg = AugmentConfig(img_res=32)
    with pytest.raises(MissingSampleKeyError, match="synthetic.jpg.*'smpl_betas'"):
        apply({k: v for k, v in sample.items() if k != "smpl_betas"}, AugParams(), cfg)
    with pytest.raises(ValueError, match=r"'keypoints2d' must have shape \(54, 3\)"):
        apply(dict(sample, keypoints2d=kp2d[:, :2]), AugParams(), cfg)
    with pytest.raises(ValueError, match="'scale' must be a positive"):
        apply(dict(sample, scale=0.0), AugParams(), cfg)
    with pytest.raises(ValueError, match="'image' must be"):
        apply(dict(sample, image=image[..., 0]), AugParams(), cfg)
    with pytest.raises(ValueError, match="AugmentConfig.rot_prob"):
        AugmentConfig(rot_prob=1.5)
    with pytest.raises(KeyError, match="unknown keypoint convention"):
        TrainTransform(convention="smpl_99")


# --- the fast paths: OpenCV's uint8 warp, and colour + normalisation on the device ---------

@pytest.mark.parametrize("seed", [0, 1])
def test_opencv_uint8_warp_matches_the_reference_within_one_grey_level(seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (150, 210, 3), dtype=np.uint8)  # noise: the sharpest edges there are
    for k in range(12):  # crops inside, across and outside the frame, rotated, scaled, mirrored
        affine, _ = crop_affine(rng.uniform(-40, 250, 2), rng.uniform(60, 320), rng.uniform(-60, 60), 64)
        if k % 2:
            affine = compose_affines(mirror_affine(64), affine)
        fast, reference = warp_image_uint8(image, affine, 64), warp_image(image, affine, 64)
        assert fast.dtype == np.uint8 and fast.shape == (64, 64, 3)
        difference = np.abs(fast.astype(np.float32) - reference)
        assert difference.max() <= 1.0 and difference.mean() <= 0.5
    with pytest.raises(ValueError, match="uint8"):
        warp_image_uint8(image.astype(np.float32), affine, 64)


def test_uint8_images_finished_on_the_device_equal_the_cpu_path():
    rng = np.random.default_rng(5)
    sample, _ = projected_sample(rng)
    sample["image"] = rng.integers(0, 256, sample["image"].shape, dtype=np.uint8)
    on_cpu = AugmentConfig(img_res=64, noise_factor=0.4)
    on_device = AugmentConfig(img_res=64, noise_factor=0.4, uint8_images=True)
    params = AugParams(flip=True, rot_deg=17.0, scale_mult=1.1, channel_mult=(0.7, 1.0, 1.35))
    expected = apply(sample, params, on_cpu, CONV)
    left = apply(sample, params, on_device, CONV)
    assert left["img"].dtype == torch.uint8 and left["colour"].tolist() == pytest.approx([0.7, 1.0, 1.35])
    batch = {"img": left["img"][None].repeat(2, 1, 1, 1), "colour": left["colour"][None].repeat(2, 1)}
    pair = {"source": dict(batch), "target": {"img": expected["img"][None].clone()}}  # adaptation: nested
    finished = finish_images(pair)
    torch.testing.assert_close(finished["source"]["img"][1], expected["img"], atol=1e-5, rtol=0)
    torch.testing.assert_close(finished["target"]["img"][0], expected["img"])  # float: untouched
    for key in ("keypoints2d", "keypoints3d", "smpl_global_orient", "smpl_body_pose"):
        torch.testing.assert_close(left[key], expected[key])
    with pytest.raises(KeyError, match="colour"):
        finish_images({"img": left["img"][None]})
    with pytest.raises(ValueError, match="uint8_images"):
        AugmentConfig(uint8_images=True, mean=(0.5, 0.5, 0.5))

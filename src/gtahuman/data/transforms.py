"""Training and test transforms: crop, augment and normalise one sample (SPIN / mmhuman3d).

A sample arrives from a dataset as numpy: ``image`` (H, W, 3) RGB on the 0-255 scale (the
full frame, or a cached person crop with the box and keypoints already in its pixels),
``center`` (2,) and ``scale`` (side of the square box in px, no /200; a (2,) ``[S, S]`` is
accepted and its max used), ``keypoints2d`` (J, 3) px + conf, ``keypoints3d`` (J, 4) metres
+ conf, ``smpl_global_orient`` (3), ``smpl_body_pose`` (69), ``smpl_betas`` (10),
``has_smpl``. Pixel coordinates follow `gtahuman.data.warp` (origin at the top-left corner,
pixel centres at +0.5).

Augmentation (SPIN defaults, reference/spin_vibe_hmr2.md 1.5), in the order applied:
1. crop: one affine maps the square of side ``scale * bbox_margin * scale_mult`` centred at
   ``center`` and rotated by ``rot_deg`` to ``img_res`` px (`warp.crop_affine`); 2D keypoints
   go through the same affine, 3D keypoints and the global orient are pre-multiplied by
   ``Rz(-rot_deg)`` (`body.rotations.rotation_about_z`), so projections stay consistent.
2. flip of the *crop* (SPIN's order; cheaper than mirroring the full frame as mmhuman3d does,
   and equivalent: mirror(crop at r) == crop at -r of the mirrored frame, see the tests). It
   is folded into the same affine, so the image is warped once. Labels follow the mirrored
   body: joints are permuted by the convention's left/right permutation, 3D x is negated,
   the SMPL pose is mirrored (`body.conventions.flip_smpl_pose`).
3. per-channel colour multipliers on the crop, clipped to [0, 255];
4. ImageNet normalisation of RGB/255 to a float32 (3, R, R) tensor.

A uint8 image is warped by OpenCV (`warp.warp_image_uint8`, the fast path every dataset takes),
any other by the float reference (`warp.warp_image`). With ``AugmentConfig.uint8_images`` steps 3
and 4 move to the training device: ``img`` stays the uint8 (3, R, R) crop and ``colour`` (3,)
carries the multipliers, and `finish_images` applies both to a whole batch there (a quarter of
the bytes through collation, worker queues and the host-to-device copy; no float work per
sample on the loader's cores).

2D keypoints come out as crop pixels (``keypoints2d_crop``) and in SPIN's normalised form
``x_n = 2 x / img_res - 1`` (``keypoints2d``; -1 and 1 are the crop edges). Joints with
conf <= 0 come out as all zeros. ``smpl_transl`` and other extra keys pass through
unchanged (numeric ones as tensors), as in mmhuman3d.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from gtahuman.body.camera import crop_pixels_to_normalized
from gtahuman.body.conventions import flip_permutation, flip_smpl_pose, num_joints
from gtahuman.body.rotations import rotation_about_z
from gtahuman.data.warp import (
    compose_affines,
    crop_affine,
    mirror_affine,
    transform_points,
    warp_image,
    warp_image_uint8,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB on the [0, 1] scale (= 123.675, 116.28, 103.53 / 255)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CONVENTION = "smpl_54"


@dataclass(frozen=True)
class AugmentConfig:
    """Crop size and augmentation strengths (SPIN defaults).

    ``rot_prob`` is the probability that a rotation is *applied*: SPIN draws a rotation and
    forces it to 0 with probability 0.6, i.e. ``rot_prob = 0.4``. (mmhuman3d's
    ``GetRandomScaleRotation(rot_prob=0.6)`` applies it to 60 %; set 0.6 to match that.)
    The rotation is ``clip(N(0,1) * rot_factor, +-rot_clip_sigmas * rot_factor)`` degrees;
    the scale multiplier ``clip(N(0,1) * scale_factor + 1, 1 -+ scale_factor)`` (> 1 = a
    wider box, i.e. the person looks smaller); colour multipliers U[1 -+ noise_factor] per
    channel. ``bbox_margin`` multiplies the stored box side (1.0: the stored box is already
    padded, as in mmhuman3d).
    """

    img_res: int = 224
    bbox_margin: float = 1.0
    flip_prob: float = 0.5
    noise_factor: float = 0.4
    rot_factor: float = 30.0
    rot_prob: float = 0.4
    rot_clip_sigmas: float = 2.0
    scale_factor: float = 0.25
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # True: leave colour noise and normalisation to `finish_images` on the device (uint8 ``img``)
    uint8_images: bool = False

    def __post_init__(self) -> None:
        checks = [
            ("img_res", self.img_res > 0, "> 0"),
            ("bbox_margin", self.bbox_margin > 0, "> 0"),
            ("flip_prob", 0.0 <= self.flip_prob <= 1.0, "in [0, 1]"),
            ("noise_factor", 0.0 <= self.noise_factor < 1.0, "in [0, 1)"),
            ("rot_factor", self.rot_factor >= 0.0, ">= 0 degrees"),
            ("rot_prob", 0.0 <= self.rot_prob <= 1.0, "in [0, 1]"),
            ("rot_clip_sigmas", self.rot_clip_sigmas >= 0.0, ">= 0"),
            ("scale_factor", 0.0 <= self.scale_factor < 1.0, "in [0, 1)"),
            ("mean", len(self.mean) == 3, "3 values (RGB)"),
            ("std", len(self.std) == 3 and min(self.std) > 0, "3 positive values (RGB)"),
            ("uint8_images", not self.uint8_images or (tuple(self.mean), tuple(self.std)) == (IMAGENET_MEAN, IMAGENET_STD),
             "False with another mean or std than ImageNet's (finish_images normalises with ImageNet's)"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(
                    f"AugmentConfig.{name} must be {expected}; got {getattr(self, name)!r}")


@dataclass(frozen=True)
class AugParams:
    """One sample's augmentation draw; `apply` is a pure function of the sample and these."""

    flip: bool = False
    rot_deg: float = 0.0
    scale_mult: float = 1.0
    channel_mult: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @classmethod
    def identity(cls) -> AugParams:
        return cls()


def sample_augmentation(rng: np.random.Generator, cfg: AugmentConfig) -> AugParams:
    """Draw flip, rotation, scale and colour multipliers. Always makes the same six draws in
    the same order, so a generator's stream stays aligned whatever the outcome."""
    flip = bool(rng.random() < cfg.flip_prob)
    channel_mult = rng.uniform(1.0 - cfg.noise_factor, 1.0 + cfg.noise_factor, size=3)
    rot_limit = cfg.rot_clip_sigmas * cfg.rot_factor
    rot = float(np.clip(rng.standard_normal() * cfg.rot_factor, -rot_limit, rot_limit))
    if rng.random() >= cfg.rot_prob:
        rot = 0.0
    scale = float(np.clip(rng.standard_normal() * cfg.scale_factor + 1.0,
                          1.0 - cfg.scale_factor, 1.0 + cfg.scale_factor))
    return AugParams(flip, rot, scale, tuple(float(c) for c in channel_mult))


class MissingSampleKeyError(KeyError):
    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


def _where(sample: Mapping[str, Any]) -> str:
    path = sample.get("image_path")
    return f"sample '{path}'" if path is not None else "sample"


def _get(sample: Mapping[str, Any], key: str, shape: tuple[int, ...] | None) -> np.ndarray:
    """``sample[key]`` as a float64 array of ``shape`` (None: any), else a clear error."""
    if key not in sample:
        raise MissingSampleKeyError(
            f"{_where(sample)} has no key '{key}'; present: {sorted(sample)}")
    value = np.asarray(sample[key], dtype=np.float64)
    if shape is not None and value.shape != shape:
        raise ValueError(f"{_where(sample)}: '{key}' must have shape {shape}; got {value.shape}")
    return value


def _box_side(sample: Mapping[str, Any]) -> float:
    scale = _get(sample, "scale", None)
    if scale.size not in (1, 2):
        raise ValueError(f"{_where(sample)}: 'scale' must be a box side in px or [S, S]; "
                         f"got shape {scale.shape}")
    side = float(scale.max())
    if not (np.isfinite(side) and side > 0):
        raise ValueError(f"{_where(sample)}: 'scale' must be a positive box side in px; "
                         f"got {scale.tolist()} (0 means the sample has no bounding box)")
    return side


def _check_image(sample: Mapping[str, Any]) -> np.ndarray:
    if "image" not in sample:
        raise MissingSampleKeyError(
            f"{_where(sample)} has no key 'image'; present: {sorted(sample)}")
    image = np.asarray(sample["image"])
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype.kind not in "uif":
        raise ValueError(f"{_where(sample)}: 'image' must be an (H, W, 3) RGB array on the 0-255 "
                         f"scale; got shape {image.shape}, dtype {image.dtype}")
    return image


def normalize_image(image_hwc: np.ndarray, cfg: AugmentConfig,
                    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> torch.Tensor:
    """RGB (R, R, 3) on 0-255 -> float32 (3, R, R): ``(clip(x * colour, 0, 255) / 255 - mean) / std``.

    In place on one float32 copy, made after the (cheap, uint8) transpose: two fused passes
    instead of six temporaries per sample."""
    chw = np.asarray(image_hwc).transpose(2, 0, 1).astype(np.float32)  # astype copies into C order
    if tuple(colour) != (1.0, 1.0, 1.0):
        chw *= np.asarray(colour, np.float32)[:, None, None]
        np.clip(chw, 0.0, 255.0, out=chw)
    std = np.asarray(cfg.std, np.float32)[:, None, None]
    chw *= 1.0 / (255.0 * std)
    chw -= np.asarray(cfg.mean, np.float32)[:, None, None] / std
    return torch.from_numpy(chw)


def finish_images(batch: Any) -> Any:
    """Colour noise and ImageNet normalisation, batched, of every ``img`` left as uint8 by
    ``AugmentConfig.uint8_images`` (with its ``colour`` multipliers), in place in the batch's
    dicts (nested ones too: adaptation pairs); float images pass unchanged. Matches the
    per-sample path: ``(clip(img * colour, 0, 255) / 255 - mean) / std``."""
    if isinstance(batch, Mapping):
        img = batch.get("img")
        if isinstance(img, torch.Tensor) and img.dtype == torch.uint8:
            if "colour" not in batch:
                raise KeyError("a uint8 'img' needs its 'colour' multipliers (AugmentConfig.uint8_images)")
            mean = torch.tensor(IMAGENET_MEAN, device=img.device).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, device=img.device).view(1, 3, 1, 1)
            scaled = (img.float() * batch["colour"].float().view(-1, 3, 1, 1)).clamp_(0.0, 255.0)
            batch["img"] = (scaled / 255.0 - mean) / std
        for value in batch.values():
            if isinstance(value, (Mapping, list, tuple)):
                finish_images(value)
    elif isinstance(batch, (list, tuple)):
        for value in batch:
            finish_images(value)
    return batch


def denormalize_image(img: torch.Tensor, cfg: AugmentConfig) -> np.ndarray:
    """Inverse of `normalize_image`: (3, R, R) tensor -> float32 (R, R, 3) on 0-255."""
    chw = img.detach().cpu().numpy().astype(np.float32)
    mean, std = np.asarray(cfg.mean, np.float32), np.asarray(cfg.std, np.float32)
    return (chw.transpose(1, 2, 0) * std + mean) * 255.0


def _transform_pose(global_orient: np.ndarray, body_pose: np.ndarray, params: AugParams,
                    in_plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if params.rot_deg != 0.0:  # skip the round trip at 0 so angles > pi pass unchanged
        # SciPy's quaternion route: as exact near pi as roma's, without torch's per-call overhead
        global_orient = (Rotation.from_matrix(in_plane) * Rotation.from_rotvec(global_orient)).as_rotvec()
    if params.flip:
        pose = flip_smpl_pose(np.concatenate([global_orient, body_pose]))
        global_orient, body_pose = pose[:3], pose[3:]
    return global_orient, body_pose


def _as_tensor(value: Any) -> Any:
    """Numeric numpy values and python numbers -> tensors; anything else unchanged."""
    if isinstance(value, (bool, int, float)):
        return torch.as_tensor(value)
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in "biuf":
        return torch.from_numpy(np.array(value))
    return value


def apply(sample: Mapping[str, Any], params: AugParams, cfg: AugmentConfig,
          convention: str = DEFAULT_CONVENTION) -> dict[str, Any]:
    """Crop, augment and normalise ``sample`` with ``params`` (deterministic; see module doc).

    Returns ``img`` (3, R, R) float32; ``keypoints2d`` (J, 3) normalised xy + conf;
    ``keypoints2d_crop`` (J, 3) crop px + conf; ``keypoints3d`` (J, 4); ``smpl_global_orient``
    (3); ``smpl_body_pose`` (69); ``smpl_betas`` (10); ``has_smpl`` (float 0/1);
    ``crop_affine`` (2, 3): input px -> output crop px, flip included; ``is_flipped`` (bool);
    ``rot_deg`` (the rotation of the crop before any flip); plus the sample's other keys.
    """
    res = cfg.img_res
    n_joints = num_joints(convention)
    image = _check_image(sample)
    center = _get(sample, "center", (2,))
    kp2d = _get(sample, "keypoints2d", (n_joints, 3))
    kp3d = _get(sample, "keypoints3d", (n_joints, 4))
    global_orient = _get(sample, "smpl_global_orient", (3,))
    body_pose = _get(sample, "smpl_body_pose", (69,))
    betas = _get(sample, "smpl_betas", (10,))
    has_smpl = float(_get(sample, "has_smpl", ()))
    side = _box_side(sample) * cfg.bbox_margin * params.scale_mult

    affine, _ = crop_affine(center, side, params.rot_deg, res)
    if params.flip:
        affine = compose_affines(mirror_affine(res), affine)
    crop = warp_image_uint8(image, affine, res) if image.dtype == np.uint8 else warp_image(image, affine, res)
    if cfg.uint8_images and crop.dtype != np.uint8:
        raise ValueError(f"{_where(sample)}: uint8_images needs a uint8 'image'; got {image.dtype}")

    in_plane = rotation_about_z(np.asarray(-params.rot_deg, np.float64), degrees=True)
    kp2d_out = np.concatenate([transform_points(affine, kp2d[:, :2]), kp2d[:, 2:]], axis=1)
    kp3d_out = np.concatenate([kp3d[:, :3] @ in_plane.T, kp3d[:, 3:]], axis=1)
    if params.flip:  # the affine mirrored the positions; now the labels follow the body
        perm = flip_permutation(convention)
        kp2d_out = kp2d_out[perm]
        kp3d_out = kp3d_out[perm] * np.array([-1.0, 1.0, 1.0, 1.0])
    kp2d_out[kp2d_out[:, 2] <= 0] = 0.0
    kp3d_out[kp3d_out[:, 3] <= 0] = 0.0
    kp2d_normalised = np.concatenate(
        [crop_pixels_to_normalized(kp2d_out[:, :2], res), kp2d_out[:, 2:]], axis=1)
    kp2d_normalised[kp2d_out[:, 2] <= 0] = 0.0
    global_orient, body_pose = _transform_pose(global_orient, body_pose, params, in_plane)

    out = {key: _as_tensor(value) for key, value in sample.items() if key != "image"}
    f32 = torch.float32
    if cfg.uint8_images:
        out.update(img=torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))),
                   colour=torch.tensor(params.channel_mult, dtype=torch.float32))
    else:
        out["img"] = normalize_image(crop, cfg, params.channel_mult)
    out.update(
        keypoints2d=torch.as_tensor(kp2d_normalised, dtype=f32),
        keypoints2d_crop=torch.as_tensor(kp2d_out, dtype=f32),
        keypoints3d=torch.as_tensor(kp3d_out, dtype=f32),
        smpl_global_orient=torch.as_tensor(global_orient, dtype=f32),
        smpl_body_pose=torch.as_tensor(body_pose, dtype=f32),
        smpl_betas=torch.as_tensor(betas, dtype=f32),
        has_smpl=torch.tensor(has_smpl, dtype=f32),
        crop_affine=torch.as_tensor(affine, dtype=f32),
        is_flipped=torch.tensor(params.flip),
        rot_deg=torch.tensor(params.rot_deg, dtype=f32),
    )
    if "has_keypoints3d" in sample:
        out["has_keypoints3d"] = torch.tensor(float(sample["has_keypoints3d"]), dtype=f32)
    return out


class TrainTransform:
    """Random augmentation with reproducible draws: sample ``index`` in ``epoch`` always gets
    the generator ``np.random.default_rng([seed, epoch, index])``, whichever DataLoader
    worker runs it. Call `set_epoch` each epoch, or pass ``epoch`` explicitly (with
    persistent workers the copies in the workers do not see `set_epoch`)."""

    def __init__(self, cfg: AugmentConfig = AugmentConfig(), convention: str = DEFAULT_CONVENTION,
                 seed: int = 0):
        num_joints(convention)  # fail now on an unknown convention
        if seed < 0:
            raise ValueError(f"seed must be >= 0; got {seed}")
        self.cfg, self.convention, self.seed, self.epoch = cfg, convention, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def params_for(self, index: int, epoch: int | None = None) -> AugParams:
        epoch = self.epoch if epoch is None else int(epoch)
        if index < 0 or epoch < 0:
            raise ValueError(f"index and epoch must be >= 0; got index={index}, epoch={epoch}")
        return sample_augmentation(np.random.default_rng([self.seed, epoch, int(index)]), self.cfg)

    def __call__(self, sample: Mapping[str, Any], index: int,
                 epoch: int | None = None) -> dict[str, Any]:
        return apply(sample, self.params_for(index, epoch), self.cfg, self.convention)


class TestTransform:
    """Deterministic crop and normalisation: no flip, rotation, rescale or colour noise
    (only ``img_res``, ``bbox_margin``, ``mean`` and ``std`` of the config are used)."""

    __test__ = False  # not a pytest class despite the name

    def __init__(self, cfg: AugmentConfig = AugmentConfig(), convention: str = DEFAULT_CONVENTION):
        num_joints(convention)
        self.cfg, self.convention = cfg, convention

    def __call__(self, sample: Mapping[str, Any], index: int | None = None) -> dict[str, Any]:
        return apply(sample, AugParams.identity(), self.cfg, self.convention)


def without_augmentation(cfg: AugmentConfig) -> AugmentConfig:
    """The same crop geometry and normalisation with every augmentation switched off."""
    return dataclasses.replace(cfg, flip_prob=0.0, noise_factor=0.0, rot_factor=0.0,
                               scale_factor=0.0)

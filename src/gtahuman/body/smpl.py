"""The SMPL body model wrapper (smplx inside, no chumpy), plain and gendered.

`BodyModel` builds ``smplx.SMPL`` from arrays loaded by `model_files` (so original chumpy
pickles, npz conversions and the toy model all work) and adds the two extra regressors
of ``body.model_dir``. One forward pass returns a `BodyOutput` with

- ``vertices`` (B, 6890, 3) and ``joints`` (B, 24, 3), the SMPL kinematic joints;
- ``joints54`` (B, 54, 3) in mmhuman3d's ``smpl_54`` order: the 24 kinematic joints, the
  21 points smplx picks from vertices (nose, eyes, ears, toes, heels, fingertips) and the
  9 joints of J_regressor_extra;
- ``joints_h36m`` (B, 17, 3) from J_regressor_h36m (the evaluation joints).

Poses come as axis-angle (body_pose (B, 69) or (B, 23, 3), global_orient (B, 3)) or as
rotation matrices (body_pose (B, 23, 3, 3), global_orient (B, 3, 3) or (B, 1, 3, 3)).
Everything is differentiable. Gender codes follow mmhuman3d: 0 male, 1 female, -1 neutral.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import smplx
import torch
from torch import nn

from gtahuman.body import conventions
from gtahuman.body.assets import GENDERS, BodyAssetError, BodyAssets, check_body_model_dir
from gtahuman.body.model_files import TOY_MARKER_KEY, load_smpl_model_file, to_smplx_struct
from gtahuman.body.rotations import axis_angle_to_matrix

GENDER_CODES = {"male": 0, "female": 1, "neutral": -1}


def gender_codes(genders: Iterable[str], mapping: str = "strict") -> torch.Tensor:
    """Gender strings -> codes. ``strict``: male/m, female/f, neutral/n; ``3dpw``: mmhuman3d's
    3DPW rule, 'm' -> male and anything else -> female."""
    codes = []
    for g in genders:
        g = str(g).lower()
        if mapping == "3dpw":
            codes.append(0 if g == "m" else 1)
            continue
        full = {"m": "male", "f": "female", "n": "neutral"}.get(g, g)
        if full not in GENDER_CODES:
            raise ValueError(f"unknown gender '{g}'; expected one of {sorted(GENDER_CODES)}")
        codes.append(GENDER_CODES[full])
    return torch.tensor(codes, dtype=torch.long)


@dataclass
class BodyOutput:
    vertices: torch.Tensor  # (B, 6890, 3)
    joints: torch.Tensor  # (B, 24, 3) SMPL kinematic joints
    joints54: torch.Tensor  # (B, 54, 3) smpl_54
    joints_h36m: torch.Tensor  # (B, 17, 3) from J_regressor_h36m

    def keypoints(self, convention: str, approximate: bool = False) -> torch.Tensor:
        """Joints in ``convention`` (B, J, 3), matched by name; joints the body model does not
        produce are zero (see `keypoints_mask`). ``h36m`` uses the H36M regressor, every other
        convention the smpl_54 joints (as mmhuman3d does)."""
        return self.keypoints_and_mask(convention, approximate)[0]

    def keypoints_mask(self, convention: str, approximate: bool = False) -> torch.Tensor:
        """(J,) uint8: which joints of ``convention`` the body model fills."""
        return self.keypoints_and_mask(convention, approximate)[1]

    def keypoints_and_mask(self, convention: str, approximate: bool = False
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        if convention == "h36m":
            return self.joints_h36m, torch.ones(17, dtype=torch.uint8, device=self.joints54.device)
        return conventions.convert_keypoints(self.joints54, "smpl_54", convention, approximate)


def _as_rotmats(pose: torch.Tensor, num_joints: int, what: str) -> torch.Tensor:
    """Axis-angle or rotation matrices of ``num_joints`` joints -> (B, num_joints, 3, 3)."""
    shape = tuple(pose.shape)
    if pose.ndim >= 3 and shape[-2:] == (3, 3) and pose[0].numel() == num_joints * 9:
        return pose.reshape(shape[0], num_joints, 3, 3)
    if pose.ndim >= 2 and pose[0].numel() == num_joints * 3:
        return axis_angle_to_matrix(pose.reshape(shape[0], num_joints, 3))
    raise ValueError(
        f"{what} must be axis-angle (B, {num_joints * 3}) / (B, {num_joints}, 3) or rotation "
        f"matrices (B, {num_joints}, 3, 3); got {shape}")


def _load_regressor(path: Path, rows: int) -> torch.Tensor:
    array = np.load(path, allow_pickle=False)
    if array.shape != (rows, 6890):
        raise BodyAssetError(f"{path}: shape {array.shape}, expected ({rows}, 6890)")
    return torch.as_tensor(array, dtype=torch.float32)


class BodyModel(nn.Module):
    """SMPL of one gender with smpl_54 and H36M joints. ``is_toy`` says whether its files
    are the generated toy model (then no number it produces is an SMPL result)."""

    def __init__(self, model_dir: str | Path, gender: str = "neutral", num_betas: int = 10,
                 assets: BodyAssets | None = None) -> None:
        super().__init__()
        if gender not in GENDERS:
            raise ValueError(f"unknown gender '{gender}'; expected one of {GENDERS}")
        assets = assets or check_body_model_dir(model_dir, genders=(gender,), load_models=False)
        arrays = load_smpl_model_file(assets.model_file(gender))
        model_is_toy = TOY_MARKER_KEY in arrays
        if model_is_toy != assets.is_toy:
            raise BodyAssetError(
                f"{assets.model_file(gender)} is {'a toy' if model_is_toy else 'a real SMPL'} "
                f"model but the regressors/mean params in {assets.model_dir} are "
                f"{'toy' if assets.is_toy else 'real'} files; use one complete set")
        if not 1 <= num_betas <= arrays["shapedirs"].shape[2]:
            raise ValueError(f"num_betas={num_betas} but {assets.model_file(gender)} has "
                             f"{arrays['shapedirs'].shape[2]} shape components")
        self.gender, self.num_betas, self.is_toy = gender, num_betas, model_is_toy
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a note on 10 betas
            self.smpl = smplx.SMPL(
                model_path=str(assets.model_file(gender)), data_struct=to_smplx_struct(arrays),
                num_betas=num_betas, gender=gender, create_betas=False,
                create_global_orient=False, create_body_pose=False, create_transl=False)
        self.faces = np.asarray(arrays["f"], dtype=np.int64)
        self.parents = np.asarray(self.smpl.parents.numpy(), dtype=np.int64)
        self.register_buffer("J_regressor_extra", _load_regressor(assets.j_regressor_extra, 9))
        self.register_buffer("J_regressor_h36m", _load_regressor(assets.j_regressor_h36m, 17))

    def forward(self, betas: torch.Tensor, body_pose: torch.Tensor, global_orient: torch.Tensor,
                transl: torch.Tensor | None = None) -> BodyOutput:
        batch = body_pose.shape[0]
        dtype = self.smpl.v_template.dtype
        body = _as_rotmats(body_pose.to(dtype), 23, "body_pose")
        root = _as_rotmats(global_orient.to(dtype), 1, "global_orient")
        if root.shape[0] != batch:
            raise ValueError(f"global_orient has batch {root.shape[0]}, body_pose {batch}")
        betas = betas.to(dtype)
        if betas.ndim != 2 or betas.shape[1] != self.num_betas or betas.shape[0] not in (1, batch):
            raise ValueError(f"betas must be ({batch}, {self.num_betas}); got {tuple(betas.shape)}")
        out = self.smpl(betas=betas.expand(batch, -1), body_pose=body, global_orient=root,
                        pose2rot=False)
        vertices = out.vertices
        extra = torch.einsum("jv,bvc->bjc", self.J_regressor_extra, vertices)
        h36m = torch.einsum("jv,bvc->bjc", self.J_regressor_h36m, vertices)
        joints54 = torch.cat([out.joints, extra], dim=1)
        if transl is not None:
            shift = transl.to(dtype).reshape(batch, 1, 3)
            vertices, joints54, h36m = vertices + shift, joints54 + shift, h36m + shift
        return BodyOutput(vertices=vertices, joints=joints54[:, :24], joints54=joints54,
                          joints_h36m=h36m)


class GenderedBodyModel(nn.Module):
    """Neutral, male and female SMPL; each sample is evaluated with its own gender code
    (0 male, 1 female, -1 neutral), in one batched call per gender present."""

    def __init__(self, model_dir: str | Path, num_betas: int = 10) -> None:
        super().__init__()
        assets = check_body_model_dir(model_dir, genders=GENDERS, load_models=False)
        self.models = nn.ModuleDict(
            {g: BodyModel(model_dir, g, num_betas, assets=assets) for g in GENDERS})
        self.is_toy = assets.is_toy
        self.faces = self.models["neutral"].faces
        self.parents = self.models["neutral"].parents

    def forward(self, betas: torch.Tensor, body_pose: torch.Tensor, global_orient: torch.Tensor,
                gender: torch.Tensor, transl: torch.Tensor | None = None) -> BodyOutput:
        gender = torch.as_tensor(gender, device=body_pose.device).reshape(-1)
        batch = body_pose.shape[0]
        if gender.shape[0] != batch:
            raise ValueError(f"gender has {gender.shape[0]} codes for a batch of {batch}")
        bad = ~torch.isin(gender, torch.tensor([-1, 0, 1], device=gender.device))
        if bad.any():
            raise ValueError(f"gender codes must be 0 (male), 1 (female) or -1 (neutral); "
                             f"got {sorted(set(gender[bad].tolist()))}")
        betas = betas.expand(batch, -1) if betas.shape[0] == 1 else betas
        pieces, order = [], []
        for name, code in GENDER_CODES.items():
            idx = torch.nonzero(gender == code).reshape(-1)
            if idx.numel() == 0:
                continue
            pieces.append(self.models[name](
                betas[idx], body_pose[idx], global_orient[idx],
                None if transl is None else transl[idx]))
            order.append(idx)
        inverse = torch.argsort(torch.cat(order))  # back to the input order
        gather = lambda key: torch.cat([getattr(p, key) for p in pieces])[inverse]  # noqa: E731
        return BodyOutput(vertices=gather("vertices"), joints=gather("joints"),
                          joints54=gather("joints54"), joints_h36m=gather("joints_h36m"))

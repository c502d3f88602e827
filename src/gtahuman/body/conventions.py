"""Keypoint conventions: the name registry, name-based conversion and left/right flipping.

A convention is an ordered tuple of joint names (tables in `joint_names.py`, mmhuman3d
naming). Keypoints move between conventions **by name only**: a destination joint is filled
from the source joint with the same name, or, with ``approximate=True``, from a member of
its equivalence group (e.g. ``pelvis_openpose`` from ``pelvis``). Everything else is zero
with mask 0. Arrays are ``(..., J, C)``, numpy or torch; the last channel, if it is a
confidence, is copied like any other.
"""
from __future__ import annotations

from functools import lru_cache
from typing import TypeVar

import numpy as np
import torch

from gtahuman.body.joint_names import APPROXIMATE_GROUPS, BUILTIN_CONVENTIONS

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


class UnknownConventionError(KeyError):
    """A convention name that is not registered; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


class _ConventionTable(dict):
    """``name -> tuple of joint names``; a missing name raises with the valid choices."""

    def __missing__(self, name: str) -> tuple[str, ...]:
        raise UnknownConventionError(
            f"unknown keypoint convention '{name}'; valid conventions: {', '.join(sorted(self))}"
        )


CONVENTIONS: dict[str, tuple[str, ...]] = _ConventionTable(BUILTIN_CONVENTIONS)

# SPIN's evaluation subsets of the 17 J_regressor_h36m joints (h36m convention order):
# J14 = R ankle, R knee, R hip, L hip, L knee, L ankle, R wrist, R elbow, R shoulder,
#       L shoulder, L elbow, L wrist, neck (thorax), head top -- the LSP order;
# J17 = J14 followed by pelvis, spine and (H36M) head.
H36M_TO_J14: tuple[int, ...] = (6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10)
H36M_TO_J17: tuple[int, ...] = H36M_TO_J14 + (0, 7, 9)


def register_convention(name: str, joint_names: list[str] | tuple[str, ...]) -> None:
    """Add a new convention. Names must be unique; existing conventions cannot be replaced
    (cached mappings rely on tables never changing)."""
    if name in CONVENTIONS:
        raise ValueError(f"keypoint convention '{name}' is already registered")
    names = tuple(joint_names)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"convention '{name}' repeats joint names: {duplicates}")
    CONVENTIONS[name] = names


def get_names(convention: str) -> list[str]:
    """Joint names of ``convention`` in order (a fresh list, safe to modify)."""
    return list(CONVENTIONS[convention])


def num_joints(convention: str) -> int:
    return len(CONVENTIONS[convention])


def joint_index(convention: str, name: str) -> int:
    """Index of joint ``name`` in ``convention``; KeyError if it has no such joint."""
    names = CONVENTIONS[convention]
    if name not in names:
        raise KeyError(f"convention '{convention}' has no joint named '{name}'")
    return names.index(name)


def _alternatives(name: str) -> tuple[str, ...]:
    """Other names of ``name``'s equivalence group, in group order (empty if none)."""
    for group in APPROXIMATE_GROUPS:
        if name in group:
            return tuple(member for member in group if member != name)
    return ()


@lru_cache(maxsize=None)
def mapping_indices(
    src: str, dst: str, approximate: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs such that ``out[..., dst_idx, :] = kps[..., src_idx, :]``.

    Returns read-only int64 arrays ``(dst_idx, src_idx)``, ``dst_idx`` ascending. An exact
    name match always wins over an approximate one.
    """
    src_names, dst_names = CONVENTIONS[src], CONVENTIONS[dst]
    src_position = {name: i for i, name in enumerate(src_names)}
    dst_idx, src_idx = [], []
    for j, name in enumerate(dst_names):
        candidates = (name,) + (_alternatives(name) if approximate else ())
        for candidate in candidates:
            if candidate in src_position:
                dst_idx.append(j)
                src_idx.append(src_position[candidate])
                break
    pair = (np.asarray(dst_idx, dtype=np.int64), np.asarray(src_idx, dtype=np.int64))
    for array in pair:
        array.flags.writeable = False
    return pair


@lru_cache(maxsize=None)
def _torch_mapping(src: str, dst: str, approximate: bool) -> tuple[torch.Tensor, torch.Tensor]:
    dst_idx, src_idx = mapping_indices(src, dst, approximate)
    return torch.from_numpy(dst_idx.copy()), torch.from_numpy(src_idx.copy())


def convert_keypoints(
    kps: ArrayT,
    src: str,
    dst: str,
    approximate: bool = False,
    mask: ArrayT | None = None,
) -> tuple[ArrayT, ArrayT]:
    """Convert keypoints ``(..., J_src, C)`` from convention ``src`` to ``dst`` by joint name.

    ``mask`` marks which source joints are valid: shape ``(J_src,)`` or ``(..., J_src)``;
    None means all valid. Returns ``(out (..., J_dst, C), out_mask)`` of the input's array
    type; ``out_mask`` is uint8, shaped like ``mask`` with J_dst joints (``(J_dst,)`` when
    ``mask`` is None), 1 only where a joint was copied from a valid source joint.
    """
    n_src = num_joints(src)
    if kps.ndim < 2 or kps.shape[-2] != n_src:
        raise ValueError(
            f"keypoints of convention '{src}' must have shape (..., {n_src}, C); "
            f"got {tuple(kps.shape)}"
        )
    if mask is not None and (mask.ndim < 1 or mask.shape[-1] != n_src):
        raise ValueError(
            f"mask for convention '{src}' must have shape (..., {n_src}); got {tuple(mask.shape)}"
        )
    n_dst = num_joints(dst)
    out_shape = tuple(kps.shape[:-2]) + (n_dst, kps.shape[-1])

    if isinstance(kps, torch.Tensor):
        dst_idx, src_idx = (t.to(kps.device) for t in _torch_mapping(src, dst, approximate))
        out = kps.new_zeros(out_shape)
        # index_select/index_copy: ~20x faster than ellipsis advanced indexing on CPU.
        out.index_copy_(-2, dst_idx, kps.index_select(-2, src_idx))
        if mask is None:
            src_mask = torch.ones(n_src, dtype=torch.uint8, device=kps.device)
        else:
            src_mask = torch.as_tensor(mask, device=kps.device).to(torch.uint8)
        out_mask = src_mask.new_zeros(tuple(src_mask.shape[:-1]) + (n_dst,))
        out_mask.index_copy_(-1, dst_idx, src_mask.index_select(-1, src_idx))
        return out, out_mask

    dst_np, src_np = mapping_indices(src, dst, approximate)
    kps = np.asarray(kps)
    out = np.zeros(out_shape, dtype=kps.dtype)
    out[..., dst_np, :] = kps[..., src_np, :]
    src_mask = np.ones(n_src, np.uint8) if mask is None else np.asarray(mask).astype(np.uint8)
    out_mask = np.zeros(src_mask.shape[:-1] + (n_dst,), dtype=np.uint8)
    out_mask[..., dst_np] = src_mask[..., src_np]
    return out, out_mask


# --- left/right flipping -----------------------------------------------------------------
_SIDE_SWAPS = (("left_", "right_"), ("_L_", "_R_"))  # mmhuman3d names; GTA game bones


def _mirror_name(name: str) -> str:
    """The name with its side swapped (``left_x`` <-> ``right_x``, ``gta_IK_L_Hand`` <->
    ``gta_IK_R_Hand``); unchanged if it names no side."""
    for left, right in _SIDE_SWAPS:
        if left in name:
            return name.replace(left, right, 1)
        if right in name:
            return name.replace(right, left, 1)
    return name


@lru_cache(maxsize=None)
def _flip_permutation_cached(convention: str) -> np.ndarray:
    names = CONVENTIONS[convention]
    position = {name: i for i, name in enumerate(names)}
    # A side-named joint without a partner in the table maps to itself.
    perm = np.array([position.get(_mirror_name(n), i) for i, n in enumerate(names)], np.int64)
    perm.flags.writeable = False
    return perm


def flip_permutation(convention: str) -> np.ndarray:
    """``perm`` such that ``kps[..., perm, :]`` swaps every left joint with its right twin.

    Mirroring keypoints = apply ``perm`` and negate x (3D) or map x -> W - 1 - x (2D).
    The permutation is an involution. Returned array is read-only.
    """
    return _flip_permutation_cached(convention)


def flip_keypoints(kps: ArrayT, convention: str, image_width: float | None = None) -> ArrayT:
    """Mirror keypoints ``(..., J, C)`` left-right: swap sides, then mirror x (channel 0).

    With ``image_width`` (2D pixels of a full image) x -> W - 1 - x, as mmhuman3d's flip;
    without it (3D, or centred coordinates) x -> -x. Other channels (y, z, confidence)
    are unchanged.
    """
    if kps.ndim < 2 or kps.shape[-2] != num_joints(convention):
        raise ValueError(f"keypoints of convention '{convention}' must have shape "
                         f"(..., {num_joints(convention)}, C); got {tuple(kps.shape)}")
    perm = flip_permutation(convention)
    if isinstance(kps, torch.Tensor):
        flipped = kps[..., torch.from_numpy(perm.copy()).to(kps.device), :].clone()
    else:
        flipped = np.array(kps[..., perm, :])
    x = flipped[..., 0]
    flipped[..., 0] = -x if image_width is None else image_width - 1 - x
    return flipped


# Per-joint permutation of the 24 SMPL pose joints (SPIN's SMPL_JOINTS_FLIP_PERM).
SMPL_POSE_FLIP_PERMUTATION: np.ndarray = flip_permutation("smpl")
_SMPL_POSE_FLIP_SIGNS = (1.0, -1.0, -1.0)


def flip_smpl_pose(pose_aa: ArrayT) -> ArrayT:
    """Mirror an SMPL pose across the x = 0 plane (image left-right flip).

    ``pose_aa`` is axis-angle ``(..., 24, 3)`` or ``(..., 72)``, global orient first.
    Joints swap sides and every axis-angle (root included) has y and z negated, because
    mirroring by M = diag(-1, 1, 1) maps a rotation R to M R M, whose axis-angle is
    (x, -y, -z). The output has the input's shape.
    """
    flat = pose_aa.shape[-1] == 72
    pose = pose_aa.reshape(*pose_aa.shape[:-1], 24, 3) if flat else pose_aa
    if pose.ndim < 2 or tuple(pose.shape[-2:]) != (24, 3):
        raise ValueError(
            f"SMPL pose must have shape (..., 24, 3) or (..., 72); got {tuple(pose_aa.shape)}"
        )
    if isinstance(pose, torch.Tensor):
        perm = torch.from_numpy(SMPL_POSE_FLIP_PERMUTATION.copy()).to(pose.device)
        signs = torch.tensor(_SMPL_POSE_FLIP_SIGNS, dtype=pose.dtype, device=pose.device)
    else:
        perm = SMPL_POSE_FLIP_PERMUTATION
        signs = np.asarray(_SMPL_POSE_FLIP_SIGNS, dtype=pose.dtype)
    flipped = pose[..., perm, :] * signs
    return flipped.reshape(pose_aa.shape) if flat else flipped

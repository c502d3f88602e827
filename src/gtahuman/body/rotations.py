"""Rotation conversions, batched over any leading dimensions (torch; numpy in -> numpy out).

Axis-angle is used at the boundaries (files, SMPL parameters), rotation matrices and the
6D representation inside models. The 6D layout is **SPIN's**: the six numbers are the first
two columns of R read row-major, ``(r00, r01, r10, r11, r20, r21)``; i.e. reshape to
``(3, 2)`` and the columns are a1, a2. (HMR 2.0 uses column-major ``(col1, col2)`` instead;
a mean-params file must be paired with the layout it was written in.)

All functions keep the input dtype (float32 or float64) and device.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import roma
import torch

Array = torch.Tensor | np.ndarray

# Gram-Schmidt divides by column norms; this guards an all-zero column (as F.normalize).
_NORM_EPS = 1e-12


def _from_numpy(x: np.ndarray) -> torch.Tensor:
    # torch.from_numpy needs a writable, positively strided array; copy only if not.
    return torch.from_numpy(np.require(x, requirements=["C", "W"]))


def _torch_io(fn: Callable[..., torch.Tensor]) -> Callable[..., Array]:
    """Let ``fn`` accept numpy arrays too, returning numpy when the first input was numpy."""

    def wrapper(x: Array, *args, **kwargs):
        if isinstance(x, np.ndarray):
            args = tuple(_from_numpy(a) if isinstance(a, np.ndarray) else a for a in args)
            return fn(_from_numpy(x), *args, **kwargs).numpy()
        return fn(x, *args, **kwargs)

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


def _check_last_dims(x: torch.Tensor, dims: tuple[int, ...], what: str) -> None:
    if x.ndim < len(dims) or tuple(x.shape[-len(dims):]) != dims:
        raise ValueError(f"{what} must have shape (..., {', '.join(map(str, dims))}); "
                         f"got {tuple(x.shape)}")


@_torch_io
def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Axis-angle ``(..., 3)`` (direction = axis, norm = angle in radians) -> ``(..., 3, 3)``.

    Rodrigues' formula (roma); below 1e-6 rad a first-order expansion keeps the value and
    its gradient finite at the zero rotation, where SMPL poses often start.
    """
    _check_last_dims(axis_angle, (3,), "axis-angle")
    return roma.rotvec_to_rotmat(axis_angle)


@_torch_io
def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrix ``(..., 3, 3)`` -> axis-angle ``(..., 3)`` with angle in [0, pi].

    Goes through the unit quaternion (roma), which stays accurate near angle pi where the
    trace formula breaks down. At exactly pi the sign of the axis is arbitrary.
    """
    _check_last_dims(matrix, (3, 3), "rotation matrix")
    return roma.rotmat_to_rotvec(matrix)


@_torch_io
def rot6d_to_matrix(rot6d: torch.Tensor) -> torch.Tensor:
    """SPIN-layout 6D ``(..., 6)`` -> rotation matrix ``(..., 3, 3)`` by Gram-Schmidt.

    a1 = (x0, x2, x4), a2 = (x1, x3, x5); b1 = a1/|a1|, b2 = normalise(a2 - (b1.a2) b1),
    b3 = b1 x b2; R = [b1 b2 b3] as columns. Any input with non-parallel columns gives an
    orthonormal matrix with determinant +1.
    """
    _check_last_dims(rot6d, (6,), "6D rotation")
    columns = rot6d.reshape(*rot6d.shape[:-1], 3, 2)  # row-major: columns a1, a2
    return roma.special_gramschmidt(columns, epsilon=_NORM_EPS)


@_torch_io
def matrix_to_rot6d(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrix ``(..., 3, 3)`` -> SPIN-layout 6D ``(r00, r01, r10, r11, r20, r21)``."""
    _check_last_dims(matrix, (3, 3), "rotation matrix")
    return matrix[..., :, :2].reshape(*matrix.shape[:-2], 6)


def axis_angle_to_rot6d(axis_angle: Array) -> Array:
    """Axis-angle ``(..., 3)`` -> SPIN-layout 6D ``(..., 6)``."""
    return matrix_to_rot6d(axis_angle_to_matrix(axis_angle))


def rot6d_to_axis_angle(rot6d: Array) -> Array:
    """SPIN-layout 6D ``(..., 6)`` -> axis-angle ``(..., 3)``."""
    return matrix_to_axis_angle(rot6d_to_matrix(rot6d))


def _angle_tensor(angle: Array | float, like: torch.Tensor | None, dtype) -> torch.Tensor:
    if isinstance(angle, torch.Tensor):
        return angle if dtype is None else angle.to(dtype)
    if like is not None:
        return torch.as_tensor(angle, dtype=dtype or like.dtype, device=like.device)
    return torch.as_tensor(angle, dtype=dtype or torch.get_default_dtype())


def rotation_about_axis(
    axis: Array, angle: Array | float, degrees: bool = False, dtype: torch.dtype | None = None
) -> Array:
    """Rotation by ``angle`` about the (not necessarily unit) ``axis`` -> ``(..., 3, 3)``.

    ``axis`` is ``(3,)`` or ``(..., 3)`` and ``angle`` is a scalar or ``(...)``; they
    broadcast. Positive angles turn counter-clockwise looking down the axis (right-hand
    rule). Returns numpy if ``axis`` is numpy.
    """
    is_numpy = isinstance(axis, np.ndarray)
    axis_t = _from_numpy(axis) if is_numpy else axis
    if isinstance(angle, np.ndarray):
        angle = _from_numpy(angle)
    _check_last_dims(axis_t, (3,), "rotation axis")
    angle_t = _angle_tensor(angle, axis_t, dtype)
    if degrees:
        angle_t = angle_t * (math.pi / 180.0)
    unit = axis_t.to(angle_t.dtype) / torch.linalg.norm(axis_t.to(angle_t.dtype), dim=-1,
                                                        keepdim=True)
    rotation = axis_angle_to_matrix(unit * angle_t[..., None])
    return rotation.numpy() if is_numpy else rotation


def rotation_about_z(
    angle: Array | float, degrees: bool = False, dtype: torch.dtype | None = None
) -> Array:
    """In-plane (camera z axis) rotation ``[[c, -s, 0], [s, c, 0], [0, 0, 1]]``, ``(..., 3, 3)``.

    ``angle`` is a scalar or ``(...)``, radians unless ``degrees``. A python float gives the
    default torch dtype; numpy in gives numpy out. Crop augmentation by r degrees rotates 3D
    targets and the global orient with ``rotation_about_z(-r, degrees=True)``.
    """
    is_numpy = isinstance(angle, np.ndarray)
    angle_t = _angle_tensor(_from_numpy(angle) if is_numpy else angle, None, dtype)
    if degrees:
        angle_t = angle_t * (math.pi / 180.0)
    cos, sin = torch.cos(angle_t), torch.sin(angle_t)
    zero, one = torch.zeros_like(angle_t), torch.ones_like(angle_t)
    rotation = torch.stack(
        [cos, -sin, zero, sin, cos, zero, zero, zero, one], dim=-1
    ).reshape(*angle_t.shape, 3, 3)
    return rotation.numpy() if is_numpy else rotation


@_torch_io
def geodesic_angle(matrix_a: torch.Tensor, matrix_b: torch.Tensor) -> torch.Tensor:
    """Angle in radians, in [0, pi], of the rotation taking ``matrix_a`` to ``matrix_b``.

    Uses atan2(sin, cos) of the relative rotation, accurate over the whole range (an arccos
    of the trace loses precision near 0 and pi). Shapes ``(..., 3, 3)`` broadcast.
    """
    _check_last_dims(matrix_a, (3, 3), "rotation matrix")
    _check_last_dims(matrix_b, (3, 3), "rotation matrix")
    relative = matrix_a.transpose(-1, -2) @ matrix_b
    skew = relative - relative.transpose(-1, -2)  # = 2 sin(angle) [axis]_x
    axis_sin = torch.stack([skew[..., 2, 1], skew[..., 0, 2], skew[..., 1, 0]], dim=-1)
    sin = 0.5 * torch.linalg.norm(axis_sin, dim=-1)
    cos = 0.5 * (relative.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0)
    return torch.atan2(sin, cos)

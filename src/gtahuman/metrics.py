"""3D pose and shape errors: batched pure functions (the torchmetrics classes that accumulate
them across batches and processes are `gtahuman.metric_modules`).

Pure functions take points in metres, shaped (B, J, 3), and return per-sample values in the
input unit (errors) or in percent (PCK, AUC); `orientation_error_deg` takes rotation matrices
and returns degrees. Half-precision inputs are computed in float32;
other float dtypes are kept. Which joints, which root and which units a benchmark uses is the
business of `gtahuman.evaluation` (named protocols); this module only does arithmetic.

Masks are (B, J) and a joint is valid where mask > 0. A per-sample mean over no valid joint
is NaN.
"""
from __future__ import annotations

import torch
from torch import Tensor

from gtahuman.body.rotations import geodesic_angle

__all__ = [
    "acceleration",
    "acceleration_error",
    "auc",
    "joint_errors",
    "mpjpe",
    "orientation_error_deg",
    "pa_mpjpe",
    "pck",
    "pve",
    "sequence_acceleration_error",
    "similarity_procrustes",
]

AUC_MAX_THRESHOLD = 0.15  # metres: AUC over linspace(0, 150 mm, 31), as mmhuman3d's 3DAUC
AUC_NUM_THRESHOLDS = 31


def _as_float(x: Tensor, name: str) -> Tensor:
    if not torch.is_floating_point(x):
        raise TypeError(f"{name}: expected a floating-point tensor, got {x.dtype}")
    # SVD and norms are not implemented (or too coarse) in half precision.
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def check_pair(pred: Tensor, gt: Tensor) -> tuple[Tensor, Tensor]:
    if pred.ndim != 3 or pred.shape[-1] != 3 or pred.shape != gt.shape:
        raise ValueError(
            f"pred and gt: expected equal shapes (B, J, 3), got {tuple(pred.shape)} and {tuple(gt.shape)}"
        )
    pred = _as_float(pred, "pred")
    return pred, _as_float(gt, "gt").to(pred.dtype)


def joint_weights(mask: Tensor | None, pred: Tensor) -> Tensor | None:
    """(B, J) mask -> (B, J) 0/1 weights in pred's dtype, or None for 'all valid'."""
    if mask is None:
        return None
    if mask.shape != pred.shape[:2]:
        raise ValueError(f"mask: expected shape {tuple(pred.shape[:2])} (B, J), got {tuple(mask.shape)}")
    return (mask > 0).to(pred.dtype)


def kabsch_rotation(k: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For cross-covariances K = Σ_j x_j y_jᵀ (B, 3, 3): the proper rotation R = V Z Uᵀ that best
    maps the x onto the y (SVD K = U S Vᵀ, Z = diag(1, 1, sign(det(U Vᵀ))): never a reflection),
    with the singular values S and that sign (for the similarity's scale)."""
    u, singular, vh = torch.linalg.svd(k)
    sign = torch.where(torch.linalg.det(u @ vh) < 0, -1.0, 1.0).to(k.dtype)
    vh = torch.cat([vh[:, :2], vh[:, 2:] * sign[:, None, None]], dim=1)  # rows of Vᵀ: Z Vᵀ
    return vh.mT @ u.mT, singular, sign


def _cofactor(x: Tensor) -> tuple[Tensor, Tensor]:
    """Cofactor matrices C (so X⁻ᵀ = C / det X) and determinants of matrices stored entry-major,
    (3, 3, B): each entry of the batch is one contiguous row, so every product below is one
    vectorised pass instead of a strided one."""
    a, b, c, d, e, f, g, h, i = x.reshape(9, -1)
    cof = torch.stack([e * i - f * h, f * g - d * i, d * h - e * g,
                       c * h - b * i, a * i - c * g, b * g - a * h,
                       b * f - c * e, c * d - a * f, a * e - b * d]).reshape(x.shape)
    return cof, a * cof[0, 0] + b * cof[0, 1] + c * cof[0, 2]


# A row takes the SVD path when K is this close to rank-deficient (det K against the cube of its
# RMS singular value) or when its best rotation needs the reflection fix (det K ≤ 0): there Newton's
# polar iteration converges slowly or to the wrong factor.
_POLAR_MIN_DET = 1e-6
_POLAR_MAX_ITERATIONS = 30


def procrustes_rotation(k: Tensor) -> tuple[Tensor, Tensor]:
    """The rotation of `kabsch_rotation` and trace(R K), without a LAPACK call per matrix.

    For det K > 0 the best proper rotation R = V Uᵀ is the orthogonal polar factor of Kᵀ, which
    Newton's iteration X ← (γX + X⁻ᵀ/γ) / 2, with Higham's scaling γ = √(‖X⁻¹‖/‖X‖), reaches in
    about six elementwise passes over the whole batch (the 3x3 inverse is a cofactor matrix). It
    runs in float64 whatever the input's dtype: K is only 9 numbers a sample. Rows with det K ≤ 0,
    a nearly singular K or no convergence use `kabsch_rotation`. Returns R (B, 3, 3) and
    trace(R K) (B,), in K's dtype.
    """
    k64 = k.double()
    x = k64.mT.permute(1, 2, 0).contiguous()
    rms_singular = x.square().sum(dim=(0, 1)).sqrt() / 3**0.5
    polar = _cofactor(x)[1] > _POLAR_MIN_DET * rms_singular**3
    # The other rows iterate from the identity, a fixed point, and are replaced below.
    identity = torch.eye(3, dtype=x.dtype, device=x.device)[..., None]
    x = torch.where(polar, x / torch.where(polar, rms_singular, 1.0), identity)
    tolerance = 3 * (8 * torch.finfo(x.dtype).eps) ** 2  # squared change, for ‖X‖² → 3
    converged = ~polar
    for _ in range(_POLAR_MAX_ITERATIONS):
        cof, det = _cofactor(x)
        inverse_t = cof / det
        gamma = (inverse_t.square().sum(dim=(0, 1)) / x.square().sum(dim=(0, 1))).sqrt().sqrt()
        step = 0.5 * (gamma * x + inverse_t / gamma)
        converged = (step - x).square().sum(dim=(0, 1)) <= tolerance
        x = step
        if bool(converged.all()):
            break
    rot = x.permute(2, 0, 1)
    use_svd = ~(polar & converged)
    if bool(use_svd.any()):
        rot = rot.clone()
        rot[use_svd] = kabsch_rotation(k64[use_svd])[0]
    trace_rk = (rot * k64.mT).sum(dim=(1, 2))
    return rot.to(k.dtype).contiguous(), trace_rk.to(k.dtype)


def similarity_procrustes(pred: Tensor, gt: Tensor, mask: Tensor | None = None) -> Tensor:
    """Align each sample of `pred` (B, J, 3) to `gt` by the best similarity transform.

    Per sample: centre both sets; K = X1ᵀ·X2 (3x3, X1 = centred pred rows); SVD K = U S Vᵀ;
    Z = diag(1, 1, sign(det(U Vᵀ))) so R is a rotation, never a reflection; R = V Z Uᵀ (computed
    by `procrustes_rotation`, which equals this to float64 precision); s = trace(R K) / ‖X1‖²_F;
    t = μ_gt − s R μ_pred; returns s R p + t. With a mask only the valid joints enter the fit (all
    joints are transformed).
    """
    pred, gt = check_pair(pred, gt)
    w = joint_weights(mask, pred)
    if w is None:
        mu_pred, mu_gt = pred.mean(dim=1, keepdim=True), gt.mean(dim=1, keepdim=True)
        x1, x2 = pred - mu_pred, gt - mu_gt
        x1_fit = x1
    else:
        w = w[..., None]
        count = w.sum(dim=1, keepdim=True).clamp_min(1.0)
        mu_pred = (w * pred).sum(dim=1, keepdim=True) / count
        mu_gt = (w * gt).sum(dim=1, keepdim=True) / count
        x1, x2 = pred - mu_pred, gt - mu_gt
        x1_fit = x1 * w  # weights are 0/1: masked joints drop out of K and of ‖X1‖²
    k = x1_fit.mT @ x2
    # A diverged prediction (NaN/inf) must not abort the whole batch: fit the finite samples and
    # let the others come out NaN, so they show up as NaN errors rather than as a crash.
    # A non-finite joint makes ‖X1‖² non-finite (masked joints too: 0 · inf is NaN), so one
    # reduction finds the diverged samples; a sum of squares that overflows counts as diverged.
    var_pred = (x1_fit * x1).sum(dim=(1, 2))
    finite = torch.isfinite(k).all(dim=(1, 2)) & torch.isfinite(var_pred)
    if not bool(finite.all()):
        k = torch.where(finite[:, None, None], k, torch.eye(3, dtype=k.dtype, device=k.device))
    rot, trace_rk = procrustes_rotation(k)
    scale = trace_rk / var_pred.clamp_min(torch.finfo(pred.dtype).tiny)
    # s R p + t with t = μ_gt − s R μ_pred, written as s R (p − μ_pred) + μ_gt
    aligned = scale[:, None, None] * (x1 @ rot.mT) + mu_gt
    return aligned if bool(finite.all()) else torch.where(finite[:, None, None], aligned, float("nan"))


def joint_errors(pred: Tensor, gt: Tensor) -> Tensor:
    """Euclidean distance per joint, (B, J)."""
    pred, gt = check_pair(pred, gt)
    return torch.linalg.vector_norm(pred - gt, dim=-1)


def _masked_mean(errors: Tensor, weights: Tensor | None) -> Tensor:
    if weights is None:
        return errors.mean(dim=1)
    # 0/0 -> NaN on purpose: a sample without valid joints has no error.
    return (errors * weights).sum(dim=1) / weights.sum(dim=1)


def mpjpe(pred: Tensor, gt: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean per-joint position error per sample, (B,), in the input unit. No root alignment here."""
    errors = joint_errors(pred, gt)
    return _masked_mean(errors, joint_weights(mask, errors[..., None]))


def pa_mpjpe(pred: Tensor, gt: Tensor, mask: Tensor | None = None) -> Tensor:
    """MPJPE after per-sample similarity Procrustes alignment, (B,)."""
    return mpjpe(similarity_procrustes(pred, gt, mask), gt, mask)


def pve(pred_vertices: Tensor, gt_vertices: Tensor) -> Tensor:
    """Per-vertex error per sample, (B,): mean over vertices of ‖pred − gt‖, no alignment."""
    return mpjpe(pred_vertices, gt_vertices)


def orientation_error_deg(pred_rotmat: Tensor, gt_rotmat: Tensor) -> Tensor:
    """Geodesic angle in degrees, in [0, 180], between two rotations, shapes (..., 3, 3) -> (...).

    The angle of R_pred^T R_gt, i.e. acos(clamp((trace(R_pred^T R_gt) - 1) / 2, -1, 1)), computed
    as atan2(sin, cos) (`body.rotations.geodesic_angle`): the arccos loses about 1e-4 rad of
    precision near 0 and 180 degrees in float32, where a good (or a flipped) root often lies.
    Used on the root (global orientation, camera frame), which MPJPE and PA-MPJPE hide: both
    compare root-centred joints, and PA-MPJPE even rotates the prediction onto the ground truth.
    """
    if pred_rotmat.shape[-2:] != (3, 3) or gt_rotmat.shape[-2:] != (3, 3):
        raise ValueError(f"pred_rotmat and gt_rotmat: expected (..., 3, 3) rotation matrices, got "
                         f"{tuple(pred_rotmat.shape)} and {tuple(gt_rotmat.shape)}")
    pred = _as_float(pred_rotmat, "pred_rotmat")
    return torch.rad2deg(geodesic_angle(pred, _as_float(gt_rotmat, "gt_rotmat").to(pred.dtype)))


def pck(pred: Tensor, gt: Tensor, threshold: float = 0.15, mask: Tensor | None = None) -> Tensor:
    """Percent of valid joints with error strictly below `threshold` (input unit), (B,)."""
    errors = joint_errors(pred, gt)
    hits = (errors < threshold).to(errors.dtype)
    return 100.0 * _masked_mean(hits, joint_weights(mask, errors[..., None]))


def auc(
    pred: Tensor,
    gt: Tensor,
    mask: Tensor | None = None,
    max_threshold: float = AUC_MAX_THRESHOLD,
    num_thresholds: int = AUC_NUM_THRESHOLDS,
) -> Tensor:
    """Mean of PCK (percent) over linspace(0, max_threshold, num_thresholds), (B,)."""
    errors = joint_errors(pred, gt)
    thresholds = torch.linspace(0.0, max_threshold, num_thresholds, dtype=errors.dtype, device=errors.device)
    hits = (errors[..., None] < thresholds).to(errors.dtype).mean(dim=-1)  # (B, J)
    return 100.0 * _masked_mean(hits, joint_weights(mask, errors[..., None]))


# ----------------------------------------------------------------------------- acceleration


def _check_track(pred: Tensor, gt: Tensor | None = None) -> None:
    if pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(f"track: expected shape (T, J, 3), got {tuple(pred.shape)}")
    if gt is not None and gt.shape != pred.shape:
        raise ValueError(f"pred and gt tracks: shapes differ, {tuple(pred.shape)} vs {tuple(gt.shape)}")


def _second_difference(x: Tensor) -> Tensor:
    """x[t-1] - 2 x[t] + x[t+1] for t = 1..T-2 (no /dt²: the unit is input-unit per frame²)."""
    return x[:-2] - 2.0 * x[1:-1] + x[2:]


def _triplet_valid(num_frames: int, visible: Tensor | None, device: torch.device) -> Tensor:
    """(T-2,) bool: the centre frame and both neighbours are visible."""
    if visible is None:
        return torch.ones(max(num_frames - 2, 0), dtype=torch.bool, device=device)
    if visible.shape != (num_frames,):
        raise ValueError(f"mask: expected per-frame shape ({num_frames},), got {tuple(visible.shape)}")
    v = visible > 0
    return v[:-2] & v[1:-1] & v[2:]


def _nan_where_invalid(values: Tensor, valid: Tensor) -> Tensor:
    return torch.where(valid, values, torch.full_like(values, float("nan")))


def acceleration(joints: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-frame mean over joints of ‖second difference‖, (T-2,); entry i is frame i+1.

    Frames whose triplet touches an invisible frame (mask (T,) <= 0) are NaN.
    """
    _check_track(joints)
    joints = _as_float(joints, "joints")
    if joints.shape[0] < 3:
        return joints.new_empty(0)
    values = torch.linalg.vector_norm(_second_difference(joints), dim=-1).mean(dim=-1)
    return _nan_where_invalid(values, _triplet_valid(joints.shape[0], mask, joints.device))


def acceleration_error(pred: Tensor, gt: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-frame mean over joints of ‖a_pred − a_gt‖ (VIBE's ACCEL_ERR), (T-2,).

    a is the second difference (no division by Δt²). Entry i belongs to frame i+1 and is NaN
    unless frames i, i+1 and i+2 are all visible.
    """
    _check_track(pred, gt)
    pred, gt = check_pair(pred, gt)
    if pred.shape[0] < 3:
        return pred.new_empty(0)
    diff = _second_difference(pred) - _second_difference(gt)
    values = torch.linalg.vector_norm(diff, dim=-1).mean(dim=-1)
    return _nan_where_invalid(values, _triplet_valid(pred.shape[0], mask, pred.device))


def sequence_acceleration_error(
    pred: Tensor,
    gt: Tensor,
    sequence_ids: Tensor,
    mask: Tensor | None = None,
    frame_ids: Tensor | None = None,
) -> Tensor:
    """Acceleration error over frames stored sequence after sequence, (T-2,).

    A triplet counts only if its three frames carry the same sequence id (and, if `frame_ids`
    are given, consecutive frame numbers), so no second difference spans two sequences or a
    gap. Unlike VIBE, which differences the concatenated test windows. Invalid entries are NaN.
    """
    errors = acceleration_error(pred, gt, mask)
    n = pred.shape[0]
    if sequence_ids.shape != (n,):
        raise ValueError(f"sequence_ids: expected shape ({n},), got {tuple(sequence_ids.shape)}")
    if n < 3:
        return errors
    s = sequence_ids
    valid = (s[:-2] == s[1:-1]) & (s[1:-1] == s[2:])
    if frame_ids is not None:
        if frame_ids.shape != (n,):
            raise ValueError(f"frame_ids: expected shape ({n},), got {tuple(frame_ids.shape)}")
        step = frame_ids[1:] - frame_ids[:-1]
        valid &= (step[:-1] == 1) & (step[1:] == 1)
    return _nan_where_invalid(errors, valid.to(errors.device))

"""The SMPL mesh drawn by nearest-vertex splatting: PARE's part labels and self-occlusion flags.

PARE (Kocabas et al. 2021) supervises its part-attention branch with the 24 SMPL body parts of
the ground-truth mesh rendered into the crop. Real datasets ship SMPL parameters and 2D keypoints,
not part masks, so the labels are made here, per batch, from what every SMPL-annotated sample has:

1. the ground-truth body (SMPL parameters, no translation) gives vertices and smpl_54 joints;
2. a weak-perspective camera (scale s, shift t) is fitted in closed form so that the joints'
   ``s * (x, y) + t`` match the sample's visible 2D keypoints (SPIN's normalised crop
   coordinates, [-1, 1]);
3. every vertex is projected onto the label grid and the nearest one (smallest camera z) per
   cell gives the cell its part (1..24; 0 = background).

A vertex's part is its dominant skinning joint (argmax of SMPL's ``lbs_weights``), which is how
SMPL's published part segmentation is drawn. Point splatting leaves no holes at PARE's label
resolution (a quarter of the crop side): thousands of vertices fall on a few hundred cells.
Occluding objects are not known to the mesh, so occluded body cells keep their part, as in
PARE's rendered labels.

The same splat, on a grid fitted around the body, gives per-joint self-occlusion for datasets
without visibility flags (`self_occluded_joints`): a joint is hidden when the body's nearest
surface in its cell lies more than a tolerance in front of it (the mini world's GTA flags use the
same test on its rendered depth, 0.12 m).
"""
from __future__ import annotations

import torch
from torch import Tensor

MIN_FIT_KEYPOINTS = 4  # visible 2D keypoints needed for a camera fit


def vertex_parts(lbs_weights: Tensor) -> Tensor:
    """(V, 24) skinning weights -> (V,) part index 0..23 (the dominant joint)."""
    if lbs_weights.ndim != 2 or lbs_weights.shape[1] != 24:
        raise ValueError(f"lbs_weights: expected (V, 24), got {tuple(lbs_weights.shape)}")
    return lbs_weights.argmax(dim=1)


def fit_weak_perspective(joints: Tensor, keypoints2d: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Least-squares ``s, t`` with ``s * joints[..., :2] + t ~ keypoints2d[..., :2]``.

    ``joints`` (B, J, 3); ``keypoints2d`` (B, J, 3): x, y and a confidence used as the weight
    (0 = not visible). Returns ``scale`` (B,), ``shift`` (B, 2) and ``ok`` (B,) bool: at least
    `MIN_FIT_KEYPOINTS` visible joints and a positive scale. Minimising
    ``sum_j c_j |s X_j + t - x_j|^2`` gives t = x_bar - s X_bar (weighted means) and
    s = sum c (X - X_bar).(x - x_bar) / sum c |X - X_bar|^2.
    """
    if joints.shape[:2] != keypoints2d.shape[:2] or keypoints2d.shape[-1] < 3:
        raise ValueError(f"joints {tuple(joints.shape)} and keypoints2d {tuple(keypoints2d.shape)} must be "
                         "(B, J, 3) with the same B and J")
    xy, target = joints[..., :2], keypoints2d[..., :2]
    weight = keypoints2d[..., 2:3].clamp(min=0)
    total = weight.sum(dim=1).clamp(min=1e-9)
    source_mean = (weight * xy).sum(dim=1) / total
    target_mean = (weight * target).sum(dim=1) / total
    centred_source, centred_target = xy - source_mean[:, None], target - target_mean[:, None]
    numerator = (weight * centred_source * centred_target).sum(dim=(1, 2))
    denominator = (weight * centred_source.square()).sum(dim=(1, 2)).clamp(min=1e-12)
    scale = numerator / denominator
    shift = target_mean - scale[:, None] * source_mean
    ok = ((keypoints2d[..., 2] > 0).sum(dim=1) >= MIN_FIT_KEYPOINTS) & (scale > 0)
    return scale, shift, ok


def splat_nearest(vertices: Tensor, parts: Tensor, scale: Tensor, shift: Tensor, resolution: int
                  ) -> tuple[Tensor, Tensor]:
    """Nearest vertex per cell of a ``resolution`` x ``resolution`` grid over [-1, 1]^2.

    ``vertices`` (B, V, 3) in the camera frame's axes (x right, y down, z away from the camera),
    ``parts`` (V,) 0..23, ``scale`` (B,), ``shift`` (B, 2): a vertex lands at normalised
    ``s * (x, y) + t`` and in cell ``floor((u + 1) / 2 * resolution)``. Returns (B, R, R) int64
    labels (0 background, 1 + part where a vertex is nearest; ties in depth go to either vertex)
    and (B, R, R) the nearest depth (inf where no vertex lands).
    """
    batch, count = vertices.shape[:2]
    uv = scale[:, None, None] * vertices[..., :2] + shift[:, None, :]
    cell = torch.floor((uv + 1.0) * 0.5 * resolution).long()
    inside = ((cell >= 0) & (cell < resolution)).all(dim=-1)
    flat = torch.arange(batch, device=vertices.device)[:, None] * resolution ** 2 + cell[..., 1] * resolution + cell[..., 0]
    flat = torch.where(inside, flat, torch.zeros_like(flat))
    depth = torch.where(inside, vertices[..., 2], torch.full_like(vertices[..., 2], float("inf")))
    nearest = torch.full((batch * resolution ** 2,), float("inf"), dtype=depth.dtype, device=depth.device)
    nearest.scatter_reduce_(0, flat.reshape(-1), depth.reshape(-1), reduce="amin")
    winner = inside & (depth <= nearest[flat])
    labels = torch.zeros(batch * resolution ** 2, dtype=torch.long, device=vertices.device)
    part_ids = (parts.to(vertices.device) + 1).expand(batch, count)
    labels[flat[winner]] = part_ids[winner]
    shape = (batch, resolution, resolution)
    return labels.reshape(shape), nearest.reshape(shape)


def splat_part_labels(vertices: Tensor, parts: Tensor, scale: Tensor, shift: Tensor, resolution: int) -> Tensor:
    """The labels of `splat_nearest` (B, R, R): 0 background, 1 + the nearest vertex's part."""
    return splat_nearest(vertices, parts, scale, shift, resolution)[0]


def self_occluded_joints(vertices: Tensor, joints: Tensor, resolution: int = 64, tolerance: float = 0.12) -> Tensor:
    """(B, J) bool: the body's own surface hides the joint, seen along the camera's z axis.

    ``vertices`` (B, V, 3) and ``joints`` (B, J, 3) in camera-frame axes (any translation; an
    orthographic view, as weak perspective). The grid spans each body's projected extent with
    ``resolution`` cells a side (64: ~3 cm cells on an adult); a joint is hidden when the nearest
    surface in its cell is more than ``tolerance`` metres nearer than the joint (a visible joint
    sits a limb's radius behind its own surface).
    """
    low, high = vertices[..., :2].amin(dim=1), vertices[..., :2].amax(dim=1)
    centre, half = (low + high) / 2, ((high - low).amax(dim=1) / 2 * 1.02).clamp(min=1e-6)
    scale, shift = 1.0 / half, -centre / half[:, None]
    parts = torch.zeros(vertices.shape[1], dtype=torch.long, device=vertices.device)
    _, depth = splat_nearest(vertices, parts, scale, shift, resolution)
    uv = scale[:, None, None] * joints[..., :2] + shift[:, None, :]
    cell = torch.floor((uv + 1.0) * 0.5 * resolution).long().clamp(0, resolution - 1)
    rows = torch.arange(joints.shape[0], device=joints.device)[:, None]
    surface = depth[rows, cell[..., 1], cell[..., 0]]
    return surface < joints[..., 2] - tolerance


@torch.no_grad()
def render_gt_part_labels(vertices: Tensor, joints54: Tensor, keypoints2d: Tensor, parts: Tensor,
                          resolution: int) -> tuple[Tensor, Tensor]:
    """Labels (B, R, R) of the ground-truth body and (B,) which samples could be fitted.

    ``vertices`` / ``joints54``: the ground-truth body without translation; ``keypoints2d``
    (B, 54, 3) smpl_54 in normalised crop coordinates with confidences.
    """
    scale, shift, ok = fit_weak_perspective(joints54.float(), keypoints2d.float())
    labels = splat_part_labels(vertices.float(), parts, scale, shift, resolution)
    return labels, ok

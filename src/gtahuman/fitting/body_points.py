"""The body-model points a keypoint map reads, without posing all 6890 vertices.

The fit evaluates the model hundreds of times per sequence but only needs a few dozen points:
SMPL kinematic joints (forward kinematics of the rest joints, which are linear in the betas)
and a handful of vertex-based points (smplx's vertex landmarks, J_regressor_extra rows).
Linear blend skinning is per vertex, so skinning just the vertices those points read gives
the same points as `BodyModel` (to float rounding) at a fraction of the cost. Forward
kinematics runs level by level of the tree (8 batched steps instead of 23).

    points = BodyPoints(body_model, keypoint_map.model_mix)
    out = points(rotmats (T, 24, 3, 3), betas (1 or T, 10), transl (T, 3))
    out.targets (T, K, 3), out.joints (T, 24, 3), out.rotations (T, 24, 3, 3) global
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from gtahuman.body.smpl import BodyModel
from gtahuman.fitting.keypoint_map import NUM_KINEMATIC, NUM_MODEL_POINTS

NUM_VERTEX_LANDMARKS = 21  # smpl_45 = 24 joints + 21 vertices; then 9 regressed joints


@dataclass
class PosedPoints:
    targets: Tensor  # (T, K, 3) model points of the keypoint map, translated
    joints: Tensor  # (T, 24, 3) kinematic joints, translated
    rotations: Tensor  # (T, 24, 3, 3) global joint rotations
    local: Tensor  # (T, 24, 3, 3) local rotations (SMPL's pose parameters)


def _rotate(matrices: Tensor, vectors: Tensor) -> Tensor:
    """(..., 3, 3) @ (..., 3) as a broadcast product: faster than batched 3x3 matmuls on CPU."""
    return (matrices * vectors.unsqueeze(-2)).sum(-1)


def tree_levels(parents: np.ndarray) -> list[np.ndarray]:
    """Joints grouped by depth in the kinematic tree (level 0 = the root)."""
    depth = np.zeros(len(parents), dtype=np.int64)
    for joint, parent in enumerate(parents):
        if parent >= joint and parent >= 0:
            raise ValueError(f"kinematic tree: parent {parent} of joint {joint} must come first")
        depth[joint] = 0 if parent < 0 else depth[parent] + 1
    return [np.flatnonzero(depth == level) for level in range(depth.max() + 1)]


class BodyPoints(nn.Module):
    """Differentiable model points ``model_mix @ smpl_54`` (plus kinematic joints) of one body."""

    def __init__(self, body_model: BodyModel, model_mix: np.ndarray) -> None:
        super().__init__()
        model_mix = np.asarray(model_mix, dtype=np.float64)
        if model_mix.ndim != 2 or model_mix.shape[1] != NUM_MODEL_POINTS:
            raise ValueError(f"model_mix must be (K, {NUM_MODEL_POINTS}); got {model_mix.shape}")
        smpl = body_model.smpl
        dtype = torch.float32
        num_betas = body_model.num_betas
        shapedirs = smpl.shapedirs[..., :num_betas].to(dtype)  # (V, 3, B)
        j_regressor = smpl.J_regressor.to(dtype)  # (24, V)
        # Each vertex-based smpl_54 column as weights over vertices.
        landmarks = smpl.vertex_joint_selector.extra_joints_idxs.long()
        vertex_rows = torch.zeros(NUM_MODEL_POINTS - NUM_KINEMATIC, smpl.v_template.shape[0], dtype=dtype)
        vertex_rows[torch.arange(NUM_VERTEX_LANDMARKS), landmarks] = 1.0
        vertex_rows[NUM_VERTEX_LANDMARKS:] = body_model.J_regressor_extra.to(dtype)
        mix = torch.as_tensor(model_mix, dtype=dtype)
        from_vertices = mix[:, NUM_KINEMATIC:] @ vertex_rows  # (K, V)
        used = torch.nonzero(from_vertices.abs().sum(0) > 0).reshape(-1)
        posedirs = smpl.posedirs.to(dtype).reshape(-1, smpl.v_template.shape[0], 3)[:, used]

        self.register_buffer("target_from_joints", mix[:, :NUM_KINEMATIC].clone())  # (K, 24)
        self.register_buffer("target_from_vertices", from_vertices[:, used].clone())  # (K, U)
        self.register_buffer("joint_template", j_regressor @ smpl.v_template.to(dtype))  # (24, 3)
        self.register_buffer("joint_shapedirs", torch.einsum("jv,vcb->jcb", j_regressor, shapedirs))
        self.register_buffer("vertex_template", smpl.v_template.to(dtype)[used])  # (U, 3)
        self.register_buffer("vertex_shapedirs", shapedirs[used])  # (U, 3, B)
        self.register_buffer("vertex_posedirs", posedirs.reshape(posedirs.shape[0], -1))  # (207, U*3)
        self.register_buffer("skinning", smpl.lbs_weights.to(dtype)[used])  # (U, 24)
        self.parents = np.asarray(smpl.parents.numpy(), dtype=np.int64)
        self.parents[0] = -1
        self.levels = tree_levels(self.parents)
        order = np.concatenate(self.levels)
        self.register_buffer("level_order_inverse", torch.as_tensor(np.argsort(order)))
        # Per level: its joints, their parents, and where each parent sits in the previous
        # level's block (index_select with these is ~20x faster than advanced indexing on CPU).
        self._level_joints = [torch.as_tensor(level) for level in self.levels]
        self._level_parents = [torch.as_tensor(self.parents[level]) for level in self.levels]
        self._parent_slots = [torch.as_tensor([int(np.flatnonzero(self.levels[k - 1] == self.parents[j])[0])
                                               for j in self.levels[k]]) for k in range(1, len(self.levels))]
        self._bone_parents = torch.as_tensor(self.parents[1:])  # parent of joints 1..23
        # path[j, b - 1] = 1 when bone b (joint b and its parent) lies between the root and joint j
        path = np.zeros((NUM_KINEMATIC, NUM_KINEMATIC - 1), dtype=np.float32)
        for joint in range(1, NUM_KINEMATIC):
            node = joint
            while node > 0:
                path[joint, node - 1] = 1.0
                node = int(self.parents[node])
        self.register_buffer("bone_paths", torch.as_tensor(path))
        self.num_targets = int(mix.shape[0])
        self.num_betas = num_betas
        self.num_vertices_used = int(used.numel())

    def rest_joints(self, betas: Tensor) -> Tensor:
        """(S, 24, 3) rest-pose kinematic joints of (S, B) betas (linear in the betas)."""
        return self.joint_template + torch.einsum("sb,jcb->sjc", betas.to(self.joint_template.dtype),
                                                  self.joint_shapedirs)

    def forward_kinematics(self, rotmats: Tensor, rest: Tensor) -> tuple[Tensor, Tensor]:
        """Local rotations (T, 24, 3, 3), rest joints (T or 1, 24, 3) -> global rotations
        (T, 24, 3, 3) and joint positions (T, 24, 3), root at its rest position."""
        rest = rest.expand(rotmats.shape[0], -1, -1)
        rotations = [rotmats.index_select(1, self._level_joints[0])]
        positions = [rest.index_select(1, self._level_joints[0])]
        for level in range(1, len(self.levels)):
            joints, slots = self._level_joints[level], self._parent_slots[level - 1]
            parent_rot = rotations[-1].index_select(1, slots)
            offsets = rest.index_select(1, joints) - rest.index_select(1, self._level_parents[level])
            positions.append(positions[-1].index_select(1, slots) + _rotate(parent_rot, offsets))
            rotations.append(parent_rot @ rotmats.index_select(1, joints))
        inverse = self.level_order_inverse
        return (torch.cat(rotations, dim=1).index_select(1, inverse),
                torch.cat(positions, dim=1).index_select(1, inverse))

    def local_from_global(self, rotations: Tensor) -> Tensor:
        """Global joint rotations (T, 24, 3, 3) -> local ones: R_j = G_parent^T G_j."""
        parents = rotations.index_select(1, self._bone_parents)
        return torch.cat([rotations[:, :1], parents.transpose(-1, -2) @ rotations[:, 1:]], dim=1)

    def joints_from_global(self, rotations: Tensor, rest: Tensor) -> Tensor:
        """Posed joints (T, 24, 3) from global rotations: each joint is the root plus the
        rotated bones on its path, one batched product instead of a walk down the tree."""
        rest = rest.expand(rotations.shape[0], -1, -1)
        offsets = rest[:, 1:] - rest.index_select(1, self._bone_parents)
        bones = _rotate(rotations.index_select(1, self._bone_parents), offsets)  # (T, 23, 3)
        return rest[:, :1] + torch.einsum("jb,tbc->tjc", self.bone_paths, bones)

    def forward(self, rotmats: Tensor, betas: Tensor, transl: Tensor | None = None, *,
                global_rotations: bool = False) -> PosedPoints:
        """``rotmats`` are local rotations (SMPL's pose), or global ones with
        ``global_rotations=True`` (the parametrisation the fit optimises: every bone's
        direction depends on one rotation only, and no tree walk is needed)."""
        frames = rotmats.shape[0]
        if rotmats.shape[1:] != (NUM_KINEMATIC, 3, 3):
            raise ValueError(f"BodyPoints: rotmats must be (T, 24, 3, 3); got {tuple(rotmats.shape)}")
        if betas.ndim != 2 or betas.shape[0] not in (1, frames) or betas.shape[1] != self.num_betas:
            raise ValueError(f"BodyPoints: betas must be (1 or {frames}, {self.num_betas}); got {tuple(betas.shape)}")
        rest = self.rest_joints(betas)
        if global_rotations:
            rotations, local = rotmats, self.local_from_global(rotmats)
            joints = self.joints_from_global(rotations, rest)
        else:
            local = rotmats
            rotations, joints = self.forward_kinematics(rotmats, rest)
        targets = torch.einsum("kj,tjc->tkc", self.target_from_joints, joints)
        if self.target_from_vertices.shape[1] > 0:
            shaped = self.vertex_template + torch.einsum("sb,ucb->suc", betas, self.vertex_shapedirs)
            eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
            pose_feature = (local[:, 1:] - eye).reshape(frames, -1)
            posed = shaped + (pose_feature @ self.vertex_posedirs).reshape(frames, -1, 3)
            # LBS: v' = sum_k w_k (G_k v + p_k - G_k J_k); J_k the rest joint, p_k the posed one.
            offsets = joints - _rotate(rotations, rest.expand(frames, -1, -1))
            blended_rot = torch.einsum("uk,tkij->tuij", self.skinning, rotations)
            blended_offset = torch.einsum("uk,tki->tui", self.skinning, offsets)
            vertices = _rotate(blended_rot, posed) + blended_offset
            targets = targets + torch.einsum("ku,tuc->tkc", self.target_from_vertices, vertices)
        if transl is not None:
            shift = transl.reshape(frames, 1, 3)
            targets, joints = targets + shift, joints + shift
        return PosedPoints(targets=targets, joints=joints, rotations=rotations, local=local)

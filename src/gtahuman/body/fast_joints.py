"""The smpl_54 joints of a `BodyModel` without posing all 6890 vertices.

Training losses only need joints: the 24 kinematic joints (forward kinematics), 21 joints that
are single vertices (nose, eyes, ears, toes, heels, fingertips) and 9 joints that J_regressor_extra
regresses from a few hundred vertices. Linear blend skinning is per vertex, so posing only the
vertices those joints read gives exactly the same joints (to float rounding) for a fraction of
the cost: about 260 of 6890 vertices for SMPL's and the toy model's regressors. The rest-pose
kinematic joints are linear in the betas, so they come from a precomputed joint template and
joint shape basis instead of regressing all shaped vertices.

    joints = FastJoints54(body_model)(betas, body_rotmats (B, 23, 3, 3), root_rotmat (B, 1, 3, 3))

`BodyModel.forward` remains the reference (and what evaluation uses, since PVE needs vertices).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class FastJoints54(nn.Module):
    """smpl_54 joints (B, 54, 3) of ``body_model`` from rotation matrices and betas."""

    def __init__(self, body_model: nn.Module) -> None:
        super().__init__()
        smpl = body_model.smpl
        extra_regressor = body_model.J_regressor_extra.float()  # (9, 6890)
        vertex_joints = smpl.vertex_joint_selector.extra_joints_idxs.long()  # (21,)
        used = torch.unique(torch.cat([vertex_joints, torch.nonzero(extra_regressor.abs().sum(0)).reshape(-1)]))
        position = torch.full((smpl.v_template.shape[0],), -1, dtype=torch.long)
        position[used] = torch.arange(used.numel())
        num_betas = body_model.num_betas
        shapedirs = smpl.shapedirs[..., :num_betas].float()  # (6890, 3, K)
        j_regressor = smpl.J_regressor.float()  # (24, 6890)
        # smplx stores posedirs as (207, 6890 * 3); keep the used vertices' columns.
        posedirs = smpl.posedirs.float().reshape(-1, smpl.v_template.shape[0], 3)[:, used]
        self.register_buffer("joint_template", j_regressor @ smpl.v_template.float())  # (24, 3)
        self.register_buffer("joint_shapedirs", torch.einsum("jv,vck->jck", j_regressor, shapedirs))
        self.register_buffer("vertex_template", smpl.v_template.float()[used])  # (U, 3)
        self.register_buffer("vertex_shapedirs", shapedirs[used])  # (U, 3, K)
        self.register_buffer("vertex_posedirs", posedirs.reshape(posedirs.shape[0], -1))  # (207, U*3)
        self.register_buffer("skinning_weights", smpl.lbs_weights.float()[used])  # (U, 24)
        self.register_buffer("vertex_joint_rows", position[vertex_joints])  # (21,)
        self.register_buffer("extra_regressor", extra_regressor[:, used])  # (9, U)
        self.parents = [int(p) for p in smpl.parents.tolist()]
        self.num_used_vertices = int(used.numel())

    def forward(self, betas: Tensor, body_rotmat: Tensor, root_rotmat: Tensor) -> Tensor:
        batch = body_rotmat.shape[0]
        if body_rotmat.shape[1:] != (23, 3, 3) or root_rotmat.reshape(batch, -1).shape[1] != 9:
            raise ValueError(f"FastJoints54: expected body (B, 23, 3, 3) and root (B, 1, 3, 3) rotation matrices; "
                             f"got {tuple(body_rotmat.shape)} and {tuple(root_rotmat.shape)}")
        rotmats = torch.cat([root_rotmat.reshape(batch, 1, 3, 3), body_rotmat], dim=1)  # (B, 24, 3, 3)
        betas = betas.expand(batch, -1)
        rest_joints = self.joint_template + torch.einsum("bk,jck->bjc", betas, self.joint_shapedirs)
        shaped = self.vertex_template + torch.einsum("bk,vck->bvc", betas, self.vertex_shapedirs)
        eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
        pose_feature = (rotmats[:, 1:] - eye).reshape(batch, -1)  # (B, 207)
        posed_rest = shaped + (pose_feature @ self.vertex_posedirs).reshape(batch, -1, 3)
        rotations, joints = self._forward_kinematics(rotmats, rest_joints)
        # Skinning: each joint's transform maps rest positions to posed ones (x -> R (x - j) + p).
        translations = joints - torch.einsum("bjcd,bjd->bjc", rotations, rest_joints)
        blend_rot = torch.einsum("vj,bjcd->bvcd", self.skinning_weights, rotations)
        blend_trans = torch.einsum("vj,bjc->bvc", self.skinning_weights, translations)
        vertices = torch.einsum("bvcd,bvd->bvc", blend_rot, posed_rest) + blend_trans
        extra = torch.einsum("ju,buc->bjc", self.extra_regressor, vertices)
        return torch.cat([joints, vertices[:, self.vertex_joint_rows], extra], dim=1)

    def _forward_kinematics(self, rotmats: Tensor, rest_joints: Tensor) -> tuple[Tensor, Tensor]:
        """World rotations (B, 24, 3, 3) and posed joint positions (B, 24, 3), root at its rest
        position (SMPL without translation)."""
        world_rot = [rotmats[:, 0]]
        world_pos = [rest_joints[:, 0]]
        for child in range(1, len(self.parents)):
            parent = self.parents[child]
            bone = rest_joints[:, child] - rest_joints[:, parent]
            world_pos.append(world_pos[parent] + torch.einsum("bcd,bd->bc", world_rot[parent], bone))
            world_rot.append(world_rot[parent] @ rotmats[:, child])
        return torch.stack(world_rot, dim=1), torch.stack(world_pos, dim=1)

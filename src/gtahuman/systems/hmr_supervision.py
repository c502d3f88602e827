"""Supervised half of `HMRSystem`: which samples each term applies to, and the weighted terms.

Terms (each only when its weight is non-zero): 2D keypoints (projected with the predicted weak
camera), 3D keypoints (pelvis-centred) and the rotation-aligned 3D term, SMPL pose (rotation
matrices) and betas, vertices, the camera prior, PARE's part segmentation, and the keypoint
branch's direct 2D keypoints and heatmaps (arch hmr_kp). A sample counts
for a term when it is ``valid``, has that label (``has_smpl``, ``has_keypoints3d``) and the
supervision toggle (paper Table 8: ``supervision`` on ``supervision_sources``) leaves it on.
Everything runs in float32, also under mixed precision.

PARE's part labels come from the batch (``part_labels``) or, with ``part_labels='render_gt'``,
from the ground-truth mesh (`gtahuman.body.part_render`) of the samples with SMPL.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

import gtahuman.systems.losses as Lf
from gtahuman.body.camera import project_to_crop
from gtahuman.body.part_render import render_gt_part_labels, vertex_parts
from gtahuman.body.smpl import BodyOutput
from gtahuman.models import HMROutput, part_segmentation_loss
from gtahuman.models.keypoint_hmr import heatmap_cross_entropy

PART_LABELS = ("render_gt", "batch")  # PARE's part supervision: rendered from the GT mesh, or the batch's only
_REQUIRED_KEYS = ("img", "keypoints2d", "keypoints3d", "smpl_global_orient", "smpl_body_pose",
                  "smpl_betas", "has_smpl")


class HMRSupervisionMixin:
    """Needs from the system: ``loss_weights`` (gtahuman.config.LossWeights), ``hparams``
    (keypoint_loss, keypoint_reduction, supervision, img_res, part_labels),
    ``focal_length``, ``_body(name, device)``, ``predict_joints54``, ``predict_body`` and a
    ``_vertex_parts`` slot (None until first use)."""

    @torch.no_grad()
    def render_part_labels(self, batch: Mapping[str, Tensor], gt_pose: Tensor, gt_betas: Tensor,
                           resolution: int) -> tuple[Tensor, Tensor]:
        """PARE's part labels (B, R, R) from the ground-truth mesh and which samples have them
        (`gtahuman.body.part_render`)."""
        body = self._body("neutral", gt_pose.device)
        if self._vertex_parts is None or self._vertex_parts.device != gt_pose.device:
            self._vertex_parts = vertex_parts(body.smpl.lbs_weights).to(gt_pose.device)
        gt = body(gt_betas, gt_pose[:, 3:], gt_pose[:, :3])
        return render_gt_part_labels(gt.vertices, gt.joints54, batch["keypoints2d"], self._vertex_parts, resolution)

    # ------------------------------------------------------------------ losses

    def _sample_masks(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Per-sample masks of each supervised term (valid, has_*, supervision toggles)."""
        missing = [k for k in _REQUIRED_KEYS if k not in batch]
        if missing:
            raise KeyError(f"training batch lacks {missing}; it has {sorted(batch)}")
        n, device = batch["img"].shape[0], batch["img"].device
        ones = torch.ones(n, dtype=torch.bool, device=device)
        valid = batch["valid"].reshape(-1) > 0 if "valid" in batch else ones
        has_kp3d = batch["has_keypoints3d"].reshape(-1) > 0 if "has_keypoints3d" in batch else ones
        # Paper Table 8: the toggles apply to the samples of `supervision_sources` (all if None).
        sources = self.hparams.supervision_sources
        if sources is None:
            restricted = ones
        else:
            if "source" not in batch:
                raise KeyError("supervision_sources is set but the batch has no 'source' key")
            restricted = torch.isin(batch["source"].reshape(-1), torch.as_tensor(sources, device=device))
        supervision = self.hparams.supervision
        keypoints_on = ~(restricted & (supervision == "smpl"))
        smpl_on = ~(restricted & (supervision == "keypoints"))
        has_smpl = batch["has_smpl"].reshape(-1) > 0
        return {"valid": valid, "keypoints2d": valid & keypoints_on,
                "keypoints3d": valid & has_kp3d & keypoints_on, "smpl": valid & has_smpl & smpl_on}

    def compute_losses(self, batch: Mapping[str, Tensor], output: HMROutput,
                       pred_body: BodyOutput | None = None) -> dict[str, Tensor]:
        """Unweighted supervised terms (those with a non-zero weight) and their weighted sum
        ``total``. Terms: keypoints2d, keypoints3d, pose, betas, vertices, camera. Without
        ``pred_body`` the joints come from `predict_joints54` and the full body model runs only
        for a vertex loss."""
        # Body model, projection and losses in float32 even under mixed precision.
        with torch.autocast(output.cam.device.type, enabled=False):
            return self._supervised_terms(batch, output, pred_body)

    def _supervised_terms(self, batch: Mapping[str, Tensor], output: HMROutput,
                          pred_body: BodyOutput | None) -> dict[str, Tensor]:
        hp, w = self.hparams, self.loss_weights
        if pred_body is None and w.vertices:
            pred_body = self.predict_body(output)
        joints54 = pred_body.joints54 if pred_body is not None else self.predict_joints54(output)
        masks = self._sample_masks(batch)
        weights = {"keypoints2d": w.keypoints2d, "keypoints3d": w.keypoints3d,
                   "keypoints3d_aligned": w.keypoints3d_aligned, "pose": w.smpl_pose,
                   "betas": w.smpl_betas, "vertices": w.vertices, "camera": w.camera}
        cam, rotmat, betas = output.cam.float(), output.rotmat.float(), output.betas.float()
        terms: dict[str, Tensor] = {}
        if weights["keypoints2d"]:
            _, projected = project_to_crop(joints54, cam, self.focal_length, hp.img_res)
            terms["keypoints2d"] = Lf.keypoint_2d_loss(projected, batch["keypoints2d"].float(), masks["keypoints2d"],
                                                       hp.keypoint_loss, hp.keypoint_reduction)
        if weights["keypoints3d"]:
            terms["keypoints3d"] = Lf.keypoint_3d_loss(joints54, batch["keypoints3d"].float(), masks["keypoints3d"],
                                                       hp.keypoint_loss, hp.keypoint_reduction)
        if weights["keypoints3d_aligned"]:
            terms["keypoints3d_aligned"] = Lf.keypoint_3d_aligned_loss(joints54, batch["keypoints3d"].float(),
                                                                       masks["keypoints3d"])
        gt_pose = torch.cat([batch["smpl_global_orient"], batch["smpl_body_pose"]], dim=1).float()
        gt_betas = batch["smpl_betas"].float()
        if weights["pose"]:
            terms["pose"] = Lf.smpl_pose_loss(rotmat, gt_pose, masks["smpl"])
        if weights["betas"]:
            terms["betas"] = Lf.betas_loss(betas, gt_betas, masks["smpl"])
        if weights["vertices"]:
            with torch.no_grad():
                gt_vertices = self._body("neutral", gt_pose.device)(gt_betas, gt_pose[:, 3:], gt_pose[:, :3]).vertices
            terms["vertices"] = Lf.vertex_loss(pred_body.vertices, gt_vertices, masks["smpl"])
        if weights["camera"]:
            terms["camera"] = Lf.camera_prior(cam, masks["valid"])
        direct = getattr(output, "keypoints2d_direct", None)  # regressors with a keypoint branch (hmr_kp)
        weights["keypoints2d_direct"] = w.keypoints2d_direct
        if w.keypoints2d_direct and direct is not None:
            terms["keypoints2d_direct"] = Lf.keypoint_2d_l1_loss(direct.float(), batch["keypoints2d"].float(),
                                                                 masks["keypoints2d"])
        heat = getattr(output, "keypoint_logits", None)
        weights["keypoints2d_heatmap"] = w.keypoints2d_heatmap
        if w.keypoints2d_heatmap and heat is not None:
            terms["keypoints2d_heatmap"] = heatmap_cross_entropy(heat, batch["keypoints2d"], masks["keypoints2d"])
        part_logits = getattr(output, "part_logits", None)  # regressors with a part branch (PARE)
        weights["parts"] = w.parts
        if w.parts and part_logits is not None and "part_labels" in batch:
            has_parts = batch["has_part_labels"].reshape(-1) > 0 if "has_part_labels" in batch else masks["valid"]
            terms["parts"] = part_segmentation_loss(part_logits, batch["part_labels"], masks["valid"] & has_parts)
        elif w.parts and part_logits is not None and hp.part_labels == "render_gt":
            labels, fitted = self.render_part_labels(batch, gt_pose, gt_betas, part_logits.shape[-1])
            terms["parts"] = part_segmentation_loss(part_logits, labels, masks["smpl"] & fitted)
        terms["total"] = sum((weights[k] * v for k, v in terms.items()), cam.sum() * 0.0)
        return terms

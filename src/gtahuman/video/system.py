"""`TemporalSystem`: VIBE-style video recovery on cached frame features (paper Table 3).

Training batches are windows (B, T) from `video.datamodule` (features, GT targets and the frame
model's own predictions per frame). The `TemporalRegressor` (GRU + HMR head) predicts SMPL and a
weak-perspective camera per frame; the losses are the image model's, per frame, reused from
`gtahuman.systems.losses`: 2D keypoints (crop-normalised, at the frame model's ``img_res``), 3D
keypoints (mid-hip centred), SMPL pose (rotation matrices) and betas, each masked by ``valid`` and
the frame's labels, plus an optional camera prior. VIBE's weights (2D 300, 3D 300, pose 60, betas
0.06, no camera prior) are the defaults. With ``motion_discriminator`` the run optimises
manually: first the motion discriminator on real GT motion windows (``motion_bank_path``, an npz
with ``body_pose`` (M, T, 69)) against the detached predictions, then the generator with the
supervised terms + the LSGAN term, both weighted ``loss_motion`` (VIBE: 0.5).

Evaluation (``val/...``, ``test/...`` per named set, protocol as in `HMREvaluationMixin`): every
frame once (`windows.evaluation_windows`), errors in mm per frame; then, after gathering, the
frames of each person track are put in frame order and the acceleration metrics are computed
*within* tracks (a triplet never spans two sequences or a gap; VIBE's code mixes them):
``accel_error`` = VIBE's ACCEL_ERR (Table 3's "Accel"), ``accel`` = VIBE's ACCEL (the
prediction's own acceleration), both mean over joints of second differences, mm per frame^2.
The frame model's predictions of the same frames are scored the same way (``frame_summaries``),
so every run reports frame model vs temporal model side by side.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

import gtahuman.systems.losses as Lf
from gtahuman import metrics as M
from gtahuman.body.assets import check_body_model_dir
from gtahuman.body.camera import project_to_crop
from gtahuman.body.rotations import matrix_to_axis_angle, rot6d_to_matrix
from gtahuman.body.smpl import BodyModel
from gtahuman.config_schema import LossWeights, loss_weights_from
from gtahuman.evaluation import Protocol, evaluate_joints, summarize
from gtahuman.models import HMROutput, lsgan_discriminator_loss, lsgan_generator_loss
from gtahuman.systems.hmr import SPIN_CROP_RES, SPIN_FOCAL
from gtahuman.systems.hmr_evaluation import HMREvaluationMixin
from gtahuman.systems.results import EvalResultsCollector
from gtahuman.video.motion_discriminator import MotionDiscriminator, body_motion
from gtahuman.video.temporal import TemporalRegressor, frame_head_state

ERROR_METRICS = ("mpjpe", "pa_mpjpe", "pve")
SCHEDULES = ("constant", "step")


def flatten_windows(batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """(B, T, ...) window tensors -> (B*T, ...) per-frame tensors."""
    return {k: v.reshape(-1, *v.shape[2:]) for k, v in batch.items() if isinstance(v, Tensor) and v.ndim >= 2}


def within_track_accelerations(pred: np.ndarray, gt: np.ndarray, track: np.ndarray, frame: np.ndarray,
                               usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (accel, accel_error) in the input unit, NaN where a frame and its two
    neighbours are not consecutive frames of one track (or not all usable). Rows in any order."""
    n = pred.shape[0]
    accel, accel_error = np.full(n, np.nan), np.full(n, np.nan)
    if n < 3:
        return accel, accel_error
    order = np.lexsort((frame, track))
    args = [torch.from_numpy(np.asarray(a)[order]) for a in (pred, gt, track, usable, frame)]
    p, g, t, u, f = args
    error = M.sequence_acceleration_error(p.double(), g.double(), t, mask=u, frame_ids=f)
    # ACCEL (the prediction's own acceleration) = the acceleration error against a still track
    own = M.sequence_acceleration_error(p.double(), torch.zeros_like(p).double(), t, mask=u, frame_ids=f)
    accel[order[1:-1]], accel_error[order[1:-1]] = own.numpy(), error.numpy()
    return accel, accel_error


class TemporalSystem(HMREvaluationMixin, L.LightningModule):
    """See the module docstring. ``feature_dim``/``img_res``: the frame model's backbone width
    and crop size (its 2D keypoints were normalised at that size); ``n_iter`` and ``head_dropout``
    its head's (the head is copied from it). ``frame_checkpoint`` is
    recorded only (the head is copied by `init_from_frame_model` before the first fit)."""

    def __init__(
        self,
        body_model_dir: str,
        feature_dim: int,
        img_res: int = 224,
        n_iter: int = 3,
        head_dropout: float = 0.5,
        hidden_size: int = 1024,
        num_layers: int = 2,
        bidirectional: bool = False,
        residual: bool = True,
        zero_init: bool = True,
        motion_discriminator: bool = False,
        motion_bank_path: str | None = None,
        # The frame system's LossWeights (its keypoints2d, keypoints3d, smpl_pose, smpl_betas and
        # camera terms apply per frame); default: SPIN's, without the camera prior (VIBE has none)
        loss_weights: LossWeights | Mapping[str, float] | None = None,
        loss_motion: float = 0.5,
        lr: float = 5e-5,
        disc_lr: float = 1e-4,
        weight_decay: float = 0.0,
        schedule: str = "constant",
        milestones: list[int] | None = None,
        gamma: float = 0.1,
        frame_checkpoint: str | None = None,
        eval_protocol: str = "miniworld",
        eval_sets: list[str] | None = None,
        eval_protocols: dict[str, str] | None = None,
        feature_samples: int = 0,
        **legacy_loss_weights: float,  # loss_<term>=w of checkpoints written before LossWeights
    ) -> None:
        super().__init__()
        self.loss_weights = loss_weights_from(loss_weights, legacy_loss_weights, owner="TemporalSystem", camera=0.0)
        loss_weights = asdict(self.loss_weights)  # plain in the hyper-parameters
        legacy_loss_weights.clear()
        self.save_hyperparameters()
        if schedule not in SCHEDULES or (schedule == "step" and not milestones):
            raise ValueError(f"TemporalSystem: schedule must be one of {SCHEDULES} (step needs milestones), "
                             f"got {schedule!r} with milestones {milestones}")
        if motion_discriminator and motion_bank_path is None:
            raise ValueError("TemporalSystem: motion_discriminator needs motion_bank_path (real motion windows)")
        assets = check_body_model_dir(body_model_dir, genders=("neutral",), load_models=False)
        self.is_toy_body = assets.is_toy
        self.focal_length = SPIN_FOCAL * img_res / SPIN_CROP_RES
        self.regressor = TemporalRegressor(feature_dim, assets.mean_params, n_iter, hidden_size, num_layers,
                                           bidirectional, residual, zero_init, head_dropout)
        self.discriminator = MotionDiscriminator() if motion_discriminator else None
        self.automatic_optimization = not motion_discriminator
        # Body models stay out of the module tree (checkpoint size), as in HMRSystem.
        self._bodies: dict[str, nn.Module] = {"neutral": BodyModel(body_model_dir, "neutral", assets=assets)}
        self._motion_bank: Tensor | None = None
        self._init_eval_state()
        self.frame_summaries: dict[str, dict[str, dict[str, float]]] = {"val": {}, "test": {}}

    @property
    def head(self) -> nn.Module:  # the evaluation mixin's mean-pose baseline reads self.head
        return self.regressor.head

    def init_from_frame_model(self, frame_model: nn.Module) -> None:
        """Start the head from the frame model's (VIBE starts from SPIN's regressor)."""
        self.regressor.load_frame_head(frame_head_state(frame_model))

    def forward(self, features: Tensor) -> tuple[HMROutput, Tensor]:
        return self.regressor(features)

    def _body(self, name: str, device: torch.device) -> nn.Module:
        model = self._bodies[name]
        if model.smpl.v_template.device != device:
            model.to(device)
        return model

    # ------------------------------------------------------------------ losses

    def compute_losses(self, frames: Mapping[str, Tensor], rotmat: Tensor, betas: Tensor,
                       cam: Tensor) -> dict[str, Tensor]:
        """Per-frame supervised terms (non-zero weights only) and their weighted ``total``."""
        hp = self.hparams
        with torch.autocast(cam.device.type, enabled=False):
            rotmat, betas, cam = rotmat.float(), betas.float(), cam.float()
            body = self._body("neutral", cam.device)(betas, rotmat[:, 1:], rotmat[:, :1])
            valid = frames["valid"] > 0
            smpl = valid & (frames["has_smpl"] > 0)
            w = self.loss_weights
            weights = {"keypoints2d": w.keypoints2d, "keypoints3d": w.keypoints3d, "pose": w.smpl_pose,
                       "betas": w.smpl_betas, "camera": w.camera}
            terms: dict[str, Tensor] = {}
            if weights["keypoints2d"]:
                _, projected = project_to_crop(body.joints54, cam, self.focal_length, hp.img_res)
                terms["keypoints2d"] = Lf.keypoint_2d_loss(projected, frames["keypoints2d"].float(), valid)
            if weights["keypoints3d"]:
                terms["keypoints3d"] = Lf.keypoint_3d_loss(body.joints54, frames["keypoints3d"].float(),
                                                           valid & (frames["has_keypoints3d"] > 0))
            gt_pose = torch.cat([frames["smpl_global_orient"], frames["smpl_body_pose"]], dim=1).float()
            if weights["pose"]:
                terms["pose"] = Lf.smpl_pose_loss(rotmat, gt_pose, smpl)
            if weights["betas"]:
                terms["betas"] = Lf.betas_loss(betas, frames["smpl_betas"].float(), smpl)
            if weights["camera"]:
                terms["camera"] = Lf.camera_prior(cam, valid)
            terms["total"] = sum((weights[k] * v for k, v in terms.items()), cam.sum() * 0.0)
        return terms

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor | None:
        output, _ = self(batch["features"].float())
        frames = flatten_windows(batch)
        terms = self.compute_losses(frames, output.rotmat.reshape(-1, 24, 3, 3), output.betas.reshape(-1, 10),
                                    output.cam.reshape(-1, 3))
        total = terms.pop("total")
        logs = {f"train/{k}": v.detach() for k, v in terms.items()}
        batch_size = int(batch["features"].shape[0])
        if self.automatic_optimization:
            self.log_dict({**logs, "train/loss": total.detach()}, batch_size=batch_size)
            return total
        opt_g, opt_d = self.optimizers()
        fake = body_motion(output.rotmat)
        real = self._sample_motion(fake.shape[0], fake.shape[1], fake.device)
        self.toggle_optimizer(opt_d)
        d_loss = self.hparams.loss_motion * lsgan_discriminator_loss(self.discriminator(real),
                                                                     self.discriminator(fake.detach()))
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        self.untoggle_optimizer(opt_d)
        self.toggle_optimizer(opt_g)
        g_motion = lsgan_generator_loss(self.discriminator(fake))
        total = total + self.hparams.loss_motion * g_motion
        opt_g.zero_grad()
        self.manual_backward(total)
        opt_g.step()
        self.untoggle_optimizer(opt_g)
        logs.update({"train/motion": g_motion.detach(), "train/discriminator": d_loss.detach(),
                     "train/loss": total.detach()})
        self.log_dict(logs, batch_size=batch_size)
        return None

    def _sample_motion(self, n: int, length: int, device: torch.device) -> Tensor:
        if self._motion_bank is None:
            path = self.hparams.motion_bank_path
            with np.load(path, allow_pickle=False) as data:
                if "body_pose" not in data.files or data["body_pose"].ndim != 3 or data["body_pose"].shape[2] != 69:
                    raise KeyError(f"{path}: key 'body_pose': expected real motion windows (M, T, 69); "
                                   f"file has {data.files}")
                self._motion_bank = torch.as_tensor(data["body_pose"], dtype=torch.float32)
        bank = self._motion_bank
        if bank.shape[0] == 0 or bank.shape[1] != length:
            raise ValueError(f"{self.hparams.motion_bank_path}: motion windows are {tuple(bank.shape)}; "
                             f"expected (M > 0, {length}, 69)")
        return bank[torch.randint(bank.shape[0], (n,))].to(device)

    def on_train_epoch_end(self) -> None:
        if not self.automatic_optimization and self.hparams.schedule != "constant":
            schedulers = self.lr_schedulers()
            for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
                scheduler.step()

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        optimizers = [torch.optim.Adam(self.regressor.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)]
        if self.discriminator is not None:  # VIBE: lr 1e-4, weight decay 1e-4
            optimizers.append(torch.optim.Adam(self.discriminator.parameters(), lr=hp.disc_lr, weight_decay=1e-4))
        if hp.schedule == "constant":
            return optimizers if len(optimizers) > 1 else optimizers[0]
        schedulers = [{"scheduler": torch.optim.lr_scheduler.MultiStepLR(opt, list(hp.milestones), hp.gamma),
                       "interval": "epoch"} for opt in optimizers]
        return optimizers, schedulers

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def _score(self, frames: Mapping[str, Tensor], rotmat: Tensor, betas: Tensor,
               protocol: Protocol) -> tuple[dict[str, Tensor], Tensor, Tensor, Tensor]:
        """(per-frame errors, NaN where unusable), pred and GT evaluation joints (n, K*3), usable."""
        device = rotmat.device
        with torch.autocast(device.type, enabled=False):
            body = self._body("neutral", device)(betas.float(), rotmat[:, 1:].float(), rotmat[:, :1].float())
            gt17, gt_vertices, usable = self._ground_truth(frames, protocol, device)
            errors = evaluate_joints(protocol, body.joints_h36m, gt17,
                                     body.vertices if gt_vertices is not None else None, gt_vertices)
            pred_k, gt_k = protocol.prepare_joints(body.joints_h36m), protocol.prepare_joints(gt17)
        nan = torch.tensor(float("nan"), dtype=torch.float64, device=device)
        errors = {k: torch.where(usable, v.double(), nan) for k, v in errors.items()}
        return errors, pred_k.reshape(len(pred_k), -1), gt_k.reshape(len(gt_k), -1), usable

    def _eval_step(self, stage: str, batch: Mapping[str, Tensor], dataloader_idx: int) -> None:
        set_name = self.eval_set_name(dataloader_idx, stage)
        self._set_names[dataloader_idx] = set_name
        protocol = self.eval_protocol_for(set_name)
        output, encoded = self(batch["features"].float())
        frames = flatten_windows(batch)
        keep = frames["scored"].bool()
        frames = {k: v[keep] for k, v in frames.items()}
        rotmat, betas = output.rotmat.reshape(-1, 24, 3, 3)[keep], output.betas.reshape(-1, 10)[keep]
        cam = output.cam.reshape(-1, 3)[keep]
        errors, pred_j, gt_j, usable = self._score(frames, rotmat, betas, protocol)
        frame_rotmat = rot6d_to_matrix(frames["frame_pose_6d"].float().reshape(-1, 24, 6))
        frame_errors, frame_j, _, _ = self._score(frames, frame_rotmat, frames["frame_betas"].float(), protocol)
        collectors = self._collectors[stage]
        if dataloader_idx not in collectors:
            collectors[dataloader_idx] = EvalResultsCollector(self.hparams.feature_samples)
        n = rotmat.shape[0]
        collectors[dataloader_idx].add(
            features=encoded.reshape(-1, encoded.shape[-1])[keep], sample_id=frames["sample_id"],
            track_id=frames["track_id"], frame_id=frames["frame_id"], usable=usable, **errors,
            **{f"frame_{k}": v for k, v in frame_errors.items()},
            pred_pose=matrix_to_axis_angle(rotmat.float()).reshape(n, 72), pred_betas=betas.float(),
            pred_cam=cam.float(), joints_pred=pred_j.double(), joints_gt=gt_j.double(), joints_frame=frame_j.double())

    def _summarize_set(self, stage: str, name: str, rows: dict[str, np.ndarray]
                       ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """The frame metrics plus acceleration and its error within each track, for the
        temporal model and (kept in ``frame_summaries``) for the frame model it refines."""
        n = len(rows["sample_id"])
        joints = {k: rows.pop(f"joints_{k}").reshape(n, -1, 3) for k in ("pred", "gt", "frame")}
        usable = rows["usable"].astype(bool)
        for prefix, pred in (("", joints["pred"]), ("frame_", joints["frame"])):
            accel, accel_error = within_track_accelerations(pred, joints["gt"], rows["track_id"],
                                                            rows["frame_id"], usable)
            rows[f"{prefix}accel"], rows[f"{prefix}accel_error"] = accel * 1000.0, accel_error * 1000.0
        metric_names = [m for m in (*ERROR_METRICS, "accel", "accel_error") if m in rows]
        summary = summarize({m: torch.from_numpy(rows[m]) for m in metric_names})
        summary["evaluated"] = float(np.isfinite(rows["mpjpe"]).sum()) if "mpjpe" in rows else 0.0
        frame_summary = summarize({m: torch.from_numpy(rows[f"frame_{m}"]) for m in metric_names})
        self.frame_summaries[stage][name] = {**frame_summary, "toy_body_model": float(self.is_toy_body)}
        return rows, dict(summary)


__all__ = ["TemporalSystem", "flatten_windows", "within_track_accelerations"]

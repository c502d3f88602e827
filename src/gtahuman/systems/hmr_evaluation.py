"""Evaluation half of `HMRSystem`: validation/test steps over named eval sets, per-sample
results kept for the run directory, and the constant-prediction baselines.

Each eval dataloader is one named set (``eval_sets`` in dataloader order, else the
datamodule's ``eval_set_names``, else ``set<i>``) with a protocol from `gtahuman.evaluation`
(``eval_protocols[set]``, else the set's own name if it is a protocol, else ``eval_protocol``).

Predictions: the neutral body model on the predicted rotations and betas (no translation),
J_regressor_h36m -> 17 joints, and the vertices. Ground truth by the protocol's ``gt_gender``:
``gendered`` (3dpw, miniworld) = GT SMPL on the GT-gender model; ``neutral`` = GT SMPL on the
neutral model; ``keypoints`` (h36m_p2, mpi_inf_3dhp) = stored ``keypoints3d`` (smpl_54) mapped
to the H36M joints by name. Samples that cannot be evaluated (``valid`` = 0, or no GT of the
needed kind) get NaN errors, which the summary skips.

Besides the protocol's metrics every sample gets ``orient_deg``: the geodesic angle (degrees)
between predicted and GT global orientation (root rotation, camera frame), which the root-centred
joint metrics cannot see; NaN without SMPL GT (``has_smpl`` = 0, e.g. keypoints-only sets). Its
summary is the median (`gtahuman.evaluation.MEDIAN_METRICS`).

Logged at epoch end, in mm (``orient_deg`` in degrees): ``val/<set>/<metric>`` (``test/...``
in testing) and ``val/pa_mpjpe``, ``val/mpjpe`` = the first set's values, for checkpoint selection. Per-sample
rows (sample_id, errors, predicted pose as axis-angle (72), betas, cam, and the first
``feature_samples`` backbone features) are kept in ``self.val_results`` / ``self.test_results``:
``dict[set_name, dict[column, np.ndarray]]``.

Baselines (`constant_baselines`): fixed predictions, the same for every sample, scored exactly
like the model: the train data's best constant (`gtahuman.constant_baseline`) and the head's SMPL
mean parameters (`mean_pose_baseline`).
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gtahuman.body.conventions import convert_keypoints
from gtahuman.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle, rot6d_to_matrix
from gtahuman.body.smpl import GenderedBodyModel
from gtahuman.evaluation import (
    PROTOCOLS,
    Protocol,
    evaluate_joints,
    get_protocol,
    summarize,
)
from gtahuman.metrics import orientation_error_deg
from gtahuman.systems.results import EvalResultsCollector

_EVAL_JOINTS_SOURCE = "smpl_54"
ORIENT_METRIC = "orient_deg"  # per-sample root-orientation error, not part of any protocol
SUMMARY_METRICS = ("mpjpe", "pa_mpjpe", "pve", "pck", "auc", ORIENT_METRIC)


class HMREvaluationMixin:
    """Needs from the host: ``hparams``, ``_bodies``, ``_body(name, device)``, ``forward``,
    ``head``, ``is_toy_body``, ``log``, ``trainer``."""

    def _init_eval_state(self) -> None:
        self._collectors: dict[str, dict[int, EvalResultsCollector]] = {"val": {}, "test": {}}
        self._set_names: dict[int, str] = {}
        self.val_results: dict[str, dict[str, np.ndarray]] = {}
        self.test_results: dict[str, dict[str, np.ndarray]] = {}
        self.val_summaries: dict[str, dict[str, float]] = {}
        self.test_summaries: dict[str, dict[str, float]] = {}

    # ------------------------------------------------------------------ names and protocols

    def eval_set_name(self, dataloader_idx: int, stage: str = "val") -> str:
        """The name of eval loader ``dataloader_idx``: the DataModule's names for this stage
        (val or test) when it has them, else the ``eval_sets`` hyper-parameter."""
        names = None
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "eval_set_names"):
            names = datamodule.eval_set_names(stage)
        if names is None:
            names = self.hparams.eval_sets
        if names is None:
            return f"set{dataloader_idx}"
        if dataloader_idx >= len(names):
            raise IndexError(f"{stage} dataloader {dataloader_idx} has no name: sets = {list(names)}")
        return str(names[dataloader_idx])

    def eval_protocol_for(self, set_name: str) -> Protocol:
        mapping = self.hparams.eval_protocols or {}
        if set_name in mapping:
            return get_protocol(mapping[set_name])
        if set_name in PROTOCOLS:
            return get_protocol(set_name)
        return get_protocol(self.hparams.eval_protocol)

    # ------------------------------------------------------------------ per-batch errors

    def _ground_truth(self, batch: Mapping[str, Tensor], protocol: Protocol,
                      device: torch.device) -> tuple[Tensor, Tensor | None, Tensor]:
        """(GT 17 H36M joints, GT vertices or None, which samples have such GT)."""
        n = batch["img"].shape[0] if "img" in batch else batch["smpl_betas"].shape[0]
        valid = batch["valid"].reshape(-1).to(device) > 0 if "valid" in batch else torch.ones(n, dtype=torch.bool, device=device)
        if protocol.gt_gender == "keypoints":
            keypoints = batch["keypoints3d"].to(device).float()
            joints17, _ = convert_keypoints(keypoints[..., :3], _EVAL_JOINTS_SOURCE, "h36m")
            conf17, _ = convert_keypoints(keypoints[..., 3:], _EVAL_JOINTS_SOURCE, "h36m")
            has = batch["has_keypoints3d"].reshape(-1).to(device) > 0 if "has_keypoints3d" in batch else valid
            used = list(protocol.eval_joint_indices) + [protocol.root_index]
            missing = has & valid & (conf17[:, used, 0] <= 0).any(dim=1)
            if bool(missing.any()):
                warnings.warn(f"protocol {protocol.name}: {int(missing.sum())} samples lack an evaluation "
                              "joint (confidence 0) in keypoints3d; they are not evaluated", stacklevel=2)
            return joints17, None, valid & has & ~missing
        betas = batch["smpl_betas"].to(device).float()
        body_pose, global_orient = batch["smpl_body_pose"].to(device).float(), batch["smpl_global_orient"].to(device).float()
        if protocol.gt_gender == "gendered":
            gendered = self._gendered_body(device)
            gender = batch["gender"].reshape(-1).to(device) if "gender" in batch else torch.full((n,), -1, device=device)
            out = gendered(betas, body_pose, global_orient, gender)
        else:
            out = self._body("neutral", device)(betas, body_pose, global_orient)
        has = batch["has_smpl"].reshape(-1).to(device) > 0 if "has_smpl" in batch else valid
        return out.joints_h36m, out.vertices, valid & has

    def _gendered_body(self, device: torch.device) -> GenderedBodyModel:
        if "gendered" not in self._bodies:
            self._bodies["gendered"] = GenderedBodyModel(self.hparams.body_model_dir)
        model = self._bodies["gendered"]
        if model.models["neutral"].smpl.v_template.device != device:
            model.to(device)
        return model

    @staticmethod
    def _orientation_errors(batch: Mapping[str, Tensor], pred_rotmat: Tensor) -> Tensor:
        """(B,) degrees between predicted and GT root rotation; NaN without SMPL GT."""
        n, device = pred_rotmat.shape[0], pred_rotmat.device
        nan = torch.full((n,), float("nan"), dtype=torch.float64, device=device)
        if "smpl_global_orient" not in batch:
            return nan
        ones = torch.ones(n, dtype=torch.bool, device=device)
        valid = batch["valid"].reshape(-1).to(device) > 0 if "valid" in batch else ones
        has = batch["has_smpl"].reshape(-1).to(device) > 0 if "has_smpl" in batch else ones
        gt = axis_angle_to_matrix(batch["smpl_global_orient"].to(device).double().reshape(n, 3))
        angle = orientation_error_deg(pred_rotmat[:, 0].double(), gt)
        return torch.where(valid & has, angle, nan)

    @torch.no_grad()
    def evaluate_prediction(self, batch: Mapping[str, Tensor], pred_rotmat: Tensor, pred_betas: Tensor,
                            protocol: Protocol) -> dict[str, Tensor]:
        """Per-sample errors (B,): the protocol's metrics in its unit, then ``orient_deg`` (degrees);
        NaN where a sample has no usable GT."""
        device = pred_rotmat.device
        with torch.autocast(device.type, enabled=False):  # body models and SVDs in float32
            body = self._body("neutral", device)(pred_betas.float(), pred_rotmat[:, 1:].float(),
                                                 pred_rotmat[:, :1].float())
            gt_joints, gt_vertices, usable = self._ground_truth(batch, protocol, device)
            errors = evaluate_joints(protocol, body.joints_h36m, gt_joints,
                                     body.vertices if gt_vertices is not None else None, gt_vertices)
            orientation = self._orientation_errors(batch, pred_rotmat)
        nan = torch.tensor(float("nan"), dtype=torch.float64, device=device)
        out = {name: torch.where(usable, values.double(), nan) for name, values in errors.items()}
        out[ORIENT_METRIC] = orientation
        return out

    # ------------------------------------------------------------------ Lightning hooks

    def _eval_step(self, stage: str, batch: Mapping[str, Tensor], dataloader_idx: int) -> None:
        set_name = self.eval_set_name(dataloader_idx, stage)
        self._set_names[dataloader_idx] = set_name
        protocol = self.eval_protocol_for(set_name)
        output, features = self(batch["img"])
        errors = self.evaluate_prediction(batch, output.rotmat, output.betas, protocol)
        n = output.cam.shape[0]
        sample_id = batch["sample_id"].reshape(-1) if "sample_id" in batch else torch.arange(n)
        pose_aa = matrix_to_axis_angle(output.rotmat.float()).reshape(n, 72)
        collectors = self._collectors[stage]
        if dataloader_idx not in collectors:
            collectors[dataloader_idx] = EvalResultsCollector(self.hparams.feature_samples)
        collectors[dataloader_idx].add(features=features, sample_id=sample_id, **errors, pred_pose=pose_aa,
                                       pred_betas=output.betas.float(), pred_cam=output.cam.float())

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("val", batch, dataloader_idx)

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("test", batch, dataloader_idx)

    def _summarize_set(self, stage: str, name: str, rows: dict[str, np.ndarray]
                       ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """(rows kept as the set's results, its summary) for one evaluation set; the video
        system overrides this to add its acceleration metrics. ``evaluated`` counts the samples
        with the protocol's GT (orient_deg counts those with SMPL GT instead)."""
        metrics = {k: torch.from_numpy(v) for k, v in rows.items() if k in SUMMARY_METRICS}
        summary = dict(summarize(metrics))
        counted = [k for k in metrics if k != ORIENT_METRIC]
        summary["evaluated"] = float(np.isfinite(rows[counted[0]]).sum()) if counted else 0.0
        return rows, summary

    def _finish_eval(self, stage: str) -> None:
        results, summaries = {}, {}
        first = min(self._collectors[stage], default=None)
        for index in sorted(self._collectors[stage]):
            name = self._set_names[index]
            results[name], summary = self._summarize_set(stage, name, self._collectors[stage][index].finish())
            # Not logged (not a metric), but every kept summary says whether it is a toy number.
            summaries[name] = {**summary, "toy_body_model": float(self.is_toy_body)}
            # Every rank holds the same gathered numbers; sync_dist just averages equal values.
            logged = {f"{stage}/{name}/{metric}": value for metric, value in summary.items()}
            if index == first:  # the first set's: what eval.monitor names
                logged.update({f"{stage}/{metric}": summary[metric] for metric in ("pa_mpjpe", "mpjpe")
                               if metric in summary})
            self.log_dict(logged, sync_dist=True)
        self._collectors[stage] = {}
        setattr(self, f"{stage}_results", results)
        setattr(self, f"{stage}_summaries", summaries)

    def on_validation_epoch_end(self) -> None:
        self._finish_eval("val")

    def on_test_epoch_end(self) -> None:
        self._finish_eval("test")

    # ------------------------------------------------------------------ baselines

    @torch.no_grad()
    def constant_baselines(self, batches: Iterable[Mapping[str, Tensor]],
                           constants: Mapping[str, tuple[Tensor, Tensor]],
                           protocol: str | None = None) -> dict[str, dict[str, Any]]:
        """Errors of predicting one fixed (rotmat (24, 3, 3), betas (10,)) for every sample, for each
        named constant, under ``protocol`` (default ``eval_protocol``), scored by
        `evaluate_prediction` as the model is; one pass over ``batches`` serves all constants.
        Returns per name the summary (mm; ``orient_deg`` the median in degrees) plus
        ``per_sample``: {metric: (N,) array} (for gathering over DDP ranks)."""
        chosen = get_protocol(protocol or self.hparams.eval_protocol)
        device = self.head.init_pose.device  # where the body models live: the system's device
        fixed = {name: (rotmat.to(device).float().reshape(1, 24, 3, 3), betas.to(device).float().reshape(1, -1))
                 for name, (rotmat, betas) in constants.items()}
        per_sample: dict[str, dict[str, list[Tensor]]] = {name: {} for name in fixed}
        for batch in batches:
            n = batch["smpl_betas"].shape[0] if "smpl_betas" in batch else batch["keypoints3d"].shape[0]
            for name, (rotmat, betas) in fixed.items():
                errors = self.evaluate_prediction(batch, rotmat.expand(n, 24, 3, 3), betas.expand(n, -1), chosen)
                for key, values in errors.items():
                    per_sample[name].setdefault(key, []).append(values.cpu())
        out = {}
        for name, columns in per_sample.items():
            merged = {k: torch.cat(v) for k, v in columns.items()}
            out[name] = {**summarize(merged), "per_sample": {k: v.numpy() for k, v in merged.items()}}
        return out

    def constant_baseline(self, batches: Iterable[Mapping[str, Tensor]], rotmat: Tensor, betas: Tensor,
                          protocol: str | None = None) -> dict[str, Any]:
        """`constant_baselines` of one constant (e.g. the train data's, `gtahuman.constant_baseline`)."""
        return self.constant_baselines(batches, {"constant": (rotmat, betas)}, protocol)["constant"]

    def smpl_mean_params(self) -> tuple[Tensor, Tensor]:
        """The body directory's SMPL mean parameters (pose (24, 3, 3), betas (10,)): upright and
        facing the camera, whatever the training data, and whatever the head starts from
        (``initial_estimate``); a system without them (a bare mixin) reads the head's start."""
        if hasattr(self, "_smpl_mean"):
            rotmat, betas = self._smpl_mean
            return rotmat.float().to(self.head.init_pose.device), betas.float().to(self.head.init_pose.device)
        return rot6d_to_matrix(self.head.init_pose.reshape(24, 6).float()), self.head.init_shape.reshape(10)

    def mean_pose_baseline(self, batches: Iterable[Mapping[str, Tensor]],
                           protocol: str | None = None) -> dict[str, Any]:
        """`constant_baseline` of the SMPL mean parameters: a weak floor, kept for comparison
        with older runs; the honest floor is the train data's constant."""
        return self.constant_baseline(batches, *self.smpl_mean_params(), protocol)

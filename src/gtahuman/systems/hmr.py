"""`HMRSystem`: HMR / HMR+ / fine-tuning / domain adaptation as one LightningModule.

* ``variant='hmr'``: the original HMR with its adversarial SMPL prior (mmhuman3d's GTA recipes;
  the component `pose_prior.AdversarialPrior`): manual optimisation, per step first the
  discriminator on prior poses (real) vs detached predictions (fake), then the generator with the
  supervised losses + the LSGAN term.
* ``variant='hmr_plus'``: the paper's HMR+ (no adversary; keypoint-only data carry static fits
  as SMPL labels, which is the data side's job), automatic optimisation.
* Fine-tuning = either variant started from ``init_checkpoint`` (SPIN, mmhuman3d or suite
  layout, see `checkpoint_import`), loaded in ``setup('fit')`` so that resuming a run or
  ``load_from_checkpoint`` never re-applies it.
* Domain adaptation: a training batch ``{'source': b, 'target': b}`` goes through the network
  as one concatenated batch (BatchNorm sees both domains, as in TLlib's DANN); every labelled
  sample of either domain is supervised (paper: "DA = BT + an extra loss") and the
  ``adaptation`` hook adds its loss on the two halves' features.

Everything the constructor takes is an explicit, typed argument saved as hyper-parameters, so
``HMRSystem.load_from_checkpoint(path)`` rebuilds the system without any config (the body-model
directory must exist at that path). Evaluation (validation/test steps, per-sample results,
the mean-pose baseline) lives in `hmr_evaluation.HMREvaluationMixin`, the supervised loss terms
in `hmr_supervision.HMRSupervisionMixin`.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from gtahuman.adaptation import ADAPTATIONS
from gtahuman.body.assets import check_body_model_dir
from gtahuman.body.fast_joints import FastJoints54
from gtahuman.body.smpl import BodyModel, BodyOutput
from gtahuman.body.rotations import axis_angle_to_matrix, matrix_to_rot6d, rot6d_to_matrix
from gtahuman.models import (
    REGRESSORS,
    HMRHead,
    HMROutput,
    build_backbone,
    default_mean_params,
    load_mean_params,
)
from gtahuman.config_schema import LossWeights, loss_weights_from
from gtahuman.data.transforms import finish_images
from gtahuman.systems.checkpoint_import import import_hmr_state_dict
from gtahuman.systems.hmr_evaluation import HMREvaluationMixin
from gtahuman.systems.hmr_supervision import PART_LABELS, HMRSupervisionMixin
from gtahuman.systems.losses import KEYPOINT_LOSSES, KEYPOINT_REDUCTIONS
from gtahuman.systems.optimisation import (  # noqa: F401  (effective_learning_rate, cosine_with_warmup: public here too)
    SCHEDULES,
    adam,
    cosine_with_warmup,
    effective_learning_rate,
    lr_schedulers,
)
from gtahuman.systems.pare_import import import_pare_state_dict
from gtahuman.systems.pose_prior import AdversarialPrior, uses_adversarial_prior

VARIANTS = ("hmr", "hmr_plus")
# on_after_batch_transfer finishes uint8 crops whatever the data module: Lightning's notice says what is meant
warnings.filterwarnings("ignore", message="You have overridden `on_after_batch_transfer` in `LightningModule`")
SUPERVISION = ("both", "keypoints", "smpl")
# SPIN/mmhuman3d: focal 5000 px for a 224 px crop, scaled with the crop (the same field of view,
# so a weak-perspective scale s means the same depth 2 f / (R s) at any R)
SPIN_FOCAL, SPIN_CROP_RES = 5000.0, 224


def estimate_as_mean_params(estimate: Mapping[str, Any], smpl_mean: Mapping[str, Any]) -> dict[str, Any]:
    """An IEF starting estimate ``{'pose': (24, 3) axis-angle, 'betas': (10,)}`` (e.g. the training
    data's best constant, `gtahuman.constant_baseline`) in the mean-parameters layout of
    `HMRHead` (pose as 24 x 6D, row-major first two columns), with the camera of ``smpl_mean``."""
    try:
        pose = torch.as_tensor(estimate["pose"], dtype=torch.float64).reshape(24, 3)
        betas = torch.as_tensor(estimate["betas"], dtype=torch.float32).reshape(10)
    except (KeyError, RuntimeError, TypeError, ValueError) as err:
        raise ValueError("HMRSystem: initial_estimate must be {'pose': 24 x 3 axis-angle, 'betas': 10 values}; "
                         f"got keys {sorted(estimate)} ({err})") from None
    rot6d = matrix_to_rot6d(axis_angle_to_matrix(pose)).reshape(-1).float()
    return {"pose": rot6d.numpy(), "shape": betas.numpy(), "cam": smpl_mean["cam"]}


class HMRSystem(HMRSupervisionMixin, HMREvaluationMixin, L.LightningModule):
    """HMR-family regressor: backbone -> IEF head -> SMPL; see the module docstring.

    Arguments beyond the obvious ones:
    ``backbone_args``: keyword arguments of the `BACKBONES` factory (e.g. ``weights_path``).
    ``supervision``: paper Table 8; 'keypoints' drops the pose/betas/vertex terms, 'smpl' the
    2D/3D keypoint terms, for the samples whose ``source`` code is in ``supervision_sources``
    (None: every sample). ``batch_size`` (per device) and ``base_batch_size`` turn on the
    linear lr scaling of `effective_learning_rate` (applied to ``lr`` and ``disc_lr``).
    ``milestones``: epochs at which schedule 'step' multiplies the lrs by ``gamma``; schedule
    'cosine' decays the lrs per step to zero at the end of training after ``warmup_steps`` of
    linear warm-up (short from-scratch runs end much better with a decayed lr).
    ``adaptation``: a module ``forward(source_features, target_features, source_params,
    target_params, step) -> (loss, logs)`` (params = predicted [pose 6D, betas, cam], (B, 157)),
    or a name in ``gtahuman.adaptation.ADAPTATIONS`` built with ``feature_dim`` +
    ``adaptation_args``; its loss is multiplied by ``loss_adaptation`` (the DA objective's weight,
    ``adaptation.weight``, not a supervised term of ``loss_weights``) and its parameters join
    the main optimiser. Under DDP, variant 'hmr' (two backward passes per step) needs
    ``strategy='ddp_find_unused_parameters_true'``. ``synthetic_translation``: ``(img, synthetic rows (B,)) -> img`` per training batch, rows of
    ``sim2real_source_ids`` (CycleGAN online: `gtahuman.sim2real.SyntheticRowTranslation`).
    ``arch``: 'hmr' (backbone + IEF head) or a name in `gtahuman.models.REGRESSORS` (e.g. 'pare'),
    built from the same backbone / mean-parameter arguments (and ``regressor_args``) into
    ``regressor``. ``loss_weights`` (`gtahuman.config_schema.LossWeights`) also weighs the terms
    of such regressors: ``parts``, PARE's part segmentation (on the batch's ``part_labels``, or
    with ``part_labels='render_gt'`` on labels rasterised from the GT mesh; PARE's weight 60),
    ``keypoints2d_direct`` / ``keypoints2d_heatmap``, a keypoint branch's L1 and heatmap terms.
    ``initial_estimate``: where the iterative regressor starts, ``{'pose': (24, 3) axis-angle,
    'betas': (10,)}``; None = the body directory's SMPL mean parameters. HMR's mean parameters
    were the mean of its own training data: the training data's best constant
    (`gtahuman.constant_baseline`, config ``model.init_estimate=train_mean``) is that start for
    any data, so the network learns what differs from the constant, not the constant itself.
    """

    def __init__(
        self,
        body_model_dir: str,
        backbone: str = "resnet50",
        backbone_args: dict[str, Any] | None = None,
        img_res: int = 224,
        variant: str = "hmr_plus",
        n_iter: int = 3,
        head_dropout: float = 0.5,  # SPIN's regressor; a short from-scratch run learns faster without
        supervision: str = "both",
        supervision_sources: list[int] | None = None,
        # Loss weights (gtahuman.config.LossWeights: a mapping of some of its terms, or one): the
        # defaults are SPIN's total, 60 x (5 L2D + 5 L3D + 1 pose + 0.001 betas + 0 vertices +
        # camera prior) (reference/spin_vibe_hmr2.md 1.7); adversarial 1 as mmhuman3d's HMR.
        loss_weights: LossWeights | Mapping[str, float] | None = None,
        keypoint_loss: str = "mse",  # element loss of both keypoint terms: mse (SPIN) | smooth_l1 (mmhuman3d)
        keypoint_reduction: str = "all",  # their mean: every element (SPIN) | confident ones (mmhuman3d)
        loss_adaptation: float = 1.0,
        lr: float = 5e-5,  # SPIN's Adam lr at batch 64
        disc_lr: float = 1e-4,  # mmhuman3d HMR
        weight_decay: float = 0.0,
        batch_size: int | None = None,
        base_batch_size: int | None = None,
        schedule: str = "constant",
        milestones: list[int] | None = None,
        gamma: float = 0.1,
        warmup_steps: int = 0,
        manual_clip_norm: float | None = None,  # variant 'hmr' (manual optimisation): clip the generator
        prior_poses_path: str | None = None,
        init_checkpoint: str | None = None,
        init_format: str = "auto",
        eval_protocol: str = "miniworld",
        eval_sets: list[str] | None = None,
        eval_protocols: dict[str, str] | None = None,
        feature_samples: int = 0,
        adaptation: str | nn.Module | None = None,
        adaptation_args: dict[str, Any] | None = None,
        sim2real_checkpoint: str | None = None,  # only recorded; the run passes synthetic_translation
        sim2real_source_ids: list[int] | None = None,
        synthetic_translation: Callable[[Tensor, Tensor], Tensor] | None = None,
        arch: str = "hmr",
        regressor_args: dict[str, Any] | None = None,
        part_labels: str = "render_gt",
        initial_estimate: dict[str, list] | None = None,
        **legacy_loss_weights: float,  # loss_<term>=w of checkpoints written before LossWeights
    ) -> None:
        super().__init__()
        # Typed here, plain in the hyper-parameters (a dict the checkpoint loader reads without code)
        self.loss_weights = loss_weights_from(loss_weights, legacy_loss_weights, owner="HMRSystem")
        loss_weights = asdict(self.loss_weights)
        legacy_loss_weights.clear()
        # Modules and callables are no hyper-parameters (a module hook is passed again when loading)
        self.save_hyperparameters(ignore=["synthetic_translation"] + (["adaptation"] if isinstance(adaptation, nn.Module) else []))
        for name, value, choices in (("variant", variant, VARIANTS), ("supervision", supervision, SUPERVISION),
                                     ("schedule", schedule, SCHEDULES), ("part_labels", part_labels, PART_LABELS),
                                     ("keypoint_loss", keypoint_loss, KEYPOINT_LOSSES),
                                     ("keypoint_reduction", keypoint_reduction, KEYPOINT_REDUCTIONS)):
            if value not in choices:
                raise ValueError(f"HMRSystem: {name} must be one of {choices}, got {value!r}")
        if schedule == "step" and not milestones:
            raise ValueError("HMRSystem: schedule='step' needs milestones (epochs)")
        self.focal_length = SPIN_FOCAL * img_res / SPIN_CROP_RES
        assets = check_body_model_dir(body_model_dir, genders=("neutral",), load_models=False)
        self.is_toy_body = assets.is_toy
        smpl_mean = load_mean_params(assets.mean_params) if assets.mean_params else default_mean_params()
        # The SMPL mean parameters stay the "SMPL mean params" baseline whatever the IEF starts from.
        self._smpl_mean = (rot6d_to_matrix(torch.from_numpy(smpl_mean["pose"]).reshape(24, 6)),
                           torch.from_numpy(smpl_mean["shape"]))
        start = smpl_mean if initial_estimate is None else estimate_as_mean_params(initial_estimate, smpl_mean)
        if arch == "hmr":
            self.backbone = build_backbone(backbone, **(backbone_args or {}))
            self.head = HMRHead(self.backbone.feature_dim, mean_params=start, n_iter=n_iter,
                               dropout=head_dropout)
            feature_dim = self.backbone.feature_dim
        else:
            self.regressor = REGRESSORS.build(arch, backbone=backbone, backbone_args=dict(backbone_args or {}),
                                              mean_params=start, n_iter=n_iter, img_res=img_res,
                                              **dict(regressor_args or {}))
            # Aliases, not sub-modules (weights live once, under regressor.*), so that evaluation
            # can read head.init_pose / init_shape whatever the arch.
            object.__setattr__(self, "backbone", self.regressor.backbone)
            object.__setattr__(self, "head", self.regressor.head)
            feature_dim = self.regressor.feature_dim
        self.feature_dim = feature_dim  # size of forward()'s features, whatever the arch
        # The adversarial prior (its discriminator, real poses and losses) is one component;
        # with it the system optimises manually.
        self.discriminator = AdversarialPrior(prior_poses_path) if uses_adversarial_prior(variant) else None
        if isinstance(adaptation, str):
            adaptation = ADAPTATIONS.build(adaptation, feature_dim=feature_dim, **dict(adaptation_args or {}))
        self.adaptation = adaptation
        self.automatic_optimization = self.discriminator is None
        # Body models are kept out of the module tree: their ~20 MB of buffers per gender would
        # bloat every checkpoint and be broadcast by DDP each step. They move to the input's
        # device on use (see `_body`), are always float32, and are rebuilt from body_model_dir.
        self._bodies: dict[str, nn.Module] = {"neutral": BodyModel(body_model_dir, "neutral", assets=assets)}
        # Training losses need joints only: posing the ~260 vertices they read is ~15x cheaper.
        self._bodies["neutral_joints"] = FastJoints54(self._bodies["neutral"])
        self._vertex_parts: Tensor | None = None  # PARE's rendered part labels: part of each vertex
        self._synthetic_translation = synthetic_translation  # out of the module tree: not trained, not saved
        self._init_applied = False
        self.init_report = None
        self._init_eval_state()

    # ------------------------------------------------------------------ forward and body model

    def forward(self, img: Tensor) -> tuple[HMROutput, Tensor]:
        """Images (B, 3, R, R) -> (head output, backbone features (B, F))."""
        if self.hparams.arch != "hmr":
            return self.regressor(img)  # (output, the regressor's pooled features)
        features = self.backbone(img)
        return self.head(features), features

    def _body(self, name: str, device: torch.device) -> nn.Module:
        model = self._bodies[name]
        if next(model.buffers()).device != device:
            model.to(device)
        return model

    def predict_joints54(self, output: HMROutput) -> Tensor:
        """smpl_54 joints (B, 54, 3) of the prediction (no translation), without the vertices."""
        joints = self._body("neutral_joints", output.rotmat.device)
        with torch.autocast(output.rotmat.device.type, enabled=False):
            return joints(output.betas.float(), output.rotmat[:, 1:].float(), output.rotmat[:, :1].float())

    def predict_body(self, output: HMROutput) -> BodyOutput:
        """Neutral body model on the predicted rotations and betas, no translation."""
        body = self._body("neutral", output.rotmat.device)
        with torch.autocast(output.rotmat.device.type, enabled=False):
            return body(output.betas.float(), output.rotmat[:, 1:].float(), output.rotmat[:, :1].float())

    # ------------------------------------------------------------------ training

    @staticmethod
    def _merge_domains(batch: Mapping[str, Any]) -> tuple[dict[str, Tensor], int | None]:
        """{'source', 'target'} -> one concatenated batch and the number of source samples."""
        if not ("source" in batch and "target" in batch and isinstance(batch["source"], Mapping)):
            return dict(batch), None
        source, target = batch["source"], batch["target"]
        if set(source) != set(target):
            raise KeyError(f"source and target batches differ in keys: only source {sorted(set(source) - set(target))}, "
                           f"only target {sorted(set(target) - set(source))}")
        merged = {k: torch.cat([source[k], target[k]]) for k in source}
        return merged, int(source["img"].shape[0])

    def _objective(self, batch: Mapping[str, Any]) -> tuple[Tensor, HMROutput, Tensor, dict[str, Tensor]]:
        """Forward + supervised (+ adaptation) loss; returns (total, output, valid mask, logs)."""
        merged, n_source = self._merge_domains(batch)
        if self._synthetic_translation is not None:
            if "source" not in merged:
                raise KeyError("sim2real (online) needs the batch's 'source' ids to find synthetic samples")
            ids = torch.as_tensor(self.hparams.sim2real_source_ids or [], device=merged["source"].device)
            merged["img"] = self._synthetic_translation(merged["img"], torch.isin(merged["source"].reshape(-1), ids))
        output, features = self(merged["img"])
        terms = self.compute_losses(merged, output)
        total = terms.pop("total")
        logs = {f"train/{k}": v.detach() for k, v in terms.items()}
        if n_source is not None and self.adaptation is not None:
            params = torch.cat([output.pose_6d, output.betas, output.cam], dim=1)
            da_loss, da_logs = self.adaptation(features[:n_source], features[n_source:],
                                               params[:n_source], params[n_source:], self.batch_step)
            total = total + self.hparams.loss_adaptation * da_loss
            logs["train/adaptation"] = da_loss.detach()
            logs.update({f"train/adaptation/{k}": torch.as_tensor(v).detach() for k, v in da_logs.items()})
        elif self.adaptation is not None:
            raise ValueError("an adaptation objective is set but the training batch is not "
                             "{'source': ..., 'target': ...}")
        valid = merged["valid"].reshape(-1) > 0 if "valid" in merged else torch.ones_like(output.cam[:, 0], dtype=torch.bool)
        return total, output, valid, logs

    @property
    def batch_step(self) -> int:
        """Training batches done so far. Lightning's ``global_step`` counts optimiser steps, two
        per batch for variant 'hmr' (discriminator + generator); ramps (DANN) follow batches."""
        return self.global_step if self.automatic_optimization else self.global_step // 2

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return finish_images(batch)  # crops left uint8 (data.uint8_images): colour + normalisation, on the device

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor | None:
        total, output, valid, logs = self._objective(batch)
        batch_size = int(output.cam.shape[0])
        if self.automatic_optimization:
            logs["train/loss"] = total.detach()
            self.log_dict(logs, batch_size=batch_size)
            return total
        opt_g, opt_d = self.optimizers()
        # 1. Discriminator (mmhuman3d order): prior poses are real, detached predictions fake.
        fake_rotmat, fake_betas = output.rotmat[valid][:, 1:].float(), output.betas[valid].float()
        self.toggle_optimizer(opt_d)
        d_loss = self.discriminator.discriminator_loss(fake_rotmat, fake_betas)
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        self.untoggle_optimizer(opt_d)
        # 2. Generator: supervised terms + make the (frozen) discriminator score us as real.
        self.toggle_optimizer(opt_g)
        g_adv = self.discriminator.generator_loss(fake_rotmat, fake_betas)
        total = total + self.loss_weights.adversarial * g_adv
        opt_g.zero_grad()
        self.manual_backward(total)
        if self.hparams.manual_clip_norm:  # Lightning clips automatic optimisation only
            self.clip_gradients(opt_g, gradient_clip_val=self.hparams.manual_clip_norm, gradient_clip_algorithm="norm")
        opt_g.step()
        self.untoggle_optimizer(opt_g)
        if self.hparams.schedule == "cosine":  # manual optimisation steps its schedulers itself
            schedulers = self.lr_schedulers()
            for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
                scheduler.step()
        logs.update({"train/adversarial": g_adv.detach(), "train/discriminator": d_loss.detach(),
                     "train/loss": total.detach()})
        self.log_dict(logs, batch_size=batch_size)
        return None

    def on_train_epoch_end(self) -> None:
        if not self.automatic_optimization and self.hparams.schedule == "step":
            schedulers = self.lr_schedulers()
            for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
                scheduler.step()

    def on_fit_start(self) -> None:
        if self.discriminator is not None:
            self.discriminator.load()  # a missing or malformed prior file fails before the first step

    # ------------------------------------------------------------------ setup and optimisers

    def setup(self, stage: str) -> None:
        # Fine-tuning start point; skipped once weights came from a checkpoint of this suite.
        if stage == "fit" and self.hparams.init_checkpoint and not self._init_applied:
            if self.hparams.init_format == "pare":  # PARE's public layout
                self.init_report = import_pare_state_dict(self, self.hparams.init_checkpoint)
            else:
                self.init_report = import_hmr_state_dict(self, self.hparams.init_checkpoint,
                                                         self.hparams.init_format)
            self._init_applied = True

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._init_applied = True

    def learning_rates(self) -> tuple[float, float]:
        """(generator lr, discriminator lr) after linear scaling (both scaled alike)."""
        hp = self.hparams
        world_size, accumulate = 1, 1
        if self._trainer is not None:
            world_size = self.trainer.world_size
            accumulate = self.trainer.accumulate_grad_batches
        scale = effective_learning_rate(1.0, hp.batch_size, world_size, accumulate, hp.base_batch_size)
        return hp.lr * scale, hp.disc_lr * scale

    def configure_optimizers(self) -> Any:
        total = int(self.trainer.estimated_stepping_batches) if self.hparams.schedule == "cosine" else 1
        optimizers, schedulers = self.optimizers_and_schedulers(total)
        if not schedulers:
            return optimizers if len(optimizers) > 1 else optimizers[0]
        return optimizers, schedulers

    def optimizers_and_schedulers(self, total_steps: int) -> tuple[list, list]:
        """Adam for the regressor (and the discriminator) and their lr schedules over ``total_steps``
        optimiser steps (what ``configure_optimizers`` returns under a Trainer; benchmarks call it
        directly, without one)."""
        hp = self.hparams
        lr, disc_lr = self.learning_rates()
        generator_params = [p for name, p in self.named_parameters() if not name.startswith("discriminator.")]
        optimizers = [adam(generator_params, lr, hp.weight_decay)]
        if self.discriminator is not None:
            optimizers.append(adam(list(self.discriminator.parameters()), disc_lr, hp.weight_decay))
        schedulers = lr_schedulers(optimizers, hp.schedule, milestones=hp.milestones or (), gamma=hp.gamma,
                                   warmup_steps=hp.warmup_steps, total_steps=total_steps)
        return optimizers, schedulers

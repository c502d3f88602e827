"""CycleGAN between synthetic (GTA-Human) and real person crops: the sim2real baseline of Table 6.

The paper "first train[s] a CycleGAN between real data and our synthetic GTA-Human data", then
uses the sim2real generator to restyle synthetic inputs while HMR trains (sec. 4.1). The recipe
is TLlib's / the original CycleGAN's (reference/domain_adaptation.md 4.4), with S = synthetic,
T = real:

    L_G = LSGAN(D_real(G_s2r(S)), 1) + LSGAN(D_syn(G_r2s(T)), 1)
          + 10 [ |G_r2s(G_s2r(S)) - S|_1 + |G_s2r(G_r2s(T)) - T|_1 ]      (cycle)
          + 5  [ |G_s2r(T) - T|_1 + |G_r2s(S) - S|_1 ]                    (identity)
    L_D = 1/2 [LSGAN(D_syn(S), 1) + LSGAN(D_syn(pool(G_r2s(T))), 0)]
        + 1/2 [LSGAN(D_real(T), 1) + LSGAN(D_real(pool(G_s2r(S))), 0)]

L1 terms are means over pixels; images are in [-1, 1]. Manual optimisation (Lightning's GAN
pattern): one Adam (lr 2e-4, betas 0.5/0.999) for both generators, stepped first with the
discriminators frozen, then one for both discriminators on pooled fakes (history of 50). The lr
is constant for ``epochs_constant`` epochs, then decays linearly to 0 over ``epochs_decay``.

Train it with ``train_cyclegan(...)`` or the command::

    python -m gtahuman.sim2real.cyclegan --real-crops DIR [DIR ...] --synthetic-crops DIR [...] --out DIR
    python -m gtahuman.sim2real.cyclegan --config experiment=<name> [key=value ...] --out DIR

(the second form takes the crop caches of that experiment's real and synthetic train sources).
The result is ``<out>/checkpoints/last.ckpt``; set ``adaptation.sim2real_checkpoint`` to it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import Tensor

from gtahuman.config import load_config
from gtahuman.sim2real.data import (
    UnpairedCropDataModule,
    crop_dirs_from_config,
)
from gtahuman.sim2real.nets import (
    ImagePool,
    PatchDiscriminator,
    ResnetGenerator,
)


def lsgan_loss(scores: Tensor, target_is_real: bool) -> Tensor:
    """Least-squares GAN loss: mean squared distance of raw patch scores to 1 (real) or 0 (fake)."""
    return F.mse_loss(scores, torch.full_like(scores, 1.0 if target_is_real else 0.0))


class CycleGANSystem(L.LightningModule):
    """Two ResNet generators (synthetic -> real, real -> synthetic), two PatchGANs; batches are
    ``{'real': (B, 3, H, W), 'synthetic': (B, 3, H, W)}`` in [-1, 1]. ``forward`` translates
    synthetic images to the real style. Defaults: resnet_9, 70x70 PatchGAN, instance norm."""

    def __init__(
        self,
        ngf: int = 64,
        n_blocks: int = 9,
        ndf: int = 64,
        disc_layers: int = 3,
        norm: str = "instance",
        dropout: bool = False,
        lambda_cycle: float = 10.0,
        lambda_identity: float = 5.0,  # absolute weight (= the original's 0.5 x lambda_cycle)
        pool_size: int = 50,
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        epochs_constant: int = 20,
        epochs_decay: int = 20,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if epochs_constant < 0 or epochs_decay < 0:
            raise ValueError(f"CycleGANSystem: epochs_constant and epochs_decay must be >= 0; "
                             f"got {epochs_constant}, {epochs_decay}")
        self.save_hyperparameters()
        self.automatic_optimization = False

        def generator() -> ResnetGenerator:
            return ResnetGenerator(ngf=ngf, n_blocks=n_blocks, norm=norm, dropout=dropout)

        def discriminator() -> PatchDiscriminator:
            return PatchDiscriminator(ndf=ndf, n_layers=disc_layers, norm=norm)

        self.g_synthetic_to_real, self.g_real_to_synthetic = generator(), generator()
        self.d_real, self.d_synthetic = discriminator(), discriminator()  # D_real judges real-style images
        self.pool_fake_real = ImagePool(pool_size, seed)
        self.pool_fake_synthetic = ImagePool(pool_size, seed + 1)

    def forward(self, synthetic: Tensor) -> Tensor:
        return self.g_synthetic_to_real(synthetic)

    # ------------------------------------------------------------------ losses

    def generator_losses(self, real: Tensor, synthetic: Tensor) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """(named terms incl. 'total', fake real-style images, fake synthetic-style images)."""
        hp = self.hparams
        fake_real = self.g_synthetic_to_real(synthetic)
        fake_synthetic = self.g_real_to_synthetic(real)
        terms = {
            "gan_synthetic_to_real": lsgan_loss(self.d_real(fake_real), True),
            "gan_real_to_synthetic": lsgan_loss(self.d_synthetic(fake_synthetic), True),
            "cycle_synthetic": F.l1_loss(self.g_real_to_synthetic(fake_real), synthetic),
            "cycle_real": F.l1_loss(self.g_synthetic_to_real(fake_synthetic), real),
        }
        if hp.lambda_identity > 0:  # skip two generator passes when the term is off
            terms["identity_real"] = F.l1_loss(self.g_synthetic_to_real(real), real)
            terms["identity_synthetic"] = F.l1_loss(self.g_real_to_synthetic(synthetic), synthetic)
        weights = {"cycle": hp.lambda_cycle, "identity": hp.lambda_identity, "gan": 1.0}
        terms["total"] = sum(weights[name.split("_")[0]] * value for name, value in terms.items())
        return terms, fake_real, fake_synthetic

    def discriminator_losses(self, real: Tensor, synthetic: Tensor, fake_real: Tensor,
                             fake_synthetic: Tensor) -> dict[str, Tensor]:
        """Each discriminator: 1/2 (real images scored 1 + generated ones scored 0). Fakes are
        used as given (the caller passes them through the image pools, detached)."""
        d_real = 0.5 * (lsgan_loss(self.d_real(real), True) + lsgan_loss(self.d_real(fake_real), False))
        d_synthetic = 0.5 * (lsgan_loss(self.d_synthetic(synthetic), True)
                             + lsgan_loss(self.d_synthetic(fake_synthetic), False))
        return {"d_real": d_real, "d_synthetic": d_synthetic, "total": d_real + d_synthetic}

    # ------------------------------------------------------------------ training

    @staticmethod
    def _images(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        missing = {"real", "synthetic"} - set(batch)
        if missing:
            raise KeyError(f"CycleGANSystem: a batch needs keys 'real' and 'synthetic'; missing {sorted(missing)}")
        return batch["real"], batch["synthetic"]

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        real, synthetic = self._images(batch)
        opt_g, opt_d = self.optimizers()
        # 1. Generators, with the discriminators frozen (toggle_optimizer switches their grads off).
        self.toggle_optimizer(opt_g)
        g_terms, fake_real, fake_synthetic = self.generator_losses(real, synthetic)
        opt_g.zero_grad()
        self.manual_backward(g_terms["total"])
        opt_g.step()
        self.untoggle_optimizer(opt_g)
        # 2. Discriminators, on a history of generated images.
        self.toggle_optimizer(opt_d)
        d_terms = self.discriminator_losses(real, synthetic, self.pool_fake_real.query(fake_real),
                                            self.pool_fake_synthetic.query(fake_synthetic))
        opt_d.zero_grad()
        self.manual_backward(d_terms["total"])
        opt_d.step()
        self.untoggle_optimizer(opt_d)
        logs = {f"train/g/{k}": v.detach() for k, v in g_terms.items()}
        logs.update({f"train/d/{k}": v.detach() for k, v in d_terms.items()})
        self.log_dict(logs, batch_size=int(real.shape[0]), prog_bar=False)

    def lr_factor(self, epoch: int) -> float:
        """Multiplier of ``lr`` in ``epoch`` (0-based): 1, then linearly down to 0."""
        hp = self.hparams
        if hp.epochs_decay == 0:
            return 1.0
        return max(0.0, 1.0 - max(0, epoch - hp.epochs_constant) / hp.epochs_decay)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        betas = (hp.beta1, hp.beta2)
        generators = [*self.g_synthetic_to_real.parameters(), *self.g_real_to_synthetic.parameters()]
        discriminators = [*self.d_real.parameters(), *self.d_synthetic.parameters()]
        optimizers = [torch.optim.Adam(generators, lr=hp.lr, betas=betas),
                      torch.optim.Adam(discriminators, lr=hp.lr, betas=betas)]
        schedulers = [torch.optim.lr_scheduler.LambdaLR(opt, self.lr_factor) for opt in optimizers]
        return optimizers, schedulers

    def on_train_epoch_end(self) -> None:
        for scheduler in self.lr_schedulers():  # manual optimisation: Lightning leaves them to us
            scheduler.step()


# ---------------------------------------------------------------------- training entry points

def train_cyclegan(real_crop_dirs: list[str], synthetic_crop_dirs: list[str], out_dir: str | Path, *,
                   img_res: int | None = None, load_res: int | None = None, batch_size: int = 1,
                   max_epochs: int = 40, epoch_length: int | None = 5000, max_steps: int = -1,
                   num_workers: int = 0, seed: int = 0, accelerator: str = "auto", devices: Any = "auto",
                   system_args: dict[str, Any] | None = None, progress: bool = True,
                   log_every_n_steps: int = 50) -> Path:
    """Train (or resume: ``<out_dir>/checkpoints/last.ckpt`` is continued) and return last.ckpt.

    ``system_args``: `CycleGANSystem` keyword arguments; the lr schedule defaults to constant
    for the first half of ``max_epochs`` and a linear decay over the second (TLlib: 20 + 20).
    ``max_steps`` counts optimiser steps: two per batch (generators, then discriminators).
    """
    out_dir = Path(out_dir)
    args = {"epochs_constant": max_epochs // 2, "epochs_decay": max_epochs - max_epochs // 2, "seed": seed,
            **(system_args or {})}
    L.seed_everything(seed, workers=True, verbose=False)
    system = CycleGANSystem(**args)
    data = UnpairedCropDataModule([str(d) for d in real_crop_dirs], [str(d) for d in synthetic_crop_dirs],
                                  img_res=img_res, load_res=load_res, batch_size=batch_size,
                                  num_workers=num_workers, epoch_length=epoch_length, seed=seed)
    checkpoints = out_dir / "checkpoints"
    last = ModelCheckpoint(dirpath=checkpoints, filename="last", save_top_k=1, monitor=None, every_n_epochs=1,
                           save_on_train_epoch_end=True, enable_version_counter=False)
    trainer = L.Trainer(max_epochs=max_epochs, max_steps=max_steps, accelerator=accelerator, devices=devices,
                        callbacks=[last], logger=CSVLogger(str(out_dir), name="logs", version=""),
                        default_root_dir=str(out_dir), enable_progress_bar=progress, enable_model_summary=progress,
                        log_every_n_steps=log_every_n_steps, num_sanity_val_steps=0)
    resume = checkpoints / "last.ckpt"
    trainer.fit(system, datamodule=data, ckpt_path=str(resume) if resume.is_file() else None)
    trainer.save_checkpoint(resume)  # also when max_steps stopped mid-epoch
    return resume


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m gtahuman.sim2real.cyclegan", description=__doc__.split("\n\n")[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--real-crops", nargs="+", metavar="DIR", help="crop caches of real images")
    source.add_argument("--config", nargs="*", metavar="KEY=VALUE",
                        help="take the crop caches of this experiment config's train sources (load_config overrides)")
    p.add_argument("--synthetic-crops", nargs="+", metavar="DIR", help="crop caches of synthetic images")
    p.add_argument("--out", required=True, help="output directory (checkpoints/last.ckpt, logs/)")
    p.add_argument("--img-res", type=int, default=None, help="training crop size (default: the caches' crop_res)")
    p.add_argument("--load-res", type=int, default=None, help="resize before the random crop (default: no resize)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--epoch-length", type=int, default=5000, help="samples per epoch")
    p.add_argument("--max-steps", type=int, default=-1)
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--n-blocks", type=int, default=9)
    p.add_argument("--ndf", type=int, default=64)
    p.add_argument("--norm", default="instance", choices=["instance", "batch"])
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--lambda-cycle", type=float, default=10.0)
    p.add_argument("--lambda-identity", type=float, default=5.0)
    p.add_argument("--pool-size", type=int, default=50)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default="auto")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.real_crops is not None and not args.synthetic_crops:
        p.error("--real-crops needs --synthetic-crops")
    if args.config is not None and args.synthetic_crops:
        p.error("--config takes both domains from the config; drop --synthetic-crops")
    return args


def main(argv: list[str] | None = None) -> Path:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.config is not None:
        real, synthetic = crop_dirs_from_config(load_config(args.config))
    else:
        real, synthetic = args.real_crops, args.synthetic_crops
    devices = int(args.devices) if str(args.devices).isdigit() else args.devices
    system_args = {"ngf": args.ngf, "n_blocks": args.n_blocks, "ndf": args.ndf, "norm": args.norm, "lr": args.lr,
                   "lambda_cycle": args.lambda_cycle, "lambda_identity": args.lambda_identity,
                   "pool_size": args.pool_size}
    checkpoint = train_cyclegan(real, synthetic, args.out, img_res=args.img_res, load_res=args.load_res,
                                batch_size=args.batch_size, max_epochs=args.epochs, epoch_length=args.epoch_length,
                                max_steps=args.max_steps, num_workers=args.workers, seed=args.seed,
                                accelerator=args.accelerator, devices=devices, system_args=system_args,
                                progress=not args.no_progress)
    print(json.dumps({"checkpoint": str(checkpoint), "real_crops": real, "synthetic_crops": synthetic}, indent=1))
    print(f"use it with: adaptation.sim2real_checkpoint={checkpoint}")
    return checkpoint


if __name__ == "__main__":
    main()

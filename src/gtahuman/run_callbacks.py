"""The Lightning pieces every run's Trainer uses (built by `gtahuman.run_trainer.build_trainer`).

* `ResumableCSVLogger`: ``logs/metrics.csv`` grows across resumed sessions of one run, and the
  rows of steps redone after a kill are dropped, so each step appears once;
* `AtomicCheckpointIO`: a checkpoint is written beside its target and renamed into place, so a
  full disk or a kill mid-write never cuts the previous ``last.ckpt``;
* `StepSeeding`: torch's RNG seeded from (seed, rank, epoch, batch) before each step, so a
  resumed run draws the same dropout masks as an uninterrupted one;
* `StopOnNonFiniteLoss`: stops at the first non-finite loss (or weights, for manual
  optimisation) before a checkpoint of broken weights can be written.

Signals (SIGINT, SIGTERM: save, say how to resume, exit 130 / 143) are `gtahuman.run_signals`.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.plugins.io import TorchCheckpointIO

from gtahuman.atomic import atomic_open


# ----------------------------------------------------------------------------------- running
class _AppendingWriter(ExperimentWriter):
    """Keeps an existing metrics.csv and its columns (Lightning's writer deletes the file when
    the log directory is not empty, which would erase a resumed run's first epochs)."""

    def _check_log_dir_exists(self) -> None:
        # the first session's hparams.yaml stays: a later session's settings (a resume, or one that
        # is refused) are in resumes.yaml, and the record must keep matching the checkpoints
        self._keep_hparams = self._fs.isfile(os.path.join(self.log_dir, self.NAME_HPARAMS_FILE))
        self._continuing = self._fs.isfile(self.metrics_file_path)
        if self._continuing:
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = next(csv.reader(file), [])

    def log_hparams(self, params: dict[str, Any]) -> None:
        if self._keep_hparams:
            self.hparams.update(params)
            return
        super().log_hparams(params)

    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        if self._continuing and step is not None:  # the resumed session's first row
            self._continuing = False
            self._drop_train_rows_from(step)
        super().log_metrics(metrics_dict, step)

    def _drop_train_rows_from(self, step: int) -> None:
        """A run killed between checkpoints logged steps it then lost; the resumed session trains
        them again, so their old training rows go (each step appears once in the log)."""
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            rows = list(csv.DictReader(file))
        kept = [r for r in rows if not (r.get("step") and int(r["step"]) >= step
                                        and any(v for k, v in r.items() if k and k.startswith("train/")))]
        if len(kept) < len(rows):
            with atomic_open(self.metrics_file_path, "w") as file:
                writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
                writer.writeheader()
                writer.writerows(kept)


class ResumableCSVLogger(CSVLogger):
    """CSVLogger whose ``logs/metrics.csv`` grows across resumed sessions of one run."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file beside the target and renamed over it
    (gtahuman.atomic): a full disk or a kill mid-write leaves the previous last.ckpt intact.
    Lightning's own writer stages in the system temp folder and moves the file, which across
    file systems is a copy that truncates the old checkpoint first. URLs keep Lightning's writer."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_open(path, "wb") as file:
            torch.save(checkpoint, file)

    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return super().load_checkpoint(path, *args, **kwargs)
        except RuntimeError as err:  # torch's message for a cut or damaged file does not name it
            raise RuntimeError(f"{path}: not a readable checkpoint ({str(err).splitlines()[0]}); it may be cut short "
                               "or damaged. Resume from another checkpoint, or start over without run.resume") from err


class StepSeeding(L.Callback):
    """Seeds torch's generator from (seed, rank, epoch, batch) before each training step, so the
    dropout masks (and prior draws) of a step do not depend on what ran before it: a run resumed
    mid-epoch repeats the uninterrupted run's steps exactly, and ranks draw different masks."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        entropy = [self.seed, trainer.global_rank, trainer.current_epoch, batch_idx]
        torch.manual_seed(int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1))


class StopOnNonFiniteLoss(L.Callback):
    """Stops the run with an error at the first non-finite training loss (NaN weights in an init
    checkpoint, divergence), before the checkpoint callbacks (Lightning runs them last) could
    write NaN weights over last.ckpt. Manual optimisation returns no loss: its weights are checked."""

    def __init__(self, last_checkpoint: Path):
        self.last_checkpoint = last_checkpoint

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            finite = bool(torch.isfinite(loss.detach()).all())
        else:  # one device sync for all weights
            finite = bool(torch.stack([torch.isfinite(p).all() for p in pl_module.parameters()]).all())
        if not finite:
            what = (f"the training loss is {float(loss):g}" if isinstance(loss, torch.Tensor)
                    else "the weights hold non-finite values")
            raise FloatingPointError(
                f"epoch {trainer.current_epoch}, batch {batch_idx} (global step {trainer.global_step}): {what}; "
                f"stopped before checkpointing it ({self.last_checkpoint} holds the last finite state, if any). "
                "Check model.init_checkpoint and the inputs, or lower optim.lr / set trainer.gradient_clip_val")

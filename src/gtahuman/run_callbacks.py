"""The Lightning pieces every run's Trainer uses (built by `gtahuman.run_trainer.build_trainer`).

* `ResumableCSVLogger`: ``logs/metrics.csv`` grows across resumed sessions of one run, and the
  rows of steps redone after a kill are dropped, so each step appears once;
* `AtomicCheckpointIO`: a checkpoint is written beside its target and renamed into place, so a
  full disk or a kill mid-write never cuts the previous ``last.ckpt``;
* `StepSeeding`: torch's RNG seeded from (seed, rank, epoch, batch) before each step, so a
  resumed run draws the same dropout masks as an uninterrupted one;
* `StopOnNonFiniteLoss`: stops at the first non-finite loss (or weights, for manual
  optimisation) before a checkpoint of broken weights can be written;
* `StopOnSignal` / `signal_guard`: SIGINT and SIGTERM save last.ckpt between optimizer steps,
  print the resume command and end the process with 130 / 143 (`RunInterrupted`).
"""
from __future__ import annotations

import contextlib
import csv
import logging
import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

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


# ------------------------------------------------------------------------------ interruptions
INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_status(signum: int) -> int:
    """The shell's convention for a process ended by a signal: 128 + its number (SIGINT 130,
    SIGTERM 143), which is what schedulers read as "stopped, not finished"."""
    return 128 + int(signum)


class RunInterrupted(SystemExit):
    """A run stopped by SIGINT or SIGTERM. A `SystemExit` whose code is the process's exit status
    (`exit_status`), so ``python -m experiments.run`` ends with 130 / 143 without a traceback;
    callers that run several trainings in one process may catch it.

    ``checkpoint``: the file saved at the stop (None when the stop could not save one, e.g. a
    second Ctrl+C); ``step``: its global step; ``resume``: the command that continues the run."""

    def __init__(self, signum: int, step: int | None, checkpoint: Path | None, resume: str):
        super().__init__(exit_status(signum))
        self.signum, self.step, self.checkpoint, self.resume = int(signum), step, checkpoint, resume


def resume_command(cfg: Any, argv: Sequence[str] | None = None) -> tuple[str, bool]:
    """The command that continues ``cfg``'s run: ``python -m experiments.run experiment=NAME
    <the overrides it was started with> run.run_id=ID run.resume=true``. The overrides are the
    process's command line when it is ``python -m experiments.run`` (or ``argv`` when given);
    otherwise they are unknown. Returns (command, whether the overrides are included)."""
    if argv is None:
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        if spec is not None and spec.name == "experiments.run":
            argv = sys.argv[1:]
    replaced = ("experiment=", "run.run_id=", "run.resume=")
    kept = [a for a in (argv or ()) if not a.startswith(replaced) and not a.startswith("-")]
    words = ["python", "-m", "experiments.run", f"experiment={cfg.experiment}", *kept,
             f"run.run_id={cfg.run.run_id}", "run.resume=true"]
    return " ".join(shlex.quote(w) for w in words), argv is not None


def _slurm_requeue_active(trainer: L.Trainer) -> bool:
    """Lightning's SLURM environment with auto-requeue handles SIGTERM and the requeue signal."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    connector = getattr(trainer, "_accelerator_connector", None)
    environment = getattr(connector, "cluster_environment", None) or getattr(trainer.strategy, "cluster_environment",
                                                                             None)
    return isinstance(environment, SLURMEnvironment) and bool(environment.auto_requeue)


class StopOnSignal(L.Callback):
    """SIGINT (Ctrl+C) and SIGTERM (schedulers, ``kill``) end a run resumably.

    While guarded (``with signal_guard(trainer):`` around ``trainer.fit`` and around the test pass
    in `gtahuman.train.train`), a signal only sets a flag, acted on between optimizer steps:

    * at the ``on_train_batch_end`` of a step that ran the optimizer (not inside a gradient
      accumulation) ``last.ckpt`` is saved, where Lightning's own step checkpoints are taken
      (every rank calls ``save_checkpoint``, rank 0 writes, atomically through
      `AtomicCheckpointIO`), so ``run.resume=true`` continues with the next step and the samplers'
      remaining samples;
    * the run stops at the next ``on_train_batch_start`` / ``on_train_epoch_start``, after the
      step's metrics are logged. A validation due after the step runs first, and the epoch-end
      checkpoints (best, last) it leads to are written as usual: a cut validation pass could not
      be resumed, and a resume from before it would skip it. A signal during a validation is
      acted on when it ends, at the epoch-end checkpoint (or after the next step, mid-epoch);
    * the stop raises `RunInterrupted` (a `SystemExit`): the guard prints what was saved and the
      resume command, and the process exits 128 + the signal (130 SIGINT, 143 SIGTERM);
    * after the last step the stop comes when ``fit`` returns (last.ckpt is final; the resume
      only tests); during the test pass, at the next test batch (there is nothing to save);
    * a second signal stops at once, without saving (the previous last.ckpt is intact:
      checkpoints are written atomically).

    With several processes the ranks agree on the stop with one small all-gather per step (and
    per epoch start), so all save the same step. Lightning's own SIGTERM handler, which ends a
    fit with exit status 0, is replaced while training or testing; under SLURM with Lightning's
    auto-requeue active, SIGTERM and the requeue signal are left to Lightning and only SIGINT is
    handled here. Outside the guard (data preparation, run-directory setup) the signals keep
    their default effect."""

    def __init__(self, checkpoint: Path, resume: str, overrides_known: bool = True,
                 logger: logging.Logger | None = None):
        self.checkpoint = Path(checkpoint)
        self.resume, self.overrides_known = resume, overrides_known
        self._log = logger or logging.getLogger("gtahuman")
        self._trainer: L.Trainer | None = None
        self.signals: tuple[int, ...] = ()
        self._previous: dict[int, Any] = {}
        self._depth = 0
        self._pid = os.getpid()
        self.signum: int | None = None  # the first signal received (or, under DDP, another rank's)
        self.saved_step: int | None = None  # the step last.ckpt holds once the stop is decided
        self._dumped_step: int | None = None  # the global step of the latest checkpoint written
        self._stopping = False
        self._fit_done, self._final_step = False, None

    # -- the guard --------------------------------------------------------------------------
    def guarding(self, trainer: L.Trainer) -> "StopOnSignal":
        self._trainer = trainer
        return self

    def __enter__(self) -> "StopOnSignal":
        self._depth += 1
        if self._depth == 1 and threading.current_thread() is threading.main_thread():
            requeue = self._trainer is not None and _slurm_requeue_active(self._trainer)
            if requeue:
                self._log.info("SLURM auto-requeue is active: SIGTERM and the requeue signal are left to Lightning")
            # a signal the process was started with ignored (``cmd &`` in a script ignores SIGINT) stays ignored
            self.signals = tuple(s for s in INTERRUPT_SIGNALS if not (requeue and s == signal.SIGTERM)
                                 and signal.getsignal(s) is not signal.SIG_IGN)
            self._previous = {s: signal.getsignal(s) for s in self.signals}
            self._take_signals()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._depth -= 1
        if self._depth > 0:
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous, self.signals = {}, ()
        if isinstance(exc, RunInterrupted):
            self._report(exc)
            return
        if self.signum is None:
            return
        if self._fit_done:
            self.saved_step = self._final_step
        stop = self._interrupted()
        if exc is None or isinstance(exc, (KeyboardInterrupt, SystemExit)):
            # the guarded work ended before a stop point (the signal came in the last validation,
            # or Lightning's own SIGTERM path raised)
            self._report(stop)
            raise stop from None
        # e.g. DataLoader workers killed by the same SIGTERM: the error is the signal's consequence
        self._log.warning("while stopping for %s the run raised", signal.Signals(self.signum).name, exc_info=exc)
        self._report(stop, cause=f"{type(exc).__name__}: {exc}")
        raise stop from exc

    def _take_signals(self) -> None:
        """(Re)install the handler: Lightning installs its own SIGTERM handler when fit or test
        starts (it would end the run with status 0), so this runs again at train and test start."""
        for signum in self.signals:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._pid or self._stopping:  # a forked DataLoader worker, or already stopping
            return
        name = signal.Signals(signum).name
        # os.write, not print() or logging: those could re-enter a write the main thread is in
        if self.signum is None:
            self.signum = signum
            os.write(2, f"\n{name} received: the run stops after the current training step and saves "
                        f"{self.checkpoint.name} (send it again to stop at once, without saving)\n".encode())
            return
        os.write(2, f"\n{name} received again: stopping now, without saving\n".encode())
        self.signum = signum
        raise self._interrupted()  # reported by the guard's __exit__

    # -- the stop ---------------------------------------------------------------------------
    def _interrupted(self) -> RunInterrupted:
        self._stopping = True
        assert self.signum is not None
        step = self.saved_step
        return RunInterrupted(self.signum, step, self.checkpoint if step is not None else None, self.resume)

    def _report(self, stop: RunInterrupted, cause: str | None = None) -> None:
        """The stop's message on stderr and in run.log (rank 0): what last.ckpt holds, the resume
        command, the exit status."""
        if self._trainer is not None and not self._trainer.is_global_zero:
            return
        name = signal.Signals(stop.signum).name
        if stop.checkpoint is not None and self._fit_done:
            what = (f"Stopped by {name} after training ended: {stop.checkpoint} holds the final step "
                    f"{stop.step}; the resume runs the tests.")
        elif stop.checkpoint is not None:
            what = f"Stopped by {name}: {stop.checkpoint} holds global step {stop.step}, the last step trained."
        elif self.checkpoint.is_file():
            what = (f"Stopped by {name} without a new checkpoint: {self.checkpoint} holds the last one "
                    "(the resume trains the steps after it again).")
        else:
            what = f"Stopped by {name} before the first checkpoint: the resume starts from the beginning."
        lines = [what]
        if cause:
            lines.append(f"(while stopping, the run raised {cause})")
        lines += ["To continue this run:", f"  {self.resume}"]
        if not self.overrides_known:
            lines.append("  with the key=value overrides it was started with (its config.yaml holds the settings)")
        lines.append(f"Exit status {stop.code} (128 + {name}).")
        message = "\n".join(lines)
        self._log.warning(message)
        print(message, file=sys.stderr, flush=True)

    def _agreed_signal(self, trainer: L.Trainer) -> int | None:
        """The signal to act on now: this process's, or under DDP any rank's (all ranks agree)."""
        local = self.signum or 0
        if trainer.world_size > 1:
            gathered = trainer.strategy.all_gather(torch.tensor(local, device=trainer.strategy.root_device))
            local = int(torch.as_tensor(gathered).max())
        if local and self.signum is None:
            self.signum = local
        return local or None

    def _armed(self) -> bool:
        return self._depth > 0 and not self._stopping

    # -- Lightning hooks --------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._depth:
            self._take_signals()

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._depth:
            self._take_signals()

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        # called for every checkpoint written (ours, the step and the epoch-end ones), on every
        # rank; last.ckpt is among the files written at each of those points, so it holds this step
        self._dumped_step = int(trainer.global_step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_done = True  # last.ckpt holds the final step (written or resumed from), if any
        self._final_step = int(trainer.global_step) if self.checkpoint.is_file() else None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # _should_accumulate: Lightning's own test for "this batch did not step the optimizer"
        if not self._armed() or self.saved_step is not None or trainer.fit_loop.epoch_loop._should_accumulate():
            return
        if self._agreed_signal(trainer) is None:
            return
        trainer.save_checkpoint(self.checkpoint, weights_only=False)  # rank 0 writes (atomically); all take part
        self.saved_step = int(trainer.global_step)

    def _stop_if_saved(self, trainer: L.Trainer) -> None:
        """Stop when last.ckpt holds the state now: the step this callback saved, or (a signal
        during a validation) the checkpoint written after it at the same step."""
        if not self._armed():
            return
        if self.saved_step is None and self._dumped_step == trainer.global_step:
            if self._agreed_signal(trainer) is not None:
                self.saved_step = self._dumped_step
        if self.saved_step is not None:
            raise self._interrupted()

    # the first hooks after a step's bookkeeping (logged metrics, progress counters) and after the
    # validation and epoch-end checkpoints due after it
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._stop_if_saved(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_saved(trainer)

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        # nothing to save; under DDP the ranks' test batches may differ in number (no collective
        # here), so there the pass finishes and the guard stops after it
        if self._armed() and self.signum is not None and trainer.world_size == 1:
            self.saved_step = self._final_step if self._fit_done else None
            raise self._interrupted()


def signal_guard(trainer: L.Trainer) -> contextlib.AbstractContextManager:
    """``with signal_guard(trainer):``: SIGINT / SIGTERM stop the guarded work resumably (the
    trainer's `StopOnSignal`); a no-op for a trainer without one."""
    for callback in trainer.callbacks:
        if isinstance(callback, StopOnSignal):
            return callback.guarding(trainer)
    return contextlib.nullcontext()

"""SIGINT and SIGTERM end a run resumably: `StopOnSignal` / `signal_guard` save ``last.ckpt``
between optimizer steps, print the resume command and end the process with 130 / 143
(`RunInterrupted`); under SLURM's auto-requeue Lightning's own handler is left in charge.
Part of the Trainer every run uses (`gtahuman.run_trainer.build_trainer`), beside the callbacks
of `gtahuman.run_callbacks`.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment
import torch

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

"""DataLoader workers leave the first stop signal to the main process.

A scheduler's SIGTERM often reaches every process of a job, not the main one alone (SLURM signals
the processes of a job step, `kill -- -PGID` a whole process group, Ctrl+C in a terminal sends
SIGINT to the foreground group). A worker that dies of it takes the run down with it: the main
process, which would have saved a checkpoint at the next step and printed the resume command
(`gtahuman.run_signals.StopOnSignal`), instead fails on "DataLoader worker killed by signal".

So a worker ignores its first SIGINT or SIGTERM: the main process received the same signal, stops
the run after the step in progress and shuts its workers down (their queues end them). A second
signal ends the worker (PyTorch's last resort for a worker that does not finish is a SIGTERM after
the first), and so does any signal once the main process is gone.
"""
from __future__ import annotations

import os
import signal
from types import FrameType

_state = {"parent": None, "signals": 0}


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    _state["signals"] += 1
    if _state["signals"] > 1 or os.getppid() != _state["parent"]:
        os._exit(128 + signum)  # a second signal, or an orphan: go now, as the default action would


def leave_stop_signals_to_the_main_process(worker_id: int) -> None:
    """A DataLoader ``worker_init_fn``: the first SIGINT / SIGTERM is ignored (see the module doc)."""
    del worker_id
    _state.update(parent=os.getppid(), signals=0)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _on_stop_signal)

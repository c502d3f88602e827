"""How many CPU threads a run gives torch (issue 22).

torch's default is one intra-op thread per core. On a small machine that is shared, that is the
worst choice: with one other busy process on a 2-core machine, two threads spent most of their
time waiting for each other (8 s per quickstart step against 0.33 s with one thread, 25x). The
policy: the cores this process may run on (``os.sched_getaffinity``) minus the ones other
processes keep busy (the machine's CPU use over 0.3 s before this run starts working, from
/proc/stat; the 1-minute load average where that is missing), at least one.

Explicit settings win, in this order: ``trainer.threads`` in the config, then the environment
(``OMP_NUM_THREADS``, which the findings set and the benchmarks set per job). A fixed thread
count also fixes the numbers a seed gives (sums are ordered by thread), so give one to
reproduce a run exactly.
"""
from __future__ import annotations

import logging
import os
import time

import torch

log = logging.getLogger(__name__)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; all cores where that is not known)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def busy_cores(window_s: float = 0.3) -> float:
    """About how many cores other processes keep busy now: the machine's non-idle CPU time over
    ``window_s`` (from /proc/stat, while this process waits), else the 1-minute load average (which
    lags: work that ended a minute ago still counts), else 0."""
    try:
        first = _cpu_times()
        time.sleep(window_s)
        second = _cpu_times()
        total, idle = second[0] - first[0], second[1] - first[1]
        if total > 0:
            return (total - idle) / total * (os.cpu_count() or 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0.0


def _cpu_times() -> tuple[int, int]:
    """(all, idle + iowait) jiffies of the machine, from the first line of /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)


def auto_threads(cores: int, busy: float) -> int:
    """The free cores: ``cores`` minus ``busy`` rounded to the nearest core, at least 1."""
    return max(1, min(cores, cores - int(busy + 0.5)))


def choose_threads(configured: int | None, environ: dict[str, str] | None = None) -> tuple[int, str]:
    """(threads, why) by the policy of the module docstring."""
    environ = dict(os.environ) if environ is None else environ
    if configured is not None:
        return int(configured), "trainer.threads"
    value = environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value), "OMP_NUM_THREADS"
    cores, busy = usable_cores(), busy_cores()
    return auto_threads(cores, busy), f"auto: {cores} usable cores, {busy:.1f} busy"


def apply_thread_policy(configured: int | None) -> int:
    """Set torch's intra-op threads by the policy; returns the number (logged with the reason)."""
    threads, why = choose_threads(configured)
    torch.set_num_threads(threads)
    log.info("torch threads: %d (%s)", threads, why)
    return threads

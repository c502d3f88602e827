"""gtahuman.threads: torch threads from the free cores, explicit settings first."""
from __future__ import annotations

import torch

from gtahuman.threads import apply_thread_policy, auto_threads, choose_threads


def test_free_cores_by_hand() -> None:
    assert auto_threads(2, 0.0) == 2  # an idle 2-core machine
    assert auto_threads(2, 1.0) == 1  # one core kept busy by another process
    assert auto_threads(2, 0.4) == 2 and auto_threads(2, 0.6) == 1  # rounded to the nearest core
    assert auto_threads(2, 5.0) == 1  # never below one
    assert auto_threads(16, 3.2) == 13


def test_explicit_settings_win() -> None:
    assert choose_threads(3, {"OMP_NUM_THREADS": "1"}) == (3, "trainer.threads")
    assert choose_threads(None, {"OMP_NUM_THREADS": "2"}) == (2, "OMP_NUM_THREADS")
    threads, why = choose_threads(None, {"OMP_NUM_THREADS": "x"})  # not a number: the policy decides
    assert threads >= 1 and why.startswith("auto: ")


def test_apply_sets_torch() -> None:
    before = torch.get_num_threads()
    try:
        assert apply_thread_policy(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_busy_cores_reads_the_machine() -> None:
    import os

    from gtahuman.threads import busy_cores

    busy = busy_cores(window_s=0.05)
    assert 0.0 <= busy <= (os.cpu_count() or 1) + 1e-9

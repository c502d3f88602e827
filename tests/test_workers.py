"""gtahuman.data.workers: a DataLoader worker survives the first SIGTERM (the one a scheduler sends
to every process of the job) and goes on the second, with real worker processes."""
from __future__ import annotations

import os
import signal
import time

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from gtahuman.data.workers import leave_stop_signals_to_the_main_process


class Numbers(Dataset):
    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor([i])


def signalled_loader(worker_init_fn, signals: int):
    loader = DataLoader(Numbers(), batch_size=4, num_workers=1, worker_init_fn=worker_init_fn,
                        multiprocessing_context="fork")
    batches = iter(loader)
    first = next(batches)
    worker = batches._workers[0]
    for _ in range(signals):
        os.kill(worker.pid, signal.SIGTERM)
        time.sleep(0.3)
    return batches, worker, first


def test_the_first_sigterm_leaves_the_worker_serving_and_the_second_ends_it() -> None:
    batches, worker, first = signalled_loader(leave_stop_signals_to_the_main_process, 1)
    rest = list(batches)
    assert worker.exitcode in (0, None) and torch.cat([first, *rest]).flatten().tolist() == list(range(64))
    # the second ends it; PyTorch's SIGCHLD handler in the main process then reports the worker's exit
    with pytest.raises(RuntimeError, match=f"exited unexpectedly with exit code {128 + signal.SIGTERM}"):
        batches, _, _ = signalled_loader(leave_stop_signals_to_the_main_process, 2)
        list(batches)


def test_without_it_the_first_sigterm_kills_the_worker_and_the_loader_fails() -> None:
    with pytest.raises(RuntimeError, match="killed by signal|exited unexpectedly"):
        batches, _, _ = signalled_loader(None, 1)
        list(batches)

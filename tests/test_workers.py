"""gtahuman.data.workers: a DataLoader worker survives the first SIGTERM (the one a scheduler sends
to every process of the job) and goes on the second, with real worker processes.

Each scenario runs in a child Python process with a time limit. Killing a worker inside the pytest
process itself is not safe: PyTorch's SIGCHLD handler stays installed there and raises "worker
exited unexpectedly" at whatever line the main process is on when *any* child exits later, for as
long as the loader of a killed worker is alive (a traceback keeps it alive). On CI that once
left the suite hanging in the last test until the job's time ran out.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCENARIO = textwrap.dedent("""
    import json, os, signal, sys, time
    import torch
    from torch.utils.data import DataLoader, Dataset
    from gtahuman.data.workers import leave_stop_signals_to_the_main_process

    class Numbers(Dataset):
        def __len__(self):
            return 64
        def __getitem__(self, i):
            return torch.tensor([i])

    use_it, signals = sys.argv[1] == "with", int(sys.argv[2])
    loader = DataLoader(Numbers(), batch_size=4, num_workers=1, multiprocessing_context="fork",
                        worker_init_fn=leave_stop_signals_to_the_main_process if use_it else None)
    batches = iter(loader)
    seen = next(batches).flatten().tolist()
    worker = batches._workers[0]
    report = {"error": None}
    try:
        for _ in range(signals):
            os.kill(worker.pid, signal.SIGTERM)
            time.sleep(0.3)
        for batch in batches:
            seen += batch.flatten().tolist()
    except RuntimeError as error:
        report["error"] = str(error)
    worker.join(timeout=10)
    report.update(items=seen, exitcode=worker.exitcode)  # None or 0 once PyTorch's handler reaped it
    print(json.dumps(report), flush=True)
    os._exit(0)  # no interpreter teardown: the loader's finalisers have nothing left to say
""")


def run_scenario(use_it: bool, signals: int) -> dict:
    done = subprocess.run([sys.executable, "-c", SCENARIO, "with" if use_it else "without", str(signals)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_first_sigterm_leaves_the_worker_serving() -> None:
    report = run_scenario(use_it=True, signals=1)
    assert report["error"] is None and report["items"] == list(range(64))
    assert report["exitcode"] == 0  # it ended when the loader was done, as a worker does


def test_the_second_sigterm_ends_the_worker_and_the_loader_says_so() -> None:
    report = run_scenario(use_it=True, signals=2)
    assert report["error"] is not None and "exited unexpectedly" in report["error"]
    assert len(report["items"]) < 64


def test_without_it_the_first_sigterm_kills_the_worker_and_the_loader_fails() -> None:
    report = run_scenario(use_it=False, signals=1)
    assert report["error"] is not None
    assert "killed by signal" in report["error"] or "exited unexpectedly" in report["error"]
    assert len(report["items"]) < 64

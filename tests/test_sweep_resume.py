"""A sweep worker killed with SIGKILL in the middle of a trial, then started again.

The restarted worker must keep the finished trial, mark the interrupted one FAIL (its process is
gone: it is on this machine and its pid is dead, no heartbeat grace needed), run it again with
the same parameters as a retry, and finish the budget with every grid cell COMPLETE once.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from gtahuman.sweep.objective import trial_run_id
from test_sweep_workers import GRID, finish, start_worker, sweep_arguments

N_TRIALS = 3


def wait_for(folder: Path, pattern: str, worker, log: Path, timeout: float = 180) -> None:
    end = time.time() + timeout
    while not any(folder.glob(pattern)):
        if worker.poll() is not None or time.time() > end:
            pytest.fail(f"{folder}/{pattern} never appeared (worker exit {worker.returncode}); output:\n"
                        f"{log.read_text()[-4000:]}")
        time.sleep(0.02)


def test_killed_worker_restarts_without_losing_or_repeating_trials(tiny_root: Path, tmp_path: Path) -> None:
    args = sweep_arguments(tiny_root, tmp_path, f"sweep.n_trials={N_TRIALS}")
    sweep_path = tmp_path / "table7_grid"
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start_worker(args, first_log)
    # trial 1's run directory appears once trial 0 is over and trial 1 is training: kill it there
    wait_for(sweep_path / "table7_real050_mini", "1-*/config.yaml", first, first_log)  # trial 1's folder
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    study = optuna.load_study(study_name="table7_grid", storage=f"sqlite:///{sweep_path / 'study.db'}")
    before = {t.number: t.state for t in study.get_trials()}
    assert before == {0: TrialState.COMPLETE, 1: TrialState.RUNNING}, before
    interrupted_params = study.trials[1].params

    output = finish(start_worker(args, second_log), second_log)
    assert "interrupted trials [1] failed and queued again" in output

    trials = {t.number: t for t in study.get_trials()}
    assert trials[1].state == TrialState.FAIL and "fail_reason" not in trials[1].user_attrs
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == 1]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == interrupted_params
    assert retries[0].user_attrs["worker"] != trials[1].user_attrs["worker"]  # run by the new worker
    assert Path(retries[0].user_attrs["run_dir"]).name == trial_run_id(retries[0].number, interrupted_params)
    complete = [t for t in trials.values() if t.state == TrialState.COMPLETE]
    cells = [(t.params["real_ratio"], t.params["total"]) for t in complete]
    assert len(complete) == N_TRIALS and len(set(cells)) == N_TRIALS  # no cell trained twice
    assert set(cells) <= {(r, c) for r in GRID["real_ratio"] for c in GRID["total"]}
    assert trials[0].state == TrialState.COMPLETE  # kept, not run again
    assert Path(trials[0].user_attrs["run_dir"]).name == trial_run_id(0, trials[0].params)
    assert not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials.values())
    rows = (sweep_path / "trials.csv").read_text().splitlines()[1:]
    assert sum(",COMPLETE," in r for r in rows) == N_TRIALS and sum(",FAIL," in r for r in rows) == 1

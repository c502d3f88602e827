"""Two sweep worker processes (``python -m experiments.sweep``) share one SQLite study.

Both start at the same moment on the tiny mini world with a 2 x 2 Table 7 grid and must finish
the 4 trials together: every grid cell trained exactly once, no failed trial, no "database is
locked" (pysqlite would otherwise let both workers claim one queued trial, or fail a deferred
transaction that upgrades to a write), and each worker ran at least one trial.

The helpers here also serve test_sweep_resume.py and test_sweep_postgres.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import TINY_OVERRIDES
from gtahuman.sweep.objective import trial_run_id

REPO = Path(__file__).resolve().parents[1]
GRID = {"real_ratio": [0.25, 0.5], "total": [0.6667, 1.0]}  # all four cells feasible on the tiny world


def sweep_arguments(tiny_root: Path, out_dir: Path, *extra: str) -> list[str]:
    """CLI arguments: the repository's table7_grid sweep, shrunk to 4 cells and the tiny world."""
    return ["sweep=table7_grid", f"sweep.output_root={out_dir}", "sweep.heartbeat_interval=1",
            *(f"sweep.space.{name}.choices=[{','.join(map(str, values))}]" for name, values in GRID.items()),
            *extra, *TINY_OVERRIDES, f"run.cache_dir={tiny_root / 'cache'}", "data.epoch_length=null",
            "trainer.max_epochs=1"]


def start_worker(args: list[str], log: Path) -> subprocess.Popen:
    # one thread per worker: two workers on two shared cores
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "experiments.sweep", *args], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def finish(worker: subprocess.Popen, log: Path, timeout: float = 240) -> str:
    try:
        worker.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
        pytest.fail(f"sweep worker did not finish in {timeout} s; its output:\n{log.read_text()[-4000:]}")
    text = log.read_text()
    assert worker.returncode == 0, text[-4000:]
    return text


def assert_grid_done_once(study: optuna.Study, workers: int) -> None:
    """Every cell of GRID COMPLETE exactly once, nothing failed or left running, and the trials
    spread over ``workers`` worker processes."""
    trials = [t for t in study.get_trials() if t.state != TrialState.WAITING]
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4, [(t.number, t.state, t.user_attrs) for t in trials]
    cells = sorted((t.params["real_ratio"], t.params["total"]) for t in trials)
    assert cells == sorted((r, c) for r in GRID["real_ratio"] for c in GRID["total"])
    assert len({t.user_attrs["run_dir"] for t in trials}) == 4
    for t in trials:  # each a complete run directory named by its trial number
        run_dir = Path(t.user_attrs["run_dir"])
        assert run_dir.name == trial_run_id(t.number, t.params) and (run_dir / "metrics.json").is_file()
    assert len({t.user_attrs["worker"] for t in trials}) == workers


def run_two_workers(tiny_root: Path, out_dir: Path, *extra: str) -> list[str]:
    args = sweep_arguments(tiny_root, out_dir, *extra)
    logs = [out_dir / f"worker{i}.log" for i in range(2)]
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = [start_worker(args, log) for log in logs]
    return [finish(w, log) for w, log in zip(workers, logs)]


def test_two_workers_share_one_sqlite_study(tiny_root: Path, tmp_path: Path) -> None:
    start = time.time()
    outputs = run_two_workers(tiny_root, tmp_path)
    for text in outputs:
        assert "database is locked" not in text and "Traceback" not in text, text[-4000:]
    db = tmp_path / "table7_grid" / "study.db"
    study = optuna.load_study(study_name="table7_grid", storage=f"sqlite:///{db}")
    assert_grid_done_once(study, workers=2)
    table = (tmp_path / "table7_grid" / "trials.csv").read_text().splitlines()
    assert len(table) == 1 + 4 and all(",COMPLETE," in line for line in table[1:])
    print(f"two workers, 4 trials: {time.time() - start:.1f} s")

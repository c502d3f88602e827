"""SLURM's auto-requeue, end to end without SLURM: a real ``python -m experiments.run`` process in
an environment that Lightning detects as a SLURM batch job, a fake ``scontrol`` on PATH, the
requeue signal (SIGUSR1) in the second epoch, the job killed as SLURM kills a requeued job, and
the same command started again with ``SLURM_RESTART_COUNT=1``, as the requeued job runs it.

What must hold: Lightning's plugin writes its hpc checkpoint and asks ``scontrol requeue <job>``;
the run is named after the job (no run.run_id given), so the restart finds it; the restart
continues it from the hpc checkpoint instead of refusing an existing run directory, and finishes.
"""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import TINY_OVERRIDES
from gtahuman.config import REPO_ROOT
from gtahuman.rundir import config_digest, continue_requeued_job, slurm_restarts, slurm_run_id
from test_signals import RUN, SIGNAL_AFTER_STEP, STEPS_PER_EPOCH, TIMEOUT_S, child_env, train_rows

JOB = "4242"


def run_of(runs: Path) -> Path:
    (run,) = runs.glob(f"slurm-{JOB}-*")
    return run


def slurm_env(fake_bin: Path, restarts: int) -> dict[str, str]:
    env = child_env()
    env.update(SLURM_JOB_ID=JOB, SLURM_JOB_NAME="gtahuman_train", SLURM_NTASKS="1", SLURM_NTASKS_PER_NODE="1",
               SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0", SLURM_NODELIST="localhost",
               SLURM_RESTART_COUNT=str(restarts), PATH=f"{fake_bin}{os.pathsep}{env['PATH']}")
    return env


def test_the_slurm_job_names_the_run_and_a_requeued_job_continues_it(tmp_path: Path) -> None:
    cfg = OmegaConf.create({"experiment": "quickstart", "run": {"run_id": None, "resume": False,
                                                                "output_root": str(tmp_path)}})
    assert slurm_run_id({}) is None and slurm_restarts({"SLURM_RESTART_COUNT": "2"}) == 2
    assert slurm_run_id({"SLURM_JOB_ID": "7", "SLURM_ARRAY_JOB_ID": "5", "SLURM_ARRAY_TASK_ID": "3"}) == "slurm-5_3"
    assert slurm_run_id({"SLURM_JOB_ID": "7", "SLURM_JOB_NAME": "interactive"}) is None  # salloc: no requeue
    other_seed = OmegaConf.create({**OmegaConf.to_container(cfg), "seed": 1})
    first = continue_requeued_job(cfg, {"SLURM_JOB_ID": "7"})
    run_id = cfg.run.run_id
    assert run_id == f"slurm-7-{config_digest(cfg)}" and not cfg.run.resume and f"run.run_id={run_id}" in first
    continue_requeued_job(other_seed, {"SLURM_JOB_ID": "7"})
    assert other_seed.run.run_id != run_id  # two commands of one batch script: two runs
    again_cfg = OmegaConf.create({"experiment": "quickstart", "run": {"run_id": None, "resume": False,
                                                                      "output_root": str(tmp_path)}})
    continue_requeued_job(again_cfg, {"SLURM_JOB_ID": "7"})
    assert again_cfg.run.run_id == run_id  # the same command after a requeue: the same run
    assert continue_requeued_job(cfg, {"SLURM_JOB_ID": "7", "SLURM_RESTART_COUNT": "1"}) is None  # no run yet
    (tmp_path / "quickstart" / run_id).mkdir(parents=True)
    (tmp_path / "quickstart" / run_id / "config.yaml").write_text("{}\n")
    again = continue_requeued_job(cfg, {"SLURM_JOB_ID": "7", "SLURM_RESTART_COUNT": "1"})
    assert cfg.run.resume and "SLURM_RESTART_COUNT=1" in again
    outside = OmegaConf.create({"experiment": "quickstart", "run": {"run_id": None, "resume": False,
                                                                    "output_root": str(tmp_path)}})
    assert continue_requeued_job(outside, {}) is None and outside.run.run_id is None  # not SLURM: unchanged


def test_lightnings_requeue_signal_then_the_requeued_job_finishes_the_run(tiny_root: Path, tiny_config,
                                                                          tmp_path: Path) -> None:
    tiny_config()  # the session's tiny world and toy body exist before the processes start
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    calls = tmp_path / "scontrol_calls.txt"
    scontrol = fake_bin / "scontrol"
    scontrol.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    output_root = tmp_path / "runs"
    args = [sys.executable, "-m", "experiments.run", *TINY_OVERRIDES, *RUN,
            f"run.cache_dir={tiny_root / 'cache'}", f"run.output_root={output_root}"]  # no run.run_id
    runs = output_root / "quickstart"
    log = tmp_path / "first.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, cwd=REPO_ROOT, env=slurm_env(fake_bin, 0), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not list(runs.glob(f"slurm-{JOB}-*")) or max(train_rows(run_of(runs)), default=-1) < SIGNAL_AFTER_STEP:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the run ended or stalled before step {SIGNAL_AFTER_STEP}:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        run = run_of(runs)  # slurm-<job>-<config digest>: the job's run, named before it started
        proc.send_signal(signal.SIGUSR1)  # SLURM's --signal=USR1@<s>: the job is about to reach its time limit
        while not (calls.is_file() and list(run.glob("hpc_ckpt_*.ckpt"))):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no hpc checkpoint or requeue after SIGUSR1:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        time.sleep(0.5)  # let the checkpoint's atomic write finish before the kill
    finally:
        proc.kill()  # the requeued job's first run is killed by SLURM
        proc.wait()
    assert calls.read_text().split() == ["requeue", JOB]
    assert not (run / "metrics.json").exists()
    second = subprocess.run(args, cwd=REPO_ROOT, env=slurm_env(fake_bin, 1), capture_output=True, text=True,
                            timeout=TIMEOUT_S)
    assert second.returncode == 0, second.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 2 * STEPS_PER_EPOCH
    text = (run / "run.log").read_text()
    assert "run.resume=true (SLURM_RESTART_COUNT=1: this job was requeued)" in text
    assert f"resuming from {run / 'hpc_ckpt_1.ckpt'}" in text  # the plugin's checkpoint, the newest
    resumes = yaml.safe_load((run / "resumes.yaml").read_text())
    assert len(resumes) == 1  # one accepted resume, recorded once training started again

"""Kill and resume: a run killed with SIGKILL mid-epoch and resumed (``run.resume=true``, same
``run_id``) ends where an uninterrupted run ends.

The run (tiny world, 16 steps per epoch, 2 epochs) is started with ``python -m experiments.run``
in a subprocess with ``trainer.checkpoint_every_n_steps=4``. The test watches last.ckpt, pauses
the process (SIGSTOP) at each new checkpoint, and kills it (SIGKILL) once a checkpoint inside the
second epoch exists; steps it took after that checkpoint are lost work, redone by the resume.

What "no lost or repeated steps" is checked by: the resumed run ends at the same global step; the
restored sampler hands out exactly the rest of the epoch's plan (the first resumed batch is plan
entry k x batch onwards); the per-step training losses after the checkpoint equal the
uninterrupted run's step for step (a skipped or repeated batch would shift them); the final
weights and test metrics equal the uninterrupted run's.

Tolerance: both runs use one intra-op thread, the same code and the same batches, so on one
machine they agree to the last bit (observed); the comparisons still allow 1e-5 relative
(metrics, losses) / 1e-6 absolute (weights), because torch.use_deterministic_algorithms is off and
CPU kernels may pick another reduction order (e.g. after a thread-pool change), which moves
float32 results in the last bits and would be no sign of a lost or repeated step.
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_OVERRIDES

from gtahuman.config import REPO_ROOT
from gtahuman.data.datamodule import MixedDataModule
from gtahuman.run_data import build_datamodule, ensure_assets
from gtahuman.train import train

STEPS_PER_EPOCH = 16
RUN = ("data.epoch_length=128", "trainer.max_epochs=2", "trainer.checkpoint_every_n_steps=4")
KILL_AFTER_STEP = STEPS_PER_EPOCH + 4  # the first checkpoint inside the second epoch
TIMEOUT_S = 300


def checkpoint_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=False, mmap=True)["global_step"])


def logged_train_steps(csv_path: Path) -> list[int]:
    """Steps with a training row in the run's CSV log (Lightning flushes it at every logged step)."""
    if not csv_path.is_file():
        return []
    with open(csv_path, newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")]


def start_and_kill(args: list[str], run: Path, log_file: Path) -> tuple[int, int]:
    """Run ``experiments.run args``; once last.ckpt holds >= KILL_AFTER_STEP steps and the log
    shows a later step (work the checkpoint does not hold), SIGKILL it. Returns (checkpoint
    step, last logged step) at the kill."""
    last_ckpt, csv_path = run / "checkpoints" / "last.ckpt", run / "logs" / "metrics.csv"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with open(log_file, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "experiments.run", *args], cwd=REPO_ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline, seen, step = time.monotonic() + TIMEOUT_S, None, -1
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the run ended (code {proc.returncode}) before it could be killed; see {log_file}:\n"
                            + log_file.read_text()[-3000:])
            stamp = last_ckpt.stat().st_mtime_ns if last_ckpt.is_file() else None
            if stamp is not None and stamp != seen:  # written atomically: a complete file or none
                seen, step = stamp, checkpoint_step(last_ckpt)
            if step >= KILL_AFTER_STEP and max(logged_train_steps(csv_path), default=-1) >= step:
                proc.send_signal(signal.SIGSTOP)  # hold it still while checkpoint and log are read again
                step, logged = checkpoint_step(last_ckpt), max(logged_train_steps(csv_path))
                if logged >= step:
                    proc.kill()
                    proc.wait()
                    assert proc.returncode == -signal.SIGKILL
                    return step, logged
                proc.send_signal(signal.SIGCONT)
            time.sleep(0.05)
        pytest.fail(f"no checkpoint after step {KILL_AFTER_STEP} within {TIMEOUT_S} s; see {log_file}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def losses_by_step(run: Path) -> dict[int, list[float]]:
    with open(run / "logs" / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    out: dict[int, list[float]] = {}
    for r in rows:
        out.setdefault(int(r["step"]), []).append(float(r["train/loss"]))
    return out


@pytest.fixture(scope="module")
def runs(tiny_config, tiny_root, single_thread) -> dict:
    paths = (f"run.cache_dir={tiny_root / 'cache'}", f"run.output_root={tiny_root / 'runs'}")
    reference = train(tiny_config(*RUN, "run.run_id=uninterrupted"))
    cli = [*TINY_OVERRIDES, *paths, *RUN, "run.run_id=killed"]
    run = Path(reference["run_dir"]).parent / "killed"
    killed_step, last_logged = start_and_kill(cli, run, tiny_root / "killed_run.log")
    at_kill = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    resumed = train(tiny_config(*RUN, "run.run_id=killed", "run.resume=true"))
    return {"reference": reference, "resumed": resumed, "killed_step": killed_step, "at_kill": at_kill,
            "last_logged_at_kill": last_logged,
            "run": run, "reference_run": Path(reference["run_dir"])}


def test_the_kill_came_mid_epoch_and_the_checkpoint_holds_the_sampler_position(runs) -> None:
    step, saved = runs["killed_step"], runs["at_kill"]
    assert STEPS_PER_EPOCH < step < 2 * STEPS_PER_EPOCH and step % STEPS_PER_EPOCH != 0
    sampler = saved["MixedDataModule"]["samplers"]["train"]
    assert (sampler["epoch"], sampler["consumed"]) == (1, (step - STEPS_PER_EPOCH) * 8)


def test_the_restored_sampler_continues_with_the_rest_of_the_epoch(runs, tiny_config) -> None:
    cfg = tiny_config(*RUN)
    dm: MixedDataModule = build_datamodule(cfg, ensure_assets(cfg))
    dm.load_state_dict(runs["at_kill"]["MixedDataModule"])
    sampler = dm.train_samplers()["train"]
    plan = np.asarray(sampler.global_plan())  # epoch 1's plan, regenerated from (seed, epoch)
    consumed = (runs["killed_step"] - STEPS_PER_EPOCH) * 8
    ids = np.concatenate([b["sample_id"].numpy() for b in dm.train_dataloader()])
    np.testing.assert_array_equal(ids, plan[consumed:])  # the rest of the epoch, each entry once


def test_resumed_run_ends_where_the_uninterrupted_one_ends(runs) -> None:
    reference, resumed = runs["reference"], runs["resumed"]
    assert resumed["global_step"] == reference["global_step"] == 2 * STEPS_PER_EPOCH
    for metric in ("mpjpe", "pa_mpjpe", "pve"):
        assert resumed["test"]["wild_test"][metric] == pytest.approx(reference["test"]["wild_test"][metric], rel=1e-5)
    ours = torch.load(runs["run"] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    theirs = torch.load(runs["reference_run"] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ours["MixedDataModule"] == theirs["MixedDataModule"]  # same final sampler position and plan
    for key, value in theirs["state_dict"].items():
        torch.testing.assert_close(ours["state_dict"][key], value, rtol=0, atol=1e-6, msg=key)


def test_every_step_after_the_checkpoint_was_trained_once_on_the_same_batch(runs) -> None:
    step = runs["killed_step"]
    assert runs["last_logged_at_kill"] >= step  # the killed process had trained past its checkpoint
    ours, theirs = losses_by_step(runs["run"]), losses_by_step(runs["reference_run"])
    # the lost steps' rows were replaced by the resumed session's: every step logged once
    assert sorted(ours) == list(range(2 * STEPS_PER_EPOCH)) and all(len(v) == 1 for v in ours.values())
    for s in ours:
        assert ours[s][0] == pytest.approx(theirs[s][0], rel=1e-5), s

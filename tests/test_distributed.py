"""Distributed training: ``gtahuman.train.train`` under Lightning DDP, two gloo processes on CPU.

``trainer.strategy=ddp trainer.devices=2`` is the code path of multi-GPU and multi-node runs
(only the backend differs: gloo here, NCCL on GPUs). A small driver script (written to tmp_path;
Lightning's launcher starts rank 1 by running it again) calls ``train(cfg, callbacks=[recorder])``;
the recorder saves, per rank, the sample ids of every training batch and the optimiser's lr.

Checked: each rank trained on its own positions of the epoch's plan (rank r: entries r, r+2, ...,
so together they visit the single-process plan once), with half the global batch each; the lr is
scaled by the global batch (optim.base_batch_size); one run directory holds one metrics.json
whose test metrics (gathered over both ranks) and both baselines (the train data's constant,
which each rank computed from the same plan, and the SMPL mean params) equal a single-process
evaluation of the same checkpoint (float32: 1e-5 relative, the batch split changes summation order).
The slow test starts the same run with torchrun, the multi-node recipe of docs/DISTRIBUTED.md.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_OVERRIDES

from experiments.evaluate import evaluate_checkpoint
from gtahuman.config import REPO_ROOT
from gtahuman.run_data import build_datamodule, ensure_assets
from gtahuman.run_trainer import RUN_ID_ENV, open_run_dir

DRIVER = textwrap.dedent('''
    """Test driver: train(cfg) with a callback that records what each rank trained on."""
    import sys

    import lightning as L
    import numpy as np

    from gtahuman.config import load_config
    from gtahuman.train import train


    class Recorder(L.Callback):
        def __init__(self, out):
            self.out, self.ids = out, []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.ids.append(batch["sample_id"].numpy().copy())

        def on_train_end(self, trainer, pl_module):
            np.savez(f"{self.out}/rank{trainer.global_rank}.npz", ids=np.stack(self.ids),
                     lr=trainer.optimizers[0].param_groups[0]["lr"], world_size=trainer.world_size)


    if __name__ == "__main__":  # the mini world renders with spawned workers
        train(load_config(sys.argv[2:]), callbacks=[Recorder(sys.argv[1])])
''')
EPOCH = ("data.epoch_length=64", "trainer.max_epochs=1", "optim.base_batch_size=4")  # 8 steps of 8 samples
LR, GLOBAL_BATCH, BASE_BATCH = 3e-4, 8, 4  # conftest's optim.lr and data.batch_size; BASE_BATCH as above


def run_driver(tmp_path: Path, tiny_root: Path, launcher: list[str], overrides: list[str]) -> Path:
    """Run the driver under ``launcher``; returns the folder with the per-rank records."""
    driver, records = tmp_path / "driver.py", tmp_path / "records"
    driver.write_text(DRIVER)
    records.mkdir()
    paths = [f"run.cache_dir={tiny_root / 'cache'}", f"run.output_root={tiny_root / 'runs'}"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop(RUN_ID_ENV, None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run([*launcher, str(driver), str(records), *TINY_OVERRIDES, *paths, *EPOCH, *overrides],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return records


def check_ranks_split_the_plan(records: Path, tiny_config) -> None:
    cfg = tiny_config(*EPOCH)  # one process: the plan every rank derives from (seed, epoch)
    plan = np.asarray(build_datamodule(cfg, ensure_assets(cfg)).train_samplers()["train"].global_plan())
    ranks = [np.load(records / f"rank{r}.npz") for r in (0, 1)]
    for rank, record in enumerate(ranks):
        assert record["ids"].shape == (8, GLOBAL_BATCH // 2)  # 8 steps of the per-rank batch
        np.testing.assert_array_equal(record["ids"].ravel(), plan[rank::2])
        assert int(record["world_size"]) == 2
        assert float(record["lr"]) == pytest.approx(LR * GLOBAL_BATCH / BASE_BATCH, rel=1e-12)
    # no position of the plan was trained by both ranks, none was left out
    positions = np.concatenate([np.arange(rank, plan.size, 2) for rank in (0, 1)])
    assert np.array_equal(np.sort(positions), np.arange(plan.size))


def run_dirs(tiny_root: Path) -> set[str]:
    runs = tiny_root / "runs" / "quickstart"
    return {p.name for p in runs.iterdir()} if runs.is_dir() else set()


def check_metrics_equal_a_single_process_evaluation(run: Path) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 8 and metrics["tested_checkpoint"] == "best.ckpt"
    single = evaluate_checkpoint(run / "checkpoints" / "best.ckpt", ["wild_test"])
    for metric in ("mpjpe", "pa_mpjpe", "pve", "orient_deg"):
        assert metrics["test"]["wild_test"][metric] == pytest.approx(single["test"]["wild_test"][metric], rel=1e-5)
        for baseline in ("mean_pose_baseline", "constant_baseline"):
            assert metrics[baseline]["wild_test"][metric] == pytest.approx(
                single[baseline]["wild_test"][metric], rel=1e-5)
    ours = np.load(run / "predictions" / "wild_test.npz")
    theirs = np.load(Path(single["folders"]["wild_test"]) / "wild_test.npz")
    np.testing.assert_array_equal(ours["sample_id"], theirs["sample_id"])  # every test sample once, in order
    np.testing.assert_allclose(ours["pa_mpjpe"], theirs["pa_mpjpe"], rtol=1e-5)


def test_ddp_two_processes_shard_the_data_scale_the_lr_and_gather_the_metrics(
        tmp_path, tiny_root, tiny_config, single_thread) -> None:
    ensure_assets(tiny_config())  # the world exists before rank 0 starts (as in any session)
    before = run_dirs(tiny_root)
    records = run_driver(tmp_path, tiny_root, [sys.executable],
                         ["run.run_id=ddp", "trainer.strategy=ddp", "trainer.devices=2"])
    assert run_dirs(tiny_root) - before == {"ddp"}  # rank 1 joined rank 0's run directory
    check_ranks_split_the_plan(records, tiny_config)
    check_metrics_equal_a_single_process_evaluation(tiny_root / "runs" / "quickstart" / "ddp")


@pytest.mark.slow
def test_torchrun_launch_trains_the_same_way(tmp_path, tiny_root, tiny_config, single_thread) -> None:
    cfg = tiny_config(*EPOCH)
    build_datamodule(cfg, ensure_assets(cfg))  # caches first: torchrun starts every rank at once
    before = run_dirs(tiny_root)
    records = run_driver(tmp_path, tiny_root, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                               "--nproc_per_node=2"],
                         ["run.run_id=torchrun", "trainer.strategy=ddp", "trainer.devices=2"])
    assert run_dirs(tiny_root) - before == {"torchrun"}
    check_ranks_split_the_plan(records, tiny_config)
    check_metrics_equal_a_single_process_evaluation(tiny_root / "runs" / "quickstart" / "torchrun")


def test_a_second_rank_without_a_run_id_names_the_fix(tiny_config, monkeypatch) -> None:
    monkeypatch.delenv(RUN_ID_ENV, raising=False)
    with pytest.raises(ValueError, match="process rank 1: run.run_id is not set.*torchrun or srun"):
        open_run_dir(tiny_config(), rank=1)
    monkeypatch.setenv(RUN_ID_ENV, "from-rank-0")  # what rank 0 exports before Lightning starts rank 1
    cfg = tiny_config()
    run = open_run_dir(cfg, rank=1)
    assert run.path.name == "from-rank-0" and cfg.run.run_id == "from-rank-0" and not run.path.exists()

"""Bad inputs and failures met by a whole run (``train`` / ``experiments.run``), one test per row
of docs/RELIABILITY.md that no other test file covers (the table cites those for the rest).

* disk full while a checkpoint is written: simulated by a ``torch.save`` that writes half the bytes
  and raises OSError(ENOSPC); the previous last.ckpt must survive intact and resume the run;
* a cut-short checkpoint at resume, a resume with another per-process batch: errors naming the file
  or the setting, and the run's record (config.yaml, git_commit.txt, resumes.yaml) left as it was;
* NaN weights in ``model.init_checkpoint``: the run stops at the first step, before a checkpoint;
* a wrong body-model directory and a config typo: refused before any work, naming the fix.
"""
from __future__ import annotations

import errno
import io
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from experiments.run import main as run_main
from gtahuman.body.assets import BodyAssetError
from gtahuman.rundir import RunDir
from gtahuman.systems.hmr import HMRSystem
from gtahuman.run_callbacks import StopOnNonFiniteLoss
from gtahuman.run_data import ensure_assets
from gtahuman.train import train
from gtahuman.train_image import system_arguments

SHORT = ("data.epoch_length=32", "trainer.max_epochs=2", "trainer.checkpoint_every_n_steps=2")  # 4 steps/epoch


# what a run directory says about its settings
RECORD = ("config.yaml", "git_commit.txt", "resumes.yaml", "logs/hparams.yaml")


def record_bytes(run: Path) -> dict[str, bytes]:
    return {name: (run / name).read_bytes() for name in RECORD}


def disk_full_after(successful_saves: int, real_save=torch.save):
    """A torch.save that works ``successful_saves`` times, then writes half of what it would and
    raises ENOSPC, as a full disk does part-way through a file."""
    calls = []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) <= successful_saves:
            return real_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return save


@pytest.fixture(scope="module")
def disk_full_run(tiny_config, single_thread) -> dict:
    cfg = tiny_config(*SHORT, "run.run_id=disk-full")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "save", disk_full_after(1))  # the step-2 checkpoint is written, step 4's is not
        with pytest.raises(OSError) as failure:
            train(cfg)
    run = Path(cfg.run.output_root) / cfg.experiment / "disk-full"
    last = run / "checkpoints" / "last.ckpt"
    survivor = torch.load(last, map_location="cpu", weights_only=False)
    leftovers = sorted(p.name for p in last.parent.iterdir() if p.name != "last.ckpt")
    first_config = (run / "config.yaml").read_bytes()
    resumed = train(tiny_config(*SHORT, "run.run_id=disk-full", "run.resume=true"))
    return {"failure": failure.value, "survivor": survivor, "leftovers": leftovers, "resumed": resumed, "run": run,
            "first_config": first_config}


def test_disk_full_keeps_the_previous_checkpoint_and_the_run_resumes_from_it(disk_full_run) -> None:
    assert disk_full_run["failure"].errno == errno.ENOSPC  # the run stops, saying why and where
    assert "disk full at " in str(disk_full_run["failure"]) and "checkpoints" in disk_full_run["failure"].filename
    survivor = disk_full_run["survivor"]
    assert survivor["global_step"] == 2  # the last complete checkpoint, loadable
    assert survivor["MixedDataModule"]["samplers"]["train"]["consumed"] == 2 * 8
    assert disk_full_run["leftovers"] == []  # the half-written temporary file was removed
    assert disk_full_run["resumed"]["global_step"] == 8  # resumed from step 2 and finished both epochs
    run = disk_full_run["run"]
    assert (run / "config.yaml").read_bytes() == disk_full_run["first_config"]  # the resume kept it
    assert [e["differs_from_config_yaml"] for e in RunDir(run).read_resumes()] == [{}]  # same settings


def test_the_command_names_the_full_disk_and_prints_how_to_continue(tiny_root, single_thread, capsys) -> None:
    from conftest import TINY_OVERRIDES

    args = [*TINY_OVERRIDES, f"run.cache_dir={tiny_root / 'cache'}", f"run.output_root={tiny_root / 'runs'}", *SHORT,
            "run.run_id=disk-full-cli"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "save", disk_full_after(0))  # the first checkpoint already finds the disk full
        assert run_main(args) == 1
    err = capsys.readouterr().err
    assert "error: disk full at " in err and "last.ckpt" in err and "MB free there" in err
    assert "Traceback" not in err
    assert err.rstrip().endswith("run.run_id=disk-full-cli run.resume=true")  # the command that continues it


def test_a_cut_checkpoint_is_named_at_resume(disk_full_run, tiny_config, tmp_path) -> None:
    last = disk_full_run["run"] / "checkpoints" / "last.ckpt"
    intact, before = last.read_bytes(), record_bytes(disk_full_run["run"])
    try:
        last.write_bytes(intact[: len(intact) // 3])
        with pytest.raises(RuntimeError, match=r"last\.ckpt: not a readable checkpoint .* cut short"):
            train(tiny_config(*SHORT, "run.run_id=disk-full", "run.resume=true", "trainer.max_epochs=3"))
    finally:
        last.write_bytes(intact)
    assert record_bytes(disk_full_run["run"]) == before  # the refused max_epochs=3 is recorded nowhere


def test_resume_with_another_per_process_batch_is_refused(disk_full_run, tiny_config) -> None:
    before = record_bytes(disk_full_run["run"])
    with pytest.raises(ValueError, match="taken with 8 samples per rank and batch, this run has 4"):
        train(tiny_config(*SHORT, "run.run_id=disk-full", "run.resume=true", "trainer.max_epochs=3",
                          "data.batch_size=4"))
    assert record_bytes(disk_full_run["run"]) == before  # config.yaml still says batch 8, as the checkpoints


def test_nan_weights_in_the_init_checkpoint_stop_the_run_before_any_checkpoint(tiny_config, tmp_path,
                                                                              single_thread) -> None:
    cfg = tiny_config(*SHORT)
    system = HMRSystem(**system_arguments(cfg, ensure_assets(cfg), list(cfg.data.train), None))
    state = system.state_dict()
    poisoned = next(k for k in state if k.startswith("head.") and k.endswith("weight"))
    state[poisoned][0] = float("nan")
    torch.save({"state_dict": state}, tmp_path / "nan_init.ckpt")
    nan_cfg = tiny_config(*SHORT, "run.run_id=nan-init", f"model.init_checkpoint={tmp_path / 'nan_init.ckpt'}",
                          "model.init_format=suite", "model.init_estimate=smpl_mean_params")
    with pytest.raises(FloatingPointError, match=r"epoch 0, batch 0 .*training loss is nan.*model\.init_checkpoint"):
        train(nan_cfg)
    checkpoints = Path(nan_cfg.run.output_root) / nan_cfg.experiment / "nan-init" / "checkpoints"
    assert list(checkpoints.glob("*.ckpt")) == []  # no checkpoint of NaN weights


def test_manual_optimisation_is_checked_through_its_weights(tmp_path) -> None:
    """variant=hmr optimises manually and returns no loss: the guard looks at the weights."""
    guard, trainer = StopOnNonFiniteLoss(tmp_path / "last.ckpt"), SimpleNamespace(current_epoch=1, global_step=7)
    module = torch.nn.Linear(3, 2)
    guard.on_train_batch_end(trainer, module, {}, None, 3)  # finite: nothing happens
    guard.on_train_batch_end(trainer, module, {"loss": torch.tensor(2.0)}, None, 3)
    with torch.no_grad():
        module.bias[1] = float("inf")
    with pytest.raises(FloatingPointError, match="epoch 1, batch 3 .global step 7.: the weights hold non-finite"):
        guard.on_train_batch_end(trainer, module, {}, None, 3)


def test_a_wrong_body_model_dir_is_refused_before_any_work(tiny_config, tmp_path) -> None:
    bad = tmp_path / "smpl"
    bad.mkdir()
    (bad / "SMPL_NEUTRAL.npz").write_bytes(b"this is not an npz")
    cfg = tiny_config(f"body.model_dir={bad}", f"run.cache_dir={tmp_path / 'cache'}",
                      f"run.output_root={tmp_path / 'runs'}")
    with pytest.raises(BodyAssetError) as err:
        train(cfg)
    message = str(err.value)
    assert str(bad) in message and "SMPL_MALE" in message and "J_regressor_h36m.npy" in message
    assert not (tmp_path / "runs").exists()  # no run directory, nothing trained


def test_a_config_typo_on_the_command_line_exits_with_the_key_and_a_suggestion(capsys) -> None:
    assert run_main(["trainer.checkpoint_every_n_step=4"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'trainer.checkpoint_every_n_step'" in err
    assert "did you mean 'checkpoint_every_n_steps'" in err

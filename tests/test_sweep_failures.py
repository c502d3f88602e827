"""A sweep in which no trial completes is a failed sweep (issue #20, item 7).

``python -m experiments.sweep`` exits 1 and prints the first failed trial's own error (exception
type and message, run directory, run.log), not a guess about missing validation sets: once
with an exception injected into ``train``, once with a real trial that fails on a corrupt
checkpoint file. The objective's own "no value" message says which of its causes it was.
"""
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

import gtahuman.sweep.run as sweep_run
import gtahuman.train
from experiments.sweep import main as sweep_main
from gtahuman.sweep.objective import no_objective_reason
from gtahuman.sweep.run import no_completed_trial
from test_sweep import tiny_experiment_args


def sweep_argv(tiny_root: Path, out: Path, *extra: str) -> list[str]:
    return ["sweep=table7_grid", "sweep.n_trials=2", f"sweep.output_root={out}", "sweep.heartbeat_interval=1",
            *tiny_experiment_args(tiny_root), *extra]


def test_sweep_whose_trials_all_raise_exits_1_with_the_trials_error(
        tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    def broken_train(cfg, callbacks=()):
        run_dir = Path(cfg.run.output_root) / cfg.experiment / cfg.run.run_id
        run_dir.mkdir(parents=True)
        (run_dir / "run.log").write_text("started\n")
        raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr(sweep_run, "prepare_data", lambda cfg, config_dir=None: None)  # no data needed
    monkeypatch.setattr(gtahuman.train, "train", broken_train)
    assert sweep_main(sweep_argv(tiny_root, tmp_path)) == 1
    err = capsys.readouterr().err
    assert "no trial completed (2 fail)" in err
    assert "first failed trial 0: OSError: [Errno 28] No space left on device (injected)" in err
    (run_dir,) = (tmp_path / "table7_grid" / "table7_real050_mini").glob("0-real_ratio=*")  # trial 0's folder
    assert f"run directory: {run_dir} (log: {run_dir / 'run.log'})" in err
    assert "validation" not in err


def test_sweep_whose_real_trial_fails_names_the_cause(tiny_root: Path, tmp_path: Path, single_thread,
                                                      capsys: pytest.CaptureFixture) -> None:
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"not a checkpoint at all")
    argv = sweep_argv(tiny_root, tmp_path, "sweep.n_trials=1", f"model.init_checkpoint={corrupt}",
                      "model.init_estimate=smpl_mean_params")
    assert sweep_main(argv) == 1
    err = capsys.readouterr().err
    assert "no trial completed (1 fail)" in err
    # the loader's own error (today torch's UnpicklingError; a stricter loader may word it otherwise)
    assert re.search(r"first failed trial 0: \w*(Error|Exception)\b.*: ", err), err
    assert "validation" not in err
    assert "run.log" in err


def test_objective_without_a_value_says_why() -> None:
    exp = OmegaConf.create({"experiment": "e", "data": {"val": {}},
                            "trainer": {"max_epochs": 1, "max_steps": -1, "limit_val_batches": None}})
    reporter = SimpleNamespace(metric="val/pa_mpjpe", values=[])
    assert "no data.val sets" in no_objective_reason(reporter, exp)
    exp.data.val = {"wild_val": {}}
    assert "no validation run finished (data.val: wild_val" in no_objective_reason(reporter, exp)
    reporter.values = [float("nan"), float("inf")]
    reason = no_objective_reason(reporter, exp)
    assert "not finite" in reason and "nan" in reason and "data.val" not in reason


def test_a_study_with_a_complete_trial_is_not_a_failure() -> None:
    study = optuna.create_study()
    study.add_trial(optuna.create_trial(state=TrialState.PRUNED, intermediate_values={0: 2.0}))
    assert "every trial was pruned" in no_completed_trial(study, "s")
    study.add_trial(optuna.create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "ValueError: boom"}))
    assert "first failed trial 1: ValueError: boom" in no_completed_trial(study, "s")
    study.add_trial(optuna.create_trial(value=1.0))
    assert no_completed_trial(study, "s") is None

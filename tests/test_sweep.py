"""Sweeps in one process: config validation, validation reporting and pruning, the shared trial
budget, a 3-trial Table 7 sweep on the tiny mini world through the CLI, a pruned trial, and
the recovery of a trial whose heartbeat stopped (a worker lost on another machine)."""
from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState

from conftest import TINY_OVERRIDES
from experiments.sweep import main as sweep_main
from gtahuman.config import ConfigError
from gtahuman.data.index import SampleIndex
from gtahuman.sweep.config import experiment_config, grid_values, load_sweep_config, target_trials
from gtahuman.data.samplers import SAMPLERS, SamplerConfigError
from gtahuman.sweep.objective import ValidationReporter, is_not_applicable, suggest_params, trial_run_id
from gtahuman.sweep.report import draw_heatmap, heatmap_grid, heatmap_notes
from gtahuman.sweep.run import run_worker
from gtahuman.sweep.study import WORKER_ATTR, ask, budget_state, is_surplus, open_storage, open_study, requeue


def tiny_experiment_args(tiny_root: Path) -> list[str]:
    return [*TINY_OVERRIDES, f"run.cache_dir={tiny_root / 'cache'}", "data.epoch_length=null", "trainer.max_epochs=1"]


def tiny_sweep(tiny_root: Path, out: Path, *sweep_args: str):
    return load_sweep_config("table7_grid", [f"output_root={out}", "heartbeat_interval=1", *sweep_args],
                             tiny_experiment_args(tiny_root))


def val_log(run_dir: Path) -> list[float]:
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        return [float(r["val/pa_mpjpe"]) for r in csv.DictReader(f) if r.get("val/pa_mpjpe")]


# ------------------------------------------------------------------------------------- config
def test_table7_grid_is_the_papers_five_by_five() -> None:
    cfg = load_sweep_config("table7_grid")
    assert target_trials(cfg) == 25
    assert grid_values("real_ratio", cfg.space.real_ratio) == [0.0, 0.25, 0.5, 0.75, 1.0]
    exp = experiment_config(cfg, {"real_ratio": 0.75, "total": 1.3333})
    assert exp.data.real_ratio == 0.75 and exp.data.sampler_args.total_multiple == 1.3333
    assert exp.data.sampler == "amount"
    real = load_sweep_config("table7_grid_real")
    assert grid_values("total", real.space.total) == [100000, 200000, 300000, 400000, 500000]
    tpe = load_sweep_config("mixing_tpe")
    assert grid_values("real_ratio", tpe.space.real_ratio)[:3] == [0.0, 0.05, 0.1]
    assert grid_values("total", tpe.space.total) == [1024 * k for k in range(1, 9)]


@pytest.mark.parametrize("sweep_args, experiment_args, expected", [
    (["n_trails=3"], [], "sweep.n_trails"),
    (["space.real_ratio.key=data.real_ration"], [], "data.real_ration"),
    (["metric=test/pa_mpjpe"], [], "validation metric"),
    (["space.real_ratio.choices=null", "space.real_ratio.low=0.0", "space.real_ratio.high=1.0"], [],
     "a grid sweep needs 'choices'"),
    (["n_trials=26"], [], "exceeds the grid's 25 cells"),
    (["sampler.name=annealing"], [], "sweep.sampler.name"),
    ([], ["trainer.max_epoch=2"], "trainer.max_epoch"),
])
def test_bad_sweep_configs_name_the_key(sweep_args, experiment_args, expected) -> None:
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.").replace("'", ".")):
        load_sweep_config("table7_grid", sweep_args, experiment_args)


def test_only_too_little_real_data_is_not_applicable() -> None:
    sources = np.array([0] * 10 + [1] * 10)  # 10 real, 10 synthetic
    for ratio, total, na in ((1.0, 15, True), (0.5, 15, None), (1.5, 15, False)):
        try:
            SAMPLERS.build("amount", sources=sources, real_ratio=ratio, synthetic_sources=[1], total=total)
        except SamplerConfigError as err:
            assert is_not_applicable(err) is na
        else:
            assert na is None  # 8 of 10 real samples: a valid cell


def test_unknown_sweep_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError, match="table7_grid"):
        load_sweep_config("table7_gird")


# ------------------------------------------------------------------------ reporting and pruning
def test_reporter_reports_every_validation_and_the_median_pruner_prunes() -> None:
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    for curve in ({0: 40.0, 1: 30.0}, {0: 60.0, 1: 50.0}):  # median at step 0: 50, at step 1: 40
        study.add_trial(optuna.create_trial(value=min(curve.values()), intermediate_values=curve))
    trainer = SimpleNamespace(sanity_checking=False, callback_metrics={"val/pa_mpjpe": torch.tensor(45.0)})
    trial = study.ask()
    reporter = ValidationReporter(trial, "val/pa_mpjpe")
    reporter.on_validation_end(trainer, None)  # 45 < 50: continue
    trainer.callback_metrics["val/pa_mpjpe"] = torch.tensor(41.0)
    with pytest.raises(optuna.TrialPruned, match="41.000 at validation 1"):  # 41 > 40
        reporter.on_validation_end(trainer, None)
    assert study.trials[2].intermediate_values == {0: 45.0, 1: 41.0} and reporter.best == 41.0
    trainer.callback_metrics = {"val/wild_val/mpjpe": torch.tensor(1.0)}
    with pytest.raises(KeyError, match="val/wild_val/mpjpe"):  # names what was logged
        reporter.on_validation_end(trainer, None)


def test_budget_counts_running_trials_and_retries_take_the_interrupted_place() -> None:
    study = optuna.create_study()
    study.add_trial(optuna.create_trial(value=1.0))  # 0 COMPLETE
    study.add_trial(optuna.create_trial(state=TrialState.FAIL))  # 1 FAIL of a dead worker
    study.add_trial(optuna.create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "N/A"}))  # 2
    study.add_trial(optuna.create_trial(state=TrialState.PRUNED, intermediate_values={0: 2.0}))  # 3
    running = study.ask()  # 4
    study.add_trial(optuna.create_trial(state=TrialState.WAITING, system_attrs={"failed_trial": 1}))  # 5: retry of 1
    retry = study.ask()  # pops the queued retry (number 5) first
    assert (running.number, retry.number) == (4, 5)
    assert budget_state(study) == (3, 5)  # 0, 2, 3 finished; 4, 5 running; 1 is replaced by 5
    assert not is_surplus(study, 5, n_trials=2)  # ranks as trial 1: only trial 0 is ahead of it
    assert is_surplus(study, 4, n_trials=4) and not is_surplus(study, 4, n_trials=5)  # 0, 2, 3, 5 ahead


def test_heatmap_grid_averages_complete_trials_and_notes_the_rest() -> None:
    rows = [{"state": "COMPLETE", "value": 50.0, "a": 0, "b": 10, "note": ""},
            {"state": "COMPLETE", "value": 60.0, "a": 0, "b": 10, "note": ""},
            {"state": "PRUNED", "value": 99.0, "a": 1, "b": 10, "note": ""},
            {"state": "FAIL", "value": None, "a": 1, "b": 20, "note": "N/A"}]
    table = heatmap_grid(rows, "a", "b", [0, 1], [10, 20])
    np.testing.assert_array_equal(np.isnan(table), [[False, True], [True, True]])
    assert table[0, 0] == 55.0
    assert heatmap_notes(rows, "a", "b", [0, 1], [10, 20]).tolist() == [["", ""], ["pruned", "N/A"]]


def test_the_heatmap_says_what_its_axes_and_colours_are(tmp_path) -> None:
    table = np.array([[60.0, 55.0], [58.0, np.nan]])
    fig = draw_heatmap([("val/mpjpe (objective, best over validations)", table)], np.full((2, 2), ""),
                       "data.real_ratio", "data.sampler_args.total_multiple", [0.25, 0.5], [0.3333, 0.6667],
                       tmp_path / "heat.png", "sweep t")
    ax, colorbar = fig.axes
    assert ax.get_ylabel() == "real share of the samples [data.real_ratio]"
    assert ax.get_xlabel() == "total amount (x the real pool) [data.sampler_args.total_multiple]"
    assert colorbar.get_ylabel() == "val/mpjpe (mm)"
    assert (tmp_path / "heat.png").stat().st_size > 5_000


# ------------------------------------------------------------------------------ whole sweeps
def real_pool_size(tiny_root: Path, out: Path) -> int:
    from gtahuman.run_data import ensure_assets, prepare_source

    exp = experiment_config(tiny_sweep(tiny_root, out), {"real_ratio": 0.5, "total": 1.0})
    body = ensure_assets(exp)
    return sum(len(SampleIndex.load(prepare_source(name, src, exp, body).index_dir))
               for name, src in exp.data.train.items() if src.role == "real")


def test_three_trial_table7_sweep_writes_its_table(tiny_root: Path, tmp_path: Path, single_thread) -> None:
    argv = ["sweep=table7_grid", "sweep.n_trials=3", f"sweep.output_root={tmp_path}",
            *tiny_experiment_args(tiny_root)]
    assert sweep_main(argv) == 0
    folder = tmp_path / "table7_grid"
    study = optuna.load_study(study_name="table7_grid", storage=f"sqlite:///{folder / 'study.db'}")
    trials = study.get_trials()
    assert len(trials) == 3
    pool = real_pool_size(tiny_root, tmp_path)
    for t in trials:
        # the paper's N/A cells, computed independently: more real samples asked than exist
        asked = round(t.params["real_ratio"] * round(t.params["total"] * pool))
        if asked > pool:
            assert t.state == TrialState.FAIL and "not applicable" in t.user_attrs["fail_reason"]
            continue
        assert t.state == TrialState.COMPLETE
        run_dir = Path(t.user_attrs["run_dir"])
        assert run_dir == folder / "table7_real050_mini" / trial_run_id(t.number, t.params)
        assert run_dir.name == f"{t.number}-real_ratio={t.params['real_ratio']:.4g}-total={t.params['total']:.4g}"
        assert t.value == pytest.approx(min(val_log(run_dir)))  # objective: best validation value
        test = json.loads((run_dir / "metrics.json").read_text())["test"]["wild_test"]
        assert t.user_attrs["test/wild_test/pa_mpjpe"] == pytest.approx(test["pa_mpjpe"])
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete, "the seeded grid's first three cells include trainable ones"
    with open(folder / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["number"]) for r in rows] == [0, 1, 2]
    assert [r["state"] for r in rows] == [t.state.name for t in trials]
    markdown = (folder / "trials.md").read_text().splitlines()
    assert sum(line.startswith("| ") for line in markdown) == 1 + 3
    best = json.loads((folder / "best.json").read_text())
    winner = min(complete, key=lambda t: t.value)
    assert best["number"] == winner.number and best["params"] == winner.params
    assert (folder / "heatmap.png").read_bytes()[:4] == b"\x89PNG"
    views = ["history.png", "intermediate.png", "slice.png"] + (["importance.png"] if len(complete) >= 2 else [])
    for name in views:  # Optuna's views of the study
        assert (folder / name).read_bytes()[:4] == b"\x89PNG", name
    if len(complete) < 2:
        assert any(line.startswith("- `importance.png`: not drawn: needs 2 complete trials") for line in markdown)


def test_pruned_trial_is_recorded_as_pruned(tiny_root: Path, tmp_path: Path, single_thread) -> None:
    cfg = tiny_sweep(tiny_root, tmp_path, "n_trials=1", "pruner.name=threshold", "pruner.upper=0.0")
    result = run_worker(cfg)
    assert result.ran == {0: "PRUNED"}
    trial = optuna.load_study(study_name="table7_grid", storage=result.storage).trials[0]
    run_dir = Path(trial.user_attrs["run_dir"])
    assert trial.state == TrialState.PRUNED
    assert trial.intermediate_values == {0: pytest.approx(val_log(run_dir)[0])}  # stopped at the first validation
    assert not (run_dir / "metrics.json").exists()  # never tested
    assert ",PRUNED," in (result.sweep_dir / "trials.csv").read_text()


def test_trial_with_a_stale_heartbeat_is_failed_and_rerun(tiny_root: Path, tmp_path: Path, single_thread) -> None:
    cfg = tiny_sweep(tiny_root, tmp_path, "n_trials=1", "grace_period=1")
    storage = open_storage(f"sqlite:///{tmp_path / 'table7_grid' / 'study.db'}", heartbeat_interval=1, grace_period=1)
    study = open_study(cfg, storage)
    lost = ask(study)  # a worker on another machine took trial 0, beat once, and vanished
    params = suggest_params(lost, cfg.space)
    lost.set_user_attr(WORKER_ATTR, "another-machine:12345")
    storage.record_heartbeat(lost._trial_id)
    time.sleep(2.2)
    result = run_worker(cfg)
    assert result.recovered == [0] and result.ran == {1: "COMPLETE"}
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL and trials[1].system_attrs["failed_trial"] == 0
    assert trials[1].params == params and math.isfinite(trials[1].value)


def test_a_claim_handed_back_is_taken_again_with_its_grid_cell(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    cfg = load_sweep_config("table7_grid")
    study = open_study(cfg, storage)
    first, second = ask(study), ask(study)
    cell = suggest_params(second, cfg.space)
    requeue(storage, second)  # a claim past the budget goes back to the queue
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING, TrialState.WAITING]
    again = ask(study)
    assert again.number == second.number and suggest_params(again, cfg.space) == cell
    assert suggest_params(first, cfg.space) != cell


def test_a_worker_with_another_search_space_is_refused(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    open_study(load_sweep_config("table7_grid"), storage)
    other = load_sweep_config("table7_grid", ["space.total.choices=[0.5,1.0]"])
    with pytest.raises(ConfigError, match=r"sweep\.space"):
        open_study(other, storage)

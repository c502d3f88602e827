"""A sweep worker: join (or create) the study and run trials until it has ``n_trials`` finished.

Start as many workers as there are devices, on one machine (the default SQLite file in the sweep
folder) or on many (``sweep.storage=postgresql://...``): they share one study and one budget.
Stopping a worker at any moment loses at most its running trial, which the next worker (or the
restarted one) re-runs with the same parameters; finished trials are never run again.

Loop of one worker:

1. re-queue interrupted trials (dead local worker: at once; silent heartbeat: after the grace);
2. stop when ``n_trials`` trials count as finished; when the rest are running elsewhere, wait
   for them (one may die and need re-running), unless ``wait_for_running`` is false;
3. ask the next trial (a queued retry first), give it back if a concurrent claim took the last
   slot, else train it under a heartbeat and tell the result (COMPLETE / PRUNED / FAIL).

At the end the worker writes the sweep report (report.py).
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from gtahuman.atomic import atomic_write_text
from gtahuman.config import DEFAULT_CONFIG_DIR, require_complete
from gtahuman.rundir import LOG_FILE
from gtahuman.run_data import build_datamodule, ensure_assets
from gtahuman.sweep.config import example_value, experiment_config, objective_metric, storage_url, sweep_dir, \
    target_trials
from gtahuman.sweep.objective import NotApplicable, run_trial
from gtahuman.sweep.report import write_report
from gtahuman.sweep.study import FAIL_REASON_ATTR, RUN_DIR_ATTR, WORKER_ATTR, Heartbeat, ask, budget_state, fail_and_retry, \
    file_lock, is_surplus, open_storage, open_study, recover_interrupted, requeue, worker_id


@dataclass
class WorkerResult:
    study_name: str
    storage: str
    sweep_dir: Path
    target: int
    finished: int  # trials of the study that count as finished when this worker stopped
    ran: dict[int, str] = field(default_factory=dict)  # trial number -> final state, by this worker
    recovered: list[int] = field(default_factory=list)  # interrupted trials this worker re-queued
    report: dict[str, Path] = field(default_factory=dict)
    # set when the study has no COMPLETE trial: why (the first failed trial's error); the CLI exits 1
    failure: str | None = None


def prepare_data(cfg: DictConfig, config_dir: Path | str = DEFAULT_CONFIG_DIR) -> None:
    """Generate and prepare the experiment's data once, under a lock in its cache dir: workers
    starting together on one machine would otherwise write the same caches at the same time."""
    exp = experiment_config(cfg, {n: example_value(s) for n, s in cfg.space.items()}, config_dir)
    require_complete(exp)  # body.model_dir of a real-data row etc.: stop before any trial
    with file_lock(Path(exp.run.cache_dir) / "sweep-prepare.lock"):
        build_datamodule(exp, ensure_assets(exp))


def _run_and_tell(study: optuna.Study, storage, trial: optuna.Trial, cfg: DictConfig, path: Path,
                  config_dir: Path | str, say: Callable[[str], None]) -> str:
    try:
        value = run_trial(trial, cfg, path, config_dir)
    except optuna.TrialPruned as err:
        study.tell(trial, state=TrialState.PRUNED)
        say(f"trial {trial.number} pruned ({err})")
        return TrialState.PRUNED.name
    except NotApplicable as err:
        trial.set_user_attr(FAIL_REASON_ATTR, f"not applicable: {err}"[:2000])
        study.tell(trial, state=TrialState.FAIL)
        say(f"trial {trial.number} not applicable (the paper's N/A): {err}")
        return TrialState.FAIL.name
    except (KeyboardInterrupt, SystemExit):
        fail_and_retry(study, storage, storage.get_trial(trial._trial_id), cfg.max_retry)  # re-run later
        raise
    except Exception as err:  # a broken trial must not stop the sweep; it is recorded with its reason
        say(f"trial {trial.number} failed:\n{traceback.format_exc()}")
        trial.set_user_attr(FAIL_REASON_ATTR, f"{type(err).__name__}: {err}"[:2000])
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL.name
    study.tell(trial, value)
    return TrialState.COMPLETE.name


def run_worker(cfg: DictConfig, config_dir: Path | str = DEFAULT_CONFIG_DIR, max_trials: int | None = None,
               say: Callable[[str], None] = print) -> WorkerResult:
    """Run trials of the sweep ``cfg`` (see gtahuman.sweep.config) until the study is done, or
    this worker has run ``max_trials``; then write the report into the sweep folder."""
    target, metric = target_trials(cfg), objective_metric(cfg, config_dir)
    prepare_data(cfg, config_dir)
    path = sweep_dir(cfg).resolve()
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path / "sweep.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    url = storage_url(cfg)
    storage = open_storage(url, cfg.heartbeat_interval, cfg.grace_period, cfg.max_retry)
    study = open_study(cfg, storage)
    result = WorkerResult(cfg.name, _redacted(url), path, target, 0)
    poll_s = min(5.0, float(cfg.heartbeat_interval))
    say(f"[sweep {cfg.name}] worker {worker_id()} on {_redacted(url)}: {metric} ({cfg.direction}), "
        f"{target} trials, sampler {cfg.sampler.name}, pruner {cfg.pruner.name}")
    while max_trials is None or len(result.ran) < max_trials:
        recovered = recover_interrupted(study, storage, cfg.max_retry)
        if recovered:
            result.recovered += recovered
            say(f"[sweep {cfg.name}] interrupted trials {recovered} failed and queued again")
        finished, claimed = budget_state(study)
        if finished >= target:
            break
        if claimed >= target:  # the last trials run elsewhere
            if not cfg.wait_for_running:
                break
            time.sleep(poll_s)
            continue
        trial = ask(study)
        with Heartbeat(storage, trial, cfg.heartbeat_interval):
            trial.set_user_attr(WORKER_ATTR, worker_id())
            if is_surplus(study, trial.number, target):
                requeue(storage, trial)
                continue
            start = time.time()
            state = _run_and_tell(study, storage, trial, cfg, path, config_dir, say)
        result.ran[trial.number] = state
        finished, _ = budget_state(study)
        value = storage.get_trial(trial._trial_id).value if state == "COMPLETE" else None
        say(f"[sweep {cfg.name}] trial {trial.number} {state} {metric}="
            f"{'-' if value is None else f'{value:.3f}'} params={trial.params} ({time.time() - start:.1f} s); "
            f"study: {finished}/{target} finished")
    result.finished = budget_state(study)[0]
    result.report = write_report(study, cfg, path, metric)
    say(f"[sweep {cfg.name}] worker done: study {result.finished}/{target} finished; report in {path}")
    result.failure = no_completed_trial(study, cfg.name)
    return result


def no_completed_trial(study: optuna.Study, name: str) -> str | None:
    """None when the study has a COMPLETE trial; else what went wrong, led by the first failed
    trial's own error (exception type and message), its run directory and run.log: a sweep
    whose every trial failed is a failed sweep, whatever the reason."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    if any(t.state == TrialState.COMPLETE for t in trials):
        return None
    states = [t.state.name for t in trials if t.state != TrialState.WAITING]
    counts = ", ".join(f"{states.count(s)} {s.lower()}" for s in dict.fromkeys(states)) or "no trial ran"
    lines = [f"sweep {name}: no trial completed ({counts})"]
    failed = next((t for t in trials if t.state == TrialState.FAIL and FAIL_REASON_ATTR in t.user_attrs), None)
    if failed is not None:
        lines.append(f"first failed trial {failed.number}: {failed.user_attrs[FAIL_REASON_ATTR]}")
        run_dir = failed.user_attrs.get(RUN_DIR_ATTR)
        if run_dir:
            log_file = Path(run_dir) / LOG_FILE
            lines.append(f"  run directory: {run_dir}" + (f" (log: {log_file})" if log_file.is_file() else ""))
    elif any(t.state == TrialState.FAIL for t in trials):
        lines.append("the failed trials were interrupted (their worker died); start a worker again to re-run them")
    elif states and all(s == TrialState.PRUNED.name for s in states):
        lines.append("every trial was pruned: the pruner's threshold or warm-up may be too strict")
    return "\n".join(lines)


def report_only(cfg: DictConfig, config_dir: Path | str = DEFAULT_CONFIG_DIR) -> dict[str, Path]:
    """Rewrite the report of an existing study (no trials run)."""
    storage = open_storage(storage_url(cfg), cfg.heartbeat_interval, cfg.grace_period, cfg.max_retry)
    study = optuna.load_study(study_name=cfg.name, storage=storage)
    return write_report(study, cfg, sweep_dir(cfg).resolve(), objective_metric(cfg, config_dir))


def _redacted(url: str) -> str:
    """The storage URL without its password (it is printed in logs)."""
    return make_url(url).render_as_string(hide_password=True)

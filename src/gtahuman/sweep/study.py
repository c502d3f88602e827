"""Optuna plumbing for sweeps: storage, sampler and pruner from the config, the trial budget that
several workers share, and the recovery of interrupted trials.

* Storage: any SQLAlchemy URL (``RDBStorage``). For SQLite every transaction is ``BEGIN
  IMMEDIATE`` with a long busy timeout: pysqlite otherwise reads outside a transaction, so two
  workers could both claim the same queued trial, and deferred transactions that both upgrade to
  write fail with "database is locked". Table creation runs under a file lock beside the file.
* Budget: ``n_trials`` finished trials across all workers, exactly. A trial counts once it is
  running; a trial whose worker died counts through its retry instead. Workers check before
  asking, and after asking (ranks by trial number) hand a surplus claim back to the queue.
* Recovery: a heartbeat thread per running trial; a trial whose heartbeat stops (worker killed,
  machine lost) is failed by the next worker and re-queued with the same parameters (Optuna's
  retry callback). A dead worker on this machine is noticed at once from its recorded pid.
"""
from __future__ import annotations

import contextlib
import copy
import importlib.util
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import event
from sqlalchemy.engine import make_url

from gtahuman.atomic import file_lock
from gtahuman.config import ConfigError
from gtahuman.sweep.config import grid_values

WORKER_ATTR = "worker"  # user attr "host:pid" of the worker that runs a trial
RUN_DIR_ATTR = "run_dir"
FAIL_REASON_ATTR = "fail_reason"  # set when a worker ends a trial as FAIL itself (counts as finished)
SIGNATURE_ATTR = "sweep_signature"  # study user attr: what every worker of the study must agree on
SQLITE_TIMEOUT_S = 120


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Heartbeats are 'experimental' in Optuna and it warns that they are meant for
    ``Study.optimize``: this module runs them itself (``Heartbeat``), on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        yield


class RetryInterrupted(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of an interrupted trial (same parameters, ``failed_trial`` = the first
    interrupted number), without the dead worker's identity and run directory: a queued retry
    carrying a dead pid would look interrupted itself the moment a worker takes it."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        trial = copy.deepcopy(trial)
        trial.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in (WORKER_ATTR, RUN_DIR_ATTR)}
        super().__call__(study, trial)


# ------------------------------------------------------------------------------------ storage
def _serialize_sqlite(engine) -> None:

    @event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # pysqlite must not open transactions on its own

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock before the first read

    engine.dispose()  # connections opened before the listeners existed are dropped


def with_installed_driver(url: str) -> str:
    """``postgresql://`` with whichever driver is installed (psycopg 3 or psycopg2): SQLAlchemy's
    default differs between versions (2.1: psycopg, 2.0: psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername != "postgresql":
        return url
    for driver in ("psycopg", "psycopg2"):
        if importlib.util.find_spec(driver) is not None:
            return parsed.set(drivername=f"postgresql+{driver}").render_as_string(hide_password=False)
    raise ModuleNotFoundError(f"storage {parsed.render_as_string()}: no PostgreSQL driver; "
                              "pip install 'psycopg[binary]' (or psycopg2-binary)")


def open_storage(url: str, heartbeat_interval: int = 60, grace_period: int | None = None,
                 max_retry: int | None = 3) -> RDBStorage:
    """An RDBStorage with heartbeats and re-queueing of stale trials (``max_retry`` times)."""
    with quiet_optuna():
        return _open_storage(with_installed_driver(url), heartbeat_interval, grace_period, max_retry)


def _open_storage(url: str, heartbeat_interval: int, grace_period: int | None, max_retry: int | None) -> RDBStorage:
    parsed = make_url(url)
    kwargs = dict(heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                  heartbeat_stale_trial_callback=RetryInterrupted(max_retry=max_retry))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        for attempt in range(3):  # workers creating the tables at the same moment: one wins
            try:
                return RDBStorage(url, **kwargs)
            except Exception:
                if attempt == 2:
                    raise
                time.sleep(1.0 + attempt)
    database = Path(parsed.database)
    with file_lock(database.with_name(database.name + ".lock")):
        storage = RDBStorage(url, engine_kwargs={"connect_args": {"timeout": SQLITE_TIMEOUT_S}}, **kwargs)
    _serialize_sqlite(storage.engine)
    return storage


def build_sampler(cfg: DictConfig) -> optuna.samplers.BaseSampler:
    spec = cfg.sampler
    if spec.name == "grid":
        space = {name: grid_values(name, param) for name, param in cfg.space.items()}
        return _GridSampler(space, seed=spec.seed)
    if spec.name == "random":
        return TrialSeededSampler(lambda seed: optuna.samplers.RandomSampler(seed=seed), spec.seed)
    startup = spec.n_startup_trials
    return TrialSeededSampler(lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup), spec.seed)


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid; the budget (not ``Study.stop``, which only works inside ``optimize``) ends
    the worker loop, so the stop at an exhausted grid is left out."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """A sampler rebuilt for every trial with seed (seed, trial number): reproducible and
    different per trial however many workers ask at once (one seed per worker would make
    workers that start together propose the same points)."""

    def __init__(self, make, seed: int) -> None:
        self._make, self._seed = make, seed
        self._inner = make(seed)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._inner = self._make(self._seed * 1_000_003 + trial.number)
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._inner.after_trial(study, trial, state, values)


def build_pruner(cfg: DictConfig) -> optuna.pruners.BasePruner:
    spec = cfg.pruner
    if spec.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.n_startup_trials, n_warmup_steps=spec.n_warmup_steps)
    if spec.name == "threshold":
        return optuna.pruners.ThresholdPruner(upper=spec.upper, lower=spec.lower)
    return optuna.pruners.NopPruner()


def sweep_signature(cfg: DictConfig) -> dict:
    """What every worker of one study must share. Not the overrides: machines may differ in
    paths (data.root, run.cache_dir) and workers in n_trials or storage host names."""
    keys = ("experiment", "metric", "direction", "sampler", "space")
    return {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k] for k in keys}


def open_study(cfg: DictConfig, storage: RDBStorage) -> optuna.Study:
    """Create the study or join it (``load_if_exists``); a worker started with another space,
    experiment or objective than the study's first worker stops with the differing keys."""
    study = optuna.create_study(study_name=cfg.name, storage=storage, sampler=build_sampler(cfg),
                                pruner=build_pruner(cfg), direction=cfg.direction, load_if_exists=True)
    mine = sweep_signature(cfg)
    theirs = study.user_attrs.get(SIGNATURE_ATTR)
    if theirs is None:
        study.set_user_attr(SIGNATURE_ATTR, mine)
    elif theirs != mine:
        differing = sorted(k for k in mine if mine[k] != theirs.get(k))
        raise ConfigError(f"study '{cfg.name}' in {storage.url} was started with other values of "
                          f"{', '.join('sweep.' + k for k in differing)}: "
                          + "; ".join(f"{k}: study {theirs.get(k)!r}, here {mine[k]!r}" for k in differing))
    return study


# ------------------------------------------------------------------------------------- budget
def budget_rank(trial: FrozenTrial) -> int:
    """A retry takes the place of the trial it repeats."""
    return int(trial.system_attrs.get("failed_trial", trial.number))


def counts_toward_budget(trial: FrozenTrial) -> bool:
    """Finished or running; a FAIL counts only when a worker ended it (not a dead worker's)."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
        return True
    return trial.state == TrialState.FAIL and FAIL_REASON_ATTR in trial.user_attrs


def budget_state(study: optuna.Study) -> tuple[int, int]:
    """(finished trials that count, trials that count including running ones)."""
    counted = [t for t in study.get_trials(deepcopy=False) if counts_toward_budget(t)]
    return sum(t.state != TrialState.RUNNING for t in counted), len(counted)


def is_surplus(study: optuna.Study, trial_number: int, n_trials: int) -> bool:
    """True when ``n_trials`` counting trials rank before this one (a claim raced past the budget)."""
    trials = study.get_trials(deepcopy=False)
    mine = next(t for t in trials if t.number == trial_number)
    ahead = sum(counts_toward_budget(t) and budget_rank(t) < budget_rank(mine)
                for t in trials if t.number != trial_number)
    return ahead >= n_trials


def requeue(storage: RDBStorage, trial: optuna.Trial) -> None:
    """Hand a claimed trial back to the queue (WAITING) for a later worker or a longer sweep."""
    storage.set_trial_state_values(trial._trial_id, TrialState.WAITING)


# ----------------------------------------------------------------------------------- recovery
def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_and_retry(study: optuna.Study, storage: RDBStorage, trial: FrozenTrial, max_retry: int | None) -> bool:
    """Mark an interrupted RUNNING trial FAIL and queue its retry; False if another worker did."""
    try:
        if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    with quiet_optuna():
        RetryInterrupted(max_retry=max_retry)(study, storage.get_trial(trial._trial_id))
    return True


def ask(study: optuna.Study) -> optuna.Trial:
    """The next trial: a queued one (a retry, a handed-back claim) first, else a new one."""
    with quiet_optuna():
        return study.ask()


def recover_interrupted(study: optuna.Study, storage: RDBStorage, max_retry: int | None) -> list[int]:
    """Fail and re-queue trials whose worker is gone: dead processes on this machine at once,
    any other once its heartbeat is older than the grace period. Returns the trial numbers."""
    host = socket.gethostname()
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = str(trial.user_attrs.get(WORKER_ATTR, ""))
        owner_host, _, pid = owner.rpartition(":")
        if owner_host == host and pid.isdigit() and not _pid_alive(int(pid)):
            if fail_and_retry(study, storage, trial, max_retry):
                recovered.append(trial.number)
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    with quiet_optuna():
        optuna.storages.fail_stale_trials(study)
    recovered += sorted({t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))} - before)
    return recovered


class Heartbeat:
    """Records the trial's heartbeat every ``interval`` seconds while the trial runs."""

    def __init__(self, storage: RDBStorage, trial: optuna.Trial, interval: int) -> None:
        self._storage, self._trial_id, self._interval = storage, trial._trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="sweep-heartbeat")

    def _beat(self) -> None:
        while True:
            self._storage.record_heartbeat(self._trial_id)
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> "Heartbeat":
        self._storage.record_heartbeat(self._trial_id)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

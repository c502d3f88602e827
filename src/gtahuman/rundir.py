"""Run directories: ``<output_root>/<experiment>/<run_id>/``.

A run directory holds everything a run produced and nothing else: the resolved config and the git
commit it started with (a resume keeps both and appends what it changed to resumes.yaml),
checkpoints (last + best), metrics.json, per-sample predictions, sampled features and a log.
Analysis scripts read run directories only.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml
from omegaconf import DictConfig, OmegaConf

from gtahuman.atomic import atomic_write_text
from gtahuman.config import REPO_ROOT, to_yaml

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
GIT_FILE = "git_commit.txt"
LOG_FILE = "run.log"
RESUMES_FILE = "resumes.yaml"  # one entry per accepted resume; config.yaml keeps the first session's settings


def git_commit(repo: Path = REPO_ROOT) -> str:
    """The commit the code ran from, with ``-dirty`` when the tree has local changes."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


@dataclass(frozen=True)
class RunDir:
    path: Path
    # A resume's record not yet written (create_run_dir(..., defer_resume_record=True))
    pending_resume: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoint_dir / "last.ckpt"

    def write_metrics(self, metrics: Mapping[str, Any]) -> None:
        atomic_write_text(self.path / METRICS_FILE, json.dumps(_jsonable(metrics), indent=2, sort_keys=True) + "\n")

    def read_metrics(self) -> dict[str, Any]:
        return json.loads((self.path / METRICS_FILE).read_text())

    def read_config(self) -> DictConfig:
        """The config the run started with (a resume does not rewrite it; see read_resumes)."""
        return OmegaConf.load(self.config_path)  # type: ignore[return-value]

    def read_resumes(self) -> list[dict[str, Any]]:
        """One entry per accepted resume, oldest first (empty for a run never resumed)."""
        path = self.path / RESUMES_FILE
        return list(yaml.safe_load(path.read_text()) or []) if path.is_file() else []

    def record_resume(self) -> None:
        """Append the pending resume entry to resumes.yaml (atomically; once per RunDir)."""
        if self.pending_resume is None or self._recorded:
            return
        entries = [*self.read_resumes(), dict(self.pending_resume)]
        atomic_write_text(self.path / RESUMES_FILE, yaml.safe_dump(entries, sort_keys=False))
        object.__setattr__(self, "_recorded", True)

    _recorded = False


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


def slurm_run_id(env: Mapping[str, str] = os.environ) -> str | None:
    """Inside a SLURM batch job, the job's part of a run id that a requeued job gets again:
    ``slurm-<job id>`` (an array task: ``slurm-<array job id>_<task id>``). None outside SLURM and
    in interactive allocations (job name ``bash`` or ``interactive``, as Lightning's SLURM
    detection has it), whose commands are not rerun by a requeue."""
    if env.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return None
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"slurm-{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return f"slurm-{env['SLURM_JOB_ID']}" if env.get("SLURM_JOB_ID") else None


def config_digest(cfg: DictConfig) -> str:
    """6 hex digits of the resolved config without its ``run.run_id`` and ``run.resume``: the same
    command gives the same digest, two runs of one batch script (another seed, another row) differ."""
    settings = OmegaConf.to_container(cfg, resolve=True)
    settings["run"] = {k: v for k, v in settings.get("run", {}).items() if k not in ("run_id", "resume")}
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:6]


def slurm_restarts(env: Mapping[str, str] = os.environ) -> int:
    """How often SLURM has requeued this job (``SLURM_RESTART_COUNT``; 0 on its first start)."""
    try:
        return int(env.get("SLURM_RESTART_COUNT") or 0)
    except ValueError:
        return 0


def continue_requeued_job(cfg: DictConfig, env: Mapping[str, str] = os.environ) -> str | None:
    """A SLURM job requeued (Lightning's auto-requeue after the requeue signal, or ``scontrol
    requeue``) runs its batch script again, i.e. the very commands that started its runs. So in a
    SLURM batch job the default run id is `slurm_run_id` plus the `config_digest` (each command of
    the script its own run, the same one again after the requeue), and on a restart of the job the
    run is continued (``run.resume=true``) when its folder holds a config.yaml. Returns what was
    changed, for the log (None: nothing)."""
    said = []
    OmegaConf.set_struct(cfg, False)
    if not cfg.run.run_id and slurm_run_id(env):
        cfg.run.run_id = f"{slurm_run_id(env)}-{config_digest(cfg)}"
        said.append(f"run.run_id={cfg.run.run_id} (the SLURM job's)")
    path = Path(cfg.run.output_root) / cfg.experiment / str(cfg.run.run_id)
    if cfg.run.run_id and not cfg.run.resume and slurm_restarts(env) > 0 and (path / CONFIG_FILE).is_file():
        cfg.run.resume = True
        said.append(f"run.resume=true (SLURM_RESTART_COUNT={slurm_restarts(env)}: this job was requeued)")
    OmegaConf.set_struct(cfg, True)
    return ", ".join(said) or None


def resume_checkpoint(run: "RunDir") -> Path | None:
    """What a resume continues from: the newer of checkpoints/last.ckpt (this suite's: every epoch
    end, and at a SIGINT / SIGTERM) and Lightning's hpc_ckpt_<n>.ckpt in the run folder (its SLURM
    plugin writes one at the requeue signal); None when the run left neither."""
    candidates = [p for p in (run.last_checkpoint, *run.path.glob("hpc_ckpt_*.ckpt")) if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime_ns) if candidates else None


def new_run_id() -> str:
    """A default run id: the local time to the second plus 4 random hex digits
    (``20261206-234501-3fa9``), so that runs started in the same second get different ids."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _claim(path: Path, explicit: bool) -> bool:
    """Create ``path`` with ``os.mkdir``, which fails when it exists: of two runs naming the same
    folder exactly one gets it. True when claimed; False when a default id was taken (pick
    another). An explicit id whose folder exists but is empty (left by a start that died before
    writing anything) is reused; one holding files is an error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path)
        return True
    except FileExistsError:
        if not explicit:
            return False
        if path.is_dir() and not any(path.iterdir()):
            return True
        raise FileExistsError(
            f"run directory {path} already exists (run.run_id={path.name}); to continue that run give "
            f"run.resume=true, or choose another run.run_id (or leave it out for a new unique id)") from None


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists are single values."""
    if isinstance(value, Mapping):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: value}


_ABSENT = "(absent)"
NOT_COMPARED = ("run.resume",)  # always false in config.yaml, true in a resume


def config_changes(saved: DictConfig, cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """Keys whose value in ``cfg`` differs from the saved config: ``{key: {"was": .., "now": ..}}``."""
    was = flatten(OmegaConf.to_container(saved, resolve=True, enum_to_str=True))
    now = flatten(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    return {key: {"was": was.get(key, _ABSENT), "now": now.get(key, _ABSENT)}
            for key in sorted(set(was) | set(now))
            if key not in NOT_COMPARED and was.get(key, _ABSENT) != now.get(key, _ABSENT)}


def create_run_dir(cfg: DictConfig, defer_resume_record: bool = False) -> RunDir:
    """Claim a new run directory and write config.yaml and git_commit.txt; or, with
    ``run.resume``, reopen an existing one without rewriting either.

    A new run without ``run.run_id`` gets :func:`new_run_id`, claimed atomically (``os.mkdir``):
    runs started together never share a directory. An explicit id that already holds a run is an
    error unless ``run.resume=true``.

    A resume keeps config.yaml (the settings the run started with) and appends an entry to
    resumes.yaml: when, from which commit, and the keys that differ from config.yaml. With
    ``defer_resume_record`` the entry is only kept on the returned RunDir (``pending_resume``)
    and written by :meth:`RunDir.record_resume`, once the checkpoint has been accepted
    (:func:`resume_record_callbacks`), so a refused resume leaves config.yaml, git_commit.txt and
    resumes.yaml as they were."""
    run_id = cfg.run.run_id
    parent = Path(cfg.run.output_root) / cfg.experiment
    pending = None
    if cfg.run.resume:
        if not run_id:
            raise ValueError(f"run.resume=true needs run.run_id: the id of the run to continue (a folder "
                             f"under {parent})")
        path = parent / run_id
        if not (path / CONFIG_FILE).is_file():
            raise FileNotFoundError(
                f"run.resume=true but {path / CONFIG_FILE} does not exist; give the run_id of an "
                f"existing run under {parent}"
            )
        pending = {"resumed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git_commit": git_commit(),
                   "differs_from_config_yaml": config_changes(OmegaConf.load(path / CONFIG_FILE), cfg)}
    elif run_id:
        path = parent / run_id
        _claim(path, explicit=True)
    else:
        for _ in range(100):
            run_id = new_run_id()
            path = parent / run_id
            if _claim(path, explicit=False):
                break
        else:  # 100 random suffixes all taken within one second: something else is wrong
            raise FileExistsError(f"could not claim a new run directory under {parent} (100 ids taken); "
                                  "give run.run_id")
    OmegaConf.set_struct(cfg, False)
    cfg.run.run_id = run_id
    OmegaConf.set_struct(cfg, True)
    run = RunDir(path, pending_resume=pending)
    if pending is None:
        atomic_write_text(path / CONFIG_FILE, to_yaml(cfg))
        atomic_write_text(path / GIT_FILE, git_commit() + "\n")
    elif not defer_resume_record:
        run.record_resume()
    return run


def resume_record_callbacks(run: RunDir) -> list:
    """Lightning callbacks that write ``run``'s pending resume record once training starts, i.e.
    after the checkpoint, the sampler positions and the training state were restored (a refused
    resume raises before). Empty when nothing is pending (a new run, or a rank other than 0)."""
    if run.pending_resume is None:
        return []
    import lightning as L  # only training needs it; analysis imports this module too

    class RecordResume(L.Callback):
        def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            if trainer.is_global_zero:
                run.record_resume()

    return [RecordResume()]


def attach_log(run: RunDir, name: str = "gtahuman") -> logging.Logger:
    """Log to ``run.log`` in the run directory (appending, so a resumed run keeps its history)."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    log_path = str(run.path / LOG_FILE)
    if not any(isinstance(h, logging.FileHandler) and h.baseFilename == log_path for h in logger.handlers):
        handler = logging.FileHandler(log_path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    return logger

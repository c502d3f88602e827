"""Run directories: ``<output_root>/<experiment>/<run_id>/``.

A run directory holds everything a run produced and nothing else: the resolved config, the git
commit it ran from, checkpoints (last + best), metrics.json, per-sample predictions, sampled
features and a log. Analysis scripts read run directories only.
"""
from __future__ import annotations

import json
import logging
import math
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from gtahuman.atomic import atomic_write_text
from gtahuman.config import REPO_ROOT, to_yaml

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
GIT_FILE = "git_commit.txt"
LOG_FILE = "run.log"


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
        return OmegaConf.load(self.config_path)  # type: ignore[return-value]


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


def create_run_dir(cfg: DictConfig) -> RunDir:
    """Make (or, with ``run.resume``, reopen) the run directory and record config and commit."""
    run_id = cfg.run.run_id or time.strftime("%Y%m%d-%H%M%S")
    path = Path(cfg.run.output_root) / cfg.experiment / run_id
    if cfg.run.resume:
        if not (path / CONFIG_FILE).is_file():
            raise FileNotFoundError(
                f"run.resume=true but {path / CONFIG_FILE} does not exist; give the run_id of an "
                f"existing run under {path.parent}"
            )
    elif path.exists() and any(path.iterdir()):
        raise FileExistsError(f"run directory {path} already exists; set run.resume=true to continue it "
                              "or choose another run.run_id")
    path.mkdir(parents=True, exist_ok=True)
    OmegaConf.set_struct(cfg, False)
    cfg.run.run_id = run_id
    OmegaConf.set_struct(cfg, True)
    atomic_write_text(path / CONFIG_FILE, to_yaml(cfg))
    atomic_write_text(path / GIT_FILE, git_commit() + "\n")
    return RunDir(path)


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

"""Two sweep workers on one study in PostgreSQL, the multi-machine setup (docs/SWEEPS.md).

Runs when ``GTAHUMAN_TEST_POSTGRES_URL`` names a database the test may create tables in (.ci/run
starts a throw-away server and sets it); skipped otherwise. Each run uses a new study name, so
the database may be reused.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import optuna
import pytest

from gtahuman.sweep.study import open_storage
from test_sweep_workers import assert_grid_done_once, run_two_workers

POSTGRES_URL = os.environ.get("GTAHUMAN_TEST_POSTGRES_URL")


@pytest.mark.skipif(not POSTGRES_URL, reason="GTAHUMAN_TEST_POSTGRES_URL is not set (no PostgreSQL server; "
                                             ".ci/run starts one and sets it)")
def test_two_workers_share_one_postgres_study(tiny_root: Path, tmp_path: Path) -> None:
    name = f"test_{uuid.uuid4().hex[:12]}"
    outputs = run_two_workers(tiny_root, tmp_path, f"sweep.name={name}", f"sweep.storage={POSTGRES_URL}")
    for text in outputs:
        assert "Traceback" not in text, text[-4000:]
    study = optuna.load_study(study_name=name, storage=open_storage(POSTGRES_URL))
    assert_grid_done_once(study, workers=2)
    assert not (tmp_path / name / "study.db").exists()  # nothing fell back to SQLite
    assert len((tmp_path / name / "trials.csv").read_text().splitlines()) == 1 + 4

"""Opening run directories (``gtahuman.rundir.create_run_dir`` through ``train.open_run_dir``),
without training: default ids never collide, an explicit id that holds a run is refused unless
resumed, and a resume never rewrites the run's config.yaml (docs/RELIABILITY.md).

The Trainer's side of a resume is imitated: ``train()`` passes ``resume_record_callbacks(run)`` to
the Trainer, whose ``on_train_start`` runs only after the checkpoint, the sampler positions and the
training state were restored; a refused resume raises before it (test_faults.py shows that with
real refusals).
"""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from omegaconf import OmegaConf

from gtahuman import rundir
from gtahuman.rundir import CONFIG_FILE, GIT_FILE, RESUMES_FILE, RunDir, create_run_dir, resume_record_callbacks
from gtahuman.run_trainer import RUN_ID_ENV, open_run_dir


@pytest.fixture
def config(tiny_config, tmp_path, monkeypatch):
    """``config(*overrides)``: the tiny config writing runs under this test's tmp_path."""
    monkeypatch.setenv(RUN_ID_ENV, "unset")  # open_run_dir exports rank 0's id; undone after the test
    return lambda *overrides: tiny_config(f"run.output_root={tmp_path}", *overrides)


def accept(run: RunDir) -> None:
    """What the Trainer does once the resumed checkpoint has been restored."""
    for callback in resume_record_callbacks(run):
        callback.on_train_start(SimpleNamespace(is_global_zero=True), None)


def test_runs_started_in_the_same_second_get_their_own_directories(config, monkeypatch) -> None:
    # The old default id was the time to the second: pin the clock so every run starts "together".
    monkeypatch.setattr(time, "strftime", lambda fmt, *args: "20261206-234501")
    configs = [config() for _ in range(6)]
    start, opened, errors = threading.Barrier(len(configs)), [], []

    def open_one(cfg) -> None:
        start.wait()
        try:
            opened.append((open_run_dir(cfg, rank=0), cfg.run.run_id))
        except Exception as err:  # noqa: BLE001 (the test reports it)
            errors.append(err)

    threads = [threading.Thread(target=open_one, args=(cfg,)) for cfg in configs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    paths = {run.path for run, _ in opened}
    assert len(paths) == len(configs)  # six runs, six directories
    for run, run_id in opened:
        assert re.fullmatch(r"20261206-234501-[0-9a-f]{4}", run_id) and run.path.name == run_id
        assert OmegaConf.load(run.path / CONFIG_FILE).run.run_id == run_id  # each wrote its own config


def test_a_taken_default_id_is_skipped_not_shared(config, monkeypatch) -> None:
    monkeypatch.setattr(time, "strftime", lambda fmt, *args: "20261206-234501")
    suffixes = iter(["3fa9", "3fa9", "3fa9", "77c0"])  # the second run draws the first one's id twice
    monkeypatch.setattr(rundir.secrets, "token_hex", lambda n: next(suffixes))
    first, second = create_run_dir(config()), create_run_dir(config())
    assert first.path.name == "20261206-234501-3fa9" and second.path.name == "20261206-234501-77c0"
    assert first.read_config().run.run_id == "20261206-234501-3fa9"  # not overwritten by the second


def test_an_explicit_id_that_holds_a_run_is_refused_with_its_path(config) -> None:
    first = open_run_dir(config("run.run_id=taken"), rank=0)
    before = (first.path / CONFIG_FILE).read_bytes()
    with pytest.raises(FileExistsError) as err:
        open_run_dir(config("run.run_id=taken", "data.batch_size=4"), rank=0)
    message = str(err.value)
    # names the folder and the id the user chose; only then is resuming it a sensible suggestion
    assert str(first.path) in message and "run.run_id=taken" in message
    assert "run.resume=true" in message and "another run.run_id" in message
    assert (first.path / CONFIG_FILE).read_bytes() == before
    # a folder left empty (a start that died before writing anything) may be reused
    (first.path.parent / "empty").mkdir()
    assert open_run_dir(config("run.run_id=empty"), rank=0).config_path.is_file()


def test_resume_needs_the_id_of_an_existing_run(config) -> None:
    with pytest.raises(ValueError, match="run.resume=true needs run.run_id"):
        open_run_dir(config("run.resume=true"), rank=0)
    with pytest.raises(FileNotFoundError, match=r"never-ran.config\.yaml does not exist"):
        open_run_dir(config("run.run_id=never-ran", "run.resume=true"), rank=0)


def test_a_resume_that_is_refused_leaves_config_and_commit_as_they_were(config) -> None:
    run = open_run_dir(config("run.run_id=r"), rank=0)
    saved = {name: (run.path / name).read_bytes() for name in (CONFIG_FILE, GIT_FILE)}
    # A changed per-process batch: MixedDataModule refuses the checkpoint inside trainer.fit,
    # after the run directory was opened and before training starts (accept() is never reached).
    resumed = open_run_dir(config("run.run_id=r", "run.resume=true", "data.batch_size=4"), rank=0)
    assert resumed.path == run.path
    assert {name: (run.path / name).read_bytes() for name in saved} == saved
    assert not (run.path / RESUMES_FILE).exists()


def test_an_accepted_resume_keeps_the_config_and_records_what_changed(config) -> None:
    run = open_run_dir(config("run.run_id=r"), rank=0)
    saved = {name: (run.path / name).read_bytes() for name in (CONFIG_FILE, GIT_FILE)}
    resumed = open_run_dir(config("run.run_id=r", "run.resume=true", "trainer.max_epochs=4"), rank=0)
    assert not (run.path / RESUMES_FILE).exists()  # nothing until the checkpoint is accepted
    accept(resumed)
    accept(resumed)  # once per session, however often the hook runs
    again = open_run_dir(config("run.run_id=r", "run.resume=true", "trainer.max_epochs=6",
                                "optim.lr=1e-4"), rank=0)
    accept(again)
    assert {name: (run.path / name).read_bytes() for name in saved} == saved  # still the first session's
    entries = yaml.safe_load((run.path / RESUMES_FILE).read_text())
    assert entries == run.read_resumes() and len(entries) == 2
    assert entries[0]["differs_from_config_yaml"] == {"trainer.max_epochs": {"was": 2, "now": 4}}
    assert entries[1]["differs_from_config_yaml"] == {"optim.lr": {"was": 3e-4, "now": 1e-4},
                                                      "trainer.max_epochs": {"was": 2, "now": 6}}
    for entry in entries:
        assert entry["git_commit"] and re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", entry["resumed_at"])


def test_other_ranks_record_nothing(config) -> None:
    open_run_dir(config("run.run_id=r"), rank=0)
    joined = open_run_dir(config("run.run_id=r", "run.resume=true", "trainer.max_epochs=4"), rank=1)
    assert joined.pending_resume is None and resume_record_callbacks(joined) == []


def test_create_run_dir_alone_records_a_resume_at_once(config) -> None:
    """Callers without the Trainer hook (the video task) get the record when the run is reopened."""
    run = create_run_dir(config("run.run_id=v"))
    before = run.config_path.read_bytes()
    create_run_dir(config("run.run_id=v", "run.resume=true", "trainer.max_epochs=3"))
    assert run.config_path.read_bytes() == before
    assert [e["differs_from_config_yaml"] for e in run.read_resumes()] == [
        {"trainer.max_epochs": {"was": 2, "now": 3}}]


def test_run_dirs_compare_by_path(tmp_path: Path) -> None:
    assert RunDir(tmp_path) == RunDir(tmp_path, pending_resume={"x": 1})

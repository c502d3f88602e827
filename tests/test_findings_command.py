"""`python -m experiments.findings`: the findings set is the study it claims, and one command
trains, evaluates and reports (resuming, not retraining, when run again)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from analysis.rundirs import Run, describe_run
from experiments import findings
from experiments.findings import FINDINGS_RUNS, FindingsRun
from gtahuman.config import load_config, to_yaml
from tests.conftest import TINY_OVERRIDES

QUICKSTART_STEPS = 1024


def described(run: FindingsRun, folder: Path):
    """The analysis' reading of the run's resolved config (what the tables will call it)."""
    cfg = load_config(run.arguments())
    folder.mkdir()
    (folder / "config.yaml").write_text(to_yaml(cfg))
    (folder / "metrics.json").write_text(json.dumps({"experiment": run.experiment, "test": {}}))
    return cfg, describe_run(Run(folder))


def planned_steps(cfg) -> int:
    if cfg.trainer.max_steps > 0:
        return int(cfg.trainer.max_steps)
    return int(cfg.trainer.max_epochs) * int(cfg.data.epoch_length) // int(cfg.data.batch_size)


@pytest.mark.parametrize("run", FINDINGS_RUNS, ids=lambda r: r.label)
def test_each_run_is_the_row_it_claims_on_the_quickstart_recipe(run: FindingsRun, tmp_path: Path) -> None:
    cfg, what = described(run, tmp_path / "run")
    # One recipe for all: the quickstart's backbone, crop size and number of steps.
    assert (what.backbone, cfg.data.img_res, planned_steps(cfg)) == ("plain16 + keypoint branch", 96, QUICKSTART_STEPS)
    assert what.method == "HMR+" and cfg.body.model_dir is None  # the world's own toy body
    label = run.label
    assert what.seed == int(label.rsplit("seed ", 1)[1])  # every row at several seeds
    assert what.world == ("gta_studio" if "negative-control" in label else "standard")
    # as many validations (best-checkpoint choices) in every row, whatever its epoch length
    assert (cfg.trainer.val_every_steps or cfg.data.epoch_length // cfg.data.batch_size) == 128
    if label.startswith("blended"):
        assert (what.mixture, what.adaptation, what.synthetic_supervision) == ("BT", None, "both")
    elif label.startswith("real only"):
        assert (what.mixture, what.gta_multiple) == ("-", 0.0)
    elif label.startswith("BT + DANN"):
        assert (what.mixture, what.adaptation, cfg.data.mode) == ("BT", "dann", "adaptation")
    elif label.startswith("BT, negative-control world"):
        assert (what.mixture, what.adaptation, what.sampler, what.world) == ("BT", None, "mixture", "gta_studio")
    elif label.startswith("real + "):
        multiple = float(label.split("+ ")[1].split("x")[0])
        assert what.sampler == "amount" and what.gta_multiple == pytest.approx(multiple, abs=1e-4)
        assert math.isclose(what.real_ratio * what.amount_multiple, 1.0, abs_tol=1e-4)  # all the real data
        assert what.fixed_synthetic  # amounts, nested, not shares of one pool
    elif label.startswith(("every sample once", "GTA-Human elevations")):
        args = cfg.data.sampler_args
        assert (what.sampler, args.factor, list(args.apply_to_sources)) == ("scarcity", "cam_elevation", ["gta"])
        kept = [float(k) for k in args.keep_fraction]
        thinned = [lo >= 30 for lo in args.bins[:-1]]
        # the arms differ in the high-elevation bins' kept fraction alone
        assert kept == ([0.0 if t else 1.0 for t in thinned] if label.startswith("GTA") else [1.0] * len(kept))
    else:
        pytest.fail(f"no expectation written for findings run {label!r}")


def test_the_set_answers_every_question_it_promises() -> None:
    labels = [r.label for r in FINDINGS_RUNS]
    assert sum(label.startswith("blended") for label in labels) >= 3  # seeds for the BT-vs-real spread
    assert sum(label.startswith("real only") for label in labels) >= 3
    assert len({label.split(", seed")[0] for label in labels if label.startswith("real + ")}) >= 4  # nested amounts
    assert {"BT + DANN, seed 2", "every sample once per epoch, seed 2", "GTA-Human elevations >= 30 deg removed, seed 2",
            "BT, negative-control world (GTA-Human within the studio's coverage), seed 2"} <= set(labels)
    assert {r.label for r in FINDINGS_RUNS if r.features} == {f"{row}, seed {s}" for row in ("blended (BT)", "BT + DANN")
                                                           for s in (0, 1, 2)}  # accuracy over seeds
    folders = {(r.experiment, r.run_id) for r in FINDINGS_RUNS}
    assert len(folders) == len(FINDINGS_RUNS)  # no two runs share a run directory


def test_one_command_trains_evaluates_reports_and_resumes(tiny_root: Path, monkeypatch, capsys) -> None:
    """Two tiny runs (BT with the feature evaluation, real only) through the real command."""
    shrink = (*TINY_OVERRIDES, f"run.cache_dir={tiny_root / 'cache'}", "data.epoch_length=64",
              "trainer.max_epochs=1", "model.feature_samples=8")
    runs = (FindingsRun("blended (BT), seed 0", "quickstart", shrink, "tiny-findings", features=True),
            FindingsRun("real only, seed 0", "table2_hmr_plus_mini", shrink, "tiny-findings"))
    monkeypatch.setattr(findings, "FINDINGS_RUNS", runs)
    out, root = tiny_root / "findings" / "FINDINGS.md", tiny_root / "findings-runs"
    arguments = ["--out", str(out), "--output-root", str(root), "--jobs", "2", "--embedding", "none"]
    assert findings.main(arguments) == 0
    text = out.read_text()
    times = json.loads((out.parent / "findings_files" / "times.json").read_text())
    assert set(times) == {"blended (BT), seed 0", "real only, seed 0", "features: blended (BT), seed 0"}
    for run in runs:
        assert f"| {run.label} | `{run.command()}` | 8 |" in text  # 64 samples / batch 8
    assert "HMR+ BT" in text and "against HMR+ on real data only" in text  # question 1 answered
    assert "a linear classifier tells real from GTA-Human features" in text  # the feature gap, from the evaluation
    assert (root / "quickstart" / "tiny-findings" / "evaluations").is_dir()
    finished = [(root / r.experiment / r.run_id / "metrics.json").stat().st_mtime_ns for r in runs]

    # Run again: nothing retrained or re-evaluated, the report rewritten with the recorded times.
    assert findings.main(arguments) == 0
    assert [(root / r.experiment / r.run_id / "metrics.json").stat().st_mtime_ns for r in runs] == finished
    assert json.loads((out.parent / "findings_files" / "times.json").read_text()) == times
    assert out.read_text().split("Each run's wall time")[0] == text.split("Each run's wall time")[0]
    with pytest.raises(SystemExit):
        findings.main(["--jobs", "0"])
    assert "--jobs must be at least 1" in capsys.readouterr().err


def test_file_lock_excludes_a_second_holder(tmp_path: Path) -> None:
    """flock is per open file: two threads of one process exclude each other as processes do."""
    import threading
    import time

    from gtahuman.atomic import file_lock

    events: list[str] = []
    held = threading.Event()

    def first() -> None:
        with file_lock(tmp_path / "x.lock"):
            events.append("first in")
            held.set()
            time.sleep(0.3)
            events.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    held.wait()
    with file_lock(tmp_path / "x.lock"):
        events.append("second in")
    thread.join()
    assert events == ["first in", "first out", "second in"]


def test_sources_prepared_at_once_by_two_runs_are_built_once(tiny_config, tmp_path: Path) -> None:
    """Two runs starting together on an empty cache (the findings set's --jobs 2, sweep workers)
    used to collide in an index's staging folder; now the second waits and reuses the first's."""
    from concurrent.futures import ThreadPoolExecutor

    from gtahuman.run_data import ensure_assets, prepare_source

    cfg = tiny_config(f"run.cache_dir={tmp_path / 'cache'}", "trainer.progress_bar=false")
    body_dir = ensure_assets(cfg)
    with ThreadPoolExecutor(2) as pool:
        specs = list(pool.map(lambda _: prepare_source("wild_test", cfg.data.test.wild_test, cfg, body_dir), range(2)))
    assert specs[0] == specs[1]
    assert len(list((tmp_path / "cache" / "indices").iterdir())) == 1
    assert len(list((tmp_path / "cache" / "crops").iterdir())) == 1

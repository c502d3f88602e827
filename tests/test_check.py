"""The pre-training check (gtahuman.check, python -m experiments.check) and the dataset check
and sample drawing (gtahuman.data.check, gtahuman.data.draw_samples), on the tiny mini world and
on broken layouts made in tmp_path."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_OVERRIDES
from PIL import Image

from experiments.check import main as check_main
from experiments.run import main as run_main
from gtahuman.check import check
from gtahuman.check_step import SyntheticSamples
from gtahuman.config import load_config
from gtahuman.data.check import annotation_rows, check_index, index_dir_for
from gtahuman.data.check import main as data_check_main
from gtahuman.data.draw_samples import CONTEXT, KEYPOINT_RADIUS, TILE, draw_samples, keypoint_colours
from gtahuman.data.index import SampleIndex
from gtahuman.data.prepare import prepare_dataset
from gtahuman.run_data import ensure_assets


@pytest.fixture(scope="module")
def mini(tiny_config, single_thread):
    """The default tiny config after one full check (world generated, every source prepared)."""
    cfg = tiny_config()
    report = check(cfg, steps=2)
    return cfg, report


# ------------------------------------------------------------------------- broken layouts
def _broken_body(toy_body_dir: Path, tmp_path: Path) -> Path:
    body = tmp_path / "body"
    shutil.copytree(toy_body_dir, body)
    (body / "J_regressor_extra.npy").unlink()
    return body


def _expected_missing(cfg) -> set[tuple[str, str]]:
    """(key, path) of every file / folder a real-data row points to under an empty data.root."""
    out = set()
    for split in ("train", "val", "test"):
        for name, src in cfg.data[split].items():
            out.add((f"data.{split}.{name}.path", src.path))
            out.add((f"data.{split}.{name}.image_root", src.image_root))
    out.add(("model.backbone_args.weights_path", cfg.model.backbone_args.weights_path))
    return out


def test_broken_real_layout_lists_every_missing_file_with_its_key(tmp_path, toy_body_dir, capsys):
    root, body = tmp_path / "empty_data_root", _broken_body(toy_body_dir, tmp_path)
    root.mkdir()
    overrides = ["experiment=table2_hmr_plus_bt", f"data.root={root}", f"body.model_dir={body}",
                 f"run.cache_dir={tmp_path / 'cache'}"]
    cfg = load_config(overrides)
    report = check(cfg)
    found = {(p.key, p.path) for p in report.problems}
    expected = _expected_missing(cfg) | {("body.model_dir", str(body / "J_regressor_extra.npy"))}
    assert found == expected  # each missing file once, by name, with its key; nothing else
    assert len(expected) == 2 * 9 + 2  # 7 train + val + test sources, weights, the regressor
    assert report.step is None and report.plan is None
    assert all(s.state == "missing" for s in report.sources)
    # The command line prints the same list and exits 1 (no traceback), by either entry point.
    assert check_main(overrides) == 1
    printed = capsys.readouterr().out
    assert all(path in printed for _, path in expected)
    assert run_main([*overrides, "dry_run=true"]) == 1
    assert f"body.model_dir: {body / 'J_regressor_extra.npy'}" in capsys.readouterr().out


def test_values_left_to_the_user_are_problems_not_exceptions(tmp_path):
    cfg = load_config(["experiment=table2_hmr_plus_ft", f"data.root={tmp_path}", f"run.cache_dir={tmp_path}"])
    report = check(cfg)
    keys = {p.key for p in report.problems}
    assert {"body.model_dir", "model.init_checkpoint"} <= keys
    assert "body.model_dir=..." in report.format()


def test_missing_image_named_by_the_annotation_is_reported(tmp_path, mini):
    cfg, _ = mini
    world = Path(cfg.data.world_dir)
    (tmp_path / "wild").mkdir()
    shutil.copy(world / "wild" / "wild_test.npz", tmp_path / "wild" / "wild_test.npz")
    test_cfg = load_config([*_tiny_paths(cfg), f"data.test.wild_test.path={tmp_path / 'wild' / 'wild_test.npz'}"])
    report = check(test_cfg, measure=False)
    [problem] = report.problems
    assert problem.key == "data.test.wild_test.image_root" and problem.path == str(tmp_path / "wild")
    assert "imageFiles/" in problem.message  # the first image the file names, under the root


def _tiny_paths(cfg) -> list[str]:
    return [*TINY_OVERRIDES, f"run.cache_dir={cfg.run.cache_dir}", f"run.output_root={cfg.run.output_root}"]


# ------------------------------------------------------------------------------ mini world
def test_mini_world_check_prepares_plans_and_measures_one_batch(mini):
    cfg, report = mini
    assert report.ok, report.format()
    assert {s.state for s in report.sources} <= {"prepared", "prepared now"} and len(report.sources) == 5
    body = Path(report.body["dir"])
    for s in report.sources:  # the very folders training prepares into
        src = cfg.data[s.split][s.name]
        expected = index_dir_for(cfg.run.cache_dir, s.name, src.kind, src.path, src.image_root, body)
        assert s.spec.index_dir == str(expected)
    plan = report.plan
    # epoch 512 = real_ratio 0.5: gta 256; real half split 0.6 : 0.4 -> 153.6 / 102.4, rounded
    assert plan.epoch_samples == {"real_indoor": 154, "real_kp": 102, "gta": 256}
    assert (plan.per_device_batch, plan.batches_per_epoch, plan.total_batches) == (8, 64, 128)
    assert plan.eval_samples == {"wild_val": 12, "wild_test": 24} and not plan.estimated
    step = report.step
    assert step.batch == "real" and step.per_device_batch == 8 and step.device == "cpu"
    assert 0 < step.step_seconds < 60 and step.peak_memory_bytes > 50 * 2**20
    assert report.estimated_seconds == pytest.approx(128 * step.step_seconds)
    text = report.format()
    assert "OK: no problems found" in text and "128 batches in all" in text


def test_hmr_with_gradient_clipping_measures_a_step_as_the_run_would(mini):
    # the adversarial prior optimises manually: the system clips, so the check must not hand the
    # clip value to Lightning (which refuses it) nor call the config a problem
    cfg, _ = mini
    report = check(load_config([*_tiny_paths(cfg), "model.variant=hmr", "model.prior_sources=[gta]",
                                "trainer.gradient_clip_val=1.0"]), steps=1)
    assert report.ok, report.format()
    assert report.step is not None and report.step.step_seconds > 0


def test_plan_before_preparation_equals_the_plan_after(tmp_path, mini, single_thread):
    cfg, _ = mini
    world = Path(cfg.data.world_dir)
    # as real data, an HMR+ row's keypoint-only source needs static fits (all-zero ones: rejected by SPIN's rule)
    rows = annotation_rows("spin_npz", world / "real_indoor" / "real_kp_train.npz")
    np.save(tmp_path / "real_kp_fits.npy", np.zeros((rows, 82), np.float32))
    real_like = [*_tiny_paths(cfg), "data.miniworld=null", f"body.model_dir={world / 'body'}",
                 f"data.train.real_kp.static_fits={tmp_path / 'real_kp_fits.npy'}",
                 f"run.cache_dir={tmp_path / 'fresh_cache'}",
                 f"data.train.real_indoor.path={world / 'real_indoor' / 'real_indoor_train.npz'}",
                 f"data.train.real_kp.path={world / 'real_indoor' / 'real_kp_train.npz'}",
                 "data.train.gta.kind=spin_npz", f"data.train.gta.path={world / 'wild' / 'wild_val.npz'}",
                 f"data.val.wild_val.path={world / 'wild' / 'wild_val.npz'}",
                 f"data.test.wild_test.path={world / 'wild' / 'wild_test.npz'}"]
    before = check(load_config(real_like), steps=1)
    assert before.ok, before.format()
    assert {s.state for s in before.sources} == {"not prepared"} and before.plan.estimated
    assert before.step.batch == "synthetic" and before.step.per_device_batch == 8
    after = check(load_config(real_like), prepare=True, measure=False)
    assert not after.plan.estimated and {s.state for s in after.sources} == {"prepared now"}
    assert before.plan.epoch_samples == after.plan.epoch_samples == {"real_indoor": 154, "real_kp": 102, "gta": 256}


def test_synthetic_batch_has_the_layout_of_a_real_batch(mini):
    from gtahuman.data.datamodule import MixedDataModule
    from gtahuman.run_data import datamodule_arguments

    cfg, report = mini
    specs = {"train": {s.name: s.spec for s in report.sources if s.split == "train"}}
    real = next(iter(MixedDataModule(**datamodule_arguments(cfg, specs), world_size=1, rank=0).train_dataloader()))
    fake = torch.utils.data.default_collate([SyntheticSamples(8, cfg.data.img_res)[i] for i in range(8)])
    assert set(fake) == set(real)
    for key in real:
        assert (fake[key].shape, fake[key].dtype) == (real[key].shape, real[key].dtype), key


def test_a_sampler_that_cannot_draw_the_epoch_is_reported_before_training(mini):
    cfg, _ = mini  # Table 7's N/A: twice the real pool, all real
    bad = load_config(["experiment=table7_real100_mini", *_tiny_paths(cfg), "data.epoch_length=null",
                       "trainer.gradient_clip_val=null", "data.sampler_args.total_multiple=2.0"])
    report = check(bad, measure=True)
    assert [p.key for p in report.problems] == ["data.sampler_args"] and report.step is None
    assert "more" in report.problems[0].message or "real" in report.problems[0].message


# -------------------------------------------------------------------- dataset check, drawing
def test_dataset_check_catches_changed_columns_and_changed_sources(tmp_path, mini):
    cfg, _ = mini
    world = Path(cfg.data.world_dir)
    source = tmp_path / "wild_test.npz"
    shutil.copy(world / "wild" / "wild_test.npz", source)
    out = tmp_path / "index"
    prepare_dataset("spin_npz", source, out, body_model_dir=world / "body", dataset_name="wild_test",
                    domain="wild_test", image_root=world / "wild", progress=False)
    assert check_index(out, expect=24).ok
    wrong_count = check_index(out, expect=25)
    assert wrong_count.problems == [wrong_count.problems[0]] and "expected 25 rows" in wrong_count.problems[0]
    column = out / "keypoints2d.npy"
    data = bytearray(column.read_bytes())
    data[-1] ^= 0xFF  # same size, different bytes: only the checksum can tell
    column.write_bytes(bytes(data))
    changed = check_index(out)
    assert len(changed.problems) == 1 and "keypoints2d.npy" in changed.problems[0] and "sha256" in changed.problems[0]
    data[-1] ^= 0xFF
    column.write_bytes(bytes(data))
    with np.load(source, allow_pickle=True) as npz:
        arrays = dict(npz)
    arrays["scale"] = arrays["scale"] * 1.01
    np.savez(source, **arrays)
    moved = check_index(out)
    assert len(moved.problems) == 1 and "source files" in moved.problems[0] and "wild_test.npz" in moved.problems[0]


def _expected_sheet_pixels(index: SampleIndex, sample) -> np.ndarray:
    """Sheet pixels of the sample's drawn keypoints, from the index alone."""
    x, y, w, h = np.asarray(index["bbox_xywh"][sample.row], np.float64)
    side = CONTEXT * max(w, h)
    corner = np.array([x + w / 2 - side / 2, y + h / 2 - side / 2])
    points = np.asarray(index["keypoints2d"][sample.row], np.float64)[sample.joint_ids, :2]
    return (points - corner) * TILE / side + sample.origin


def test_drawn_samples_show_keypoints_where_they_are_and_the_mesh_under_them(tmp_path, mini):
    _, report = mini
    [gta] = [s for s in report.sources if s.name == "gta"]
    index = SampleIndex.load(gta.spec.index_dir)
    sheet = draw_samples(index, gta.spec.image_root, tmp_path / "gta.png", count=3, body_model_dir=report.body["dir"])
    picture = np.asarray(Image.open(tmp_path / "gta.png").convert("RGB"))
    assert picture.shape == (sheet.size[1], sheet.size[0], 3) and len(sheet.samples) == 3
    colours = keypoint_colours()
    checked = 0
    for sample in sheet.samples:
        assert sample.camera == "perspective" and sample.agreement >= 0.9  # GTA: the sequence's own camera
        np.testing.assert_allclose(sample.keypoints, _expected_sheet_pixels(index, sample), atol=1e-6)
        for k, (joint, point) in enumerate(zip(sample.joint_ids, sample.keypoints)):
            later = sample.keypoints[k + 1:]
            covered = np.linalg.norm(later - point, axis=1) <= 2 * KEYPOINT_RADIUS + 2
            if covered.any():
                continue  # another dot drawn on top of this one
            x, y = np.round(point).astype(int)
            assert tuple(picture[y, x]) == tuple(colours[joint]), (sample.row, joint)
            checked += 1
    assert checked >= 30
    # The same frames with keypoints moved off the body: the agreement shows it.
    moved = index.subset(np.array([s.row for s in sheet.samples]))
    shifted = np.array(moved["keypoints2d"])
    shifted[..., 0] += 0.8 * np.asarray(moved["bbox_xywh"])[:, 2:3]
    broken = SampleIndex({**moved.columns, "keypoints2d": shifted}, moved.meta)
    bad_sheet = draw_samples(broken, gta.spec.image_root, tmp_path / "bad.png", count=3,
                             body_model_dir=report.body["dir"])
    assert max(s.agreement for s in bad_sheet.samples) < 0.5


def test_data_check_command_on_the_mini_world(tmp_path, mini, capsys):
    cfg, report = mini
    world = Path(cfg.data.world_dir)
    argv = ["spin_npz", str(world / "wild" / "wild_test.npz"), "--name", "wild_test", "--body-model-dir",
            report.body["dir"], "--cache-dir", cfg.run.cache_dir, "--expect", "24", "--draw",
            str(tmp_path / "wild.png"), "--samples", "2", "--no-progress"]
    assert data_check_main(argv) == 0
    out = capsys.readouterr().out
    assert "samples 24" in out and "fitted weak perspective" in out and (tmp_path / "wild.png").is_file()
    [wild] = [s for s in report.sources if s.name == "wild_test"]
    assert data_check_main([wild.spec.index_dir, "--expect", "24"]) == 0  # the index form, same folder
    assert f"dataset wild_test: {wild.spec.index_dir}" in capsys.readouterr().out
    assert data_check_main(["humandata", str(tmp_path / "nothere.npz"), "--body-model-dir", report.body["dir"]]) == 1
    assert f"source: {tmp_path / 'nothere.npz'} does not exist" in capsys.readouterr().out
    assert ensure_assets(cfg) == Path(report.body["dir"])


def test_hmr_plus_row_without_static_fits_for_a_keypoint_only_source_is_a_problem(tmp_path):
    """Table 2's HMR+ is HMR supervised by SPIN's static fits: a keypoint-only source without them
    turns the row into HMR without the adversary, so `check` names the key to set."""
    from gtahuman.data.formats.humandata import HumanData, dump_humandata

    n = 2
    keypoints_only = HumanData(data_len=n, image_path=np.array(["a.jpg", "b.jpg"]),
                               bbox_xywh=np.ones((n, 5), np.float32),
                               keypoints={"keypoints2d": np.ones((n, 190, 3), np.float32)})
    (tmp_path / "preprocessed_datasets").mkdir()
    dump_humandata(tmp_path / "preprocessed_datasets" / "lsp_train.npz", keypoints_only)
    base = ["experiment=table2_hmr_plus_bt", f"data.root={tmp_path}", f"run.cache_dir={tmp_path / 'cache'}"]

    def fits_problems(*overrides):
        report = check(load_config([*base, *overrides]), measure=False)
        return [p for p in report.problems if p.key.endswith(".static_fits")]

    [problem] = fits_problems()
    assert problem.key == "data.train.lsp.static_fits" and "HMR without the adversary" in problem.message
    assert "static_fits/<dataset>_fits.npy" in problem.message
    [missing] = fits_problems(f"data.train.lsp.static_fits={tmp_path / 'lsp_fits.npy'}")
    assert "no such file" in missing.message
    np.save(tmp_path / "lsp_fits.npy", np.zeros((n, 82), np.float32))
    assert fits_problems(f"data.train.lsp.static_fits={tmp_path / 'lsp_fits.npy'}") == []
    assert fits_problems("model.variant=hmr") == []  # HMR uses its adversarial prior, not fits

"""Directory annotation: analyser filter, fitted raw-release files, resumable reruns, the CLI."""
from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from gtahuman.body.smpl import BodyModel
from gtahuman.data.formats import gta_raw
from gtahuman.fitting.__main__ import main as cli_main
from gtahuman.fitting.annotate import AnnotateOptions, annotate_directory
from gtahuman.fitting.synthetic import synthetic_gta_sequence


@pytest.fixture(scope="module")
def raw_root(tmp_path_factory, toy_body_dir) -> tuple[Path, dict[str, gta_raw.GTASequence]]:
    """A raw GTA root with two moving subjects (male, female) and one frozen one."""
    root = tmp_path_factory.mktemp("raw_gta")
    male, female = BodyModel(toy_body_dir, "male"), BodyModel(toy_body_dir, "female")
    walker = synthetic_gta_sequence(male, "seq_00000001", "walk", frames=16, seed=11)
    waver = synthetic_gta_sequence(female, "seq_00000002", "wave", frames=14, seed=12)
    frozen = synthetic_gta_sequence(male, "seq_00000003", "walk", frames=12, seed=13)
    still = {key: np.repeat(getattr(frozen, key)[:1], 12, axis=0)
             for key in ("keypoints_2d", "keypoints_3d", "body_pose", "global_orient", "transl")}
    frozen = dataclasses.replace(frozen, **still)
    sequences = {s.seq_name: s for s in (walker, waver, frozen)}
    for name, sequence in sequences.items():
        gta_raw.write_sequence(root, name, sequence)
    return root, sequences


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob("*"))}


def test_annotate_filters_fits_and_writes_raw_release_files(single_thread, raw_root, toy_body_dir, tmp_path) -> None:
    root, sequences = raw_root
    out = tmp_path / "annotated"
    report = annotate_directory(root, out, toy_body_dir, progress=False)
    assert report["kept"] == ["seq_00000001", "seq_00000002"]
    assert list(report["dropped"]) == ["seq_00000003"] and "stationary" in report["dropped"]["seq_00000003"][0]
    assert report["fitted"] == 2 and report["frames_fitted"] == 30 and report["body_model_is_toy"]
    assert json.loads((out / "annotation_report.json").read_text())["kept"] == report["kept"]
    assert not (out / "annotations" / "seq_00000003.pkl").exists()  # dropped: status only
    assert json.loads((out / "status" / "seq_00000003.json").read_text())["fit"] is None

    for name, gender in (("seq_00000001", "male"), ("seq_00000002", "female")):
        fitted = gta_raw.read_sequence(out, name)  # the output is a GTA root in its own right
        truth = sequences[name]
        assert np.array_equal(fitted.keypoints_3d, truth.keypoints_3d)  # untouched keys copied
        assert (fitted.betas == fitted.betas[0]).all()  # one shape per sequence, repeated per frame
        model = BodyModel(toy_body_dir, gender)
        with torch.no_grad():
            a = model(torch.as_tensor(fitted.betas), torch.as_tensor(fitted.body_pose),
                      torch.as_tensor(fitted.global_orient), torch.as_tensor(fitted.transl))
            b = model(torch.as_tensor(truth.betas), torch.as_tensor(truth.body_pose),
                      torch.as_tensor(truth.global_orient), torch.as_tensor(truth.transl))
        assert (a.joints - b.joints).norm(dim=-1).mean().item() < 0.008
        with open(out / "annotations" / f"{name}.pkl", "rb") as f:
            extra = pickle.load(f)
        assert extra["smpl_fit_error"].shape == (truth.num_frames,) and extra["smpl_fit_error"].max() < 0.01
        assert extra["smpl_annotator"]["gender"] == gender and extra["smpl_annotator"]["body_model_is_toy"]
        assert extra["analyser_frame_flags"].shape == (truth.num_frames,)


def test_rerun_skips_finished_sequences(single_thread, raw_root, toy_body_dir, tmp_path, capsys) -> None:
    root, _ = raw_root
    out = tmp_path / "annotated"
    options = AnnotateOptions(chunk_sequences=1)
    annotate_directory(root, out, toy_body_dir, options, progress=False)
    before_pkl, before_status = _mtimes(out / "annotations"), _mtimes(out / "status")

    assert cli_main([str(root), str(out), "--body-dir", str(toy_body_dir), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "sequences: 3 (3 already finished)" in printed and "seq_00000003: slow or stationary" in printed
    assert _mtimes(out / "annotations") == before_pkl and _mtimes(out / "status") == before_status

    # an interrupted run: a sequence without its status file is done again, the others are not
    (out / "status" / "seq_00000002.json").unlink()
    report = annotate_directory(root, out, toy_body_dir, options, progress=False)
    assert report["skipped_as_finished"] == 2 and report["fitted"] == 2
    after = _mtimes(out / "annotations")
    assert after["seq_00000001.pkl"] == before_pkl["seq_00000001.pkl"]
    assert after["seq_00000002.pkl"] != before_pkl["seq_00000002.pkl"]


def test_unreadable_files_are_recorded_retried_and_capped(single_thread, raw_root, toy_body_dir, tmp_path) -> None:
    _, sequences = raw_root
    root = tmp_path / "raw"
    gta_raw.write_sequence(root, "seq_00000001", sequences["seq_00000001"])
    broken = root / "annotations" / "seq_00000009.pkl"
    broken.write_bytes(b"\x80\x04 truncated")
    out = tmp_path / "annotated"
    report = annotate_directory(root, out, toy_body_dir, progress=False)
    assert report["fitted"] == 1 and list(report["unreadable"]) == ["seq_00000009"]
    assert "seq_00000009.pkl" in report["unreadable"]["seq_00000009"]  # the message names the file
    assert report["dropped"]["seq_00000009"][0].startswith("unreadable:")
    # the next run retries the broken file (and only it); repaired, it is annotated
    repaired = dataclasses.replace(sequences["seq_00000002"], seq_name="seq_00000009")
    gta_raw.write_sequence(root, "seq_00000009", repaired)
    report = annotate_directory(root, out, toy_body_dir, progress=False)
    assert report["skipped_as_finished"] == 1 and report["fitted"] == 2 and report["unreadable"] == {}
    broken.write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="more than max_unreadable=0"):
        annotate_directory(root, tmp_path / "strict", toy_body_dir, AnnotateOptions(max_unreadable=0), progress=False)


def test_bad_directories_are_refused(raw_root, toy_body_dir, tmp_path) -> None:
    root, _ = raw_root
    with pytest.raises(ValueError, match="must differ from the source root"):
        annotate_directory(root, root, toy_body_dir, progress=False)
    with pytest.raises(FileNotFoundError, match="no annotations folder"):
        annotate_directory(tmp_path / "empty", tmp_path / "out", toy_body_dir, progress=False)
    with pytest.raises(ValueError, match="gender must be one of"):
        AnnotateOptions(gender="other")

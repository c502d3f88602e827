"""prepare: raw files in the real formats -> sample index; values checked against independent maths."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial.transform import Rotation

from gtahuman.body.conventions import get_names, joint_index
from gtahuman.body.smpl import BodyModel
from gtahuman.data import prepare as prepare_module
from gtahuman.data.formats.errors import DataFormatError
from gtahuman.data.formats.gta_raw import GTASequence, write_sequence
from gtahuman.data.formats.humandata import HUMAN_DATA_NAMES, HumanData, dump_humandata, load_humandata
from gtahuman.data.formats.spin_npz import SpinNpz, write_spin_npz
from gtahuman.data.index import COLUMNS, SampleIndex
from gtahuman.data.prepare import SourceChangedError, TooManyBadImagesError, load_prepared, prepare_dataset
from gtahuman.data.prepare_common import IMAGE_MARGIN, project_with_margin

W, H = 480, 270
FOCAL = (H / 2) / math.tan(math.radians(25.0))  # vertical fov 50 degrees
FACING_CAMERA = (math.pi, 0.0, 0.0)  # upright body facing the camera (body y up -> camera y down)
FINGERS = ("thumb", "index", "middle", "ring", "pinky")
GTA_FINGERS = [i for i, name in enumerate(get_names("gta")) if any(f in name for f in FINGERS)]  # 28 hand joints


@pytest.fixture(scope="session")
def body_dir(toy_body_dir):
    return toy_body_dir


@pytest.fixture(scope="session")
def body_model(body_dir):
    return BodyModel(body_dir)


def run(kind, source, out, body_dir, **kw):
    return prepare_dataset(kind, source, out, body_model_dir=body_dir, dataset_name="test", domain="synthetic",
                           progress=False, **kw)


# -- GTA-Human raw -------------------------------------------------------------------------------
def gta_sequence(name: str, seed: int, is_male: bool) -> GTASequence:
    rng = np.random.default_rng(seed)
    n = 4
    kps2d = np.concatenate([rng.uniform([10, 10], [W - 10, H - 10], (n, 100, 2)), np.ones((n, 100, 1))], axis=2)
    kps2d[:, :25, 0] = -10.0  # 25 of 100 game joints left of the image
    occ = np.zeros((n, 100), bool)
    occ[:, GTA_FINGERS] = True
    self_occ = np.zeros((n, 100), bool)
    self_occ[:, :10] = True
    body_pose = rng.normal(0, 0.2, (n, 69))
    body_pose[0] = 0.0  # T-pose
    return GTASequence(
        seq_name=name, keypoints_2d=kps2d.astype(np.float32),
        keypoints_3d=rng.normal(size=(n, 100, 4)).astype(np.float32),
        occ=occ, self_occ=self_occ, fov=50.0, is_male=is_male, weather="CLEAR" if is_male else "RAIN",
        daytime=(13, 30, 0), location_tag="downtown", betas=rng.normal(0, 0.5, (n, 10)).astype(np.float32),
        body_pose=body_pose.astype(np.float32),
        global_orient=np.array([FACING_CAMERA, [math.pi, 0.3, 0.0], FACING_CAMERA, FACING_CAMERA], np.float32),
        transl=np.array([[0, 0, 5], [0.2, 0.1, 6], [0, 0, 5], [0, 1.5, 5]], np.float32),
        # frame 2 lies right of the 480 px image: dropped; frame 3 starts left of it: clamped, kept
        bbox_xywh=np.array([[100, 20, 120, 200], [110, 30, 120, 200], [600, 20, 50, 50], [-20, 10, 100, 200]],
                           np.float32),
        num_frames=n,
    )


@pytest.fixture
def gta_root(tmp_path):
    root = tmp_path / "gta"
    for name, seed, male in (("seq_00000012", 0, True), ("seq_00000345", 1, False)):
        write_sequence(root, name, gta_sequence(name, seed, male), images=[np.zeros((H, W, 3), np.uint8)] * 4)
    return root


def test_gta_raw_keypoints_factors_and_manifest(gta_root, tmp_path, body_dir, body_model):
    index = run("gta_raw", gta_root, tmp_path / "out", body_dir)
    paths = [index.image_path(i) for i in range(len(index))]
    assert paths == [f"images/{s}/{f:08d}.jpeg" for s in ("seq_00000012", "seq_00000345") for f in (0, 1, 3)]
    assert index["sequence_id"].tolist() == [12] * 3 + [345] * 3 and index["frame_id"].tolist() == [0, 1, 3] * 2
    assert index.meta["prepare"]["counts"]["dropped_bbox"] == 2

    # keypoints: the body model's joints, projected here independently with f from the fov
    seqs = [gta_sequence("a", 0, True), gta_sequence("b", 1, False)]
    kept = [0, 1, 3]
    params = {k: torch.as_tensor(np.concatenate([getattr(s, k)[kept] for s in seqs]))
              for k in ("betas", "body_pose", "global_orient", "transl")}
    with torch.no_grad():
        joints = body_model(**params).joints54.numpy().astype(np.float64)
    expected_uv = FOCAL * joints[..., :2] / joints[..., 2:] + np.array([W / 2, H / 2])
    np.testing.assert_allclose(index["keypoints2d"][..., :2], expected_uv, atol=2e-3)
    assert (index["keypoints2d"][..., 2] == 1).all()
    np.testing.assert_allclose(index["keypoints3d"][..., :3], joints, atol=1e-5)
    np.testing.assert_allclose(index["focal_length"], FOCAL, rtol=1e-6)
    assert index["image_size"].tolist() == [[W, H]] * 6
    assert index["bbox_xywh"][2].tolist() == [0, 10, 100, 200]  # the converter's clamp (w kept)

    # factors: facing the camera on its axis -> elevation 0, azimuth 0; 1.5 m below the axis
    # at 5 m -> camera above the waist by atan(1.5 / 5)
    np.testing.assert_allclose(index["cam_elevation"][[0, 2]], [0.0, math.degrees(math.atan(0.3))], atol=1e-4)
    np.testing.assert_allclose(index["cam_azimuth"][[0, 2]], [0.0, 0.0], atol=1e-4)
    assert index["pose_dist_tpose"][0] == pytest.approx(0.0, abs=1e-4)
    assert index["pose_dist_tpose"][1] > 1.0 and index["pose_dist_mean"][0] > 1.0
    np.testing.assert_allclose(index["occluded_ratio"], len(GTA_FINGERS) / 100)
    np.testing.assert_allclose(index["self_occluded_ratio"], 0.10)
    np.testing.assert_allclose(index["truncation"], 0.25)
    np.testing.assert_allclose(index["daytime_hours"], 13.5)
    assert index["gender"].tolist() == [0] * 3 + [1] * 3
    assert [index.label("weather", c) for c in index["weather"]] == ["CLEAR"] * 3 + ["RAIN"] * 3
    assert index["has_smpl"].all() and index["has_keypoints3d"].all()
    sources = index.meta["source_files"]
    assert [s["path"].rsplit("/", 1)[1] for s in sources] == ["seq_00000012.pkl", "seq_00000345.pkl"]
    assert all(len(s["sha256"]) == 64 for s in sources) and index.meta["image_count"] == 6
    assert index.meta["body_model_is_toy"] is True
    assert not (tmp_path / "out" / ".prepare_partial").exists()


def test_projection_margin_and_depth():
    joints = np.array([[[0.0, 0.0, 2.0], [2.0, 0.0, 1.0], [0.5, 0.0, 1.0], [0.0, 0.0, -1.0]]])
    out = project_with_margin(joints, np.array([100.0]), np.array([[200, 100]]))
    # u = 100 x / z + 100: 100 (inside), 300 (= W + 0.5 W: edge of the margin), 150; behind -> 0
    assert IMAGE_MARGIN == 0.5
    np.testing.assert_allclose(out[0], [[100, 50, 1], [300, 50, 1], [150, 50, 1], [0, 0, 0]])
    out = project_with_margin(joints * [1.01, 1, 1], np.array([100.0]), np.array([[200, 100]]))
    assert out[0, 1].tolist() == [0, 0, 0]  # just beyond the margin


def test_gta_bad_inputs_name_file_key_and_dataset(gta_root, tmp_path, body_dir):
    pkl = gta_root / "annotations" / "seq_00000345.pkl"
    with open(pkl, "rb") as f:
        ann = pickle.load(f)
    ann["body_pose"][1, 5] = np.nan
    with open(pkl, "wb") as f:
        pickle.dump(ann, f)
    with pytest.raises(DataFormatError, match="seq_00000345.pkl: key 'body_pose'") as err:
        run("gta_raw", gta_root, tmp_path / "o1", body_dir)
    assert any("dataset 'test'" in note for note in err.value.__notes__)
    for frame in (gta_root / "images" / "seq_00000012").iterdir():
        frame.unlink()
    (gta_root / "images" / "seq_00000012").rmdir()
    with pytest.raises(FileNotFoundError, match="images/seq_00000012"):
        run("gta_raw", gta_root, tmp_path / "o2", body_dir)


# -- SPIN npz --------------------------------------------------------------------------------------
SPIN_NAMES = ["a/0002.jpg", "b/y.jpg", "a/0001.jpg", "b/x.jpg", "a/0003.jpg"]
SIDEWAYS = Rotation.from_matrix(Rotation.from_rotvec(FACING_CAMERA).as_matrix()
                                @ Rotation.from_euler("y", -90, degrees=True).as_matrix()).as_rotvec()


def spin_data() -> SpinNpz:
    rng = np.random.default_rng(3)
    part = np.zeros((5, 24, 3), np.float32)
    part[:, 0] = [[50 + i, 60, 1] for i in range(5)]  # J24 0: right ankle
    part[:, 20] = [70, 80, 1]  # J24 20: left eye
    part[1, 13] = [-5, 10, 1]  # head top outside the image
    pose = rng.normal(0, 0.2, (5, 72)).astype(np.float32)
    pose[0, :3], pose[1, :3] = FACING_CAMERA, SIDEWAYS
    s3d = np.zeros((5, 24, 4), np.float32)
    s3d[:3, 0] = [0.1, 0.8, 0.2, 1]
    return SpinNpz(
        imgname=np.array(SPIN_NAMES),
        center=np.array([[200, 130], [150, 200], [200, 130], [150, 200], [460, 135]], np.float32),
        scale=np.array([1.0, 1.0, 0.5, 1.5, 1.0], np.float32), part=part, openpose=np.zeros((5, 25, 3), np.float32),
        S=s3d, pose=pose, shape=rng.normal(size=(5, 10)).astype(np.float32),
        has_smpl=np.array([1, 1, 0, 1, 1], np.uint8), gender=np.array([0, 1, 0, 1, 0], np.int8))


@pytest.fixture
def spin_files(tmp_path):
    images = tmp_path / "images"
    for name in SPIN_NAMES:
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        size = (W, H) if name.startswith("a/") else (300, 400)
        Image.new("RGB", size).save(images / name, quality=50)
    return write_spin_npz(tmp_path / "spin.npz", spin_data()), images


def test_spin_npz_by_name_boxes_gender_sequences(spin_files, tmp_path, body_dir):
    npz, images = spin_files
    index = run("spin_npz", npz, tmp_path / "out", body_dir, image_root=images)
    assert get_names("smpl_54")[8] == "right_ankle" and joint_index("smpl_54", "left_eye") == 26
    np.testing.assert_array_equal(index["keypoints2d"][:, 8], [[50 + i, 60, 1] for i in range(5)])
    np.testing.assert_array_equal(index["keypoints2d"][:, 26], [[70, 80, 1]] * 5)
    assert (index["keypoints2d"][..., 2] > 0).sum() == 11  # nothing else was filled
    np.testing.assert_allclose(index["truncation"], [0, 1 / 3, 0, 0, 0])
    # side = scale * 200 around the centre; the last box sticks out of its 480 px image: clipped
    np.testing.assert_allclose(index["bbox_xywh"][:4], [[100, 30, 200, 200], [50, 100, 200, 200],
                                                        [150, 80, 100, 100], [0, 50, 300, 300]])
    np.testing.assert_allclose(index["bbox_xywh"][4], [360, 35, 120, 200])
    assert index.meta["prepare"]["counts"]["bbox_clipped"] == 1
    assert index["image_size"].tolist() == [[W, H], [300, 400], [W, H], [300, 400], [W, H]]
    assert index["gender"].tolist() == [0, 1, 0, 1, 0]
    assert index.meta["prepare"]["sequence_folders"] == ["a", "b"]
    # frame ids: folder a's file numbers (0002, 0001, 0003); folder b's names hold none: ranks by name
    assert index["sequence_id"].tolist() == [0, 1, 0, 1, 0] and index["frame_id"].tolist() == [2, 1, 1, 0, 3]
    assert index["has_smpl"].tolist() == [True, True, False, True, True]
    np.testing.assert_allclose(index["cam_elevation"][:2], [0, 0], atol=1e-4)
    np.testing.assert_allclose(index["cam_azimuth"][:2], [0, 90], atol=1e-4)  # body's left faces the camera
    assert np.isnan(index["cam_azimuth"][2]) and np.isnan(index["occluded_ratio"]).all()
    np.testing.assert_allclose(index["keypoints3d"][:3, 8], [[0.1, 0.8, 0.2, 1]] * 3, rtol=1e-6)
    assert index["has_keypoints3d"].tolist() == [True, True, True, False, False]
    assert (index["focal_length"] == 0).all()


def test_spin_bad_inputs(spin_files, tmp_path, body_dir):
    npz, images = spin_files
    (images / "b" / "x.jpg").unlink()
    index = run("spin_npz", npz, tmp_path / "o1", body_dir, image_root=images)
    assert len(index) == 4 and "b/x.jpg" not in [index.image_path(i) for i in range(4)]
    assert index.meta["prepare"]["counts"]["bad_images"] == 1
    with pytest.raises(TooManyBadImagesError, match="b/x.jpg"):
        run("spin_npz", npz, tmp_path / "o2", body_dir, image_root=images, max_bad_images=0)
    with pytest.raises(FileNotFoundError, match="images/c"):
        data = spin_data()
        data.imgname = np.array(SPIN_NAMES[:4] + ["c/1.jpg"])
        run("spin_npz", write_spin_npz(tmp_path / "c.npz", data), tmp_path / "o3", body_dir, image_root=images)
    raw = dict(np.load(npz))
    cases = {"nocenter.npz": ("center", {k: v for k, v in raw.items() if k != "center"}),
             "short.npz": ("scale", {**raw, "scale": raw["scale"][:4]})}
    for name, (key, content) in cases.items():
        np.savez(tmp_path / name, **content)
        with pytest.raises(DataFormatError, match=f"{name}: key '{key}'"):
            run("spin_npz", tmp_path / name, tmp_path / "o4", body_dir, image_root=images)
    (tmp_path / "cut.npz").write_bytes(npz.read_bytes()[:300])
    with pytest.raises(DataFormatError, match="cut.npz") as err:
        run("spin_npz", tmp_path / "cut.npz", tmp_path / "o5", body_dir, image_root=images)
    assert any("spin_npz" in note for note in err.value.__notes__)


# -- HumanData --------------------------------------------------------------------------------------
def test_humandata_compressed_keypoints_to_smpl54(tmp_path, body_dir):
    rng = np.random.default_rng(5)
    n = 3
    kps2d = np.concatenate([rng.uniform(0, 1000, (n, 190, 2)), np.ones((n, 190, 1))], axis=2).astype(np.float32)
    mask = np.ones(190, np.uint8)
    mask[HUMAN_DATA_NAMES.index("left_wrist")] = 0
    mask[HUMAN_DATA_NAMES.index("nose")] = 0
    kps3d = np.concatenate([rng.normal(size=(n, 190, 3)), np.ones((n, 190, 1))], axis=2).astype(np.float32)
    hd = HumanData(
        data_len=n, image_path=np.array([f"images/seq_00000007/{i + 3:08d}.jpeg" for i in range(n)]),
        bbox_xywh=np.array([[10, 20, 300, 600, 1]] * n, np.float32), config="gta_human",
        smpl={"global_orient": np.tile(FACING_CAMERA, (n, 1)), "body_pose": rng.normal(0, 0.2, (n, 23, 3)),
              "betas": rng.normal(size=(n, 10)), "transl": np.tile([0.0, 0.0, 5.0], (n, 1))},
        meta={"gender": np.array(["m", "f", "n"])}, keypoints={"keypoints2d": kps2d, "keypoints3d": kps3d},
        keypoint_masks={"keypoints2d": mask, "keypoints3d": np.ones(190, np.uint8)})
    path = dump_humandata(tmp_path / "gta_human.npz", hd, compress_keypoints=True)
    index = run("humandata", path, tmp_path / "out", body_dir)
    for j, name in enumerate(get_names("smpl_54")):
        if name in ("left_wrist", "nose"):
            assert (index["keypoints2d"][:, j] == 0).all()  # masked: conf 0
        elif name in HUMAN_DATA_NAMES:
            np.testing.assert_array_equal(index["keypoints2d"][:, j], kps2d[:, HUMAN_DATA_NAMES.index(name)])
    assert index["sequence_id"].tolist() == [7] * 3 and index["frame_id"].tolist() == [3, 4, 5]
    assert index["gender"].tolist() == [0, 1, -1]
    np.testing.assert_allclose(index["focal_length"], 540 / math.tan(math.radians(25)), rtol=1e-6)
    assert index["image_size"].tolist() == [[1920, 1080]] * 3 and index["has_keypoints3d"].all()
    np.testing.assert_allclose(index["cam_elevation"], 0, atol=1e-4)
    hd.config = "pw3d"
    dump_humandata(tmp_path / "pw3d.npz", hd)
    with pytest.raises(ValueError, match="pw3d.npz.*image-root"):
        run("humandata", tmp_path / "pw3d.npz", tmp_path / "out2", body_dir)


def test_humandata_per_sample_has_smpl_is_kept(tmp_path, body_dir):
    """mmhuman3d writes ``has_smpl`` per sample where a file mixes reliable and unreliable fits
    (spin_mpi_inf_3dhp_train.npz): a 0 row trains on its keypoints only, its fit is no ground truth."""
    rng = np.random.default_rng(6)
    n = 3
    hd = HumanData(
        data_len=n, image_path=np.array([f"images/seq_00000002/{i:08d}.jpeg" for i in range(n)]),
        bbox_xywh=np.array([[10, 20, 300, 600, 1]] * n, np.float32), config="gta_human",
        smpl={"global_orient": np.tile(FACING_CAMERA, (n, 1)), "body_pose": rng.normal(0, 0.2, (n, 23, 3)),
              "betas": rng.normal(size=(n, 10)), "transl": np.tile([0.0, 0.0, 5.0], (n, 1))},
        has_smpl=np.array([1, 0, 1], np.uint8))
    path = dump_humandata(tmp_path / "mixed.npz", hd)
    assert load_humandata(path).has_smpl.tolist() == [1, 0, 1]
    index = run("humandata", path, tmp_path / "out", body_dir)
    assert index["has_smpl"].tolist() == [True, False, True]
    assert np.isnan(index["cam_elevation"][1]) and np.isfinite(index["cam_elevation"][[0, 2]]).all()
    hd.has_smpl = np.array([1, 2, 1], np.uint8)
    dump_humandata(tmp_path / "bad.npz", hd)
    with pytest.raises(DataFormatError, match="bad.npz: key 'has_smpl'"):
        load_humandata(tmp_path / "bad.npz")
    hd.has_smpl = np.array([1, 0], np.uint8)  # one flag short
    with pytest.raises(DataFormatError, match="has_smpl"):
        dump_humandata(tmp_path / "short.npz", hd)


# -- resumability and checksums ----------------------------------------------------------------------
def assert_same_index(a: SampleIndex, b: SampleIndex) -> None:
    for name in COLUMNS:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert a.meta["vocabularies"] == b.meta["vocabularies"] and a.meta["prepare"] == b.meta["prepare"]


@pytest.mark.parametrize("kind", ["gta_raw", "spin_npz"])
def test_interrupted_prepare_resumes_without_redoing_chunks(kind, gta_root, spin_files, tmp_path, body_dir,
                                                           monkeypatch):
    if kind == "gta_raw":
        source, options = gta_root, {"chunk_size": 1}  # 2 chunks of one sequence
    else:
        source, options = spin_files[0], {"chunk_size": 2, "image_root": spin_files[1]}  # rows 0-1, 2-3, 4
    one_shot = run(kind, source, tmp_path / "one_shot", body_dir, **options)
    real_build, calls = prepare_module.build_chunk, []

    def interrupted(src, chunk):
        calls.append(chunk.number)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_build(src, chunk)

    monkeypatch.setattr(prepare_module, "build_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(kind, source, tmp_path / "resumed", body_dir, **options)
    assert len(list((tmp_path / "resumed" / ".prepare_partial").glob("chunk_*"))) == 1
    calls.clear()
    monkeypatch.setattr(prepare_module, "build_chunk",
                        lambda src, chunk: calls.append(chunk.number) or real_build(src, chunk))
    resumed = run(kind, source, tmp_path / "resumed", body_dir, **options)
    assert calls == ([1] if kind == "gta_raw" else [1, 2])  # chunk 0 was kept from the first run
    assert_same_index(resumed, one_shot)
    calls.clear()
    run(kind, source, tmp_path / "resumed", body_dir, **options)  # up to date: nothing redone
    assert calls == []


def test_changed_source_is_refused_naming_the_file(gta_root, tmp_path, body_dir):
    run("gta_raw", gta_root, tmp_path / "out", body_dir)
    assert len(load_prepared(tmp_path / "out", gta_root)) == 6
    pkl = gta_root / "annotations" / "seq_00000345.pkl"
    with open(pkl, "rb") as f:
        ann = pickle.load(f)
    ann["transl"][0, 2] = 7.0
    with open(pkl, "wb") as f:
        pickle.dump(ann, f)
    with pytest.raises(SourceChangedError, match="seq_00000345.pkl"):
        load_prepared(tmp_path / "out", gta_root)
    rebuilt = run("gta_raw", gta_root, tmp_path / "out", body_dir)  # prepare sees the change and redoes it
    assert rebuilt["smpl_transl"][3, 2] == 7.0 and len(load_prepared(tmp_path / "out")) == 6


def test_partial_of_a_changed_source_file_is_redone(gta_root, tmp_path, body_dir, monkeypatch):
    real_build, calls, interrupt = prepare_module.build_chunk, [], [True]

    def counting(src, chunk):
        calls.append(chunk.number)
        if chunk.number == 1 and interrupt:  # only the first time
            interrupt.clear()
            raise KeyboardInterrupt
        return real_build(src, chunk)

    monkeypatch.setattr(prepare_module, "build_chunk", counting)
    with pytest.raises(KeyboardInterrupt):
        run("gta_raw", gta_root, tmp_path / "out", body_dir, chunk_size=1)
    pkl = gta_root / "annotations" / "seq_00000012.pkl"  # read by the finished chunk 0
    with open(pkl, "rb") as f:
        ann = pickle.load(f)
    ann["weather"] = "SNOW"
    with open(pkl, "wb") as f:
        pickle.dump(ann, f)
    calls.clear()
    index = run("gta_raw", gta_root, tmp_path / "out", body_dir, chunk_size=1)
    assert calls == [0, 1] and index.label("weather", int(index["weather"][0])) == "SNOW"


def test_a_same_size_change_to_a_column_is_caught_and_rebuilt(gta_root, tmp_path, body_dir, caplog):
    """load() compares sizes only; a run that opens a prepared index compares every column's sha256
    and rebuilds a changed one from its sources (issue 20)."""
    out = tmp_path / "idx"
    first = run("gta_raw", gta_root, out, body_dir)
    truth = np.asarray(first["bbox_xywh"]).copy()
    column = out / "bbox_xywh.npy"
    tampered = np.load(column)
    tampered[0, 0] += 7.0  # the same bytes count, another value
    np.save(column, tampered)
    assert SampleIndex.load(out, verify="fast")["bbox_xywh"][0, 0] == truth[0, 0] + 7.0  # sizes alone pass
    with caplog.at_level("WARNING", logger="gtahuman.data.prepare"):
        again = run("gta_raw", gta_root, out, body_dir)
    assert "bbox_xywh.npy" in caplog.text and "rebuilding" in caplog.text
    np.testing.assert_array_equal(np.asarray(again["bbox_xywh"]), truth)
    SampleIndex.load(out, verify="full")  # the rebuilt index matches its manifest again

"""Raw GTA-Human release reader/writer: round trip, camera intrinsics, validation, bbox cleaning."""
from __future__ import annotations

import math
import pickle
from dataclasses import replace

import numpy as np
import pytest

from gtahuman.data.formats.errors import DataFormatError
from gtahuman.data.formats.gta_raw import (
    ANNOTATION_KEYS,
    GTASequence,
    clean_bbox,
    intrinsics_from_fov,
    list_sequences,
    read_sequence,
    write_sequence,
)

SEQ = "seq_00000012"


def make_sequence(n: int = 3, seed: int = 0) -> GTASequence:
    rng = np.random.default_rng(seed)
    return GTASequence(
        seq_name=SEQ,
        keypoints_2d=rng.uniform(0, 400, (n, 100, 3)).astype(np.float32),
        keypoints_3d=rng.normal(size=(n, 100, 4)).astype(np.float32),
        occ=rng.random((n, 100)) < 0.3,
        self_occ=rng.random((n, 100)) < 0.2,
        fov=50.0,
        is_male=True,
        weather="CLEAR",
        daytime=(13, 45, 7),
        location_tag="downtown",
        betas=rng.normal(size=(n, 10)).astype(np.float32),
        body_pose=rng.normal(scale=0.2, size=(n, 69)).astype(np.float32),
        global_orient=rng.normal(size=(n, 3)).astype(np.float32),
        transl=rng.normal(loc=(0, 0, 5), size=(n, 3)).astype(np.float32),
        bbox_xywh=np.array([[100, 50, 120, 200], [110, 60, 120, 200], [400, 10, 100, 100]][:n], np.float32),
        num_frames=n,
    )


def annotation_dict(seq: GTASequence) -> dict:
    return {key: getattr(seq, key) for key in ANNOTATION_KEYS}


def write_raw_pickle(root, ann: dict) -> str:
    path = root / "annotations" / f"{SEQ}.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(ann, f)
    return str(path)


def test_round_trip_every_key_and_image_header(tmp_path):
    seq = make_sequence()
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (270, 480, 3), dtype=np.uint8) for _ in range(3)]
    write_sequence(tmp_path, SEQ, seq, frames)

    back = read_sequence(tmp_path, SEQ)
    for key in ANNOTATION_KEYS:
        got, want = getattr(back, key), getattr(seq, key)
        if isinstance(want, np.ndarray):
            assert got.shape == want.shape and got.dtype == (bool if want.dtype == bool else np.float32), key
            np.testing.assert_array_equal(got, want, err_msg=key)
        else:
            assert got == want, key
    assert back.image_size == (480, 270) and "header" in back.image_size_source
    assert list(back.image_paths) == [f"images/{SEQ}/{i:08d}.jpeg" for i in range(3)]
    assert all((tmp_path / p).is_file() for p in back.image_paths)
    # 480x270 at fov 50: f = 135 / tan(25 deg) = 289.508, principal point at the centre.
    K = back.intrinsics
    assert K[0, 0] == pytest.approx(289.508, abs=1e-3) and K[1, 1] == K[0, 0]
    assert (K[0, 2], K[1, 2]) == (240.0, 135.0)


def test_intrinsics_match_the_release_camera():
    K = intrinsics_from_fov(50.0, (1920, 1080))
    assert K[0, 0] == pytest.approx(1158.0337, abs=1e-3)
    assert K[0, 0] == pytest.approx(540 / math.tan(math.radians(25)), rel=1e-6)
    np.testing.assert_array_equal(K[:, 2], [960.0, 540.0, 1.0])


def test_missing_images_default_to_release_size(tmp_path):
    write_sequence(tmp_path, SEQ, make_sequence(), images=None)
    back = read_sequence(tmp_path, SEQ)
    assert back.image_size == (1920, 1080)
    assert "default" in back.image_size_source and "not found" in back.image_size_source
    assert back.intrinsics[0, 0] == pytest.approx(1158.0337, abs=1e-3)


def test_npz_saved_as_pkl_and_list_sequences(tmp_path):
    seq = make_sequence()
    path = tmp_path / "annotations" / f"{SEQ}.pkl"
    path.parent.mkdir(parents=True)
    with open(path, "wb") as f:  # the toolbox's dict(np.load(...)) variant
        np.savez(f, **annotation_dict(seq))
    (tmp_path / "annotations" / "seq_00000003.pkl").write_bytes(path.read_bytes())
    (tmp_path / "annotations" / "notes.txt").write_text("not a sequence")
    assert list_sequences(tmp_path) == ["seq_00000003", SEQ]
    back = read_sequence(tmp_path, SEQ)
    np.testing.assert_array_equal(back.body_pose, seq.body_pose)
    assert back.daytime == (13, 45, 7) and back.weather == "CLEAR" and back.num_frames == 3


def test_body_pose_as_23x3_is_flattened(tmp_path):
    seq = make_sequence()
    ann = annotation_dict(seq)
    ann["body_pose"] = seq.body_pose.reshape(3, 23, 3).astype(np.float64)
    write_raw_pickle(tmp_path, ann)
    np.testing.assert_array_equal(read_sequence(tmp_path, SEQ).body_pose, seq.body_pose)


@pytest.mark.parametrize(
    "key, corrupt",
    [
        ("betas", lambda ann: ann.pop("betas")),
        ("body_pose", lambda ann: ann.update(body_pose=np.zeros((3, 68)))),
        ("keypoints_2d", lambda ann: ann.update(keypoints_2d=np.zeros((2, 100, 3)))),
        ("betas", lambda ann: ann["betas"].__setitem__((1, 4), np.nan)),
        ("num_frames", lambda ann: ann.update(num_frames="three")),
        ("occ", lambda ann: ann.update(occ=np.array(["x"] * 300, dtype=object).reshape(3, 100))),
    ],
)
def test_bad_annotation_names_file_and_key(tmp_path, key, corrupt):
    ann = annotation_dict(make_sequence())
    ann["betas"] = ann["betas"].copy()
    corrupt(ann)
    path = write_raw_pickle(tmp_path, ann)
    with pytest.raises(DataFormatError) as info:
        read_sequence(tmp_path, SEQ)
    assert path in str(info.value) and f"'{key}'" in str(info.value)
    assert info.value.key == key


def test_truncated_pickle_names_file(tmp_path):
    path = write_sequence(tmp_path, SEQ, make_sequence())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="complete pickled") as info:
        read_sequence(tmp_path, SEQ)
    assert str(path) in str(info.value)


def test_missing_annotation_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="seq_00000099.pkl"):
        read_sequence(tmp_path, "seq_00000099")
    with pytest.raises(FileNotFoundError, match="annotations"):
        list_sequences(tmp_path)


def test_clean_bbox_follows_converter_rules():
    boxes = np.array(
        [
            [100, 200, 300, 400],  # inside: unchanged, kept
            [-50, 10, 200, 300],  # x clamped to 0, w NOT shortened (converter quirk), kept
            [1800, 1000, 300, 200],  # w, h cut to the image edge (120, 80), kept
            [1920, 10, 50, 50],  # starts at the right edge: dropped
            [0, 0, 1920, 100],  # exactly image-wide: w < 1920 fails, dropped (quirk)
            [10, 10, 0, 50],  # zero width: dropped
            [np.nan, 10, 50, 50],  # NaN: dropped
            [-10, -20, 5, 5],  # clamped corner, kept
        ],
        np.float32,
    )
    clipped, keep = clean_bbox(boxes)
    np.testing.assert_array_equal(keep, [True, True, True, False, False, False, False, True])
    np.testing.assert_array_equal(clipped[0], [100, 200, 300, 400])
    np.testing.assert_array_equal(clipped[1], [0, 10, 200, 300])
    np.testing.assert_array_equal(clipped[2], [1800, 1000, 120, 80])
    np.testing.assert_array_equal(clipped[7], [0, 0, 5, 5])


def test_out_of_image_box_is_reported_not_fatal(tmp_path):
    seq = make_sequence()
    seq = replace(seq, bbox_xywh=np.array([[10, 10, 50, 50], [2000, 10, 50, 50], [np.nan] * 4], np.float32))
    write_sequence(tmp_path, SEQ, seq)
    back = read_sequence(tmp_path, SEQ)
    np.testing.assert_array_equal(back.bbox_keep, [True, False, False])


def test_writer_checks_frame_count(tmp_path):
    frames = [np.zeros((20, 30, 3), np.uint8)] * 2
    with pytest.raises(DataFormatError, match="3 frames"):
        write_sequence(tmp_path, SEQ, make_sequence(), frames)
    assert not (tmp_path / "annotations" / f"{SEQ}.pkl").exists()

"""SPIN npz reader/writer: round trip, SPIN's defaults for absent keys, gender codes, box maths."""
from __future__ import annotations

import numpy as np
import pytest

from gtahuman.data.formats.errors import DataFormatError
from gtahuman.data.formats.spin_npz import (
    SpinNpz,
    bbox_xywh_from_center_scale,
    center_scale_from_bbox_xywh,
    read_spin_npz,
    write_spin_npz,
)

N = 3


def full_sample(rng) -> SpinNpz:
    return SpinNpz(
        imgname=np.array([f"imageFiles/courtyard_basketball_00/image_{i:05d}.jpg" for i in range(N)]),
        center=rng.uniform(100, 900, (N, 2)).astype(np.float32),
        scale=rng.uniform(0.5, 3, N).astype(np.float32),
        part=rng.normal(size=(N, 24, 3)).astype(np.float32),
        openpose=rng.normal(size=(N, 25, 3)).astype(np.float32),
        S=rng.normal(size=(N, 24, 4)).astype(np.float32),
        pose=rng.normal(size=(N, 72)).astype(np.float32),
        shape=rng.normal(size=(N, 10)).astype(np.float32),
        has_smpl=np.array([1, 0, 1], np.uint8),
        gender=np.array([0, 1, 1], np.int8),
        maskname=np.array([f"mask_{i}.png" for i in range(N)]),
        partname=np.array([f"part_{i}.png" for i in range(N)]),
    )


def test_round_trip(tmp_path):
    data = full_sample(np.random.default_rng(0))
    back = read_spin_npz(write_spin_npz(tmp_path / "3dpw_test.npz", data))
    for key in ("imgname", "center", "scale", "part", "openpose", "S", "shape", "has_smpl", "gender", "maskname", "partname"):
        if key == "shape":
            np.testing.assert_array_equal(back.shape[data.has_smpl == 1], data.shape[data.has_smpl == 1])
        else:
            np.testing.assert_array_equal(getattr(back, key), getattr(data, key), err_msg=key)
    np.testing.assert_array_equal(back.pose[[0, 2]], data.pose[[0, 2]])
    assert not back.pose[1].any()  # a row without SMPL is zeroed
    assert back.center.dtype == np.float32 and back.has_smpl.dtype == np.uint8 and len(back) == N
    with np.load(tmp_path / "3dpw_test.npz") as raw:  # SPIN's own layout: 'm'/'f' strings
        assert list(raw["gender"]) == ["m", "f", "f"]


def test_absent_keys_get_spin_defaults(tmp_path):
    minimal = tmp_path / "minimal.npz"
    np.savez(minimal, imgname=np.array(["a.jpg", "b.jpg"]), center=np.ones((2, 2)), scale=np.ones(2))
    data = read_spin_npz(minimal)
    assert data.part.shape == (2, 24, 3) and not data.part.any()
    assert data.openpose.shape == (2, 25, 3) and not data.openpose.any()
    assert data.S is None and data.pose is None and data.shape is None
    np.testing.assert_array_equal(data.has_smpl, [0, 0])  # no pose: nobody has SMPL
    np.testing.assert_array_equal(data.gender, [-1, -1])  # no gender key: unknown

    with_pose = tmp_path / "pose.npz"
    np.savez(with_pose, imgname=np.array(["a.jpg", "b.jpg"]), center=np.ones((2, 2)), scale=np.ones(2),
             pose=np.zeros((2, 72)), shape=np.zeros((2, 10)))
    np.testing.assert_array_equal(read_spin_npz(with_pose).has_smpl, [1, 1])  # pose, no has_smpl: all


def test_gender_mapping_follows_spin(tmp_path):
    path = tmp_path / "g.npz"
    genders = np.array(["m", "f", "female", "m", "x"])
    np.savez(path, imgname=np.array(list("abcde")), center=np.zeros((5, 2)), scale=np.ones(5), gender=genders)
    np.testing.assert_array_equal(read_spin_npz(path).gender, [0, 1, 1, 0, 1])  # 'm' -> 0, else 1


def test_writer_refuses_partly_unknown_gender(tmp_path):
    data = full_sample(np.random.default_rng(1))
    data.gender = np.array([0, -1, 1], np.int8)
    with pytest.raises(DataFormatError, match="'gender'"):
        write_spin_npz(tmp_path / "x.npz", data)
    data.gender = np.full(N, -1, np.int8)  # all unknown: the key is simply left out
    with np.load(write_spin_npz(tmp_path / "y.npz", data)) as raw:
        assert "gender" not in raw.files


def test_missing_imgname_names_file_and_key(tmp_path):
    path = tmp_path / "noimg.npz"
    np.savez(path, center=np.zeros((2, 2)), scale=np.ones(2))
    with pytest.raises(DataFormatError) as info:
        read_spin_npz(path)
    assert str(path) in str(info.value) and "'imgname'" in str(info.value)


@pytest.mark.parametrize(
    "key, extra",
    [
        ("part", {"part": np.zeros((3, 24, 3))}),  # 3 rows for 2 images
        ("S", {"S": np.zeros((2, 17, 4))}),
        ("has_smpl", {"has_smpl": np.array([0.5, 1.0])}),
        ("pose", {"pose": np.full((2, 72), np.nan), "shape": np.zeros((2, 10))}),
        ("shape", {"pose": np.zeros((2, 72))}),
    ],
)
def test_bad_arrays_name_the_key(tmp_path, key, extra):
    path = tmp_path / "bad.npz"
    np.savez(path, imgname=np.array(["a", "b"]), center=np.zeros((2, 2)), scale=np.ones(2), **extra)
    with pytest.raises(DataFormatError, match=f"'{key}'"):
        read_spin_npz(path)


def test_box_conversions_by_hand():
    bbox = bbox_xywh_from_center_scale(np.array([[100.0, 50.0]]), np.array([1.0]))
    np.testing.assert_array_equal(bbox, [[0.0, -50.0, 200.0, 200.0]])  # side = 200 * scale
    center, scale = center_scale_from_bbox_xywh(np.array([[10.0, 20.0, 60.0, 240.0]]), scale_factor=1.2)
    np.testing.assert_array_equal(center, [[40.0, 140.0]])
    np.testing.assert_allclose(scale, [1.2 * 240 / 200])
    rng = np.random.default_rng(2)
    centers, scales = rng.uniform(0, 500, (5, 2)), rng.uniform(0.3, 4, 5)
    back_c, back_s = center_scale_from_bbox_xywh(bbox_xywh_from_center_scale(centers, scales))
    np.testing.assert_allclose(back_c, centers, rtol=1e-5)
    np.testing.assert_allclose(back_s, scales, rtol=1e-5)

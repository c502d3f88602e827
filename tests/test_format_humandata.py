"""HumanData npz: compressed keypoints, SMPL/meta round trip, legacy bbox, lengths, name mapping."""
from __future__ import annotations

import numpy as np
import pytest

from gtahuman.body.conventions import get_names
from gtahuman.data.formats.errors import DataFormatError
from gtahuman.data.formats.humandata import (
    HUMAN_DATA_NAMES,
    HumanData,
    dump_humandata,
    humandata_keypoints,
    load_humandata,
)

N = 4
# Index maps copied by hand from reference/mmhuman3d.md section 6.3 (not from the module).
REF_SMPL_49 = [*range(153, 178), 8, 5, 144, 145, 4, 7, 21, 19, 17, 16, 18, 20, *range(146, 153), 55, 57, 56, 59, 58]
REF_SMPL_54 = [*range(0, 22), 188, 189, *range(55, 76), *range(144, 153)]
REF_H36M = [148, 145, 4, 7, 144, 5, 8, 150, 146, 152, 147, 16, 18, 20, 17, 19, 21]


def smpl_arrays(rng) -> dict:
    return {
        "global_orient": rng.normal(size=(N, 3)),
        "body_pose": rng.normal(size=(N, 69)),  # the raw-data flat layout
        "betas": rng.normal(size=(N, 10)),
        "transl": rng.normal(size=(N, 3)),
    }


def test_hand_written_compressed_file_loads_zero_padded(tmp_path):
    """A file written directly with numpy (not by our writer), as mmhuman3d's dump lays it out."""
    rng = np.random.default_rng(0)
    mask2d = np.zeros(190, np.uint8)
    mask2d[[189, 3, 55, 148]] = 1  # deliberately unsorted here; storage order is ascending index
    stored2d = rng.normal(size=(N, 4, 3))  # columns for joints 3, 55, 148, 189
    mask3d = np.zeros(190, np.uint8)
    mask3d[[0, 16]] = 1
    stored3d = rng.normal(size=(N, 2, 4))
    path = tmp_path / "compressed.npz"
    np.savez_compressed(
        path,
        __data_len__=np.array(N), __key_strict__=np.array(False), __keypoints_compressed__=np.array(True),
        keypoints2d=stored2d, keypoints2d_mask=mask2d, keypoints3d=stored3d, keypoints3d_mask=mask3d,
        image_path=np.array([f"images/seq_00000001/{i:08d}.jpeg" for i in range(N)]),
        config=np.array("gta_human"),
    )
    hd = load_humandata(path)
    k2d, k3d = hd.keypoints["keypoints2d"], hd.keypoints["keypoints3d"]
    assert k2d.shape == (N, 190, 3) and k2d.dtype == np.float32 and k3d.shape == (N, 190, 4)
    for column, joint in enumerate([3, 55, 148, 189]):
        np.testing.assert_allclose(k2d[:, joint], stored2d[:, column], rtol=1e-6)
    others = np.setdiff1d(np.arange(190), [3, 55, 148, 189])
    assert not k2d[:, others].any()
    np.testing.assert_allclose(k3d[:, 16], stored3d[:, 1], rtol=1e-6)
    np.testing.assert_array_equal(hd.keypoint_masks["keypoints2d"], mask2d)
    assert hd.keypoint_conventions == {"keypoints2d": "human_data", "keypoints3d": "human_data"}
    assert hd.config == "gta_human" and hd.image_path[2] == "images/seq_00000001/00000002.jpeg"


def test_dump_compressed_stores_masked_columns_in_ascending_order(tmp_path):
    rng = np.random.default_rng(1)
    mask = np.zeros(190, np.uint8)
    mask[[150, 7, 60]] = 1
    full = np.zeros((N, 190, 3), np.float32)
    full[:, [7, 60, 150]] = rng.normal(size=(N, 3, 3))
    hd = HumanData(data_len=N, keypoints={"keypoints2d_gta": full}, keypoint_masks={"keypoints2d_gta": mask})
    path = dump_humandata(tmp_path / "gta.npz", hd, compress_keypoints=True)

    with np.load(path, allow_pickle=True) as raw:
        assert bool(raw["__keypoints_compressed__"]) and int(raw["__data_len__"]) == N
        np.testing.assert_array_equal(raw["keypoints2d_gta"], full[:, [7, 60, 150]])
    back = load_humandata(path)
    np.testing.assert_array_equal(back.keypoints["keypoints2d_gta"], full)
    np.testing.assert_array_equal(back.keypoint_masks["keypoints2d_gta"], mask)


def test_smpl_meta_bbox_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    hd = HumanData(
        data_len=N,
        image_path=np.array([f"imageFiles/courtyard/image_{i:05d}.jpg" for i in range(N)]),
        bbox_xywh=rng.uniform(0, 100, (N, 5)).astype(np.float32),
        config="pw3d",
        smpl={k: v.astype(np.float32) for k, v in smpl_arrays(rng).items()},
        meta={"gender": np.array(["m", "f", "f", "m"])},
        extra={"misc": {"bbox_body_scale": 1.2}},
    )
    back = load_humandata(dump_humandata(tmp_path / "pw3d.npz", hd))
    assert back.data_len == N and back.config == "pw3d"
    np.testing.assert_array_equal(back.image_path, hd.image_path)
    np.testing.assert_array_equal(back.bbox_xywh, hd.bbox_xywh)
    assert back.smpl["body_pose"].shape == (N, 23, 3)
    np.testing.assert_array_equal(back.smpl["body_pose"].reshape(N, 69), hd.smpl["body_pose"])
    for key in ("global_orient", "betas", "transl"):
        np.testing.assert_array_equal(back.smpl[key], hd.smpl[key])
    assert list(back.meta["gender"]) == ["m", "f", "f", "m"]
    assert back.extra["misc"] == {"bbox_body_scale": 1.2}


def test_smpl_without_transl_and_float64_is_accepted(tmp_path):
    smpl = smpl_arrays(np.random.default_rng(3))
    del smpl["transl"]
    smpl["body_pose"] = smpl["body_pose"].reshape(N, 23, 3)
    np.savez_compressed(tmp_path / "h.npz", smpl=np.array(smpl, dtype=object), __data_len__=np.array(N))
    back = load_humandata(tmp_path / "h.npz")
    assert "transl" not in back.smpl and back.smpl["betas"].dtype == np.float32
    np.testing.assert_allclose(back.smpl["body_pose"], smpl["body_pose"], rtol=1e-6)


def test_legacy_bbox_gets_confidence_column(tmp_path):
    bbox = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float64)
    np.savez_compressed(tmp_path / "old.npz", bbox_xywh=bbox)
    back = load_humandata(tmp_path / "old.npz")
    np.testing.assert_array_equal(back.bbox_xywh, [[1, 2, 3, 4, 1], [5, 6, 7, 8, 1]])
    assert back.data_len == 2  # filled in when the file has no __data_len__


def test_mismatched_data_len_names_file_and_key(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez_compressed(path, __data_len__=np.array(5), bbox_xywh=np.zeros((4, 5)))
    with pytest.raises(DataFormatError) as info:
        load_humandata(path)
    message = str(info.value)
    assert str(path) in message and "'bbox_xywh'" in message and "__data_len__" in message and "5 rows" in message


def test_compressed_width_must_match_mask(tmp_path):
    mask = np.zeros(190, np.uint8)
    mask[:3] = 1
    path = tmp_path / "bad.npz"
    np.savez_compressed(path, __keypoints_compressed__=np.array(True), keypoints3d=np.zeros((2, 4, 4)),
                        keypoints3d_mask=mask)
    with pytest.raises(DataFormatError, match="'keypoints3d'.*3 compressed joints"):
        load_humandata(path)


def test_human_data_names_reproduce_reference_index_maps():
    assert len(HUMAN_DATA_NAMES) == 190 and len(set(HUMAN_DATA_NAMES)) == 190
    assert HUMAN_DATA_NAMES[148] == "pelvis_extra" and HUMAN_DATA_NAMES[153] == "nose_openpose"
    assert HUMAN_DATA_NAMES[:3] == ("pelvis", "left_hip", "right_hip")
    assert HUMAN_DATA_NAMES[188:] == ("left_hand", "right_hand")


@pytest.mark.parametrize("convention, reference", [("smpl_49", REF_SMPL_49), ("smpl_54", REF_SMPL_54), ("h36m", REF_H36M)])
def test_convention_names_sit_at_reference_human_data_indices(convention, reference):
    assert [HUMAN_DATA_NAMES.index(joint) for joint in get_names(convention)] == reference


def test_keypoints_stored_in_another_convention(tmp_path):
    smpl_49 = np.arange(2 * 49 * 3, dtype=np.float32).reshape(2, 49, 3)
    hd = HumanData(data_len=2, keypoints={"keypoints2d": smpl_49}, keypoint_conventions={"keypoints2d": "smpl_49"})
    back = load_humandata(dump_humandata(tmp_path / "k.npz", hd))
    assert back.keypoint_conventions["keypoints2d"] == "smpl_49"
    h36m, mask = humandata_keypoints(back, "keypoints2d", "h36m")
    np.testing.assert_array_equal(h36m[:, 0], smpl_49[:, 39])  # pelvis_extra is smpl_49 slot 39
    assert mask.all()
    wrong = HumanData(data_len=2, keypoints={"keypoints2d": smpl_49[:, :40]}, keypoint_conventions={"keypoints2d": "smpl_49"})
    with pytest.raises(DataFormatError, match="'keypoints2d'.*smpl_49"):
        humandata_keypoints(wrong, "keypoints2d", "h36m")


@pytest.mark.parametrize("convention, reference", [("smpl_49", REF_SMPL_49), ("smpl_54", REF_SMPL_54), ("h36m", REF_H36M)])
def test_keypoints_mapped_by_name_follow_reference_indices(convention, reference):
    rng = np.random.default_rng(4)
    full = rng.normal(size=(N, 190, 4)).astype(np.float32)
    full[..., 3] = 1.0
    mask = np.ones(190, np.uint8)
    mask[148] = 0  # pelvis_extra absent
    hd = HumanData(data_len=N, keypoints={"keypoints3d": full}, keypoint_masks={"keypoints3d": mask})
    kps, out_mask = humandata_keypoints(hd, "keypoints3d", convention)
    assert kps.shape == (N, len(reference), 4)
    for j, source in enumerate(reference):
        if source == 148:
            assert out_mask[j] == 0 and not kps[:, j].any()
        else:
            assert out_mask[j] == 1
            np.testing.assert_array_equal(kps[:, j], full[:, source])


def test_non_finite_keypoints_get_zero_confidence():
    full = np.ones((2, 190, 3), np.float32)
    full[0, 153, 0] = np.inf  # a converter-projected OpenPose slot (nose_openpose)
    hd = HumanData(data_len=2, keypoints={"keypoints2d": full})
    kps, mask = humandata_keypoints(hd, "keypoints2d", "smpl_49")
    np.testing.assert_array_equal(kps[0, 0], [0, 0, 0])
    np.testing.assert_array_equal(kps[1, 0], [1, 1, 1])
    assert mask[0] == 1  # the joint exists; only that sample's value is unusable


def test_missing_file_and_not_an_archive(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_humandata(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(DataFormatError, match="junk.npz"):
        load_humandata(tmp_path / "junk.npz")
    good = dump_humandata(tmp_path / "cut.npz", HumanData(data_len=2, bbox_xywh=np.ones((2, 5), np.float32)))
    good.write_bytes(good.read_bytes()[:-40])  # the zip directory is at the end
    with pytest.raises(DataFormatError, match="cut.npz"):
        load_humandata(good)
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(DataFormatError, match=r"plain.npy.*\.npz archive"):
        load_humandata(tmp_path / "plain.npy")

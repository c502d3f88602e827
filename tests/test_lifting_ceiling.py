"""experiments.lifting_ceiling: the Procrustes-mean constant, the shared keypoints, the extent
normalisation and the left/right swap count by hand, and the command on the tiny world."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from experiments.lifting_ceiling import (ceiling, extent_normalised, left_right_swaps, main, per_joint_group,
                                        procrustes_mean, shared_keypoints, shrinkage, unlabelled_sides)
from gtahuman.metrics import pa_mpjpe


def test_procrustes_mean_of_rotated_copies_is_the_skeleton() -> None:
    rng = np.random.default_rng(0)
    skeleton = rng.normal(0, 0.3, (24, 3))
    rotations = Rotation.random(5, random_state=1).as_matrix()
    copies = np.einsum("nij,kj->nki", rotations, skeleton) + rng.normal(0, 1, (5, 1, 3))  # rotated, moved
    mean = procrustes_mean(copies)
    error = pa_mpjpe(torch.as_tensor(mean).expand(5, 24, 3), torch.as_tensor(copies))
    torch.testing.assert_close(error, torch.zeros(5, dtype=error.dtype), atol=1e-9, rtol=0)
    # a plain mean of the rotated copies is no skeleton at all: the reason for the Procrustes mean
    plain = copies.mean(axis=0)
    assert pa_mpjpe(torch.as_tensor(plain)[None], torch.as_tensor(skeleton)[None]).item() > 0.05


def test_command_on_the_tiny_world(tiny_config, single_thread, capsys) -> None:
    cfg = tiny_config()
    results = ceiling(cfg, [0.0], steps=20)
    with_smpl = [name for name in cfg.data.train if name != "real_kp"]  # the keypoint-only photos have no SMPL
    assert [r["lifter"] for r in results] == ["all", *with_smpl]
    for result in results:
        assert result["constant"] > 0 and np.isfinite(result["pa_mpjpe"])
        assert set(result["groups"]) <= {"walk", "run", "reach", "crouch", "sit", "wave", "jump", "turn", "idle"}
    # the SPIN-format sets label 15 of the 29 keypoints, GTA all it shows: only shared ones are read
    # (14 on the tiny world, where one of the 15 misses in a few rows of one set)
    assert 10 <= results[0]["keypoints"] <= 15
    overrides = [f"run.cache_dir={cfg.run.cache_dir}", "data.miniworld=tiny"]
    assert main([*overrides, "--noise", "0.1", "--steps", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"{results[0]['keypoints']} keypoints labelled in every source"
    assert lines[1].startswith("noise 0.10, lifter on all: lifted PA-MPJPE") and lines[-1].startswith("ratio: ")


def test_shared_keypoints_are_those_labelled_in_every_source() -> None:
    a, b = np.ones((100, 5, 3)), np.ones((50, 5, 3))
    a[:, 1, 2] = 0  # never labelled in a
    b[0, 3, 2] = 0  # missing in 1 row of 50 (98 %): below the 99 % floor
    a[0, 4, 2] = 0  # missing in 1 row of 100 (99 %): still shared
    assert shared_keypoints([a, b]).tolist() == [0, 2, 4]


def test_extent_normalisation_removes_box_scale_and_position() -> None:
    xy = np.array([[[0.0, 0.0], [2.0, 4.0], [1.0, 1.0]]])
    # bounding box x 0..2, y 0..4: centre (1, 2), half the larger side 2
    np.testing.assert_allclose(extent_normalised(xy)[0], [[-0.5, -1.0], [0.5, 1.0], [0.0, -0.5]])
    np.testing.assert_allclose(extent_normalised(3.0 * xy + 7.0), extent_normalised(xy), atol=1e-6)


def test_left_right_swaps_count_only_separated_labelled_pairs() -> None:
    labelled = np.zeros((3, 29, 3))
    labelled[:, :, 2] = 1
    labelled[:, 4, :2], labelled[:, 5, :2] = [-0.5, 0.0], [0.5, 0.0]  # left and right knee, 1.0 apart
    predicted = labelled[:, :, :2].copy()
    predicted[0, [4, 5]] = predicted[0, [5, 4]]  # row 0: the knees swapped
    predicted[1, 4] += [0.3, 0.0]  # row 1: off, but nearer its own label than the other's
    labelled[2, 5, 2] = 0  # row 2: right knee unlabelled -> not counted
    assert left_right_swaps(predicted, labelled)["knee"] == 0.5


def test_shrinkage_reads_a_halved_pose_as_slope_one_half() -> None:
    rng = np.random.default_rng(0)
    labelled = np.concatenate([rng.normal(0, 0.3, (50, 29, 2)), np.ones((50, 29, 1))], axis=-1)
    shoulders = labelled[:, [16, 17], :2].mean(axis=1, keepdims=True)
    mean_pose = (labelled[..., :2] - shoulders).mean(axis=0)
    # every keypoint halfway between its labelled place and the mean pose (shoulder-relative)
    predicted = shoulders + 0.5 * (labelled[..., :2] - shoulders) + 0.5 * mean_pose
    slope, r = shrinkage(predicted, labelled)["knee"]
    assert slope == pytest.approx(0.5, abs=0.02) and r == pytest.approx(1.0, abs=1e-6)
    assert shrinkage(labelled[..., :2], labelled)["wrist"] == pytest.approx((1.0, 1.0))

def test_per_joint_group_scores_a_similar_copy_zero_and_blames_the_moved_joints() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(8, 24, 3)).astype(np.float32)
    scaled_turned = 2.0 * truth @ np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], np.float32) + 0.3
    groups = per_joint_group(scaled_turned, truth[0], truth)
    assert all(own == pytest.approx(0.0, abs=1e-2) for own, _ in groups.values())  # a similarity is no error
    assert groups["knees"][1] > 100  # the fixed skeleton truth[0] is wrong on the other seven
    same = np.broadcast_to(truth[0], truth.shape).copy()
    moved = same.copy()
    moved[:, [7, 8, 10, 11]] += np.array([0.0, 0.0, 0.5], np.float32)  # ankles and feet pushed 0.5 m
    groups = per_joint_group(moved, truth[0], same)
    assert groups["ankles and feet"][0] > 3 * groups["torso and head"][0] > 0
    assert all(const == pytest.approx(0.0, abs=1e-2) for _, const in groups.values())  # the constant is the truth


def test_unlabelled_sides_order_each_mirror_pair_by_image_x() -> None:
    # smpl_54 0 pelvis, 1 left_hip, 2 right_hip, 4 left_knee, 5 right_knee; the pelvis has no mirror
    keypoints = np.array([0, 1, 2, 4, 5])
    xy = np.array([[[0.0, 0.0], [3.0, 1.0], [-3.0, 1.0], [-1.0, 2.0], [1.0, 2.0]],   # hips crossed, knees not
                   [[0.0, 0.0], [-3.0, 1.0], [3.0, 1.0], [2.0, 2.0], [-2.0, 5.0]]])  # hips not, knees crossed
    out = unlabelled_sides(xy, keypoints)
    np.testing.assert_array_equal(out[0], [[0, 0], [-3, 1], [3, 1], [-1, 2], [1, 2]])
    np.testing.assert_array_equal(out[1], [[0, 0], [-3, 1], [3, 1], [-2, 5], [2, 2]])  # a point moves whole
    flipped = xy.copy()
    flipped[:, [1, 2, 3, 4]] = xy[:, [2, 1, 4, 3]]  # the sides' names exchanged: the input cannot tell
    np.testing.assert_array_equal(unlabelled_sides(flipped, keypoints), out)
    limbs = unlabelled_sides(xy, keypoints, "limbs")  # the hips keep their names, the knees do not
    np.testing.assert_array_equal(limbs[0], xy[0])
    np.testing.assert_array_equal(limbs[1], out[1])

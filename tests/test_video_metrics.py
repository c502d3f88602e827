"""Acceleration metrics of the video evaluation, within person tracks, against hand-computed values.

Second differences are taken per frame (no /dt^2), as VIBE's compute_accel / compute_error_accel,
so a track x(t) = x0 + v t + a t^2 / 2 has second difference exactly a at every inner frame.
"""
from __future__ import annotations

import numpy as np

from gtahuman.video.system import within_track_accelerations

T = 10
t = np.arange(T, dtype=np.float64)[:, None, None]  # (T, 1, 1)


def track(x0: np.ndarray, v: np.ndarray, a: np.ndarray) -> np.ndarray:
    """(T, J, 3) joints moving with constant acceleration a (per joint)."""
    return x0[None] + v[None] * t + 0.5 * a[None] * t**2


def test_constant_velocity_track_has_zero_acceleration() -> None:
    rng = np.random.default_rng(0)
    pred = track(rng.normal(size=(14, 3)), rng.normal(size=(14, 3)) * 0.05, np.zeros((14, 3)))
    gt = track(rng.normal(size=(14, 3)), rng.normal(size=(14, 3)) * 0.02, np.zeros((14, 3)))
    accel, error = within_track_accelerations(pred, gt, np.zeros(T, int), np.arange(T), np.ones(T, bool))
    assert np.isnan(accel[[0, -1]]).all() and np.isnan(error[[0, -1]]).all()  # no triplet at the ends
    np.testing.assert_allclose(accel[1:-1], 0.0, atol=1e-12)
    np.testing.assert_allclose(error[1:-1], 0.0, atol=1e-12)


def test_quadratic_track_gives_the_hand_computed_acceleration_error() -> None:
    # joint 0 accelerates 1 mm/frame^2 along x, joint 1 (0, 3, 4) mm/frame^2 (norm 5):
    # mean over joints of |a_pred - a_gt| with a still GT = (1 + 5) / 2 = 3 mm per frame^2
    a = np.array([[0.001, 0.0, 0.0], [0.0, 0.003, 0.004]])
    pred = track(np.zeros((2, 3)), np.array([[0.01, 0.0, 0.0], [0.0, -0.02, 0.0]]), a)
    gt = np.zeros_like(pred)
    accel, error = within_track_accelerations(pred, gt, np.zeros(T, int), np.arange(T), np.ones(T, bool))
    np.testing.assert_allclose(error[1:-1] * 1000.0, 3.0, rtol=1e-9)
    np.testing.assert_allclose(accel[1:-1] * 1000.0, 3.0, rtol=1e-9)
    # GT accelerating by (0, 0, 0.004) at joint 1 only: |(0,0.003,0)| = 3 mm, joint 0 still 1 mm -> 2 mm
    gt = track(np.zeros((2, 3)), np.zeros((2, 3)), np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.004]]))
    _, error = within_track_accelerations(pred, gt, np.zeros(T, int), np.arange(T), np.ones(T, bool))
    np.testing.assert_allclose(error[1:-1] * 1000.0, 2.0, rtol=1e-9)


def test_no_triplet_crosses_a_track_a_gap_or_an_unusable_frame() -> None:
    # two constant-velocity tracks far apart, rows shuffled: differencing across them would
    # give huge values; within them everything is 0
    rng = np.random.default_rng(1)
    first = track(np.zeros((3, 3)), np.full((3, 3), 0.01), np.zeros((3, 3)))
    second = track(np.full((3, 3), 5.0), np.full((3, 3), -0.03), np.zeros((3, 3)))
    pred = np.concatenate([first, second])
    tracks = np.repeat([4, 9], T)
    frames = np.concatenate([np.arange(T), np.arange(T)])
    order = rng.permutation(2 * T)
    accel, error = within_track_accelerations(pred[order], np.zeros_like(pred), tracks[order], frames[order],
                                              np.ones(2 * T, bool))
    finite = np.isfinite(accel)
    assert finite.sum() == 2 * (T - 2)
    assert not finite[(frames[order] == 0) | (frames[order] == T - 1)].any()  # the ends of each track
    np.testing.assert_allclose(accel[finite], 0.0, atol=1e-12)
    # a gap (frame 5 missing from the second track) removes the triplets centred on 4 and 6
    keep = ~((tracks == 9) & (frames == 5))
    accel, _ = within_track_accelerations(pred[keep], pred[keep], tracks[keep], frames[keep], np.ones(keep.sum(), bool))
    assert np.isfinite(accel).sum() == (T - 2) + (T - 2 - 3)
    # an unusable frame (no GT) removes every triplet it belongs to
    usable = np.ones(T, bool)
    usable[4] = False
    _, error = within_track_accelerations(first, first, np.zeros(T, int), np.arange(T), usable)
    assert np.flatnonzero(np.isnan(error)).tolist() == [0, 3, 4, 5, T - 1]


def test_short_tracks_give_no_value() -> None:
    accel, error = within_track_accelerations(np.zeros((2, 14, 3)), np.zeros((2, 14, 3)), np.zeros(2, int),
                                              np.arange(2), np.ones(2, bool))
    assert np.isnan(accel).all() and np.isnan(error).all()

"""Video windows: never across a sequence (or a person, or a gap), each eval frame once, mixing
by ratio, and Table 3's GTA* subsampling. Rows are shuffled, so nothing relies on storage order."""
from __future__ import annotations

import numpy as np
import pytest

from gtahuman.video.windows import (
    WindowMixtureSampler,
    evaluation_windows,
    mixture_counts,
    subsample_tracks,
    track_ids,
    track_runs,
    training_windows,
)


def shuffled_frames(lengths: dict[int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows of sequences {id: length} in random order: (sequence_id, frame_id)."""
    seq = np.concatenate([np.full(n, s) for s, n in lengths.items()]).astype(np.int32)
    frame = np.concatenate([np.arange(n) for n in lengths.values()]).astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(seq))
    return seq[order], frame[order]


def test_training_windows_stay_inside_one_sequence_in_frame_order() -> None:
    seq, frame = shuffled_frames({3: 20, 7: 33, 9: 15, 11: 16})
    windows = training_windows(seq, frame, window=16)
    # VIBE's chunks: floor(n / 16) per sequence, shorter ones skipped, tails dropped
    assert len(windows) == 1 + 2 + 0 + 1
    for rows in windows:
        assert len(set(seq[rows].tolist())) == 1  # never two sequences
        np.testing.assert_array_equal(np.diff(frame[rows]), np.ones(15))  # consecutive, ascending
    starts = sorted((int(seq[w[0]]), int(frame[w[0]])) for w in windows)
    assert starts == [(3, 0), (7, 0), (7, 16), (11, 0)]
    # stride 4 in a 20-frame sequence: starts 0 and 4 only
    assert len(training_windows(*shuffled_frames({1: 20}), window=16, stride=4)) == 2


def test_two_people_in_one_sequence_and_gaps_make_separate_tracks() -> None:
    # sequence 5 has two people (rows for frames 0..9 twice: person A first, then person B);
    # sequence 6 lost frames 4 and 5 (a gap)
    seq = np.array([5] * 10 + [5] * 10 + [6] * 8)
    frame = np.array(list(range(10)) * 2 + [0, 1, 2, 3, 6, 7, 8, 9])
    track = track_ids(seq, frame)
    assert len(set(track[:10])) == 1 and len(set(track[10:20])) == 1 and track[0] != track[10]
    runs = track_runs(seq, frame)
    assert sorted(len(r) for r in runs) == [4, 4, 10, 10]
    windows = training_windows(seq, frame, window=4)
    assert len(windows) == 2 + 2 + 1 + 1
    for rows in windows:  # one track, consecutive frames
        assert len(set(track[rows].tolist())) == 1
        np.testing.assert_array_equal(np.diff(frame[rows]), [1, 1, 1])


def test_two_people_seen_in_different_frames_keep_their_own_tracks() -> None:
    # 3DPW, person by person: A is valid in frames 0-2 and 5-7, B in frames 0-7 (campose_valid).
    # Frames 3 and 4 show B alone: a frame's first occurrence would hand them to A's track.
    a, b = [0, 1, 2, 5, 6, 7], list(range(8))
    seq, frame = np.array([4] * 14), np.array(a + b)
    track = track_ids(seq, frame)
    assert len(set(track[:6])) == 1 and len(set(track[6:])) == 1 and track[0] != track[6]
    assert sorted(len(r) for r in track_runs(seq, frame)) == [3, 3, 8]  # A's gap splits A only
    # the same two people listed frame by frame: occurrence n is person n
    rows = [(f, p) for f in range(8) for p in ("A", "B")]
    seq, frame = np.full(16, 4), np.array([f for f, _ in rows])
    track = track_ids(seq, frame)
    assert len(set(track[0::2])) == 1 and len(set(track[1::2])) == 1 and track[0] != track[1]


def test_a_source_keeping_one_frame_in_ten_has_windows_and_splits_at_a_dropped_frame() -> None:
    """SPIN's MPI-INF-3DHP file keeps every tenth frame: its tracks step by 10, a window is every
    tenth frame, and a missing tenth frame (80 -> 100) is a gap."""
    frame = np.array([0, 10, 20, 30, 40, 50, 60, 70, 80, 100, 110, 120, 130])
    seq = np.zeros(len(frame), np.int32)
    order = np.random.default_rng(1).permutation(len(frame))
    seq, frame = seq[order], frame[order]
    assert sorted(len(r) for r in track_runs(seq, frame)) == [4, 9]
    windows = training_windows(seq, frame, window=4)
    assert len(windows) == 2 + 1
    for rows in windows:
        np.testing.assert_array_equal(np.diff(frame[rows]), [10, 10, 10])


def test_frame_ids_come_from_file_numbers_when_every_file_has_one() -> None:
    from gtahuman.data.prepare_common import folder_sequences

    paths = np.array(["mpi/S1/frame_000020.jpg", "mpi/S1/frame_000000.jpg", "mpi/S1/frame_000010.jpg",
                      "pw/a/image_7.jpg", "pw/a/cover.jpg", "pw/a/image_3.jpg"])
    sequence, frame, folders = folder_sequences(paths)
    assert folders == ["mpi/S1", "pw/a"] and sequence.tolist() == [0, 0, 0, 1, 1, 1]
    assert frame[:3].tolist() == [20, 0, 10]  # the real frame numbers: every tenth frame
    assert frame[3:].tolist() == [2, 0, 1]  # a file without a number: ranks by name for the folder


def test_still_images_are_tracks_of_one_frame() -> None:
    seq, frame = np.full(5, -1), np.full(5, -1)
    assert len(set(track_ids(seq, frame).tolist())) == 5
    assert training_windows(seq, frame, window=2).shape == (0, 2)
    rows, scored = evaluation_windows(seq, frame, window=3)
    assert rows.shape == (5, 3) and scored.sum() == 5 and scored[:, 0].all()


def test_evaluation_windows_score_every_frame_exactly_once() -> None:
    seq, frame = shuffled_frames({0: 37, 1: 16, 2: 5, 3: 1}, seed=3)
    rows, scored = evaluation_windows(seq, frame, window=16)
    assert rows.shape[1] == 16
    counts = np.bincount(rows[scored], minlength=len(seq))
    np.testing.assert_array_equal(counts, np.ones(len(seq)))  # each frame scored once
    for r in rows:  # no window crosses a sequence; padding repeats the track's last frame
        assert len(set(seq[r].tolist())) == 1
        assert (np.diff(frame[r]) >= 0).all()
    # 37 frames: [0,16), [16,32), and the last window end-aligned, [21,37), scoring only 32..36;
    # 5 frames: one window padded with frame 4, scoring the first 5 entries
    of_seq = {s: [i for i, r in enumerate(rows) if seq[r[0]] == s] for s in (0, 2)}
    assert [int(frame[rows[i][0]]) for i in of_seq[0]] == [0, 16, 21]
    assert [int(scored[i].sum()) for i in of_seq[0]] == [16, 16, 5]
    assert frame[rows[of_seq[2][0]]].tolist() == [0, 1, 2, 3, 4] + [4] * 11
    assert scored[of_seq[2][0]].tolist() == [True] * 5 + [False] * 11


def test_mixture_counts_follow_ratios_and_sum_to_the_epoch() -> None:
    np.testing.assert_array_equal(mixture_counts([10, 30], None, None), [10, 30])  # concatenation
    np.testing.assert_array_equal(mixture_counts([10, 30], None, 8), [2, 6])
    np.testing.assert_array_equal(mixture_counts([5, 50, 500], [0.25, 0.25, 0.5], 10), [3, 2, 5])
    assert mixture_counts([1, 1, 1], [1, 1, 1], 100).sum() == 100
    with pytest.raises(ValueError, match="no window"):
        mixture_counts([0, 4], [0.5, 0.5], 10)


def test_sampler_draws_the_planned_share_per_source_and_is_reproducible() -> None:
    counts = [3, 40]  # a small source is cycled through, a large one drawn without repeats
    sampler = WindowMixtureSampler(counts, ratios=[0.5, 0.5], epoch_length=20, seed=1)
    picks = np.array(list(sampler))
    assert len(picks) == len(sampler) == 20
    small, large = picks[picks < 3], picks[picks >= 3]
    assert len(small) == 10 and len(large) == 10 and len(set(large.tolist())) == 10
    assert np.bincount(small, minlength=3).min() >= 3  # whole passes over the small source
    assert list(WindowMixtureSampler(counts, [0.5, 0.5], 20, seed=1)) == picks.tolist()
    sampler.set_epoch(1)
    assert list(sampler) != picks.tolist()
    shards = [list(WindowMixtureSampler(counts, [0.5, 0.5], 20, seed=1, num_replicas=2, rank=r)) for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == sorted(picks.tolist())  # ranks split one plan


def test_subsample_keeps_exact_pose_count_from_whole_sequences() -> None:
    seq, frame = shuffled_frames({s: 10 for s in range(8)}, seed=5)
    labelled = np.ones(len(seq), bool)
    labelled[(seq == 2) & (frame == 4)] = False  # one frame without SMPL never counts
    keep = subsample_tracks(seq, frame, 25, seed=0, eligible=labelled)
    assert keep.sum() == 25 and not keep[~labelled].any()
    per_sequence = np.bincount(seq[keep], minlength=8)
    partial = [s for s in range(8) if 0 < per_sequence[s] < labelled[seq == s].sum()]
    assert len(partial) <= 1  # every kept sequence is whole except the last one taken
    for s in partial:  # ... and that one keeps its first frames
        kept = np.sort(frame[keep & (seq == s)])
        assert kept[0] == 0
    assert (keep == subsample_tracks(seq, frame, 25, seed=0, eligible=labelled)).all()
    assert (keep != subsample_tracks(seq, frame, 25, seed=1, eligible=labelled)).any()
    with pytest.raises(ValueError, match="only 79"):
        subsample_tracks(seq, frame, 96, eligible=labelled)

"""Fixed-length frame windows that never cross a sequence, their mixing, and Table 3's GTA*.

Rows are frames of one source in any order, identified by ``sequence_id`` and ``frame_id``
(the columns every prepared `SampleIndex` has). A *track* is one person's run of consecutive
frames: rows are grouped by sequence, and a sequence with a repeated (sequence, frame) pair holds
several people (3DPW: two people in one video, whose images share a folder). Their rows are told
apart by how the file lists them: person by person (SPIN's and mmhuman3d's 3DPW files: one
person's valid frames in increasing order, then the next person's), where each restart of the
frame numbers in row order starts the next person, even when the people are seen in different
frames (3DPW's ``campose_valid``); otherwise (frame by frame) the n-th occurrence of a frame
belongs to person n. A gap in the frame numbers splits a track (MPI-INF-3DHP's
dropped frames; VIBE splits those sequences too). A gap is measured in the track's own step (its
most common frame difference): a source that keeps one frame in ten has windows of every tenth
frame, and a missing tenth frame splits it. Still images (sequence id -1) are tracks of one.

* `training_windows`: VIBE's ``split_into_chunks``: windows of ``window`` frames inside each track
  with a stride (default = window, i.e. no overlap); tracks shorter than a window are skipped and
  the tail that does not fill a window is dropped.
* `evaluation_windows`: every frame scored exactly once: consecutive windows, the last one aligned
  to the track's end (its overlap with the one before is not scored again), tracks shorter than a
  window padded by repeating their last frame (padding is not scored). Unlike VIBE's test loader,
  which skips the frames of the tails.
* `mixture_counts` / `WindowMixtureSampler`: windows per epoch drawn from several sources by ratio.
* `subsample_tracks`: the "GTA*" row of Table 3, GTA-Human cut down to a given number of SMPL
  poses (frames) by taking whole sequences in a seeded random order (the last one truncated), so
  the kept data are still videos.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


def _ids(values: np.ndarray, name: str, n: int | None = None) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or (n is not None and array.shape[0] != n) or array.dtype.kind not in "iu":
        expected = f"({n},)" if n is not None else "(N,)"
        raise ValueError(f"{name}: expected integer ids of shape {expected}, got {array.dtype} {array.shape}")
    return array.astype(np.int64)


def track_ids(sequence_ids: np.ndarray, frame_ids: np.ndarray) -> np.ndarray:
    """(N,) int64 track code per row (see the module docstring); equal codes = one person's
    frames. Gaps are not split here (see `track_runs`)."""
    seq = _ids(sequence_ids, "sequence_ids")
    frame = _ids(frame_ids, "frame_ids", seq.shape[0])
    n = seq.shape[0]
    rows = np.arange(n)
    # occurrence rank of each (sequence, frame) pair in row order: the frame-by-frame reading
    order = np.lexsort((rows, frame, seq))
    same = np.zeros(n, bool)
    same[1:] = (seq[order][1:] == seq[order][:-1]) & (frame[order][1:] == frame[order][:-1])
    group_start = np.maximum.accumulate(np.where(~same, rows, 0))
    occurrence = np.empty(n, np.int64)
    occurrence[order] = rows - group_start
    # restarts of the frame numbers inside a sequence, in row order: the person-by-person reading
    by_sequence = np.lexsort((rows, seq))
    s_seq, s_frame = seq[by_sequence], frame[by_sequence]
    restart = np.zeros(n, bool)
    restart[1:] = (s_seq[1:] == s_seq[:-1]) & (s_frame[1:] <= s_frame[:-1])
    first = np.ones(n, bool)
    first[1:] = s_seq[1:] != s_seq[:-1]
    count = np.cumsum(restart)
    run = np.empty(n, np.int64)
    run[by_sequence] = count - np.maximum.accumulate(np.where(first, count, 0))
    # person by person where a sequence's restarts are exactly its people less one
    codes, sequence_of = np.unique(seq, return_inverse=True)
    people = np.zeros(codes.size, np.int64)
    np.maximum.at(people, sequence_of, occurrence + 1)
    restarts = np.zeros(codes.size, np.int64)
    np.maximum.at(restarts, sequence_of, run)
    person = np.where((restarts + 1 == people)[sequence_of], run, occurrence)
    still = seq < 0
    keys = np.stack([seq, np.where(still, rows, person), still.astype(np.int64)], axis=1)
    return np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)


def track_steps(track: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """(N,) the frame step of each row's track: the most common difference between its
    consecutive frame numbers (1 for a full-rate video, 10 for a source that keeps one frame in
    ten, as SPIN's MPI-INF-3DHP file does); 1 for a track of one frame."""
    order = np.lexsort((frame, track))
    t, f = track[order], frame[order]
    same = t[1:] == t[:-1]
    steps = np.ones(int(track.max()) + 1 if track.size else 0, np.int64)
    if same.any():
        pairs = np.stack([t[1:][same], (f[1:] - f[:-1])[same]], axis=1)
        counted, counts = np.unique(pairs, axis=0, return_counts=True)
        best = np.lexsort((-counted[:, 1], counts, counted[:, 0]))  # per track, the most common step last
        steps[counted[best, 0]] = counted[best, 1]  # later (more common) entries win
    return steps[track]


def track_runs(sequence_ids: np.ndarray, frame_ids: np.ndarray) -> list[np.ndarray]:
    """Row indices of every run of consecutive frames of one track, in frame order; consecutive
    means one step of the track apart (`track_steps`), so a dropped frame splits the track."""
    track = track_ids(sequence_ids, frame_ids)
    frame = np.asarray(frame_ids, np.int64)
    step = track_steps(track, frame)
    order = np.lexsort((frame, track))
    t, f, s = track[order], frame[order], step[order]
    breaks = np.flatnonzero((t[1:] != t[:-1]) | (f[1:] - f[:-1] != s[1:])) + 1
    return [run for run in np.split(order, breaks) if run.size]


def training_windows(sequence_ids: np.ndarray, frame_ids: np.ndarray, window: int,
                     stride: int | None = None) -> np.ndarray:
    """(W, window) row indices of the training windows (VIBE's chunks; see module docstring)."""
    if window < 1:
        raise ValueError(f"window must be >= 1 frame, got {window}")
    stride = window if stride is None else stride
    if stride < 1:
        raise ValueError(f"stride must be >= 1 frame, got {stride}")
    windows = [run[start:start + window] for run in track_runs(sequence_ids, frame_ids)
               for start in range(0, run.size - window + 1, stride)]
    return np.stack(windows).astype(np.int64) if windows else np.zeros((0, window), np.int64)


def evaluation_windows(sequence_ids: np.ndarray, frame_ids: np.ndarray,
                       window: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows (W, window), scored (W, window) bool): every row scored exactly once."""
    if window < 1:
        raise ValueError(f"window must be >= 1 frame, got {window}")
    rows, scored = [], []
    for run in track_runs(sequence_ids, frame_ids):
        if run.size < window:
            pad = np.full(window - run.size, run[-1])
            rows.append(np.concatenate([run, pad]))
            scored.append(np.arange(window) < run.size)
            continue
        done = 0
        while done < run.size:
            start = min(done, run.size - window)
            rows.append(run[start:start + window])
            scored.append(np.arange(start, start + window) >= done)
            done = start + window
    if not rows:
        return np.zeros((0, window), np.int64), np.zeros((0, window), bool)
    return np.stack(rows).astype(np.int64), np.stack(scored)


def subsample_tracks(sequence_ids: np.ndarray, frame_ids: np.ndarray, count: int, seed: int = 0,
                     eligible: np.ndarray | None = None) -> np.ndarray:
    """(N,) bool: ``count`` rows made of whole runs in a seeded random order, the last run cut
    to fit (its first frames kept). ``eligible`` (N,) bool limits the rows that may be kept
    (e.g. ``has_smpl``: the paper matches *SMPL poses*)."""
    if count < 0:
        raise ValueError(f"subsample count must be >= 0, got {count}")
    n = len(np.asarray(sequence_ids))
    ok = np.ones(n, bool) if eligible is None else np.asarray(eligible, bool)
    available = int(ok.sum())
    if count > available:
        raise ValueError(f"cannot keep {count} poses: the source has only {available}")
    runs = track_runs(sequence_ids, frame_ids)
    keep = np.zeros(n, bool)
    left = count
    for k in np.random.default_rng(seed).permutation(len(runs)):
        if left == 0:
            break
        rows = runs[k][ok[runs[k]]]
        rows = rows[:left]
        keep[rows] = True
        left -= rows.size
    return keep


def mixture_counts(window_counts: Sequence[int], ratios: Sequence[float] | None,
                   epoch_length: int | None) -> np.ndarray:
    """Windows drawn from each source per epoch: ``epoch_length`` (default: all windows) split
    by ``ratios`` (default: by the sources' window counts, i.e. plain concatenation as VIBE's
    ConcatDataset) with largest-remainder rounding, so the counts sum to ``epoch_length``."""
    counts = np.asarray(window_counts, np.int64)
    total = int(counts.sum()) if epoch_length is None else int(epoch_length)
    if total < 0:
        raise ValueError(f"epoch_length must be >= 0, got {total}")
    weights = counts.astype(np.float64) if ratios is None else np.asarray(ratios, np.float64)
    if weights.shape != counts.shape or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"ratios: expected {counts.shape[0]} non-negative weights with a positive sum, "
                         f"got {None if ratios is None else list(ratios)}")
    empty = (counts == 0) & (weights > 0)
    if empty.any():
        raise ValueError(f"sources {np.flatnonzero(empty).tolist()} have no window but a positive ratio; "
                         "their sequences are shorter than the window")
    exact = weights / weights.sum() * total
    out = np.floor(exact).astype(np.int64)
    remainder = total - int(out.sum())
    out[np.argsort(-(exact - out), kind="stable")[:remainder]] += 1
    return out


class WindowMixtureSampler(Sampler):
    """Yields global window ids (windows of source s are ``offsets[s] .. offsets[s+1]-1``).

    Each epoch draws `mixture_counts` windows per source: whole shuffled passes over the source
    (a fresh order each pass) plus a part of one, then shuffles all picks together. Order depends
    on (seed, epoch) only, so a resumed run continues the same plan; ``set_epoch`` is called by
    Lightning at every epoch start. Sharded by rank (``picks[rank::num_replicas]`` after trimming
    to a multiple of the replica count), so use it with ``use_distributed_sampler=False``.
    """

    def __init__(self, window_counts: Sequence[int], ratios: Sequence[float] | None = None,
                 epoch_length: int | None = None, seed: int = 0, num_replicas: int = 1, rank: int = 0):
        self.window_counts = [int(c) for c in window_counts]
        self.counts = mixture_counts(self.window_counts, ratios, epoch_length)
        self.offsets = np.concatenate([[0], np.cumsum(self.window_counts)]).astype(np.int64)
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        self.seed, self.num_replicas, self.rank, self.epoch = seed, num_replicas, rank, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def plan(self, epoch: int | None = None) -> np.ndarray:
        """All ranks' picks of an epoch (global window ids), before sharding."""
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch])
        picks = []
        for source, count in enumerate(self.counts):
            pool = self.window_counts[source]
            passes = [rng.permutation(pool) for _ in range(-(-int(count) // pool))] if count else []
            drawn = np.concatenate(passes)[:count] if passes else np.zeros(0, np.int64)
            picks.append(drawn + self.offsets[source])
        plan = np.concatenate(picks) if picks else np.zeros(0, np.int64)
        return rng.permutation(plan)

    def __iter__(self) -> Iterator[int]:
        plan = self.plan()
        usable = len(plan) - len(plan) % self.num_replicas
        return iter(plan[:usable][self.rank::self.num_replicas].tolist())

    def __len__(self) -> int:
        return int(self.counts.sum()) // self.num_replicas


__all__ = ["WindowMixtureSampler", "evaluation_windows", "mixture_counts", "subsample_tracks", "track_ids",
           "track_runs", "training_windows"]

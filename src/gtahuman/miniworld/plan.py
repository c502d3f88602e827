"""The cast and shot list of a mini world: which subject does which action in which sequence.

Planning is cheap and happens up front, so every sequence gets its own seed key
``(seed, domain, split, index)`` and renders the same whatever process renders it, in
whatever order. Camera elevations are stratified within each split (sequence ``i`` of ``n``
draws its quantile from [k/n, (k+1)/n) for a shuffled k), so even a tiny world spans its
domain's elevation range.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gtahuman.miniworld.domains import (
    REAL_INDOOR,
    REAL_KEYPOINTS,
    WILD,
    WorldSize,
    gta_style,
    sample_subject,
    scaled_size,
)
from gtahuman.miniworld.simulate import SequenceSpec

# Codes in the seed keys; never renumber (a world's bytes depend on them).
_DOMAIN_CODES = {"real_indoor": 1, "real_kp": 1, "gta": 2, "wild": 3}
_SPLIT_CODES = {"subjects": 0, "train": 1, "val": 2, "kp": 3, "test": 4}
KINDS = ("real_train", "real_val", "real_kp", "gta", "wild_test", "wild_val")


@dataclass
class Job:
    """One sequence to render and where it goes: ``kind`` is one of `KINDS`."""

    kind: str
    spec: SequenceSpec


def _stratified_quantiles(rng: np.random.Generator, count: int) -> np.ndarray:
    return (rng.permutation(count) + rng.uniform(0.0, 1.0, count)) / max(count, 1)


def _cycled(rng: np.random.Generator, actions: tuple[str, ...], count: int) -> list[str]:
    """``count`` actions covering the set evenly, in a shuffled order."""
    order = [actions[i] for i in rng.permutation(len(actions))]
    return [order[i % len(order)] for i in range(count)]


def plan_world(size: WorldSize, seed: int, variant: str = "standard") -> list[Job]:
    """All sequences of a world of ``size`` (real_indoor, then gta, then wild); ``variant``
    (`domains.VARIANTS`) changes what the GTA domain covers and nothing else."""
    jobs: list[Job] = []
    gta = gta_style(variant)
    low, high = size.frames

    def add(kind, style, split, subjects, count, name_of, frames=None, occluders=lambda rng: False,
            lengths=(low, high)):
        domain = _DOMAIN_CODES[style.name]
        rng = np.random.default_rng([seed, domain, _SPLIT_CODES[split]])
        quantiles = _stratified_quantiles(rng, count)
        actions = _cycled(rng, style.actions, count)
        for i in range(count):
            subject = subjects(i)
            num_frames = frames if frames is not None else int(rng.integers(lengths[0], lengths[1] + 1))
            placement, quantile = None, float(quantiles[i])
            if style.camera_placements:  # a studio: camera i % k, each at its own fixed height
                placement = i % style.camera_placements
                quantile = (placement + 0.5) / style.camera_placements
            spec = SequenceSpec(
                seq_name=name_of(i, subject.name, actions[i]), style=style, subject=subject, action=actions[i],
                num_frames=num_frames, elevation_quantile=quantile,
                size=scaled_size(style, size.image_scale), seed_key=(seed, domain, _SPLIT_CODES[split], i),
                with_occluders=bool(occluders(rng)), placement=placement)
            jobs.append(Job(kind, spec))

    subject_rng = np.random.default_rng([seed, 1, _SPLIT_CODES["subjects"]])
    real_subjects = [sample_subject(subject_rng, f"S{k + 1}", REAL_INDOOR.beta_sigma, REAL_INDOOR.vivid_clothes)
                     for k in range(size.real_subjects)]
    train_subjects, val_subject = real_subjects[:-1], real_subjects[-1]
    add("real_train", REAL_INDOOR, "train", lambda i: train_subjects[i % len(train_subjects)],
        size.real_train_sequences, lambda i, s, a: f"{s}_{a}_{i:03d}")
    add("real_val", REAL_INDOOR, "val", lambda i: val_subject, size.real_val_sequences,
        lambda i, s, a: f"{s}_{a}_{i:03d}")

    def fresh(domain: int, split: str, style, prefix: str):
        """A new subject per index, from its own seed key."""
        def subject(i: int):
            rng = np.random.default_rng([seed, domain, _SPLIT_CODES["subjects"], _SPLIT_CODES[split], i])
            return sample_subject(rng, f"{prefix}{i:04d}", style.beta_sigma, style.vivid_clothes)
        return subject

    add("real_kp", REAL_KEYPOINTS, "kp", fresh(1, "kp", REAL_KEYPOINTS, "P"), size.real_kp_clips,
        lambda i, s, a: f"kp_{i:04d}", frames=max(size.real_kp_frames, 3))
    occluders = (lambda rng: True) if size.occluders_always and gta.max_occluders else \
        (lambda rng: rng.random() < gta.occluder_probability)
    add("gta", gta, "test", fresh(2, "test", gta, "ped"), size.gta_sequences, lambda i, s, a: f"seq_{i:08d}",
        occluders=occluders, lengths=size.gta_frames or size.frames)
    # Wild subjects: two indoor subjects (seen) and new ones (unseen), shared by test and val.
    new = fresh(3, "test", WILD, "W")
    wild_subjects = train_subjects[:2] + [new(k) for k in range(size.wild_new_subjects)]
    for kind, split, count in (("wild_test", "test", size.wild_test_sequences),
                               ("wild_val", "val", size.wild_val_sequences)):
        offset = 0 if split == "test" else 1  # val starts elsewhere in the cast
        add(kind, WILD, split, lambda i, o=offset: wild_subjects[(i + o) % len(wild_subjects)], count,
            lambda i, s, a, sp=split: f"{a}_{sp}_{i:02d}")
    return jobs


def action_sets(jobs: list[Job]) -> dict[str, list[str]]:
    """Sorted actions per kind (for the manifest)."""
    out: dict[str, set[str]] = {}
    for job in jobs:
        out.setdefault(job.kind, set()).add(job.spec.action)
    return {kind: sorted(actions) for kind, actions in out.items()}


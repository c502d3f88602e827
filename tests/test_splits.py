"""gtahuman.data.splits: a held-out part of a source, by sequence, deterministic, disjoint from
training; prepared as its own index; offered by experiments.evaluate as <name>_heldout."""
from __future__ import annotations

import numpy as np
import pytest

from experiments.evaluate import _choose_sets
from gtahuman.config import ConfigError, load_config
from gtahuman.config_checks import validate_config
from gtahuman.data.index import SampleIndex
from gtahuman.data.splits import heldout_mask, unit_hash
from gtahuman.run_data import ensure_assets, prepare_source


def test_mask_is_by_sequence_deterministic_nested_and_near_the_fraction() -> None:
    sequences = np.repeat(np.arange(2000), 3)  # 2,000 sequences of 3 frames
    paths = np.array([f"s{i}.jpg".encode() for i in range(len(sequences))])
    mask = heldout_mask(sequences, paths, 0.1)
    per_sequence = mask.reshape(2000, 3)
    assert (per_sequence.all(axis=1) | ~per_sequence.any(axis=1)).all()  # never a sequence in both parts
    assert 0.08 < per_sequence[:, 0].mean() < 0.12
    shuffled = np.random.default_rng(0).permutation(len(sequences))
    np.testing.assert_array_equal(heldout_mask(sequences[shuffled], paths[shuffled], 0.1), mask[shuffled])
    assert (mask <= heldout_mask(sequences, paths, 0.2)).all()  # a larger fraction holds out a superset
    # by hand: sequence 7 is held out exactly when its hash falls below the fraction
    assert mask[21] == (unit_hash("sequence:7") < 0.1)


def test_still_images_are_split_one_by_one_by_path() -> None:
    paths = np.array([f"img_{i:05d}.jpg".encode() for i in range(3000)])
    mask = heldout_mask(np.full(3000, -1), paths, 0.25)
    assert 0.22 < mask.mean() < 0.28
    assert mask[5] == (unit_hash("image:img_00005.jpg") < 0.25)
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        heldout_mask(np.zeros(3), paths[:3], 1.0)


def test_prepared_parts_are_disjoint_and_cover_the_source(tiny_config) -> None:
    cfg = tiny_config("data.train.gta.split=train", "data.train.gta.heldout_fraction=0.5")
    body_dir = ensure_assets(cfg)
    unsplit = tiny_config()
    whole = SampleIndex.load(prepare_source("gta", unsplit.data.train.gta, unsplit, body_dir).index_dir)
    train_spec = prepare_source("gta", cfg.data.train.gta, cfg, body_dir)
    sets = _choose_sets(cfg, ["gta_heldout"])
    held_spec = prepare_source("gta_heldout", sets["gta_heldout"], cfg, body_dir)
    assert held_spec.name == "gta_heldout" and held_spec.index_dir.endswith("splits/heldout0.5")
    train, held = SampleIndex.load(train_spec.index_dir), SampleIndex.load(held_spec.index_dir)
    assert len(train) + len(held) == len(whole) and len(train) and len(held)
    train_sequences, held_sequences = set(train["sequence_id"].tolist()), set(held["sequence_id"].tolist())
    assert not train_sequences & held_sequences
    assert train_sequences | held_sequences == set(whole["sequence_id"].tolist())
    assert held.meta["split"] == "heldout" and held.meta["dataset"] == "gta"
    assert train_spec.crop_cache_dir != held_spec.crop_cache_dir  # each part has its own crops


def test_config_checks_name_the_split_keys() -> None:
    for override, key in (("data.train.gta.split=test", "data.train.gta.split"),
                          ("data.train.gta.heldout_fraction=1.0", "data.train.gta.heldout_fraction")):
        with pytest.raises(ConfigError, match=key.replace(".", "\\.")):
            validate_config(load_config(["experiment=quickstart", override]))


def test_only_a_split_source_offers_a_heldout_set() -> None:
    cfg = load_config(["experiment=quickstart"])
    with pytest.raises(KeyError, match="set=gta_heldout: not an eval set"):
        _choose_sets(cfg, ["gta_heldout"])

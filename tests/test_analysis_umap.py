"""Fig. 7 features: collection per domain, panels per run, the CLI's outputs; UMAP itself is `slow`."""
from __future__ import annotations

import numpy as np
import pytest
from analysis_fakes import TEST_SET, blobs, make_run

from analysis.rundirs import find_runs, load_run
from analysis.umap_features import collect_features, embed_runs, main, pca_embed, plot_panels

CENTRES = {"real_indoor": -4.0, "gta": 4.0, TEST_SET: 0.0}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("umap")
    rng = np.random.default_rng(0)
    make_run(root, "table2_hmr_plus_mini", features=blobs(rng, {"real_indoor": -4.0, TEST_SET: 0.0}))
    make_run(root, "table2_hmr_plus_bt_mini", features=blobs(rng, CENTRES))
    return root


def first_two_columns(features: np.ndarray, seed: int) -> np.ndarray:
    """A cheap, exactly predictable 'embedding' standing in for UMAP."""
    return np.asarray(features[:, :2], dtype=np.float64)


def test_features_are_collected_per_set_with_domain_and_group(runs) -> None:
    run = load_run(runs / "table2_hmr_plus_bt_mini" / "seed0")
    assert sorted(run.feature_files()) == ["gta", "real_indoor", TEST_SET]  # predictions/ + evaluations/*/
    table = collect_features(run)
    assert list(dict.fromkeys(table.set_name)) == ["real_indoor", "gta", TEST_SET]  # real, synthetic, eval
    assert list(dict.fromkeys(table.group)) == ["real", "synthetic", "eval"]
    assert table.features.shape == (60, 8)
    real_rows = table.features[table.domain == "real_indoor"]
    assert abs(real_rows.mean() - CENTRES["real_indoor"]) < 0.5
    picked = collect_features(run, sets=["gta"], max_per_set=5, seed=3)
    again = collect_features(run, sets=["gta"], max_per_set=5, seed=3)
    assert len(picked.sample_id) == 5 and np.array_equal(picked.sample_id, again.sample_id)
    with pytest.raises(FileNotFoundError, match="no features of set 'coco'.*gta, real_indoor, wild_test"):
        run.features("coco")


def test_cli_writes_one_panel_per_run_coloured_by_domain(runs, tmp_path) -> None:
    png, npz = main([str(runs), "--out", str(tmp_path)], embed=first_two_columns)
    assert png.stat().st_size > 10_000
    saved = np.load(npz)
    assert list(saved["run_label"]) == ["table2_hmr_plus_bt_mini/seed0 (toy body)",
                                        "table2_hmr_plus_mini/seed0 (toy body)"]
    assert np.bincount(saved["panel"]).tolist() == [60, 40]
    first = saved["panel"] == 0
    features = collect_features(load_run(runs / "table2_hmr_plus_bt_mini" / "seed0")).features
    np.testing.assert_allclose(saved["embedding"][first], features[:, :2], rtol=1e-6)
    assert set(saved["domain"][~first]) == {"real_indoor", TEST_SET}

    panels = embed_runs(find_runs([runs]), first_two_columns, progress=False)
    figure = plot_panels(panels)
    assert [ax.get_title() for ax in figure.axes] == [p.title for p in panels]
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in figure.axes]
    assert legends == [["real_indoor", "gta", TEST_SET], ["real_indoor", TEST_SET]]
    colours = [{t.get_text(): tuple(h.get_facecolor()[0]) for t, h in zip(ax.get_legend().get_texts(),
                                                                       ax.get_legend().legend_handles)}
               for ax in figure.axes]
    assert colours[0]["real_indoor"] == colours[1]["real_indoor"]  # one colour per domain across panels


def test_pca_embedding_recovers_the_main_axis() -> None:
    t = np.linspace(-1.0, 1.0, 11)
    features = np.stack([3 * t, -3 * t, 0.01 * np.cos(7 * t)], axis=1)  # all the variance along (1, -1, 0)
    embedding = pca_embed(features)
    np.testing.assert_allclose(np.abs(embedding[:, 0]), np.abs(3 * np.sqrt(2) * t), atol=1e-9)
    assert np.abs(embedding[:, 1]).max() < 0.02


@pytest.mark.slow  # numba compiles umap-learn on first use (tens of seconds)
def test_umap_cli_on_a_tiny_input_keeps_domains_apart(runs, tmp_path) -> None:
    png, npz = main([str(runs / "table2_hmr_plus_bt_mini"), "--out", str(tmp_path), "--seed", "1"])
    saved = np.load(npz)
    assert png.stat().st_size > 10_000 and saved["embedding"].shape == (60, 2)
    centres = {d: saved["embedding"][saved["domain"] == d].mean(axis=0) for d in CENTRES}
    spread = max(np.linalg.norm(saved["embedding"][saved["domain"] == d] - c, axis=1).mean()
                 for d, c in centres.items())
    assert np.linalg.norm(centres["real_indoor"] - centres["gta"]) > 2 * spread
    again = np.load(main([str(runs / "table2_hmr_plus_bt_mini"), "--out", str(tmp_path / "b"), "--seed", "1"])[1])
    np.testing.assert_allclose(again["embedding"], saved["embedding"])  # seeded

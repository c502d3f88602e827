"""Both analysis notebooks run top to bottom (nbclient) on tiny fabricated run directories."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from analysis_fakes import TEST_SET, blobs, make_run, prediction_columns

from analysis.per_bin import FIG9_FACTORS

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
NOTEBOOKS = Path(__file__).resolve().parents[1] / "analysis" / "notebooks"


def execute(name: str) -> list[str]:
    """Run a notebook in its own folder; return the text of every output (an error fails the test),
    with one line "[image/png N bytes]" per picture shown."""
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            texts.append(output.get("text", "") + str(data.get("text/markdown", "")))
            if "image/png" in data:
                texts.append(f"[image/png {len(data['image/png'])} bytes]")
    return texts


def test_domain_gap_notebook(tmp_path, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    factors = {f: rng.uniform(0.0, 0.5, 12) for f in FIG9_FACTORS}
    train = {f: rng.uniform(0, 0.5, 12) for f in FIG9_FACTORS}
    train["source"] = np.array(["real_indoor", "real_kp", "gta"] * 4)
    make_run(tmp_path / "runs", "table2_hmr_plus_bt_mini", train_factors=train,
             features=blobs(rng, {"real_indoor": -3.0, "gta": 3.0, TEST_SET: 0.0}, n=12),
             predictions={TEST_SET: prediction_columns(factors, rng.uniform(40, 90, 12))})
    make_run(tmp_path / "runs", "table2_hmr_plus_mini", features=blobs(rng, {TEST_SET: 0.0}, n=12),
             predictions={TEST_SET: prediction_columns(factors, rng.uniform(40, 90, 12))})  # no training factors
    monkeypatch.setenv("GTAHUMAN_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("GTAHUMAN_EMBEDDING", "pca")  # UMAP's first compile alone takes ~40 s
    monkeypatch.setenv("GTAHUMAN_ANALYSIS_OUT", str(tmp_path / "out"))
    text = "\n".join(execute("domain_gap"))
    assert "| table2_hmr_plus_bt_mini/seed0 | 1.00 |" in text  # two blobs: perfectly separable
    assert "no prepared index of train source" in text  # the real-only run falls back, and says so
    for name in ("features.png", "per_bin_table2_hmr_plus_bt_mini_seed0.png", "per_bin_table2_hmr_plus_mini_seed0.png"):
        assert (tmp_path / "out" / name).stat().st_size > 5_000
    assert text.count("[image/png") == 3  # each figure shown in the notebook, not only saved


def test_mixing_ratios_notebook(tmp_path, monkeypatch) -> None:
    for ratio, multiple, pa in ((0.25, 0.3333, 70.0), (0.5, 0.3333, 68.0), (0.5, 0.6667, 64.0)):
        make_run(tmp_path / "runs", f"table7_real{round(100 * ratio):03d}_mini", run_id=f"{multiple}", pa_mpjpe=pa,
                 overrides=[f"data.sampler_args.total_multiple={multiple}"])
    monkeypatch.setenv("GTAHUMAN_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("GTAHUMAN_ANALYSIS_OUT", str(tmp_path / "out"))
    text = "\n".join(execute("mixing_ratios"))
    assert "| 50% | 68.0 | 64.0 |" in text and "| 25% | 70.0 | – |" in text
    assert (tmp_path / "out" / "table7_heatmap.png").stat().st_size > 5_000
    assert (tmp_path / "out" / "fig8.png").is_file()
    assert text.count("[image/png") == 2  # the heat map and Fig. 8 shown, not only saved

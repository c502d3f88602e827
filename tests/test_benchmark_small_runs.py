"""The benchmarks without a test of their own run with tiny arguments (issue 22: every benchmark
runs in a test): each exits 0, ends with ``ratio``, and that ratio is the quotient of the figures
it prints beside it, so a renamed or re-based headline fails here."""
from __future__ import annotations

import pytest

from conftest import run_benchmark


def close(ratio: float, expected: float, relative: float) -> bool:
    return abs(ratio - expected) <= 0.006 + relative * abs(expected)


def test_data_loading_ratio_is_the_crop_cache_over_the_reduced_full_frame(tmp_path) -> None:
    lines, ratio, _ = run_benchmark("data_loading.py", "--frames", "4", "--passes", "1",
                                    "--memory-samples", "2000", "--dir", str(tmp_path))
    rates = {k: float(v) for k, v in lines.items() if k.endswith("_samples_per_s")}
    assert set(rates) == {f"{p}_samples_per_s" for p in
                          ("full_frame", "full_frame_reduced", "crop_cache", "crop_cache_uint8", "crop_shards")}
    assert all(v > 0 for v in rates.values())
    # rates are printed to 0.1 samples/s, at tens to hundreds per second
    assert close(ratio, rates["crop_cache_samples_per_s"] / rates["full_frame_reduced_samples_per_s"], 0.01)


def test_render_benchmark_rasterisers_agree_and_ratio_is_naive_over_vectorised() -> None:
    lines, ratio, _ = run_benchmark("render.py", "--frames", "2")
    assert float(lines["small_mesh_pixels_agreeing_with_naive"]) == pytest.approx(1.0, abs=1e-4)
    naive, fast = float(lines["small_mesh_naive_per_face_ms"]), float(lines["small_mesh_vectorised_ms"])
    assert naive > 0 and fast > 0
    assert abs(ratio - naive / fast) <= 0.06 + 0.01 * ratio  # ms to 2 decimals, the ratio to 1


def test_index_memory_ratio_is_worker_private_memory_after_over_before(tmp_path) -> None:
    lines, ratio, _ = run_benchmark("index_memory.py", "--samples", "3000", "--workers", "2", "--batch", "256",
                                    "--baseline-samples", "2000", "--dir", str(tmp_path / "index"))
    before, after = float(lines["index_worker_private_before_mib"]), float(lines["index_worker_private_after_mib"])
    assert int(lines["samples"]) == 3000 and before > 0
    assert close(ratio, after / before, 0.03)  # MiB printed to 0.1 at a few MiB

"""benchmarks/metrics.py runs with tiny arguments: the suite's batched PA-MPJPE agrees with both
NumPy versions (mirrored predictions included, which take the SVD fallback), and ``ratio`` (last)
is batched NumPy over batched torch as printed beside it."""
from __future__ import annotations

from conftest import run_benchmark


def test_metrics_benchmark_agrees_with_numpy_and_reports_its_ratio() -> None:
    lines, ratio, _ = run_benchmark("metrics.py", "--frames", "400", "--repeats", "1", "--mirrored", "0.05")
    assert int(lines["mirrored_frames"]) == 20
    assert float(lines["max_abs_diff_mm"]) <= 1e-6
    assert float(lines["max_abs_diff_float32_mm"]) <= 1e-3
    torch_s, numpy_s = float(lines["batched_float64_seconds"]), float(lines["numpy_batched_seconds"])
    assert torch_s > 0 and numpy_s > 0
    assert abs(ratio - numpy_s / torch_s) <= 0.006 + 3e-3 * ratio  # ratio to 2 decimals, times to the microsecond
    assert float(lines["loop_over_torch"]) > 0

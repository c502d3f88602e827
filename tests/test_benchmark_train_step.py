"""benchmarks/train_step.py runs with tiny arguments: exit 0, the loader's rate per core, the
loader cores a GPU would need (said to be an estimate where no GPU is there), and ``ratio`` last."""
from __future__ import annotations

from conftest import run_benchmark


def test_train_step_benchmark_runs_and_estimates_the_loader_cores(tiny_config, tiny_root) -> None:
    tiny_config()  # the session's tiny world and toy body, shared with the benchmark through its cache
    lines, _, stderr = run_benchmark("train_step.py", "--steps", "2", "--warmup", "1", "--rounds", "1",
                                     "--loader-batches", "1", "--cache-dir", str(tiny_root / "cache"))
    float_rate, uint8_rate = (float(lines[f"loader_{k}_samples_per_s_per_core"]) for k in ("float", "uint8"))
    assert float_rate > 0 and uint8_rate > 0
    cores = float(lines["loader_cores_to_feed_gpu_uint8"])
    # the stated GPU rate over the measured loader rate (both printed rounded: 0.1 core of slack)
    assert abs(cores - 2750.0 / uint8_rate) <= 0.1 or "gpu_device" in lines
    if "gpu_device" not in lines:
        assert "stated, not measured" in stderr

"""benchmarks/backbone_step.py runs with tiny arguments: every entry is timed with the same steps,
and ``ratio`` (last) is resnet50@224 over the fastest small backbone at 128 px, as printed."""
from __future__ import annotations

from conftest import run_benchmark


def test_backbone_step_benchmark_times_every_entry_alike_and_reports_its_ratio() -> None:
    lines, ratio, stderr = run_benchmark("backbone_step.py", "--paper", "resnet50", "--small", "resnet10t,resnet18",
                                         "--batch", "1", "--iters", "2", "--warmup", "0")
    assert lines["threads"] == "1" and lines["timed_steps_per_entry"] == "2"
    timed = {k: float(v) for k, v in lines.items() if "@" in k}
    assert set(timed) == {"resnet50@224"} | {f"{n}@{s}" for n in ("resnet10t", "resnet18") for s in (224, 128, 64)}
    assert all(v > 0 for v in timed.values())
    fastest = min(timed["resnet10t@128"], timed["resnet18@128"])
    assert abs(ratio - timed["resnet50@224"] / fastest) <= 0.006 + 1e-3 * ratio  # ms to 3 decimals, the ratio to 2
    assert "fastest CPU backbone" in stderr

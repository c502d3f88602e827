"""benchmarks/threads.py runs with tiny arguments: the default policy's choice is reported with
its reason, each figure is a positive time, and ``ratio`` (last) is the busy default over the
best fixed count, as printed beside it."""
from __future__ import annotations

from conftest import TINY_OVERRIDES, run_benchmark


def test_threads_benchmark_reports_the_policys_choice_and_its_cost(tiny_config, tiny_root) -> None:
    tiny_config()  # the session's tiny world and toy body, shared with the benchmark through its cache
    paths = (f"run.cache_dir={tiny_root / 'cache'}", f"run.output_root={tiny_root / 'runs'}")
    tiny = [o for o in TINY_OVERRIDES if not o.startswith("trainer.threads=")]  # the benchmark varies it
    lines, ratio, _ = run_benchmark("threads.py", "--steps", "2", "--policies", "default,1", "--conditions", "busy",
                                    *tiny, *paths)
    default, one = float(lines["busy_default_s_per_step"]), float(lines["busy_1_s_per_step"])
    assert default > 0 and one > 0
    # a busy core is load the policy must see: it names the cores it counted
    assert "auto:" in lines["busy_default_threads"] and "busy" in lines["busy_default_threads"]
    assert abs(ratio - default / one) <= 0.002 + 1e-3 * ratio
    assert float(lines["busy_default_over_best"]) == ratio

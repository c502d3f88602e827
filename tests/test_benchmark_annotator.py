"""benchmarks/annotator.py runs with tiny arguments: four passes (clean, noise, occluded, adam),
errors against the known SMPL, and a like-for-like ``ratio`` last (no figure from the paper in it)."""
from __future__ import annotations

from conftest import run_benchmark

from gtahuman.run_data import ensure_assets


def test_annotator_benchmark_runs_four_passes_and_divides_like_by_like(tiny_config) -> None:
    cfg = tiny_config()
    ensure_assets(cfg)  # the session's tiny world
    lines, ratio, _ = run_benchmark("annotator.py", "--world", str(cfg.data.world_dir), "--sequences", "2",
                                    "--iterations", "5", "--adam-iterations", "10")
    for condition in ("clean", "noise", "occluded", "adam"):
        assert 0 < float(lines[f"{condition}_joint_error_mm"]) < 500
        assert float(lines[f"{condition}_frames_per_second"]) > 0
    expected = float(lines["clean_frames_per_second"]) / float(lines["adam_frames_per_second"])
    assert abs(ratio - expected) <= 0.01 + 0.01 * expected  # printed rounded
    assert "not a like-for-like" in lines["paper_frames_per_second"]

"""benchmarks/static_fits.py runs with tiny arguments: every condition's errors against the known
SMPL, the mean pose's beside them, and ``ratio`` last (the mean pose's PA-MPJPE over the fits')."""
from __future__ import annotations

from conftest import run_benchmark

from gtahuman.run_data import ensure_assets


def test_static_fits_benchmark_reports_every_condition_against_the_mean_pose(tiny_config) -> None:
    cfg = tiny_config()
    ensure_assets(cfg)  # the session's tiny world
    lines, ratio, _ = run_benchmark("static_fits.py", "--world", str(cfg.data.world_dir), "--rows", "3",
                                    "--iterations", "5", "--noise-px", "3")
    for condition in ("clean", "noise_3px", "drop_20pct"):
        assert 0 < float(lines[f"{condition}_pa_mpjpe_mm"]) < 500
        assert float(lines[f"{condition}_images_per_second"]) > 0
    expected = float(lines["mean_pose_pa_mpjpe_mm"]) / float(lines["clean_pa_mpjpe_mm"])
    assert abs(ratio - expected) <= 0.01 + 0.01 * expected  # printed rounded

"""benchmarks/static_fits.py runs with tiny arguments: every condition's errors against the known
SMPL, the mean pose's beside them, and ``ratio`` last (the mean pose's PA-MPJPE over the fits')."""
from __future__ import annotations

import subprocess
import sys

from gtahuman.config import REPO_ROOT
from gtahuman.run_data import ensure_assets


def test_static_fits_benchmark_reports_every_condition_against_the_mean_pose(tiny_config) -> None:
    cfg = tiny_config()
    ensure_assets(cfg)  # the session's tiny world
    done = subprocess.run([sys.executable, "benchmarks/static_fits.py", "--world", str(cfg.data.world_dir),
                           "--rows", "3", "--iterations", "5", "--noise-px", "3"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    for condition in ("clean", "noise_3px", "drop_20pct"):
        assert 0 < float(lines[f"{condition}_pa_mpjpe_mm"]) < 500
        assert float(lines[f"{condition}_images_per_second"]) > 0
    ratio = float(done.stdout.strip().splitlines()[-1].removeprefix("ratio: "))
    expected = float(lines["mean_pose_pa_mpjpe_mm"]) / float(lines["clean_pa_mpjpe_mm"])
    assert abs(ratio - expected) <= 0.01 + 0.01 * expected  # printed rounded

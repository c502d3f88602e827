"""benchmarks/annotator.py runs with tiny arguments: four passes (clean, noise, occluded, adam),
errors against the known SMPL, and a like-for-like ``ratio`` last (no figure from the paper in it)."""
from __future__ import annotations

import subprocess
import sys

from gtahuman.config import REPO_ROOT
from gtahuman.run_data import ensure_assets


def test_annotator_benchmark_runs_four_passes_and_divides_like_by_like(tiny_config) -> None:
    cfg = tiny_config()
    ensure_assets(cfg)  # the session's tiny world
    done = subprocess.run([sys.executable, "benchmarks/annotator.py", "--world", str(cfg.data.world_dir),
                           "--sequences", "2", "--iterations", "5", "--adam-iterations", "10"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    for condition in ("clean", "noise", "occluded", "adam"):
        assert 0 < float(lines[f"{condition}_joint_error_mm"]) < 500
        assert float(lines[f"{condition}_frames_per_second"]) > 0
    ratio = float(done.stdout.strip().splitlines()[-1].removeprefix("ratio: "))
    expected = float(lines["clean_frames_per_second"]) / float(lines["adam_frames_per_second"])
    assert abs(ratio - expected) <= 0.01 + 0.01 * expected  # printed rounded
    assert "not a like-for-like" in lines["paper_frames_per_second"]

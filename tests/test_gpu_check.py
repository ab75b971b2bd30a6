"""bench/gpu_check.py keeps working between device sessions: its tiny CPU run passes every check."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_device_check_runs_on_the_cpu_at_a_tiny_size(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--device", "cpu", "--small"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    for section in ("environment", "memory", "reference", "cpu vs device", "syncs", "bench"):
        assert f"== {section}\n" in done.stdout
    assert "0 check(s) failed" in done.stdout
    assert "the histogram's peak stays within the plan" in done.stdout
    assert "TF32 off: thresholds differ by at most 0 " in done.stdout  # the CPU against itself

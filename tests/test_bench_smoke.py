"""The estimator benchmark still runs end to end (a small subset; numbers are not checked)."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "estimators.py"


def test_estimator_benchmark_prints_its_tables():
    out = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--no-shapiq", "--seeds", "1"],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    assert "| unanimity-low | 10×6 | auto |" in out
    assert "Alg. 1 evaluations ÷ auto's" in out

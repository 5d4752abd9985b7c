"""The benchmarks still run end to end (small subsets; numbers are not checked)."""

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


def test_endpoint_benchmark_prints_its_tables():
    out = subprocess.run(
        [sys.executable, str(BENCH.parent / "openai.py"), "--quick"],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    assert "| 0.2 s | — | 8 | 0% | 40 |" in out
    rows = [line.split("|")[2:5] for line in out.splitlines() if line.startswith(("| multishap |", "| kernel |"))]
    # Every coalition the estimator evaluated is one request the server received and one paid request.
    assert len(rows) == 2 and all(len(set(cells)) == 1 for cells in rows)


def test_audit_benchmark_prints_its_tables():
    out = subprocess.run(
        [sys.executable, str(BENCH.parent / "audit.py"), "--quick", "--threads", "1"],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    lines = out.splitlines()
    assert "| scene | R true | R foil | image_on_text | text_on_image | redundant |" in out
    cells = next(line for line in lines if line.startswith("| chelsea |")).split("|")[2:7]
    assert all(0 <= float(c) <= 1 for c in cells[:4]) and cells[4].strip() in ("yes", "no")
    stable = [line.split("|")[2:4] for line in lines if line.split("|")[1:2] in ([" seed "], [" jpeg "], [" noise "],
                                                                                 [" shift "])]
    assert len(stable) == 4 and all(-1 <= float(rho) <= 1 and 0 <= float(top) <= 1 for rho, top in stable)
    assert "MSR true" in out and "wall time:" in out

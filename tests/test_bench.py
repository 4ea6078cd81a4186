"""Smoke test of the benchmarks: bench/run.py runs one cheap benchmark and writes its files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_storage_benchmark_writes_results_json_and_markdown(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--only", "storage_overhead",
         "--repeats", "2", "--trial-s", "2.0", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "repeats" in proc.stdout  # each benchmark says what it compares and how often
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["name"] for r in results] == ["storage_overhead"]
    (r,) = results
    assert set(r) == {"name", "value", "unit", "goal", "better", "detail"}
    assert r["better"] == "lower" and r["goal"] == 0.01
    assert isinstance(r["value"], float) and r["value"] > 0
    assert r["detail"]["repeats"] == 2
    assert r["detail"]["median_trial_s"] == 2.0
    assert "not measured" in r["detail"]["trial_s_from"]
    md = (tmp_path / "RESULTS.md").read_text()
    assert "| storage_overhead |" in md and "## Machine" in md and "torch" in md


def test_unknown_benchmark_name_is_refused_with_the_allowed_names(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--only", "nope", "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "nope" in proc.stderr and "storage_overhead" in proc.stderr
    assert not (tmp_path / "results.json").exists()

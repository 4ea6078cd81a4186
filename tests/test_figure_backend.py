"""Importing the figure modules leaves matplotlib's backend alone; the writers of figure files
choose it (figure_style.use_file_backend)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _backend_after(code: str) -> str:
    env = {**os.environ, "MPLBACKEND": "svg", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code + "\nimport matplotlib\n"
                          "print(matplotlib.get_backend())"],
                         env=env, capture_output=True, text=True, timeout=120, check=True)
    return out.stdout.strip().splitlines()[-1].lower()


def test_importing_the_figures_keeps_the_users_backend():
    assert _backend_after("import tuning_energy.report.figures\n"
                          "import tuning_energy.report.report\n"
                          "import tuning_energy.report.compare_report") == "svg"


def test_the_writers_draw_with_agg():
    assert _backend_after("from tuning_energy.report.figure_style import use_file_backend\n"
                          "use_file_backend()") == "agg"

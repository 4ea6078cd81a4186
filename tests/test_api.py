"""The public Python API: `import tuning_energy`, and the example of docs/api.md as a user runs it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pandas as pd
import pytest

import tuning_energy

REPO = Path(__file__).resolve().parents[1]


def _readme_example() -> str:
    section = (REPO / "docs" / "api.md").read_text().split("\n## Reference\n", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section has one example"
    return blocks[0]


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_readme_python_example_runs_as_it_is(tmp_path: Path):
    (tmp_path / "studies").mkdir()
    shutil.copy(REPO / "studies" / "default.toml", tmp_path / "studies")
    out = _python(_readme_example(), tmp_path)
    assert out.returncode == 0, out.stderr
    assert "study      default-random-s0" in out.stdout
    assert "trials     3/3 finished" in out.stdout
    assert re.search(r"J in \d+\.\d\d s, method \S+", out.stdout)
    exported = pd.read_csv(tmp_path / "studies" / "api-example.csv")
    assert len(exported) == 3 and (exported["energy_j"] > 0).all()


def test_import_is_cheap_and_every_public_name_resolves(tmp_path: Path):
    out = _python("""
import sys
import tuning_energy as te
heavy = [m for m in ("torch", "optuna", "pandas") if m in sys.modules]
assert not heavy, f"import tuning_energy imported {heavy}"
for name in te.__all__:
    assert getattr(te, name) is not None, name
assert "torch" in sys.modules  # run_study needs it: imported on first use
""", tmp_path)
    assert out.returncode == 0, out.stderr
    assert set(tuning_energy.__all__) == {"__version__", *tuning_energy._LAZY}
    assert set(tuning_energy.__all__) <= set(dir(tuning_energy))


def test_the_public_names_are_the_ones_the_modules_define():
    from tuning_energy import analysis, config, energy
    from tuning_energy.report import export
    from tuning_energy.run import runner

    assert tuning_energy.load_config is config.load_config
    assert tuning_energy.run_study is runner.run_study
    assert tuning_energy.analysis is analysis
    assert tuning_energy.Measurement is energy.Measurement
    assert tuning_energy.build_meter is energy.build_meter
    assert tuning_energy.export_trials is export.export_trials
    with pytest.raises(AttributeError, match="no attribute 'metred'"):
        tuning_energy.metred  # noqa: B018


def test_the_package_says_it_is_typed():
    assert files("tuning_energy").joinpath("py.typed").is_file()

"""The parts of scripts/gpu_check.py that a CPU can check: reading nvidia-smi, integrating
its samples over a window, the cuda copies of a config, the summary's tables."""

from __future__ import annotations

import importlib.util
import os
import stat
from pathlib import Path

import pytest

from tests.conftest import REPO
from tuning_energy.config import load_config

spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


def test_reads_the_asked_gpus_power_and_na_as_unknown():
    text = "0, 71.53\n1, [N/A]\n"
    assert gpu_check.parse_smi(text, 0) == 71.53
    assert gpu_check.parse_smi(text, 1) is None
    assert gpu_check.parse_smi(text, 2) is None


def test_the_sampler_integrates_a_fake_nvidia_smi_over_its_window(tmp_path: Path):
    """A stand-in nvidia-smi printing a constant 100 W: about 100 J per second of window."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, 100.0'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    import time

    with gpu_check.SmiSampler(interval_s=0.05, smi=str(smi)) as s:
        time.sleep(0.6)
    span = s.samples[-1][0] - s.samples[0][0]
    assert len(s.samples) >= 3
    assert s.energy_j == pytest.approx(100.0 * span)
    assert gpu_check.integrate_j(s.samples[:1]) is None  # one sample is no window


def test_cuda_copies_of_the_studies_load_and_train_on_cuda(tmp_path: Path):
    for name in ("default.toml",):
        path = gpu_check.cuda_config(REPO / "studies" / name, tmp_path, deterministic=True)
        config = load_config(path)
        assert config.train.device == "cuda" and config.train.deterministic is True
        assert config.search_space == load_config(REPO / "studies" / name).search_space


def test_summary_tables_show_unknowns_as_a_dash():
    md = gpu_check.table([{"a": 1.234567, "b": None}], ["a", "b"])
    assert md.splitlines() == ["| a | b |", "| --- | --- |", "| 1.235 | - |"]


def test_the_shell_wrapper_needs_an_out_dir():
    import subprocess

    out = subprocess.run(["bash", str(REPO / "scripts" / "gpu-check.sh")], capture_output=True,
                         text=True, env={**os.environ, "PYTHON": "false"})
    assert out.returncode != 0 and "usage: scripts/gpu-check.sh OUT_DIR" in out.stderr

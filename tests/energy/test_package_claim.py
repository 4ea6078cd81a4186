"""Two commands on one machine never both read the RAPL package (package_claim.py), on the
fake powercap tree the RAPL tests use and with real processes (issue 23: 6)."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from fake_powercap import FakePowercap

from tuning_energy.config import MeterConfig
from tuning_energy.energy import build_meter
from tuning_energy.energy.package_claim import PackageInUse
from tuning_energy.energy.rapl import RaplMeter
from tuning_energy.run.runner import run_study

REPO = Path(__file__).resolve().parents[2]

#: Another command: opens a RAPL meter on the tree, says so, runs until stdin closes.
OTHER = """
import sys
from tuning_energy.energy.rapl import RaplMeter
meter = RaplMeter(sys.argv[1], background=False)
print("reading", flush=True)
sys.stdin.read()
"""


def _tree(tmp_path: Path) -> Path:
    pc = FakePowercap(tmp_path)
    pc.zone("intel-rapl:0", "package-0", 5_000_000)
    return pc.root


@pytest.fixture
def other_command(tmp_path):
    root = _tree(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", OTHER, str(root)], cwd=REPO, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "reading"
    yield root, proc
    proc.stdin.close()
    proc.wait(timeout=30)


def test_a_second_command_is_refused_naming_the_first_and_the_fix(other_command):
    root, proc = other_command
    with pytest.raises(PackageInUse) as exc:
        RaplMeter(root, background=False)
    message = str(exc.value)
    assert f"pid {proc.pid}" in message and "already read by another tuning-energy command" \
        in message
    assert "meter.kind = 'estimate'" in message and "tuning-energy compare" in message


def test_auto_refuses_too_instead_of_estimating_around_it(other_command, tiny_config):
    root, _ = other_command
    with pytest.raises(PackageInUse):
        build_meter(MeterConfig(kind="auto", powercap_root=str(root)), use_gpus=False)
    # a study under it stores nothing
    url = f"sqlite:///{root.parent.parent / 'energy.db'}"
    config = dataclasses.replace(tiny_config, meter=MeterConfig(
        kind="rapl", powercap_root=str(root), idle_s=0))
    with pytest.raises(PackageInUse):
        run_study(config, "random", 0, url, progress=False, out=io.StringIO())
    assert not Path(url.removeprefix("sqlite:///")).exists() or \
        optuna.get_all_study_summaries(url) == []


def test_the_package_is_free_again_when_the_first_command_ends(other_command):
    root, proc = other_command
    proc.stdin.close()
    proc.wait(timeout=30)
    RaplMeter(root, background=False).close()


def test_the_claimants_own_processes_read_under_its_claim(tmp_path):
    """A pool's ledger and workers are children of the command that claimed the package."""
    root = _tree(tmp_path)
    RaplMeter(root, background=False).close()  # this process claims it, and keeps it
    RaplMeter(root, background=False).close()  # a second meter here is no second command
    child = subprocess.run([sys.executable, "-c", OTHER, str(root)], cwd=REPO, text=True,
                           input="", capture_output=True, timeout=60)
    assert child.returncode == 0 and child.stdout.strip() == "reading", child.stderr

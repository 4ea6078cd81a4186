"""`tuning-energy meters`: every meter listed with why it is (not) usable, then measured."""

from __future__ import annotations

import sys

from fake_powercap import FakePowercap
from fake_pynvml import make_pynvml

from tuning_energy.cli import main


def test_meters_explains_missing_rapl_and_nvml_and_uses_estimate(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pynvml", make_pynvml(None))  # a machine without driver
    monkeypatch.setenv("TUNING_ENERGY_POWERCAP_ROOT", str(tmp_path / "absent"))
    assert main(["meters", "--busy-s", "0.3", "--idle-s", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "rapl      NOT available  no powercap tree at " + str(tmp_path / "absent") in out
    assert "nvml      NOT available  NVML cannot start (NVMLError_LibraryNotFound" in out
    assert "estimate  available      method estimate-cpu-tdp-tree; devices cpu0" in out
    assert "auto uses estimate-cpu-tdp-tree" in out
    assert "no hardware energy counter here" in out
    row = next(line for line in out.splitlines() if line.startswith("  estimate  estimate-cpu"))
    busy_j, busy_w, idle_j, idle_w = (float(x) for x in row.split()[2:6])
    assert busy_j > 0 and busy_w > idle_w


def test_meters_lists_rapl_devices_from_the_given_root(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pynvml", make_pynvml(None))
    pc = FakePowercap(tmp_path)
    pc.zone("intel-rapl:0", "package-0")
    pc.zone("intel-rapl:0:0", "dram")
    assert main(["meters", "--powercap-root", str(pc.root), "--busy-s", "0.1",
                 "--idle-s", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "rapl      available      method rapl; devices cpu0, dram0" in out
    assert "auto uses rapl" in out
    assert "no hardware energy counter here" not in out


def test_meters_says_auto_is_partly_an_estimate_on_a_gpu_machine_without_rapl(
        tmp_path, monkeypatch, capsys):
    from fake_pynvml import FakeGpu

    gpu = FakeGpu("NVIDIA H100", "GPU-00000000-aaaa", energy_mj=1_000_000)
    monkeypatch.setitem(sys.modules, "pynvml", make_pynvml([gpu]))
    monkeypatch.setenv("TUNING_ENERGY_POWERCAP_ROOT", str(tmp_path / "absent"))
    assert main(["meters", "--busy-s", "0.1", "--idle-s", "0.1"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("auto uses"))
    assert line.startswith("auto uses nvml-counter+estimate-cpu-tdp-tree")
    assert line.endswith("partly an ESTIMATE: cpu0 from estimate-cpu-tdp-tree (the rest measured by "
                         "nvml-counter)")

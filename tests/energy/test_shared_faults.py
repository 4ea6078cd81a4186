"""A package-wide meter shared by workers (energy/shared.py): an unknown reading stays
unknown (None, and why) in every worker's window, never 0 J; the worker's meter passes on
its inner meter's faults and whether it sees idle power.

RAPL against a temporary tree shaped like /sys/class/powercap, NVML against a fake `pynvml`
(real names, units and error classes); the CPU shares are driven by hand.
"""

from __future__ import annotations

import pytest
from fake_powercap import FakePowercap, intel_two_sockets
from fake_pynvml import FakeGpu, make_pynvml

from tuning_energy.energy import CompositeMeter, EstimateMeter
from tuning_energy.energy.base import Meter
from tuning_energy.energy.baseline import idle_baseline
from tuning_energy.energy.nvml import NvmlMeter
from tuning_energy.energy.rapl import RaplMeter
from tuning_energy.energy.shared import CpuTimeLedger, SharedCpuTimeMeter


def workers(meter: Meter, n: int = 2) -> tuple[CpuTimeLedger, list[SharedCpuTimeMeter]]:
    """A ledger over `meter` and n workers (pids 1..n) that never show CPU time: each
    segment is split evenly over the open windows."""
    ledger = CpuTimeLedger(meter, cpu_s=lambda pid: 0.0)
    return ledger, [SharedCpuTimeMeter(meter, ledger, pid=i + 1) for i in range(n)]


def test_a_rapl_zone_that_vanished_is_unknown_in_every_window_over_the_gap(tmp_path):
    pc = intel_two_sockets(tmp_path)
    rapl = RaplMeter(pc.root, background=False)
    ledger, (a, b) = workers(rapl)
    before = a.begin()
    pc.add("intel-rapl:0:2", 1_000_000)
    done_before = a.end(before)  # closed before the zone vanished: measured
    assert done_before.by_device_j["dram0"] == pytest.approx(1.0)

    wa = a.begin()
    pc.add("intel-rapl:0", 4_000_000)
    dram = pc.zones["intel-rapl:0:2"] / "energy_uj"
    saved = dram.read_text()
    dram.unlink()  # dram0 vanished
    wb = b.begin()  # opened while it is gone
    pc.add("intel-rapl:1", 2_000_000)
    ma, mb = a.end(wa), b.end(wb)
    for m in (ma, mb):
        assert m.by_device_j["dram0"] is None  # not a measured 0 J
        assert m.energy_j is None  # an unknown part makes the total unknown
        assert "dram0" in m.energy_error and "could not be read" in m.errors["dram0"]
        assert "cpu0" not in m.errors and "cpu1" not in m.errors
    assert ma.by_device_j["cpu0"] == pytest.approx(4.0)  # alone while it rose
    assert ma.by_device_j["cpu1"] + mb.by_device_j["cpu1"] == pytest.approx(2.0)

    dram.write_text(saved)  # back: a window opened after the gap measures it again
    w = a.begin()
    pc.add("intel-rapl:0:2", 3_000_000)
    after = a.end(w)
    assert after.by_device_j["dram0"] == pytest.approx(3.0) and after.energy_error is None

    # The ledger's books: the gap's energy is unknown, so the total is too, and says why.
    totals = ledger.totals()
    assert totals["total_j"] is None and totals["unattributed_j"] is None
    assert "dram0" in totals["errors"] and set(totals["errors"]) == {"dram0"}
    assert totals["by_device_total_j"]["dram0"] is None
    assert totals["known_total_j"] == pytest.approx(1.0 + 4.0 + 2.0 + 3.0)
    # What is on trials is only what their windows measured (a and b's dram0 is unknown).
    assert totals["in_trials_j"] == pytest.approx(1.0 + 4.0 + 2.0 + 3.0)


class BackwardsMeter(Meter):
    """A package-wide counter the test sets by hand (it may go backwards)."""

    method = "fake-package"
    package_wide = True

    def __init__(self):
        self.j = 100.0

    def read_j(self):
        return {"cpu0": self.j}


def test_a_package_counter_that_went_backwards_is_unknown_not_zero():
    meter = BackwardsMeter()
    ledger, (a,) = workers(meter, 1)
    w = a.begin()
    meter.j = 40.0  # reset below its start
    m = a.end(w)
    assert m.by_device_j == {"cpu0": None} and m.energy_j is None
    assert "went backwards by 60 J" in m.errors["cpu0"]
    # it dipped inside a window, seen by a peek, then climbed above the start: still unknown
    w = a.begin()
    meter.j = 10.0
    assert a.peek(w).by_device_j["cpu0"] is None
    meter.j = 500.0
    assert a.end(w).by_device_j["cpu0"] is None
    # afterwards it counts again, from its new value
    w = a.begin()
    meter.j += 7.0
    assert a.end(w).by_device_j == pytest.approx({"cpu0": 7.0})
    assert ledger.totals()["total_j"] is None


def test_the_inner_meters_gpu_faults_reach_the_workers_window(tmp_path):
    """A GPU counter reset seen inside a window (a peek), then above its start again: the
    worker's window knows it only from the inner NVML meter's faults."""
    fake = make_pynvml([FakeGpu("NVIDIA H100", "GPU-0", energy_mj=50_000_000)])
    gpu = NvmlMeter(nvml=fake, sync=None, environ={}, cuda_uuids=None, sample_s=0.01)
    pc = FakePowercap(tmp_path)
    pc.zone("intel-rapl:0", "package-0")
    inner = CompositeMeter([gpu, RaplMeter(pc.root, background=False)])
    with inner:
        _, (a,) = workers(inner, 1)
        w = a.begin()
        fake.gpus[0].energy_mj = 10  # reset
        pc.add("intel-rapl:0", 2_000_000)
        assert a.peek(w).by_device_j["gpu0"] is None
        fake.gpus[0].energy_mj = 60_000_000  # climbs back above the start
        m = a.end(w)
    assert m.method == "nvml-counter+rapl-shared-cputime"
    assert m.by_device_j["gpu0"] is None and "went backwards" in m.errors["gpu0"]
    assert m.by_device_j["cpu0"] == pytest.approx(2.0)
    assert m.energy_j is None


class BlindPackageMeter(BackwardsMeter):
    """Package-wide, but blind to idle power (as a CPU-time estimate is)."""

    sees_idle_power = False


def test_a_workers_meter_sees_idle_power_only_when_its_inner_meter_does(tmp_path):
    _, (blind,) = workers(BlindPackageMeter(), 1)
    assert not blind.sees_idle_power
    power_w, note = idle_baseline(blind, 0.05)
    assert power_w is None and note.startswith("not measured")
    pc = FakePowercap(tmp_path)
    pc.zone("intel-rapl:0", "package-0")
    _, (seeing,) = workers(RaplMeter(pc.root, background=False), 1)
    assert seeing.sees_idle_power
    assert not SharedCpuTimeMeter(EstimateMeter(), None, pid=1).sees_idle_power

"""A counter that went backwards or a device that vanished: unknown (None, and why), never 0.

NVML against a fake `pynvml` (real names, units and error classes), RAPL against a
temporary tree shaped like /sys/class/powercap, and a trial in a real SQLite store.
"""

from __future__ import annotations

import dataclasses
import sys

import optuna
import pytest
from fake_powercap import FakePowercap, intel_two_sockets
from fake_pynvml import FakeGpu, make_pynvml

from tuning_energy.cnn import function as cnn
from tuning_energy.config import MeterConfig
from tuning_energy.energy import CompositeMeter
from tuning_energy.energy.nvml import NvmlMeter
from tuning_energy.energy.rapl import RaplMeter
from tuning_energy.run.runner import run_study


def nvml_meter(n: int = 2, counter: bool = True) -> tuple[NvmlMeter, object]:
    fake = make_pynvml([FakeGpu(f"NVIDIA H100 #{i}", f"GPU-{i}",
                                energy_mj=50_000_000 if counter else None)
                        for i in range(n)])
    return NvmlMeter(nvml=fake, sync=None, environ={}, cuda_uuids=None, sample_s=0.01), fake


def test_nvml_counter_that_went_backwards_is_unknown_not_zero():
    meter, fake = nvml_meter()
    with meter:
        w = meter.begin()
        fake.gpus[0].energy_mj = 1_000  # reset (GPU reset, driver reload): far below start
        fake.gpus[1].energy_mj += 4_000
        m = meter.end(w)
    assert m.by_device_j["gpu0"] is None
    assert m.by_device_j["gpu1"] == pytest.approx(4.0)  # the other GPU is still measured
    assert m.energy_j is None  # an unknown part makes the total unknown
    assert "gpu0" in m.energy_error and "went backwards" in m.energy_error
    assert "gpu1" not in m.energy_error


def test_nvml_counter_that_dipped_inside_a_window_is_unknown_even_when_it_ends_higher():
    meter, fake = nvml_meter(1)
    with meter:
        w = meter.begin()
        fake.gpus[0].energy_mj = 10  # a reset, seen by a read inside the window (a peek)
        assert meter.peek(w).by_device_j["gpu0"] is None
        fake.gpus[0].energy_mj = 60_000_000  # climbs back above the start: still unknown
        m = meter.end(w)
        assert m.by_device_j["gpu0"] is None
        assert "went backwards, from 50000000 mJ to 10 mJ" in m.errors["gpu0"]
        # a window opened after the reset measures again
        w = meter.begin()
        fake.gpus[0].energy_mj += 2_500
        after = meter.end(w)
    assert after.by_device_j == pytest.approx({"gpu0": 2.5}) and after.energy_error is None


def test_nvml_gpu_lost_mid_window_is_unknown_with_the_nvml_error():
    meter, fake = nvml_meter()
    with meter:
        w = meter.begin()
        fake.gpus[1].energy_mj += 3_000
        fake.gpus[1].lost = True  # fell off the bus: NVMLError_GpuIsLost on every read
        m = meter.end(w)
        assert m.by_device_j == {"gpu0": pytest.approx(0.0), "gpu1": None}
        assert m.energy_j is None
        assert "NVMLError_GpuIsLost" in m.errors["gpu1"] and "when the window ended" in \
            m.errors["gpu1"]
        later = meter.end(meter.begin())  # still gone: unknown in later windows too
    assert later.by_device_j["gpu1"] is None and "window began" in later.errors["gpu1"]


def test_nvml_power_sample_gap_is_unknown():
    meter, fake = nvml_meter(1, counter=False)
    with meter:
        w = meter.begin()
        fake.gpus[0].lost = True
        meter.read_j()  # a sample fails: the integral has a gap
        fake.gpus[0].lost = False
        m = meter.end(w)
        assert m.by_device_j["gpu0"] is None and "power reading" in m.errors["gpu0"]
        w = meter.begin()  # after the gap the GPU measures again
        again = meter.end(w)
    assert again.by_device_j["gpu0"] is not None and again.energy_error is None


def test_rapl_zone_that_vanished_mid_window_is_unknown(tmp_path):
    pc = intel_two_sockets(tmp_path)
    meter = RaplMeter(pc.root, background=False)
    w = meter.begin()
    pc.add("intel-rapl:0", 5_000_000)
    pc.add("intel-rapl:1", 2_000_000)
    (pc.zones["intel-rapl:0:2"] / "energy_uj").unlink()  # dram0 vanished
    m = meter.end(w)
    assert m.by_device_j == {"cpu0": pytest.approx(5.0), "dram0": None,
                             "cpu1": pytest.approx(2.0), "dram1": pytest.approx(0.0)}
    assert m.energy_j is None
    assert "dram0" in m.energy_error and "intel-rapl:0:2/energy_uj could not be read" in \
        m.energy_error


def test_rapl_zone_back_after_a_gap_does_not_guess_the_gap(tmp_path):
    pc = FakePowercap(tmp_path)
    pc.zone("intel-rapl:0", "package-0", energy_uj=1_000_000)
    meter = RaplMeter(pc.root, background=False)
    w = meter.begin()
    energy = pc.zones["intel-rapl:0"] / "energy_uj"
    energy.unlink()
    meter.poll()  # the background poll finds the counter gone
    pc.set("intel-rapl:0", 9_000_000)  # back: wraps while it was gone cannot be known
    m = meter.end(w)
    assert m.by_device_j == {"cpu0": None} and "could not be read" in m.errors["cpu0"]
    w = meter.begin()
    pc.add("intel-rapl:0", 1_500_000)
    assert meter.end(w).by_device_j == {"cpu0": pytest.approx(1.5)}


def test_rapl_wrap_is_not_an_error(tmp_path):
    pc = FakePowercap(tmp_path)
    pc.zone("intel-rapl:0", "package-0", energy_uj=900_000, max_range_uj=1_000_000)
    meter = RaplMeter(pc.root, background=False)
    w = meter.begin()
    pc.add("intel-rapl:0", 300_000)  # wraps: 900_000 -> 199_999
    m = meter.end(w)
    assert m.energy_error is None and m.energy_j == pytest.approx(0.3, abs=1e-5)


def test_composite_gpu_lost_keeps_the_cpu_and_names_the_gpu(tmp_path):
    pc = FakePowercap(tmp_path)
    pc.zone("intel-rapl:0", "package-0")
    gpu, fake = nvml_meter(1)
    meter = CompositeMeter([gpu, RaplMeter(pc.root, background=False)])
    with meter:
        w = meter.begin()
        pc.add("intel-rapl:0", 2_000_000)
        fake.gpus[0].energy_mj -= 1  # a counter that went backwards, even by 1 mJ
        m = meter.end(w)
    assert m.method == "nvml-counter+rapl"
    assert m.by_device_j == {"gpu0": None, "cpu0": pytest.approx(2.0)}
    assert m.energy_j is None and m.energy_error.startswith("gpu0: ")


def test_trial_stores_energy_error_and_no_total_when_a_zone_vanishes(tmp_path, monkeypatch,
                                                                     tiny_config):
    """A RAPL zone that vanishes during training: the trial in the store says so."""
    pc = intel_two_sockets(tmp_path)
    real_fit = cnn.fit

    def fit_then_dram_vanishes(*args, **kwargs):
        result = real_fit(*args, **kwargs)
        pc.add("intel-rapl:0", 4_000_000)
        (pc.zones["intel-rapl:0:2"] / "energy_uj").unlink()
        return result

    monkeypatch.setattr(cnn, "fit", fit_then_dram_vanishes)
    config = dataclasses.replace(
        tiny_config, budget=dataclasses.replace(tiny_config.budget, n_trials=1),
        meter=MeterConfig(kind="rapl", powercap_root=str(pc.root), idle_s=0))
    url = f"sqlite:///{tmp_path / 'energy.db'}"
    run_study(config, "random", 0, url, progress=False, out=sys.stderr)
    (trial,) = optuna.load_study(study_name="tiny-random-s0", storage=url).get_trials()
    a = trial.user_attrs
    assert a["energy_j"] is None and a["avg_power_w"] is None
    assert a["energy_by_device_j"]["dram0"] is None
    assert a["energy_by_device_j"]["cpu0"] == pytest.approx(4.0)
    assert a["energy_error"].startswith("dram0: RAPL counter") and "could not be read" in \
        a["energy_error"]

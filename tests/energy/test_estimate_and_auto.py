"""The estimate meter on real CPU work, and which meter `build_meter` picks."""

from __future__ import annotations

import sys
import time

import pytest
from fake_powercap import FakePowercap, intel_two_sockets
from fake_pynvml import FakeGpu, make_pynvml

from tuning_energy.config import MeterConfig
from tuning_energy.energy import (
    POWERCAP_ENV,
    CompositeMeter,
    EstimateMeter,
    build_meter,
    config_from_env,
    gpus,
)
from tuning_energy.errors import MeterUnavailable


def spin(seconds: float) -> int:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += sum(i * i for i in range(1000))
    return n


def test_estimate_more_work_more_energy():
    meter = EstimateMeter(cpu_tdp_w=40.0, cpu_cores=4)  # 10 W per busy core
    w = meter.begin()
    spin(0.1)
    small = meter.end(w)
    w = meter.begin()
    spin(0.4)
    big = meter.end(w)
    assert small.method == big.method == "estimate-cpu-tdp-tree"
    assert 0 < small.energy_j < big.energy_j
    assert big.energy_j / small.energy_j > 2
    # one busy thread: at most 10 W (less when the machine is shared)
    assert big.avg_power_w <= 10.0 * 1.05


def test_estimate_idle_is_near_zero_not_tdp():
    meter = EstimateMeter(cpu_tdp_w=40.0, cpu_cores=4)
    w = meter.begin()
    time.sleep(0.2)
    assert meter.end(w).avg_power_w < 1.0


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", make_pynvml(None))


@pytest.fixture
def two_gpus(monkeypatch):
    fake = make_pynvml([FakeGpu("NVIDIA H100", "GPU-1"), FakeGpu("NVIDIA H100", "GPU-2")])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(gpus, "torch_cuda_uuids", lambda: None)  # torch sees no CUDA here
    return fake


def test_auto_without_rapl_or_nvml_falls_back_to_estimate_and_says_why(tmp_path, no_gpu):
    choice = build_meter(MeterConfig(kind="auto", powercap_root=str(tmp_path / "none")))
    assert isinstance(choice.meter, EstimateMeter)
    assert "no powercap tree" in choice.reasons["rapl"]
    assert "NVML cannot start" in choice.reasons["nvml"]
    assert choice.describe()["not_used"] == choice.reasons


def test_auto_with_rapl_uses_it(tmp_path, no_gpu):
    pc = intel_two_sockets(tmp_path)
    choice = build_meter(MeterConfig(kind="auto", powercap_root=str(pc.root)))
    try:
        assert choice.meter.method == "rapl"
        assert set(choice.reasons) == {"nvml", "estimate"}
    finally:
        choice.meter.close()


def test_auto_with_gpus_and_rapl_is_composite(tmp_path, two_gpus):
    pc = FakePowercap(tmp_path)
    pc.zone("intel-rapl:0", "package-0")
    choice = build_meter(MeterConfig(kind="auto", powercap_root=str(pc.root)), use_gpus=True)
    try:
        assert isinstance(choice.meter, CompositeMeter)
        assert choice.meter.method == "nvml-counter+rapl"
        w = choice.meter.begin()
        two_gpus.gpus[0].energy_mj += 3_000
        two_gpus.gpus[1].energy_mj += 5_000  # another job's GPU: not the training device
        pc.add("intel-rapl:0", 2_000_000)
        m = choice.meter.end(w)
        assert m.method == "nvml-counter+rapl"
        assert m.by_device_j == pytest.approx({"gpu0": 3.0, "cpu0": 2.0})
    finally:
        choice.meter.close()


def test_auto_gpu_without_rapl_pairs_nvml_with_cpu_estimate(tmp_path, two_gpus):
    choice = build_meter(MeterConfig(kind="auto", powercap_root=str(tmp_path)), use_gpus=True)
    try:
        assert choice.meter.method == "nvml-counter+estimate-cpu-tdp-tree"
        assert "no RAPL package zones" in choice.reasons["rapl"]
    finally:
        choice.meter.close()


def test_auto_cpu_training_does_not_meter_gpus(tmp_path, two_gpus):
    choice = build_meter(MeterConfig(kind="auto", powercap_root=str(tmp_path)), use_gpus=False)
    assert choice.meter.method == "estimate-cpu-tdp-tree"
    assert "CPU" in choice.reasons["nvml"]
    assert two_gpus.state["init"] == 0


def test_explicit_missing_meter_is_an_error_never_a_fallback(tmp_path, no_gpu):
    with pytest.raises(MeterUnavailable, match="no powercap tree .*'estimate'"):
        build_meter(MeterConfig(kind="rapl", powercap_root=str(tmp_path / "x")))
    with pytest.raises(MeterUnavailable, match="NVMLError_LibraryNotFound"):
        build_meter(MeterConfig(kind="nvml"))


def test_powercap_root_from_env_only_when_config_has_none():
    env = {POWERCAP_ENV: "/fake/powercap"}
    assert config_from_env(MeterConfig(), env).powercap_root == "/fake/powercap"
    assert config_from_env(MeterConfig(powercap_root="/cfg"), env).powercap_root == "/cfg"
    assert config_from_env(MeterConfig(), {}).powercap_root is None

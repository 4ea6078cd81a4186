"""NVML meter against a fake `pynvml` (real names and units), and for real on a GPU."""

from __future__ import annotations

import time

import pytest
from fake_pynvml import FakeGpu, make_pynvml

from tuning_energy.energy.nvml import COUNTER, SAMPLING, NvmlMeter
from tuning_energy.errors import MeterUnavailable


def gpus(n: int, counter: bool = True) -> list[FakeGpu]:
    return [FakeGpu(f"NVIDIA A100-SXM4-40GB #{i}", f"GPU-{i:08d}-aaaa",
                    energy_mj=1_000_000 * (i + 1) if counter else None) for i in range(n)]


def test_counter_path_several_gpus_in_millijoules():
    fake = make_pynvml(gpus(3))
    syncs = []
    meter = NvmlMeter(nvml=fake, sync=lambda: syncs.append(1), environ={},
                      cuda_uuids=None)
    try:
        assert meter.method == COUNTER
        w = meter.begin()
        fake.gpus[0].energy_mj += 12_345  # mJ
        fake.gpus[2].energy_mj += 1_000
        m = meter.end(w)
    finally:
        meter.close()
    assert m.method == "nvml-counter"
    assert m.by_device_j == pytest.approx({"gpu0": 12.345, "gpu1": 0.0, "gpu2": 1.0})
    assert m.energy_j == pytest.approx(13.345)
    assert len(syncs) == 2  # CUDA synchronised before each edge's read
    assert fake.state["shutdown"] == 1


def test_power_sampling_path_integrates_milliwatts():
    fake = make_pynvml(gpus(2, counter=False))
    fake.gpus[0].power_mw = 150_000
    fake.gpus[1].power_mw = 50_000
    with NvmlMeter(nvml=fake, sync=None, sample_s=0.02, environ={}, cuda_uuids=None) as meter:
        assert meter.method == SAMPLING
        w = meter.begin()
        t0 = time.perf_counter()
        calls0 = fake.gpus[0].power_calls
        time.sleep(0.3)
        t1 = time.perf_counter()
        fake.gpus[0].power_mw = 300_000  # a step: the sampler must follow it
        time.sleep(0.3)
        t2 = time.perf_counter()
        m = meter.end(w)
        assert fake.gpus[0].power_calls - calls0 >= 10  # background thread at ~50 Hz
    assert m.method == "nvml-power-sampling"
    # 150 W then 300 W (~135 J); the step costs about half a sample interval x 150 W
    expected_j = 150 * (t1 - t0) + 300 * (t2 - t1)
    assert m.by_device_j["gpu0"] == pytest.approx(expected_j, rel=0.05)
    assert m.by_device_j["gpu1"] == pytest.approx(50 * m.duration_s, rel=0.02)


def test_mixed_gpus_say_both_methods():
    g = gpus(2)
    g[1].energy_mj = None  # no counter: NVMLError_NotSupported
    with NvmlMeter(nvml=make_pynvml(g), sync=None, environ={}, cuda_uuids=None) as meter:
        d = meter.describe()
        assert d["gpus"]["gpu0"]["method"] == COUNTER
        assert d["gpus"]["gpu1"]["method"] == SAMPLING
        assert meter.method == "nvml-counter+nvml-power-sampling"
        assert set(meter.read_j()) == {"gpu0", "gpu1"}


def test_cuda_visible_devices_and_named_gpus():
    fake = make_pynvml(gpus(4))

    def meter(gpu_indices=None, visible="2,0"):
        return NvmlMeter(gpu_indices, nvml=fake, sync=None, cuda_uuids=None,
                         environ={"CUDA_VISIBLE_DEVICES": visible})

    with meter() as m:  # cuda:0 = NVML 2, cuda:1 = NVML 0
        assert [g.handle for g in m.gpus] == [fake.gpus[2], fake.gpus[0]]
        w = m.begin()
        fake.gpus[2].energy_mj += 2_000
        fake.gpus[3].energy_mj += 99_000  # not visible: not charged
        assert m.end(w).by_device_j == pytest.approx({"gpu0": 2.0, "gpu1": 0.0})
    with meter([1]) as m:
        assert [g.device for g in m.gpus] == ["gpu1"]
        assert m.gpus[0].handle is fake.gpus[0]
    with meter(visible="GPU-00000003,GPU-00000001") as m:  # UUID prefixes, as CUDA takes them
        assert [g.handle for g in m.gpus] == [fake.gpus[3], fake.gpus[1]]
    with meter(visible="2,GPU-00000000-aaaa") as m:  # CUDA stops at the first other kind
        assert [g.handle for g in m.gpus] == [fake.gpus[2]]
    with pytest.raises(MeterUnavailable, match=r"GPU cuda:5 is not visible .*2 visible"):
        meter([5])
    with pytest.raises(MeterUnavailable, match="no GPU visible"):
        meter(visible="")
    with pytest.raises(MeterUnavailable, match="no GPU visible"):
        meter(visible="1,1")  # a repeated entry: CUDA shows no device


def test_no_driver_is_meter_unavailable_with_reason():
    with pytest.raises(MeterUnavailable, match="NVMLError_LibraryNotFound.*'estimate'"):
        NvmlMeter(nvml=make_pynvml(None), sync=None, environ={})


def _gpu_present() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return False
    n = pynvml.nvmlDeviceGetCount()
    pynvml.nvmlShutdown()
    return n > 0


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_present(), reason="no NVIDIA GPU/driver on this machine")
def test_real_nvml_meter_measures_gpu_work():
    import torch

    with NvmlMeter() as meter:
        assert meter.method in (COUNTER, SAMPLING, f"{COUNTER}+{SAMPLING}")
        idle = meter.begin()
        time.sleep(1.0)
        m_idle = meter.end(idle)
        x = torch.randn(8192, 8192, device="cuda")
        w = meter.begin()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 2.0:
            x = x @ x
            x = x / x.norm()
        m = meter.end(w)
    assert m.energy_j is not None and m.energy_j > 0
    assert m.avg_power_w > m_idle.avg_power_w  # busy draws more than idle
    print(f"real NVML: idle {m_idle.avg_power_w:.1f} W, busy {m.avg_power_w:.1f} W, "
          f"{m.energy_j:.1f} J over {m.duration_s:.2f} s, {m.method}")

"""Which GPUs a study meters: the training device only, found by UUID, on a shared box.

A fake `pynvml` (real names and units) with four physical GPUs, as on a shared 4-GPU
machine where other people's jobs run on the GPUs this study does not use.
"""

from __future__ import annotations

import sys

import pytest
from fake_pynvml import FakeGpu, make_pynvml

from tuning_energy.config import MeterConfig, parse_config
from tuning_energy.energy import build_meter, gpus
from tuning_energy.energy.gpus import parse_visible_devices
from tuning_energy.errors import ConfigError, MeterUnavailable

UUIDS = [f"GPU-{i}a1b2c3d-0000-1111-2222-33334444555{i}" for i in range(4)]


@pytest.fixture
def box(monkeypatch, tmp_path):
    """Four GPUs, CUDA_VISIBLE_DEVICES unset, torch sees no CUDA, no RAPL."""
    fake = make_pynvml([FakeGpu(f"NVIDIA A100 #{i}", u, energy_mj=10_000_000 * (i + 1))
                        for i, u in enumerate(UUIDS)])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(gpus, "torch_cuda_uuids", lambda: None)
    fake.config = MeterConfig(kind="auto", powercap_root=str(tmp_path / "no-rapl"))
    return fake


def every_gpu_works(fake, mj: int = 7_000) -> None:
    """All four GPUs busy: ours and the other jobs'."""
    for g in fake.gpus:
        g.energy_mj += mj * (fake.gpus.index(g) + 1)


def gpu_joules(choice, fake) -> dict[str, float]:
    try:
        w = choice.meter.begin()
        every_gpu_works(fake)
        m = choice.meter.end(w)
    finally:
        choice.meter.close()
    return {d: j for d, j in m.by_device_j.items() if d.startswith("gpu")}


def test_auto_meters_the_training_gpu_not_every_gpu(box, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    # cuda:1 is physical GPU 3 (4 x 7 J); the other three GPUs' work is not charged
    assert gpu_joules(build_meter(box.config, use_gpus=True, cuda_index=1), box) \
        == pytest.approx({"gpu1": 28.0})
    # plain `cuda` is cuda:0: physical GPU 2
    assert gpu_joules(build_meter(box.config, use_gpus=True), box) \
        == pytest.approx({"gpu0": 21.0})


def test_auto_maps_cuda_index_by_torch_uuid_whatever_the_order(box, monkeypatch):
    # CUDA's default order (FASTEST_FIRST) may differ from NVML's PCI order: torch's UUIDs
    # (printed without the GPU- prefix) decide, not the index
    monkeypatch.setattr(gpus, "torch_cuda_uuids",
                        lambda: [UUIDS[3].removeprefix("GPU-"), UUIDS[1].removeprefix("GPU-")])
    choice = build_meter(box.config, use_gpus=True, cuda_index=1)
    d = choice.describe()
    assert gpu_joules(choice, box) == pytest.approx({"gpu1": 14.0})  # physical GPU 1
    assert d["gpus"]["gpu1"]["nvml_index"] == 1
    assert d["parts"][0]["cuda_to_nvml"] == gpus.BY_TORCH


def test_meter_gpus_overrides_the_training_device(box, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    config = MeterConfig(kind="auto", powercap_root=box.config.powercap_root, gpus=(0, 1))
    choice = build_meter(config, use_gpus=True, cuda_index=1)
    assert "meter.gpus = [0, 1]" in choice.gpu_choice
    assert gpu_joules(choice, box) == pytest.approx({"gpu0": 21.0, "gpu1": 28.0})


def test_describe_names_the_metered_gpu_by_index_and_uuid(box, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    choice = build_meter(box.config, use_gpus=True, cuda_index=1)
    try:
        d = choice.describe()  # stored on the study as its `meter` attr
    finally:
        choice.meter.close()
    assert d["gpus"] == {"gpu1": {"name": "NVIDIA A100 #3", "method": "nvml-counter",
                                  "nvml_index": 3, "uuid": UUIDS[3]}}
    assert "cuda:1" in d["gpu_choice"]
    assert UUIDS[3] in d["note"] and UUIDS[2] not in d["note"]


def test_explicit_nvml_also_meters_only_the_training_gpu(box):
    config = MeterConfig(kind="nvml")
    assert gpu_joules(build_meter(config, use_gpus=True, cuda_index=2), box) \
        == pytest.approx({"gpu2": 21.0})
    # the training device not known (the `meters` command): every visible GPU
    assert set(gpu_joules(build_meter(config), box)) == {"gpu0", "gpu1", "gpu2", "gpu3"}


def test_training_gpu_not_visible_or_a_mig_instance_is_not_metered_and_says_why(
        box, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    choice = build_meter(box.config, use_gpus=True, cuda_index=2)
    assert "GPU cuda:2 is not visible" in choice.reasons["nvml"]
    assert "'2,3'" in choice.reasons["nvml"]
    assert choice.describe()["gpus"] == {} and choice.gpu_choice is None
    with pytest.raises(MeterUnavailable, match="cuda:2 is not visible"):
        build_meter(MeterConfig(kind="nvml"), use_gpus=True, cuda_index=2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-4b1c2d3e-0000-1111-2222-333344445555")
    with pytest.raises(MeterUnavailable, match="MIG instance.*whole GPU"):
        build_meter(MeterConfig(kind="nvml"), use_gpus=True)


def test_cuda_visible_devices_parsed_as_cuda_parses_it():
    assert parse_visible_devices(None) is None
    assert parse_visible_devices("3,1") == [3, 1]
    assert parse_visible_devices(" 2, 0") == [2, 0]
    assert parse_visible_devices("0,-1,1") == [0]  # a negative index ends the list
    assert parse_visible_devices("1gpu,2") == [1, 2]  # strtoul reads the leading digits
    assert parse_visible_devices("0,0") == []  # a repeated entry: no device
    assert parse_visible_devices("GPU-ab,GPU-cd,3") == ["GPU-ab", "GPU-cd"]
    assert parse_visible_devices("") == []


def test_uuid_prefixes_must_name_one_gpu(box, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-3a,GPU-1a")
    assert gpu_joules(build_meter(MeterConfig(kind="nvml")), box) \
        == pytest.approx({"gpu0": 28.0, "gpu1": 14.0})
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-3a,GPU-")  # ambiguous: CUDA stops there
    assert set(gpu_joules(build_meter(MeterConfig(kind="nvml")), box)) == {"gpu0"}


def test_config_accepts_cuda_n_and_names_the_allowed_devices():
    def doc(**sections):
        return {"search_space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2}},
                **sections}

    assert parse_config(doc(train={"device": "cuda:1"})).train.device == "cuda:1"
    for bad in ("cuda:", "cuda:x", "gpu", "cuda:-1"):
        with pytest.raises(ConfigError, match=r"train.device = .*allowed values are .*'cuda:N'"):
            parse_config(doc(train={"device": bad}))
    for bad in ([], [0, 0], [True], "0"):
        with pytest.raises(ConfigError, match="meter.gpus = .*CUDA device indices"):
            parse_config(doc(meter={"gpus": bad}))


def test_resolve_device_takes_cuda_n_and_refuses_a_gpu_torch_does_not_see(monkeypatch):
    import torch

    from tuning_energy.errors import StudyAborted
    from tuning_energy.run.runner import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(StudyAborted, match=r"train.device = 'cuda:1': no CUDA GPU is visible"):
        resolve_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # two GPUs visible
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(StudyAborted, match=r"'cuda:2': torch sees 2 GPU\(s\), cuda:0..cuda:1 "
                                           r"\(CUDA_VISIBLE_DEVICES = '2,3'"):
        resolve_device("cuda:2")

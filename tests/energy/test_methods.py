"""Which energy methods are estimates, wholly or in part, and which devices they cover."""

from __future__ import annotations

from tuning_energy.energy import CompositeMeter, EstimateMeter
from tuning_energy.energy.methods import is_estimate, label
from tuning_energy.energy.shared import shared_method


def test_auto_on_a_gpu_machine_without_rapl_is_partly_an_estimate():
    # the method as CompositeMeter forms it for `auto` = NVML + the CPU estimate
    class Gpu(EstimateMeter):
        method = "nvml-counter"

    method = CompositeMeter([Gpu(), EstimateMeter()]).method
    assert method == "nvml-counter+estimate-cpu-tdp-tree"
    assert is_estimate(method)
    lab = label([method], {method: ["gpu0", "gpu1", "cpu0"]})
    assert lab.any_estimate and not lab.fully_estimated
    assert lab.estimated_devices() == ["cpu0"]
    assert lab.text() == ("partly an ESTIMATE: cpu0 from estimate-cpu-tdp-tree (the rest measured "
                          "by nvml-counter)")


def test_without_devices_the_estimated_part_is_still_named():
    lab = label(["nvml-counter+estimate-cpu-tdp-tree"])
    assert lab.text().startswith("partly an ESTIMATE: estimate-cpu-tdp-tree")


def test_estimate_alone_and_shared_between_workers():
    for method in ("estimate-cpu-tdp-tree", shared_method("estimate-cpu-tdp-tree"),
                   shared_method("nvml-counter+estimate-cpu-tdp-tree")):
        assert is_estimate(method), method
    lab = label(["estimate-cpu-tdp-tree"], {"estimate-cpu-tdp-tree": ["cpu0"]})
    assert lab.fully_estimated and "ESTIMATE (estimate-cpu-tdp-tree)" in lab.text()


def test_measured_methods_are_not_estimates():
    for method in ("rapl", "nvml-counter+rapl", "nvml-counter+nvml-power-sampling",
                   shared_method("nvml-counter+rapl")):
        assert not is_estimate(method), method
        assert label([method]).text() == ""
    assert label([None]).methods == ()


def test_a_store_with_a_measured_and_an_estimated_study_is_partly_estimated():
    lab = label(["rapl", "estimate-cpu-tdp-tree"], {"rapl": ["cpu0", "dram0"],
                                               "estimate-cpu-tdp-tree": ["cpu0"]})
    assert not lab.fully_estimated
    assert lab.text().startswith("partly an ESTIMATE: cpu0 from estimate-cpu-tdp-tree")

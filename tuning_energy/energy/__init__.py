"""Energy meters behind one interface (see `base.py`).

`build_meter(config)` turns a `MeterConfig` into a meter and a record of what was chosen
and why; the objective only sees the `Meter` interface.

    estimate   CPU seconds x TDP per core (estimate-cpu-tdp-tree), always available
    rapl       CPU package + DRAM counters from /sys/class/powercap (rapl)
    nvml       NVIDIA GPU counters or sampled power (nvml-counter / nvml-power-sampling)
    auto       NVML for the training GPU + RAPL for the CPU where readable; the estimate
               stands in for the CPU where RAPL is not readable

GPUs metered (`gpu_selection`): `meter.gpus` when set (CUDA indices, as in `cuda:N`); else
the training device (`cuda:N`, N = 0 for plain `cuda`), so that a trial on a shared machine
is not charged the other GPUs and the jobs on them; else, when the training device is not
known (`use_gpus=None`: the `meters` command, benchmarks), every visible GPU. `cuda:N` is
mapped to the physical GPU by UUID (nvml.py, gpus.py). The study's `meter` attr
(`MeterChoice.describe()`) names each metered GPU (`gpus`: CUDA device, NVML index, UUID)
and why those (`gpu_choice`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tuning_energy.config import METER_KINDS
from tuning_energy.energy.base import Measurement, Meter, Window
from tuning_energy.energy.composite import CompositeMeter
from tuning_energy.energy.estimate import EstimateMeter
from tuning_energy.energy.package_claim import PackageInUse
from tuning_energy.energy.rapl import DEFAULT_POWERCAP_ROOT
from tuning_energy.errors import MeterUnavailable

if TYPE_CHECKING:
    from tuning_energy.config import MeterConfig  # noqa: F401

__all__ = ["Measurement", "Meter", "Window", "EstimateMeter", "CompositeMeter", "MeterChoice",
           "build_meter", "config_from_env", "POWERCAP_ENV"]

POWERCAP_ENV = "TUNING_ENERGY_POWERCAP_ROOT"


@dataclass
class MeterChoice:
    """The meter in use, and why the others were not used (stored on the study)."""

    meter: Meter
    requested: str
    reasons: dict[str, str] = field(default_factory=dict)
    gpu_choice: str | None = None  # why these GPUs (None: no GPU was to be metered)

    def describe(self) -> dict[str, Any]:
        return {"requested": self.requested, **self.meter.describe(),
                "gpus": metered_gpus(self.meter.describe()), "gpu_choice": self.gpu_choice,
                "not_used": self.reasons}


def metered_gpus(described: Mapping[str, Any]) -> dict[str, Any]:
    """The GPUs a meter's `describe()` names, wherever they are in it (composite parts)."""
    if described.get("kind") == "nvml":
        return dict(described.get("gpus") or {})
    out: dict[str, Any] = {}
    for part in described.get("parts", ()):
        out.update(metered_gpus(part))
    return out


def gpu_selection(config: MeterConfig, use_gpus: bool | None,
                  cuda_index: int | None) -> tuple[tuple[int, ...] | None, str]:
    """The CUDA indices to meter (None: every visible GPU), and why."""
    if config.gpus is not None:
        return tuple(config.gpus), f"meter.gpus = {list(config.gpus)}"
    if use_gpus:
        n = cuda_index or 0
        return (n,), f"the training device cuda:{n} (train.device; meter.gpus not set)"
    return None, "every visible GPU (the training device is not known; meter.gpus not set)"


def config_from_env(config: MeterConfig, environ: Mapping[str, str]) -> MeterConfig:
    """Apply TUNING_ENERGY_POWERCAP_ROOT when the config names no powercap_root.

    Called once at the edge (the CLI); meters never read the environment for settings.
    """
    root = environ.get(POWERCAP_ENV)
    if root and config.powercap_root is None:
        return dataclasses.replace(config, powercap_root=root)
    return config


def make_rapl(config: MeterConfig) -> Meter:
    from tuning_energy.energy.rapl import RaplMeter

    return RaplMeter(config.powercap_root or DEFAULT_POWERCAP_ROOT)


def make_nvml(config: MeterConfig, gpus: tuple[int, ...] | None = None) -> Meter:
    """An NVML meter of CUDA devices `gpus` (None: `meter.gpus`, else every visible GPU)."""
    from tuning_energy.energy import gpus as cuda_gpus
    from tuning_energy.energy.nvml import NvmlMeter

    # looked up here, not bound at import, so that tests can stand in for torch's view
    return NvmlMeter(gpus if gpus is not None else config.gpus,
                     cuda_uuids=cuda_gpus.torch_cuda_uuids)


def make_estimate(config: MeterConfig) -> Meter:
    return EstimateMeter(config.cpu_tdp_w, config.cpu_cores)


def build_meter(config: MeterConfig, *, use_gpus: bool | None = None,
                cuda_index: int | None = None) -> MeterChoice:
    """Build the meter the config asks for.

    An explicit kind that cannot measure here raises `MeterUnavailable` (reason and fix);
    `auto` records in `reasons` why each meter it did not use was not used.
    use_gpus: whether training runs on a GPU (None: not known; meter every visible GPU).
    cuda_index: the training GPU, N of `cuda:N` among the visible devices (None: 0).
    `meter.gpus` overrides both (`gpu_selection`).
    """
    kind = config.kind
    gpus, why_gpus = gpu_selection(config, use_gpus, cuda_index)
    if kind == "estimate":
        return MeterChoice(make_estimate(config), kind)
    if kind == "rapl":
        return MeterChoice(make_rapl(config), kind)
    if kind == "nvml":
        return MeterChoice(make_nvml(config, gpus), kind, gpu_choice=why_gpus)
    if kind != "auto":
        raise MeterUnavailable(f"meter.kind = {kind!r}: allowed values are "
                               f"{', '.join(METER_KINDS)}")
    reasons: dict[str, str] = {}
    parts: list[Meter] = []
    gpu_choice = None
    if use_gpus is False:
        reasons["nvml"] = "training runs on the CPU (train.device), so GPUs are not metered"
    else:
        try:
            parts.append(make_nvml(config, gpus))
            gpu_choice = why_gpus
        except MeterUnavailable as exc:
            reasons["nvml"] = str(exc)
    try:
        parts.append(make_rapl(config))
    except PackageInUse:  # another command reads the package: refused, not estimated around
        for part in parts:
            part.close()
        raise
    except MeterUnavailable as exc:
        reasons["rapl"] = str(exc)
        parts.append(make_estimate(config))
    if "rapl" not in reasons:
        reasons["estimate"] = "RAPL counters measure the CPU here"
    meter = parts[0] if len(parts) == 1 else CompositeMeter(parts)
    return MeterChoice(meter, kind, reasons, gpu_choice)

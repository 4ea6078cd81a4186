"""Energy meters behind one interface (see `base.py`).

`build_meter(config)` turns a `MeterConfig` into a meter and a record of what was chosen
and why; the objective only sees the `Meter` interface.

    estimate   CPU seconds x TDP per core (estimate-cpu-tdp), always available
    rapl       CPU package + DRAM counters from /sys/class/powercap (rapl)
    nvml       NVIDIA GPU counters or sampled power (nvml-counter / nvml-power-sampling)
    auto       NVML for the GPUs in use + RAPL for the CPU where readable; the estimate
               stands in for the CPU where RAPL is not readable
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import MeterUnavailable
from .base import Measurement, Meter, Window
from .composite import CompositeMeter
from .estimate import EstimateMeter
from .rapl import DEFAULT_POWERCAP_ROOT

if TYPE_CHECKING:
    from ..config import MeterConfig

__all__ = ["Measurement", "Meter", "Window", "EstimateMeter", "CompositeMeter", "MeterChoice",
           "build_meter", "config_from_env", "POWERCAP_ENV"]

METER_KINDS = ("auto", "estimate", "rapl", "nvml")
POWERCAP_ENV = "TUNING_ENERGY_POWERCAP_ROOT"


@dataclass
class MeterChoice:
    """The meter in use, and why the others were not used (stored on the study)."""

    meter: Meter
    requested: str
    reasons: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"requested": self.requested, **self.meter.describe(), "not_used": self.reasons}


def config_from_env(config: MeterConfig, environ: Mapping[str, str]) -> MeterConfig:
    """Apply TUNING_ENERGY_POWERCAP_ROOT when the config names no powercap_root.

    Called once at the edge (the CLI); meters never read the environment for settings.
    """
    root = environ.get(POWERCAP_ENV)
    if root and config.powercap_root is None:
        return dataclasses.replace(config, powercap_root=root)
    return config


def make_rapl(config: MeterConfig) -> Meter:
    from .rapl import RaplMeter

    return RaplMeter(config.powercap_root or DEFAULT_POWERCAP_ROOT)


def make_nvml(config: MeterConfig) -> Meter:
    from .nvml import NvmlMeter

    return NvmlMeter(config.gpus)


def make_estimate(config: MeterConfig) -> Meter:
    return EstimateMeter(config.cpu_tdp_w, config.cpu_cores)


def build_meter(config: MeterConfig, *, use_gpus: bool | None = None) -> MeterChoice:
    """Build the meter the config asks for.

    An explicit kind that cannot measure here raises `MeterUnavailable` (reason and fix);
    `auto` records in `reasons` why each meter it did not use was not used. `use_gpus`:
    whether training runs on a GPU (None: meter every visible GPU).
    """
    kind = config.kind
    if kind == "estimate":
        return MeterChoice(make_estimate(config), kind)
    if kind == "rapl":
        return MeterChoice(make_rapl(config), kind)
    if kind == "nvml":
        return MeterChoice(make_nvml(config), kind)
    if kind != "auto":
        raise MeterUnavailable(f"meter.kind = {kind!r}: allowed values are "
                               f"{', '.join(METER_KINDS)}")
    reasons: dict[str, str] = {}
    parts: list[Meter] = []
    if use_gpus is False:
        reasons["nvml"] = "training runs on the CPU (train.device), so GPUs are not metered"
    else:
        try:
            parts.append(make_nvml(config))
        except MeterUnavailable as exc:
            reasons["nvml"] = str(exc)
    try:
        parts.append(make_rapl(config))
    except MeterUnavailable as exc:
        reasons["rapl"] = str(exc)
        parts.append(make_estimate(config))
    if "rapl" not in reasons:
        reasons["estimate"] = "RAPL counters measure the CPU here"
    meter = parts[0] if len(parts) == 1 else CompositeMeter(parts)
    return MeterChoice(meter, kind, reasons)

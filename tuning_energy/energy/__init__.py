"""Energy meters behind one interface (see `base.py`).

`build_meter(config)` turns a `MeterConfig` into a meter and a record of what was chosen
and why; the objective only sees the `Meter` interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import MeterUnavailable
from .base import Measurement, Meter, Window
from .estimate import EstimateMeter

if TYPE_CHECKING:
    from ..config import MeterConfig

__all__ = ["Measurement", "Meter", "Window", "EstimateMeter", "MeterChoice", "build_meter"]

METER_KINDS = ("auto", "estimate", "rapl", "nvml")


@dataclass
class MeterChoice:
    """The meter in use, and why the others were not used (stored on the study)."""

    meter: Meter
    requested: str
    reasons: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"requested": self.requested, **self.meter.describe(), "not_used": self.reasons}


def build_meter(config: MeterConfig) -> MeterChoice:
    """Build the meter the config asks for. `auto` falls back to `estimate` and says why."""
    kind = config.kind
    if kind == "estimate":
        return MeterChoice(EstimateMeter(config.cpu_tdp_w, config.cpu_cores), kind)
    if kind in ("rapl", "nvml"):
        raise MeterUnavailable(
            f"meter.kind = {kind!r}: this meter is not implemented yet; "
            "use meter.kind = 'estimate' or 'auto'"
        )
    reasons = {
        "rapl": "not implemented yet",
        "nvml": "not implemented yet",
    }
    return MeterChoice(EstimateMeter(config.cpu_tdp_w, config.cpu_cores), kind, reasons)

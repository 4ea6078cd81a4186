"""Idle baseline and the per-trial figures derived from it.

At study start the meter measures a few seconds of idle (`meter.idle_s`; 0 turns it off):
`idle_power_w`. Each trial then also gets

    energy_net_j = energy_j - idle_power_w * duration_s   (None when idle is unknown)
    co2_g        = energy_j [kWh] * carbon intensity * pue (gross energy)

The analysis uses gross `energy_j` by default and `energy_net_j` when asked.
"""

from __future__ import annotations

import time
from typing import Any

from .base import Measurement, Meter
from .carbon import Carbon


def measure_idle(meter: Meter, seconds: float) -> float | None:
    """Average power (W) over `seconds` of doing nothing; None when off or unmeasured."""
    if seconds <= 0:
        return None
    # A meter shared by several workers books an idle window apart from the trials' (shared.py).
    window = getattr(meter, "begin_idle", meter.begin)()
    time.sleep(seconds)
    return meter.end(window).avg_power_w


def net_energy_j(m: Measurement, idle_power_w: float | None) -> float | None:
    if m.energy_j is None or idle_power_w is None:
        return None
    return m.energy_j - idle_power_w * m.duration_s


class TrialEnergyAttrs:
    """`Objective.on_measurement` hook: idle-corrected energy, CO2 and cross-check attrs."""

    def __init__(self, idle_power_w: float | None, carbon: Carbon) -> None:
        self.idle_power_w = idle_power_w
        self.carbon = carbon

    def attrs(self, m: Measurement) -> dict[str, Any]:
        return {
            "idle_power_w": self.idle_power_w,
            "energy_net_j": net_energy_j(m, self.idle_power_w),
            "co2_g": self.carbon.co2_g(m.energy_j),
            **m.extra,  # e.g. crosscheck_energy_j, crosscheck_method
        }

    def __call__(self, m: Measurement) -> dict[str, Any]:
        return self.attrs(m)

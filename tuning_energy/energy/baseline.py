"""Idle baseline and the per-trial figures derived from it.

At study start the meter measures a few seconds of idle (`meter.idle_s`; 0 turns it off):
`idle_power_w`. A meter that cannot see idle power (`Meter.sees_idle_power` is False: the
`estimate` meter counts the CPU time of the trial's process tree, cputree.py: 0 W while
it sleeps) is not asked: its idle power is None ("not measured"), never a measured 0 W,
and no time is spent on it.
Each trial then also gets

    energy_net_j = energy_j - idle_power_w * duration_s   (None when idle is unknown)
    co2_g        = energy_j [kWh] * carbon intensity * pue (gross energy)

The analysis uses gross `energy_j` by default and `energy_net_j` when asked.
"""

from __future__ import annotations

import time
from typing import Any

from tuning_energy.energy.base import Measurement, Meter
from tuning_energy.energy.carbon import Carbon


def measure_idle(meter: Meter, seconds: float) -> float | None:
    """Average power (W) over `seconds` of doing nothing; None when off, when the meter
    cannot see idle power (returns at once) or when it measured nothing."""
    return idle_baseline(meter, seconds)[0]


def _kind(meter: Meter) -> str:
    return str(meter.describe().get("kind", meter.method))


def idle_baseline(meter: Meter, seconds: float) -> tuple[float | None, str]:
    """(idle power in W or None, what to tell the user about it).

    The note says why there is no figure ("not measured: the estimate meter cannot see idle
    power ...") or what the figure covers (a composite's parts that cannot see idle power
    count none of it).
    """
    if seconds <= 0:
        return None, "off (meter.idle_s = 0)"
    if not meter.sees_idle_power:
        return None, (f"not measured: the {_kind(meter)} meter cannot see idle power (it "
                      f"counts the CPU time of the trial's process tree: 0 W while idle by "
                      f"construction)")
    # A meter shared by several workers books an idle window apart from the trials' (shared.py).
    window = getattr(meter, "begin_idle", meter.begin)()
    time.sleep(seconds)
    power_w = meter.end(window).avg_power_w
    if power_w is None:
        return None, f"not measured: the meter measured nothing over {seconds:g} s"
    note = f"{power_w:.2f} W over {seconds:g} s"
    blind = [m.method for m in getattr(meter, "meters", []) if not m.sees_idle_power]
    if blind:
        note += f" (without the {', '.join(blind)} part: it cannot see idle power)"
    return power_w, note


def net_energy_j(m: Measurement, idle_power_w: float | None) -> float | None:
    if m.energy_j is None or idle_power_w is None:
        return None
    return m.energy_j - idle_power_w * m.duration_s


class TrialEnergyAttrs:
    """`Objective.on_measurement` hook: idle-corrected energy and CO2 (the measurement's
    own attrs, cross-checks included, are objective.energy_attrs's)."""

    def __init__(self, idle_power_w: float | None, carbon: Carbon) -> None:
        self.idle_power_w = idle_power_w
        self.carbon = carbon

    def attrs(self, m: Measurement) -> dict[str, Any]:
        return {
            "idle_power_w": self.idle_power_w,
            "energy_net_j": net_energy_j(m, self.idle_power_w),
            **self.carbon.window_attrs(m.energy_j, m.duration_s),
        }

    def __call__(self, m: Measurement) -> dict[str, Any]:
        return self.attrs(m)

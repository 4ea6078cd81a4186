"""The `estimate` meter: CPU seconds of this process times assumed watts per busy core.

This is an *estimate*, not a measurement, and its method says so: `estimate-cpu-tdp`.

    energy_j = cpu_seconds(this process, all its threads) * (cpu_tdp_w / cpu_cores)

`cpu_tdp_w` is the package's thermal design power (TDP) in watts and `cpu_cores` the
number of logical cores it is shared over. Both come from the study config; the defaults
assume DEFAULT_WATTS_PER_CORE_W per logical core, a rough middle of current server and
desktop parts (e.g. a 280 W / 64-thread EPYC is 4.4 W, a 65 W / 12-thread desktop 5.4 W,
a 125 W / 16-thread desktop 7.8 W; idle and uncore power are not modelled). del Rey et
al. found TDP-based estimates unreliable: use RAPL or NVML where the machine has them.
"""

from __future__ import annotations

import time
from typing import Any

from tuning_energy.energy.base import Meter
from tuning_energy.energy.hardware import usable_cores

DEFAULT_WATTS_PER_CORE_W = 6.0


logical_cores = usable_cores  # the name the meters use


class EstimateMeter(Meter):
    """CPU-time x TDP-per-core estimate of this process's CPU energy."""

    method = "estimate-cpu-tdp"
    sees_idle_power = False  # CPU time of this process: idle is 0 W by construction

    def __init__(self, cpu_tdp_w: float | None = None, cpu_cores: int | None = None) -> None:
        self.cpu_cores = cpu_cores or logical_cores()
        self.cpu_tdp_w = (
            cpu_tdp_w if cpu_tdp_w is not None else DEFAULT_WATTS_PER_CORE_W * self.cpu_cores
        )
        if self.cpu_tdp_w <= 0 or self.cpu_cores <= 0:
            raise ValueError("cpu_tdp_w and cpu_cores must be > 0")
        self.watts_per_core_w = self.cpu_tdp_w / self.cpu_cores
        self._t0 = time.process_time()

    def read_j(self) -> dict[str, float]:
        # process_time(): CPU seconds of all threads of this process (user + system).
        return {"cpu0": (time.process_time() - self._t0) * self.watts_per_core_w}

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "kind": "estimate",
            "cpu_tdp_w": self.cpu_tdp_w,
            "cpu_cores": self.cpu_cores,
            "watts_per_busy_core_w": self.watts_per_core_w,
            "note": "estimate: CPU seconds of this process x (cpu_tdp_w / cpu_cores); "
            "not a measurement",
        }

"""The `estimate` meter: CPU seconds of this process's tree times assumed watts per busy core.

This is an *estimate*, not a measurement, and its method says so: `estimate-cpu-tdp-tree`.

    energy_j = cpu_seconds(this process, all its threads, and every process it started:
               cputree.py) * (cpu_tdp_w / cpu_cores)

The child processes count (a `multiprocessing` pool, joblib/loky's `n_jobs`, DataLoader
workers, also those that live across trials: each window gets what they did inside it).
Stores written before this counted the process alone: their method is `estimate-cpu-tdp`,
and a study holding both says so (its energy comes from two methods).

`cpu_tdp_w` is the package's thermal design power (TDP) in watts and `cpu_cores` the
number of logical cores it is shared over. Both come from the study config; the defaults
assume DEFAULT_WATTS_PER_CORE_W per logical core, a rough middle of current server and
desktop parts (e.g. a 280 W / 64-thread EPYC is 4.4 W, a 65 W / 12-thread desktop 5.4 W,
a 125 W / 16-thread desktop 7.8 W; idle and uncore power are not modelled). del Rey et
al. found TDP-based estimates unreliable: use RAPL or NVML where the machine has them.
"""

from __future__ import annotations

from typing import Any

from tuning_energy.energy.base import Meter
from tuning_energy.energy.cputree import ProcessTreeCpu
from tuning_energy.energy.hardware import usable_cores

DEFAULT_WATTS_PER_CORE_W = 6.0
#: The method: `-tree`, the process and its descendants (`estimate-cpu-tdp`: the process
#: alone, as stores written before the tree was counted say).
METHOD = "estimate-cpu-tdp-tree"


logical_cores = usable_cores  # the name the meters use


class EstimateMeter(Meter):
    """CPU-time x TDP-per-core estimate of the CPU energy of this process's tree."""

    method = METHOD
    sees_idle_power = False  # CPU time of this process tree: idle is 0 W by construction

    def __init__(self, cpu_tdp_w: float | None = None, cpu_cores: int | None = None) -> None:
        self.cpu_cores = cpu_cores or logical_cores()
        self.cpu_tdp_w = (
            cpu_tdp_w if cpu_tdp_w is not None else DEFAULT_WATTS_PER_CORE_W * self.cpu_cores
        )
        if self.cpu_tdp_w <= 0 or self.cpu_cores <= 0:
            raise ValueError("cpu_tdp_w and cpu_cores must be > 0")
        self.watts_per_core_w = self.cpu_tdp_w / self.cpu_cores
        self._cpu = ProcessTreeCpu()

    def read_j(self) -> dict[str, float]:
        # CPU seconds (user + system) of all threads of this process and its descendants.
        return {"cpu0": (self._cpu.read_s() or 0.0) * self.watts_per_core_w}

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "kind": "estimate",
            "cpu_tdp_w": self.cpu_tdp_w,
            "cpu_cores": self.cpu_cores,
            "watts_per_busy_core_w": self.watts_per_core_w,
            "counts": "CPU seconds of this process and every process it started (children, "
            "recursively, those that exit and those that live across trials)",
            "note": "estimate: CPU seconds of this process tree x (cpu_tdp_w / cpu_cores); "
            "not a measurement",
        }

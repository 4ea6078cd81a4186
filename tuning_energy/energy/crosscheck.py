"""Cross-check: CodeCarbon's energy for the same window as ours (`--cross-check codecarbon`).

`CrossCheckMeter` wraps our meter: CodeCarbon's task starts just before our window and
stops just after it, so its own start/stop cost stays out of our figure. Its energy lands
in `Measurement.extra` as `crosscheck_energy_j`, `crosscheck_method` and
`crosscheck_by_device_j` (cpu / ram / gpu, joules), stored next to ours on the trial.

CodeCarbon runs offline (`OfflineEmissionsTracker`, the configured country), writes no file
(`save_to_file=False`) and calls no network. Its tracking mode follows our meter's scope:
`process` beside the per-process `estimate` meter, `machine` beside RAPL / NVML.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from typing import Any

from tuning_energy.energy.base import Measurement, Meter, Window
from tuning_energy.energy.estimate import EstimateMeter
from tuning_energy.errors import ConfigError, MeterUnavailable

CROSS_CHECKS = ("codecarbon",)


def _import_codecarbon():
    try:
        import codecarbon
        from codecarbon import OfflineEmissionsTracker
    except ImportError as exc:
        raise MeterUnavailable(
            "--cross-check codecarbon needs the optional extra: "
            "`pip install 'tuning-energy[crosscheck]'` (codecarbon>=2.3)") from exc
    return codecarbon.__version__, OfflineEmissionsTracker


class CodeCarbonCheck:
    def __init__(self, country_alpha3: str | None, process_scope: bool) -> None:
        version, tracker_cls = _import_codecarbon()
        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        self.mode = "process" if process_scope else "machine"
        kwargs: dict[str, Any] = {}
        if country_alpha3:
            kwargs["country_iso_code"] = country_alpha3
        else:  # CodeCarbon needs a country offline; its energy does not depend on it
            kwargs["country_iso_code"] = "USA"
        with warnings.catch_warnings():  # codecarbon 3 deprecates save_to_file; 2.x needs it
            warnings.simplefilter("ignore", DeprecationWarning)
            self.tracker = tracker_cls(
                project_name="tuning-energy-crosscheck", save_to_file=False,
                log_level="error", tracking_mode=self.mode, measure_power_secs=1,
                allow_multiple_runs=True, **kwargs)
        if not hasattr(self.tracker, "start_task"):  # pragma: no cover - init swallowed an error
            raise MeterUnavailable("codecarbon's OfflineEmissionsTracker failed to initialise")
        self.version = version
        self._n = 0

    def start(self) -> str:
        self._n += 1
        name = f"window-{self._n}"
        self.tracker.start_task(name)
        return name

    def stop(self, name: str) -> dict[str, Any]:
        data = self.tracker.stop_task(name)
        if data is None:
            return {"crosscheck_energy_j": None, "crosscheck_method": self.method()}
        kwh_to_j = 3.6e6
        return {
            "crosscheck_energy_j": data.energy_consumed * kwh_to_j,
            "crosscheck_method": self.method(),
            "crosscheck_by_device_j": {"cpu": data.cpu_energy * kwh_to_j,
                                       "ram": data.ram_energy * kwh_to_j,
                                       "gpu": data.gpu_energy * kwh_to_j},
        }

    def method(self) -> str:
        cpu = next((h for h in getattr(self.tracker, "_hardware", [])
                    if type(h).__name__ == "CPU"), None)
        cpu_mode = getattr(cpu, "_mode", "?") if cpu is not None else "none"
        return f"codecarbon-{self.version} offline tracking_mode={self.mode} cpu={cpu_mode}"


class CrossCheckMeter(Meter):
    """Our meter, with CodeCarbon's figure for each window in `Measurement.extra`."""

    def __init__(self, inner: Meter, check: CodeCarbonCheck) -> None:
        self.inner = inner
        self.check = check
        self.method = inner.method
        self._tasks: dict[int, str] = {}

    def read_j(self) -> dict[str, float]:
        return self.inner.read_j()

    def sync(self) -> None:
        self.inner.sync()

    def begin(self) -> Window:
        task = self.check.start()
        window = self.inner.begin()
        self._tasks[window.id] = task
        return window

    def end(self, window: Window) -> Measurement:
        m = self.inner.end(window)
        extra = self.check.stop(self._tasks.pop(window.id))
        return dataclasses.replace(m, extra={**m.extra, **extra})

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "cross_check": self.check.method()}

    def close(self) -> None:
        self.inner.close()


def wrap_cross_check(meter: Meter, name: str | None, country_alpha3: str | None) -> Meter:
    """`meter` unchanged when name is None, else wrapped with the named cross-check."""
    if name is None:
        return meter
    if name not in CROSS_CHECKS:
        raise ConfigError(f"--cross-check = {name!r}: allowed values are {', '.join(CROSS_CHECKS)}")
    process_scope = meter.method == EstimateMeter.method
    return CrossCheckMeter(meter, CodeCarbonCheck(country_alpha3, process_scope))

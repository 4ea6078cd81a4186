"""`tuning-energy meters`: which meters work here, why the others do not, and what each
measures over the same busy and idle windows."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from tuning_energy.energy import build_meter, make_estimate, make_nvml, make_rapl
from tuning_energy.energy.base import Measurement, Meter
from tuning_energy.energy.methods import label
from tuning_energy.errors import MeterUnavailable

if TYPE_CHECKING:
    from tuning_energy.config import MeterConfig

FACTORIES = {"rapl": make_rapl, "nvml": make_nvml, "estimate": make_estimate}


@dataclass
class MeterStatus:
    kind: str
    available: bool
    reason: str = ""
    method: str | None = None
    devices: list[str] = field(default_factory=list)
    busy: Measurement | None = None
    idle: Measurement | None = None


def survey(config: MeterConfig) -> tuple[list[MeterStatus], dict[str, Meter]]:
    """Try every meter; the ones that work are returned open (close them)."""
    statuses, meters = [], {}
    for kind, factory in FACTORIES.items():
        try:
            meter = factory(config)
        except MeterUnavailable as exc:
            statuses.append(MeterStatus(kind, False, str(exc)))
            continue
        meters[kind] = meter
        statuses.append(MeterStatus(kind, True, method=meter.method,
                                    devices=sorted(meter.read_j())))
    return statuses, meters


def make_busy_work(seconds: float, size: int = 256):
    """A callable doing matrix multiplies for `seconds` on the CPU (returns how many).

    torch is imported and the matrices made here, outside the windows that measure it.
    """
    import torch

    a0 = torch.randn(size, size)
    b = torch.randn(size, size) / size**0.5

    def work() -> int:
        a, n = a0, 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            a = a @ b
            n += 1
        return n

    return work


def measure_all(meters: dict[str, Meter], work) -> dict[str, Measurement]:
    """One window per meter around the same work (opened and closed back to back)."""
    windows = {k: m.begin() for k, m in meters.items()}
    work()
    return {k: meters[k].end(w) for k, w in windows.items()}


def run_report(config: MeterConfig, busy_s: float = 3.0, idle_s: float = 2.0,
               out: TextIO | None = None) -> list[MeterStatus]:
    import sys

    out = out or sys.stdout
    statuses, meters = survey(config)
    try:
        print(f"meters (powercap root {config.powercap_root or '/sys/class/powercap'}, "
              f"GPUs {list(config.gpus) if config.gpus is not None else 'all visible'}):",
              file=out)
        for s in statuses:
            if s.available:
                print(f"  {s.kind:9} available      method {s.method}; devices "
                      f"{', '.join(s.devices)}", file=out)
            else:
                print(f"  {s.kind:9} NOT available  {s.reason}", file=out)
        choice = build_meter(dataclasses.replace(config, kind="auto"))
        try:
            unavailable = {s.kind for s in statuses if not s.available}
            why = "; ".join(f"not {k}: {r}" for k, r in choice.reasons.items()
                            if k not in unavailable)
            estimate = label([choice.meter.method],
                             {choice.meter.method: choice.meter.read_j()}).text()
            print(f"auto uses {choice.meter.method}" + (f" ({why})" if why else "")
                  + (f": {estimate}" if estimate else ""), file=out)
        finally:
            choice.meter.close()
        if not meters:  # pragma: no cover - estimate always works
            return statuses
        n: dict[str, int] = {}
        work = make_busy_work(busy_s)
        busy = measure_all(meters, lambda: n.setdefault("mm", work()))
        idle = measure_all(meters, lambda: time.sleep(idle_s))
        for s in statuses:
            if s.available:
                s.busy, s.idle = busy[s.kind], idle[s.kind]
        print(f"\nsame windows for every available meter: busy {busy_s:g} s "
              f"({n['mm']} matmuls 256x256 on the CPU), then idle {idle_s:g} s", file=out)
        print(f"  {'meter':9} {'method':22} {'busy J':>9} {'busy W':>8} {'idle J':>9} "
              f"{'idle W':>8}  by device (busy, J)", file=out)
        for s in statuses:
            if s.available:
                by_dev = ", ".join(f"{d} {_f(v)}" for d, v in s.busy.by_device_j.items())
                print(f"  {s.kind:9} {s.method:22} {_f(s.busy.energy_j):>9} "
                      f"{_f(s.busy.avg_power_w):>8} {_f(s.idle.energy_j):>9} "
                      f"{_f(s.idle.avg_power_w):>8}  {by_dev}", file=out)
                for m in (s.busy, s.idle):
                    if m.energy_error:
                        print(f"  {'':9} unknown (-): {m.energy_error}", file=out)
        if not any(s.available for s in statuses if s.kind in ("rapl", "nvml")):
            print("\nno hardware energy counter here (no readable RAPL, no NVML GPU): "
                  "tuning-energy uses the labelled estimate (estimate-cpu-tdp-tree = CPU seconds "
                  "of this process x TDP per core); its idle figure is ~0 because an idle "
                  "process uses no CPU time. Set meter.cpu_tdp_w / cpu_cores to your CPU's.",
                  file=out)
    finally:
        for m in meters.values():
            m.close()
    return statuses


def _f(x: Any) -> str:
    return "-" if x is None else f"{x:.2f}"

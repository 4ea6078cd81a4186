"""A meter made of several meters over disjoint devices (e.g. NVML GPUs + RAPL CPU).

Its method joins the parts' methods with `+` (`nvml-counter+rapl`); `by_device_j` keeps
each part's device names (`gpu0`, `cpu0`, `dram0`, ...), and `faults()` each part's faults,
so that one part's unknown device is unknown in the composite's windows too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tuning_energy.energy.base import Meter


class CompositeMeter(Meter):
    def __init__(self, meters: Sequence[Meter]) -> None:
        if not meters:
            raise ValueError("CompositeMeter needs at least one meter")
        self.meters = list(meters)
        self.method = "+".join(m.method for m in self.meters)

    @property
    def sees_idle_power(self) -> bool:  # type: ignore[override]
        """True when any part sees idle power (e.g. NVML beside the CPU estimate)."""
        return any(m.sees_idle_power for m in self.meters)

    def sync(self) -> None:
        for m in self.meters:
            m.sync()

    def read_j(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for m in self.meters:
            part = m.read_j()
            clash = set(part) & set(out)
            if clash:
                raise ValueError(f"two meters report device {sorted(clash)[0]!r}")
            out.update(part)
        return out

    def faults(self) -> dict[str, tuple[int, str]]:
        out: dict[str, tuple[int, str]] = {}
        for m in self.meters:
            out.update(m.faults())
        return out

    def close(self) -> None:
        for m in self.meters:
            m.close()

    def describe(self) -> dict[str, Any]:
        parts = [m.describe() for m in self.meters]
        return {
            "method": self.method,
            "kind": "composite",
            "parts": parts,
            "note": "; ".join(p.get("note", p["method"]) for p in parts),
        }

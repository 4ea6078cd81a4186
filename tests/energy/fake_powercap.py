"""Temporary directories shaped exactly like /sys/class/powercap.

sysfs: each zone is a directory under its parent zone (intel-rapl:0/intel-rapl:0:2), and the
class directory holds a link for every zone, subzones included, plus the `intel-rapl`
control type. Files hold one integer (or the name) and a newline, as the kernel prints them.
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_RANGE_UJ = 262143328850  # what current Intel packages report


class FakePowercap:
    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "class" / "powercap"
        self.devices = tmp / "devices" / "virtual" / "powercap" / "intel-rapl"
        self.root.mkdir(parents=True)
        self.devices.mkdir(parents=True)
        (self.devices / "enabled").write_text("1\n")
        os.symlink(self.devices, self.root / "intel-rapl")
        self.zones: dict[str, Path] = {}

    def zone(self, zone_id: str, name: str, energy_uj: int = 0,
             max_range_uj: int = MAX_RANGE_UJ) -> Path:
        parts = zone_id.split(":")  # intel-rapl:0 or intel-rapl:0:2
        parent = self.devices if len(parts) == 2 else self.zones[":".join(parts[:2])]
        path = parent / zone_id
        path.mkdir()
        (path / "name").write_text(f"{name}\n")
        (path / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
        (path / "enabled").write_text("1\n")
        self.zones[zone_id] = path
        self.set(zone_id, energy_uj)
        os.symlink(path, self.root / zone_id)
        return path

    def set(self, zone_id: str, energy_uj: int) -> None:
        # Atomic, as a sysfs read is: a reader sees the old value or the new one, never the
        # empty file that a truncating write leaves for a moment (a fault to the meter).
        path = self.zones[zone_id] / "energy_uj"
        tmp = path.with_name(".energy_uj.tmp")
        tmp.write_text(f"{energy_uj}\n")
        os.replace(tmp, path)

    def add(self, zone_id: str, delta_uj: int) -> None:
        path = self.zones[zone_id] / "energy_uj"
        rng = int((self.zones[zone_id] / "max_energy_range_uj").read_text())
        self.set(zone_id, (int(path.read_text()) + delta_uj) % (rng + 1))


def intel_two_sockets(tmp: Path) -> FakePowercap:
    """Two packages, each with core, uncore and dram subzones, and a psys zone."""
    pc = FakePowercap(tmp)
    for s in (0, 1):
        pc.zone(f"intel-rapl:{s}", f"package-{s}", 1_000_000 * (s + 1))
        pc.zone(f"intel-rapl:{s}:0", "core", 500_000)
        pc.zone(f"intel-rapl:{s}:1", "uncore", 100_000)
        pc.zone(f"intel-rapl:{s}:2", "dram", 200_000)
    pc.zone("intel-rapl:2", "psys", 9_000_000)
    return pc

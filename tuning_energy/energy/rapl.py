"""The `rapl` meter: CPU package and DRAM energy counters from the Linux powercap tree.

Layout read (Intel, and AMD Zen which exposes the same tree through the same driver)::

    /sys/class/powercap/
      intel-rapl:0/            name = package-0   energy_uj, max_energy_range_uj
        intel-rapl:0:0/        name = core        (inside the package: never added)
        intel-rapl:0:1/        name = uncore      (inside the package: never added)
        intel-rapl:0:2/        name = dram        (beside the package: added, as dram0)
      intel-rapl:1/            name = package-1   (second socket: cpu1)
      intel-rapl:2/            name = psys        (whole platform, covers the packages:
                                                   never added to them)

sysfs also lists every subzone at the top of the class directory (`intel-rapl:0:2` as a
link beside `intel-rapl:0`); zones are found either way and counted once.
`intel-rapl-mmio:*` zones repeat the package through MMIO and are ignored. AMD has no dram.

Counters are in microjoules and wrap at `max_energy_range_uj`: when a reading is below the
previous one the delta is `new + max_energy_range_uj - old`. Two wraps between reads cannot
be told from one, so a background thread reads the counters at a safe period (a quarter of
the fastest wrap at `ASSUMED_MAX_POWER_W`, at most `MAX_POLL_S`), as Zeus does; windows of
any length stay right.

A decrease is always read as one wrap: RAPL cannot tell a counter that was reset (the
driver reloaded) from one that wrapped, and at the safe period a wrap is what it is.

One command per machine opens the counters (package_claim.py): a second tuning-energy
command that opens them while the first runs is refused, since each would charge its
trials the other's joules.

`energy_uj` is readable by root only since Linux 5.10 (CVE-2020-8694, the PLATYPUS power
side channel); an unreadable counter raises `MeterUnavailable` naming the file and the fix.
A counter that becomes unreadable later (the zone vanished, its permissions changed) is a
fault (`Meter.faults`): the zone is left out of readings while it fails, and when it comes
back it starts over from its new value, so every window over the gap has no energy for it
(None, with the reason), never a guess at the missed wraps.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuning_energy.energy.base import Meter
from tuning_energy.energy.package_claim import claim_package
from tuning_energy.errors import MeterUnavailable

DEFAULT_POWERCAP_ROOT = "/sys/class/powercap"
#: An upper bound on one zone's power, used only to pick the polling period.
ASSUMED_MAX_POWER_W = 1000.0
MAX_POLL_S = 60.0
MIN_POLL_S = 0.01

_TOP = re.compile(r"^intel-rapl:(\d+)$")
_SUB = re.compile(r"^intel-rapl:(\d+):(\d+)$")
_PACKAGE = re.compile(r"^package-(\d+)$")
NOT_ADDED = ("core", "uncore", "psys")


@dataclass
class RaplZone:
    """One counter that is summed: `cpuN` (package) or `dramN`."""

    device: str
    path: Path  # the zone directory
    max_energy_range_uj: int

    @property
    def energy_file(self) -> Path:
        return self.path / "energy_uj"


def _read_text(path: Path) -> str:
    with open(path) as f:
        return f.read().strip()


def unreadable_message(path: Path, exc: OSError) -> str:
    why = (
        "energy_uj is readable by root only since Linux 5.10 (CVE-2020-8694, the PLATYPUS "
        "power side channel)"
        if isinstance(exc, PermissionError)
        else f"it cannot be read ({exc.strerror or exc})"
    )
    return (
        f"RAPL counter {path} is not readable: {why}. Fix: run as root, or make the "
        f"counters readable (`sudo chmod o+r {path.parent.parent}/intel-rapl:*/energy_uj "
        f"{path.parent.parent}/intel-rapl:*/intel-rapl:*/energy_uj`, or a udev rule "
        f"`SUBSYSTEM==\"powercap\", ACTION==\"add\", RUN+=\"/bin/chmod o+r "
        f"/sys%p/energy_uj\"`), or choose another meter (meter.kind = 'estimate' or 'nvml')"
    )


def discover_zones(root: str | Path) -> tuple[list[RaplZone], dict[str, str]]:
    """Zones to sum, and every other zone seen with why it is not added."""
    root = Path(root)
    if not root.is_dir():
        raise MeterUnavailable(
            f"no powercap tree at {root} (this kernel or machine exposes no RAPL; "
            f"virtual machines and containers usually do not): set meter.powercap_root "
            f"(or TUNING_ENERGY_POWERCAP_ROOT) if it lives elsewhere, or use meter.kind = "
            f"'estimate'"
        )
    tops: dict[int, Path] = {}
    subs: dict[tuple[int, int], Path] = {}
    for entry in sorted(root.iterdir()):
        if m := _TOP.match(entry.name):
            tops[int(m[1])] = entry
            for sub in sorted(entry.iterdir()) if entry.is_dir() else ():
                if s := _SUB.match(sub.name):
                    subs.setdefault((int(s[1]), int(s[2])), sub)
        elif m := _SUB.match(entry.name):
            subs.setdefault((int(m[1]), int(m[2])), entry)
    zones: list[RaplZone] = []
    skipped: dict[str, str] = {}
    package_of: dict[int, int] = {}
    for idx, path in sorted(tops.items()):
        name = _zone_name(path)
        if m := _PACKAGE.match(name):
            package_of[idx] = int(m[1])
            zones.append(RaplZone(f"cpu{m[1]}", path, _max_range(path)))
        elif name == "psys":
            skipped[path.name] = "psys: the whole platform, covers the packages (not added)"
        else:
            skipped[path.name] = f"{name}: unknown top-level zone (not added)"
    for (top, _), path in sorted(subs.items()):
        name = _zone_name(path)
        if top not in package_of:
            skipped[path.name] = f"{name}: under a zone that is not a package (not added)"
        elif name == "dram":
            zones.append(RaplZone(f"dram{package_of[top]}", path, _max_range(path)))
        elif name in ("core", "uncore"):
            skipped[path.name] = f"{name}: inside package-{package_of[top]} (not added)"
        else:
            skipped[path.name] = f"{name}: unknown subzone (not added)"
    if not zones:
        raise MeterUnavailable(
            f"no RAPL package zones (intel-rapl:N named package-N) under {root}; "
            f"use meter.kind = 'estimate'"
        )
    return zones, skipped


def _zone_name(path: Path) -> str:
    try:
        return _read_text(path / "name")
    except OSError:
        return "?"


def _max_range(path: Path) -> int:
    try:
        return int(_read_text(path / "max_energy_range_uj"))
    except (OSError, ValueError) as exc:
        raise MeterUnavailable(
            f"RAPL zone {path}: cannot read max_energy_range_uj ({exc}); counter wraps "
            f"could not be corrected, so this zone is not used; use meter.kind = 'estimate'"
        ) from exc


class RaplMeter(Meter):
    """Cumulative joules per CPU package (`cpuN`) and DRAM (`dramN`) from RAPL counters."""

    method = "rapl"

    def __init__(self, powercap_root: str | Path = DEFAULT_POWERCAP_ROOT,
                 poll_s: float | None = None, background: bool = True) -> None:
        self.root = Path(powercap_root)
        self.zones, self.skipped = discover_zones(self.root)
        self._lock = threading.Lock()
        self._last_uj: dict[str, int | None] = {}  # None: the last read failed
        for z in self.zones:
            try:
                self._last_uj[z.device] = self._read_uj(z)
            except OSError as exc:
                raise MeterUnavailable(unreadable_message(z.energy_file, exc)) from exc
            except ValueError as exc:
                raise MeterUnavailable(f"RAPL counter {z.energy_file}: not an integer "
                                       f"({exc})") from exc
        claim_package(self.root)  # readable: one command per machine reads the package
        self._total_uj = {z.device: 0 for z in self.zones}
        self._faults = {z.device: 0 for z in self.zones}
        self._problem: dict[str, str] = {}
        self.wraps = 0
        self.polls = 0  # reads folded into the totals (background and window edges)
        fastest_wrap_s = min(z.max_energy_range_uj for z in self.zones) / 1e6 / ASSUMED_MAX_POWER_W
        self.poll_s = poll_s if poll_s is not None else \
            min(MAX_POLL_S, max(MIN_POLL_S, fastest_wrap_s / 4))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._poll_loop, name="rapl-poll", daemon=True)
            self._thread.start()

    @staticmethod
    def _read_uj(zone: RaplZone) -> int:
        return int(_read_text(zone.energy_file))

    def poll(self) -> None:
        """Fold the counters' progress since the last read into the totals (wrap-safe).

        A zone that cannot be read is a fault; it starts over when it can be read again.
        """
        with self._lock:
            for zone in self.zones:
                try:
                    now = self._read_uj(zone)
                except (OSError, ValueError) as exc:
                    if self._last_uj[zone.device] is not None:  # one fault per gap
                        self._faults[zone.device] += 1
                    self._last_uj[zone.device] = None
                    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                    self._problem[zone.device] = (
                        f"RAPL counter {zone.energy_file} could not be read ({why}): the zone "
                        f"vanished or its permissions changed; wraps during the gap cannot "
                        f"be counted")
                    continue
                last = self._last_uj[zone.device]
                if last is None:  # readable again: start over (the gap is not counted)
                    self._last_uj[zone.device] = now
                    continue
                if now >= last:
                    delta = now - last
                else:  # the counter wrapped once since the last read
                    delta = now + zone.max_energy_range_uj - last
                    self.wraps += 1
                self._total_uj[zone.device] += delta
                self._last_uj[zone.device] = now
            self.polls += 1

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()  # never raises: a zone that fails is a fault, the others go on

    def read_j(self) -> dict[str, float]:
        self.poll()
        with self._lock:
            return {dev: uj / 1e6 for dev, uj in self._total_uj.items()
                    if self._last_uj[dev] is not None}

    def faults(self) -> dict[str, tuple[int, str]]:
        with self._lock:
            return {dev: (self._faults[dev], why) for dev, why in self._problem.items()}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "kind": "rapl",
            "powercap_root": str(self.root),
            "zones": {z.device: z.path.name for z in self.zones},
            "not_added": self.skipped,
            "poll_s": self.poll_s,
            "note": "RAPL energy counters (package + dram, wrap-corrected); machine-wide, "
                    "not per process",
        }

"""The meter interface: `Measurement`, `Window` and the abstract `Meter`.

Every meter exposes per-device *cumulative* energy counters (joules since the meter was
created). A window is a snapshot of those counters and of a monotonic clock; ending it
subtracts. Windows therefore nest and overlap freely, and a meter that samples power
(rather than reading a hardware counter) integrates in the background into the same kind
of counter.

Rules every meter follows:
- `method` says how the energy was obtained (`estimate-cpu-tdp-tree`, `rapl`, `nvml-counter`, ...).
- A device that was not measured is absent from `by_device_j`; a window that measured
  nothing has `energy_j = None`. No meter reports 0 for something it did not measure.
- A device the meter meters but whose energy over the window is unknown is `None` in
  `by_device_j`, with the reason in `errors`, and then `energy_j` is None too (an unknown
  part makes the total unknown). Unknown: no reading at either edge (the device vanished:
  `read_j` leaves out a device it cannot read), a counter lower at the end than at the
  start (it went backwards), or a fault inside the window (`faults()`: a meter's own
  record of readings it could not trust, e.g. a counter that went backwards between two
  reads, or a gap in sampled power).
- Units live in names: `_j` joules, `_s` seconds, `_w` watts.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tuning_energy.errors import TuningEnergyError

_window_ids = itertools.count()


@dataclass(frozen=True)
class Measurement:
    """Energy used over one window.

    energy_j: total joules over all metered devices; None when nothing was measured or
        when any device's energy is unknown.
    by_device_j: joules per device (`cpu0`, `dram0`, `gpu0`, ...); None for a metered
        device whose energy over the window is unknown (the reason is in `errors`).
    duration_s: wall-clock seconds of the window (monotonic clock).
    method: how the energy was obtained, e.g. `estimate-cpu-tdp-tree`, `rapl`, `nvml-counter`;
        several methods are joined with `+` (`nvml-counter+rapl`).
    errors: device -> why its energy is unknown (empty when every device was measured).
    """

    energy_j: float | None
    by_device_j: dict[str, float | None]
    duration_s: float
    method: str
    extra: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def energy_error(self) -> str | None:
        """Which devices' energy is unknown and why (`gpu1: ...; cpu0: ...`), or None."""
        if not self.errors:
            return None
        return "; ".join(f"{dev}: {why}" for dev, why in self.errors.items())

    @property
    def avg_power_w(self) -> float | None:
        if self.energy_j is None or self.duration_s <= 0:
            return None
        return self.energy_j / self.duration_s


def carve(m: Measurement, nested: Sequence[Measurement]) -> Measurement:
    """`m` less the windows that were nested in it (`nested`, same meter), device by device,
    seconds too: e.g. a trial's training window less its storage writes per report.

    A device unknown in a nested window is unknown in the result (its reason kept)."""
    if not nested:
        return m
    by_device: dict[str, float | None] = {}
    errors = dict(m.errors)
    for dev, j in m.by_device_j.items():
        parts = [n.by_device_j.get(dev) for n in nested]
        unknown = next((n for n in nested if n.by_device_j.get(dev, 0.0) is None), None)
        if j is not None and unknown is not None:
            errors[dev] = unknown.errors.get(dev, "unknown in a nested window")
        by_device[dev] = None if j is None or unknown is not None \
            else j - sum(p for p in parts if p is not None)
    known = [j for j in by_device.values() if j is not None]
    return dataclasses.replace(
        m, energy_j=sum(known) if known and not errors else None, by_device_j=by_device,
        duration_s=m.duration_s - sum(n.duration_s for n in nested), errors=errors)


@dataclass
class Window:
    """An open measurement window: the counters and the clock when it began."""

    start_s: float
    start_j: dict[str, float]
    meter: Meter
    start_faults: dict[str, int] = field(default_factory=dict)  # fault counts at the start
    id: int = field(default_factory=lambda: next(_window_ids))
    closed: bool = False


class Meter(ABC):
    """Abstract meter. Subclasses implement `read_j` (cumulative joules per device).

    Usage::

        window = meter.begin()
        ...  # the work charged to this window
        measurement = meter.end(window)
    """

    #: How this meter obtains energy; stored with every measurement.
    method: str = "unknown"
    #: Whether the meter sees power drawn while this process does nothing (a hardware
    #: counter does; an estimate from the CPU time of the trial's process tree,
    #: estimate.py, reads 0 W by construction).
    #: An idle baseline is measured only with a meter that can see idle power.
    sees_idle_power: bool = True

    @abstractmethod
    def read_j(self) -> dict[str, float]:
        """Cumulative joules per device since this meter was created (monotonic)."""

    def faults(self) -> dict[str, tuple[int, str]]:
        """Per device: how many readings it could not trust so far, and its last problem.

        A window over which a device's count grew has no energy for that device. The
        problem text also explains a device left out of a reading. Default: no faults.
        """
        return {}

    def describe(self) -> dict[str, Any]:
        """What this meter is and the assumptions behind it (stored on the study)."""
        return {"method": self.method}

    def sync(self) -> None:  # noqa: B027 - optional hook
        """Wait for asynchronous device work (e.g. CUDA) so counters include it."""

    def begin(self) -> Window:
        self.sync()
        start_j = self.read_j()
        start_faults = {dev: n for dev, (n, _) in self.faults().items()}
        return Window(start_s=time.perf_counter(), start_j=start_j, meter=self,
                      start_faults=start_faults)

    def end(self, window: Window) -> Measurement:
        if window.meter is not self:
            raise TuningEnergyError("this window was opened by another meter")
        return self._measure(window, close=True)

    def peek(self, window: Window) -> Measurement:
        """The energy of an open window so far, leaving it open (e.g. after one epoch)."""
        return window.meter._measure(window, close=False)

    def _measure(self, window: Window, close: bool) -> Measurement:
        if window.closed:
            raise TuningEnergyError(f"window {window.id} was already ended")
        self.sync()
        now_j = self.read_j()
        faults = self.faults()
        duration_s = time.perf_counter() - window.start_s
        window.closed = close
        by_device: dict[str, float | None] = {}
        errors: dict[str, str] = {}
        for dev in dict.fromkeys([*window.start_j, *now_j, *faults]):
            start, end = window.start_j.get(dev), now_j.get(dev)
            count, problem = faults.get(dev, (0, ""))
            if count != window.start_faults.get(dev, 0):
                why = problem
            elif start is None:
                why = "no reading when the window began" + (f": {problem}" if problem else "")
            elif end is None:
                why = "no reading when the window ended" + (f": {problem}" if problem else "")
            elif end < start:
                why = f"its counter went backwards by {start - end:.6g} J during the window"
            else:
                by_device[dev] = end - start
                continue
            by_device[dev] = None
            errors[dev] = why
        known = [j for j in by_device.values() if j is not None]
        energy = sum(known) if known and not errors else None
        return Measurement(energy_j=energy, by_device_j=by_device, duration_s=duration_s,
                           method=self.method, errors=errors)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop background threads and release handles."""

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""The meter interface: `Measurement`, `Window` and the abstract `Meter`.

Every meter exposes per-device *cumulative* energy counters (joules since the meter was
created). A window is a snapshot of those counters and of a monotonic clock; ending it
subtracts. Windows therefore nest and overlap freely, and a meter that samples power
(rather than reading a hardware counter) integrates in the background into the same kind
of counter.

Rules every meter follows:
- `method` says how the energy was obtained (`estimate-cpu-tdp`, `rapl`, `nvml-counter`, ...).
- A device that was not measured is absent from `by_device_j`; a window that measured
  nothing has `energy_j = None`. No meter reports 0 for something it did not measure.
- Units live in names: `_j` joules, `_s` seconds, `_w` watts.
"""

from __future__ import annotations

import itertools
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from ..errors import TuningEnergyError

_window_ids = itertools.count()


@dataclass(frozen=True)
class Measurement:
    """Energy used over one window.

    energy_j: total joules over all measured devices, or None when nothing was measured.
    by_device_j: joules per device (`cpu0`, `dram0`, `gpu0`, ...); measured devices only.
    duration_s: wall-clock seconds of the window (monotonic clock).
    method: how the energy was obtained, e.g. `estimate-cpu-tdp`, `rapl`, `nvml-counter`;
        several methods are joined with `+` (`nvml-counter+rapl`).
    """

    energy_j: float | None
    by_device_j: dict[str, float]
    duration_s: float
    method: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def avg_power_w(self) -> float | None:
        if self.energy_j is None or self.duration_s <= 0:
            return None
        return self.energy_j / self.duration_s


@dataclass
class Window:
    """An open measurement window: the counters and the clock when it began."""

    start_s: float
    start_j: dict[str, float]
    meter: Meter
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
    #: counter does; an estimate from this process's CPU time reads 0 W by construction).
    #: An idle baseline is measured only with a meter that can see idle power.
    sees_idle_power: bool = True

    @abstractmethod
    def read_j(self) -> dict[str, float]:
        """Cumulative joules per device since this meter was created (monotonic)."""

    def describe(self) -> dict[str, Any]:
        """What this meter is and the assumptions behind it (stored on the study)."""
        return {"method": self.method}

    def sync(self) -> None:  # noqa: B027 - optional hook
        """Wait for asynchronous device work (e.g. CUDA) so counters include it."""

    def begin(self) -> Window:
        self.sync()
        return Window(start_s=time.perf_counter(), start_j=self.read_j(), meter=self)

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
        duration_s = time.perf_counter() - window.start_s
        window.closed = close
        by_device = {
            dev: max(0.0, now_j[dev] - start) for dev, start in window.start_j.items() if dev in now_j
        }
        energy = sum(by_device.values()) if by_device else None
        return Measurement(
            energy_j=energy, by_device_j=by_device, duration_s=duration_s, method=self.method
        )

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop background threads and release handles."""

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

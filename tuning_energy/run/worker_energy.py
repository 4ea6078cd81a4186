"""Energy that adds up when several workers share a study (workers.py), and when a run is
killed hard.

- Partial energy: a worker's meter (and a single-process run's: runner.py) is wrapped in
  `TrialWindowMeter`, which knows the trial's open window. While a trial runs,
  `PartialEnergyWriter` writes the energy measured so far (`Meter.peek`) on the trial with
  each heartbeat (`heartbeat_interval_s`; a single-process run every `partial_energy_s`),
  marked `energy_partial = true`: a process killed hard (SIGKILL, OOM) leaves its trial with
  the energy it had spent up to the last write, and totals count it. The trial's final
  write (the objective's `finally`) replaces those values and sets `energy_partial = false`.
- The study's energy and CO2 budgets count the partial energy too (budget.py).
- GPUs: NVML reads a whole GPU's counter; two workers on one GPU would each count the
  other's joules. `check_gpu_sharing` refuses more NVML-metered workers than GPUs.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from tuning_energy.energy.base import Measurement, Meter, Window
from tuning_energy.energy.shared import is_package_device
from tuning_energy.errors import ConfigError
from tuning_energy.objective.objective import energy_attrs
from tuning_energy.store.trial_writes import set_user_attrs

PARTIAL = "energy_partial"  # trial user attr: True while energy_j is the energy so far


class TrialWindowMeter(Meter):
    """A worker's meter: `inner`, plus the trial window in flight for the heartbeat.

    The trial window is the first window begun after `arm()` while no other window begun
    here is open (the objective's training window: the windows around it, the proposal's
    and the preparation nested in it, are closed by then; windows begun after it, e.g.
    around storage writes, are not the trial's training). Windows are the inner meter's; begin,
    end and the heartbeat's peek-and-write take one lock, so no partial write can land
    after the window ended (and so after the final write).
    """

    def __init__(self, inner: Meter) -> None:
        self.inner = inner
        self.method = inner.method
        self._lock = threading.Lock()
        self._armed = False
        self._open: Window | None = None  # the trial window, while it is open
        self._partial: set[int] = set()  # windows whose energy so far was written on a trial
        self._begun: list[Window] = []  # windows begun here, until seen closed
        #: More attrs the partial write carries (the objective's: the trial's proposal
        #: window, closed by then: overhead.py), so that a killed trial keeps them too.
        self.partial_attrs: Callable[[], dict[str, Any]] | None = None
        #: The trial's reported values so far that are not yet stored (without a pruner the
        #: objective holds them until the trial ends): written with the partial energy.
        self.partial_steps: Callable[[], dict[int, float]] | None = None

    @property
    def sees_idle_power(self) -> bool:  # type: ignore[override]
        return self.inner.sees_idle_power

    @property
    def meters(self) -> list[Meter]:
        """A composite inner meter's parts (the idle baseline names those blind to idle)."""
        return list(getattr(self.inner, "meters", []))

    def read_j(self) -> dict[str, float]:
        return self.inner.read_j()

    def faults(self) -> dict[str, tuple[int, str]]:
        return self.inner.faults()

    def sync(self) -> None:
        self.inner.sync()

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def close(self) -> None:
        self.inner.close()

    def arm(self, on: bool = True) -> None:
        """Take the next window begun as the trial window (on=False: none from now on)."""
        with self._lock:
            self._armed, self._open = on, None

    def begin(self) -> Window:
        with self._lock:
            self._begun = [w for w in self._begun if not w.closed]
            window = self.inner.begin()
            if self._armed and not self._begun:
                self._armed, self._open = False, window
            self._begun.append(window)
            return window

    def begin_idle(self) -> Window:
        """An idle-baseline window (booked apart from the trials by a shared meter)."""
        with self._lock:
            return getattr(self.inner, "begin_idle", self.inner.begin)()

    def end(self, window: Window) -> Measurement:
        with self._lock:
            if self._open is window:
                self._open = None
            m = self.inner.end(window)
            if window.id in self._partial:  # the final values replace the partial ones
                self._partial.discard(window.id)
                m = dataclasses.replace(m, extra={**m.extra, PARTIAL: False})
            return m

    def write_partial(self, trial: optuna.Trial) -> bool:
        """Write the open window's energy so far on `trial`; False when none is open."""
        with self._lock:
            window = self._open
            if window is None or window.closed:
                return False
            m = self.inner.peek(window)
            # The mark first: a store that writes attr by attr (journal) never shows
            # energy so far without it.
            more = self.partial_attrs() if self.partial_attrs is not None else {}
            steps = self.partial_steps() if self.partial_steps is not None else None
            set_user_attrs(trial, {PARTIAL: True, **energy_attrs(m), **more}, steps)
            self._partial.add(window.id)
            return True


class PartialEnergyWriter:
    """A thread that calls `meter.write_partial(trial)` every `interval_s` (a context)."""

    def __init__(self, meter: TrialWindowMeter, trial: optuna.Trial, interval_s: float,
                 out=None) -> None:
        self.meter, self.trial, self.interval_s = meter, trial, interval_s
        self.out = out
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="te-partial-energy",
                                        daemon=True)
        self.n_written = 0

    def _loop(self) -> None:
        warned = False
        while not self._stop.wait(self.interval_s):
            try:
                self.n_written += self.meter.write_partial(self.trial)
            except Exception as exc:  # the trial goes on; its final write still comes
                if not warned:
                    print(f"trial {self.trial.number}: could not write its energy "
                          f"so far ({type(exc).__name__}: {exc})", file=self.out or sys.stderr)
                    warned = True

    def __enter__(self) -> PartialEnergyWriter:
        self.meter.arm()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.meter.arm(False)


def partial_package_j(trials: Iterable[FrozenTrial], pids: set[int],
                      pid_of) -> float:
    """Package-device joules that the heartbeat wrote on trials whose worker (`pid_of(t)`,
    in `pids`) died inside its window: energy the ledger could not see reach a trial."""
    total = 0.0
    for t in trials:
        if t.user_attrs.get(PARTIAL) is True and pid_of(t) in pids:
            by_device = t.user_attrs.get("energy_by_device_j") or {}
            total += sum(j for d, j in by_device.items()
                         if is_package_device(d) and j is not None)
    return total


# ---------------------------------------------------------------- GPUs


def check_gpu_sharing(meter: Meter, n_workers: int, gpus: Sequence[str | None],
                      device: str | None = None) -> None:
    """Refuse more workers than GPUs when the meter reads GPU counters (NVML).

    `meter` is built as the workers will build theirs; `gpus` is each worker's
    CUDA_VISIBLE_DEVICES (None: no GPU); `device` the config's train.device.
    """
    metered = sorted(d for d in meter.read_j() if not is_package_device(d))
    distinct = sorted({g for g in gpus if g is not None})
    if not metered or not distinct or n_workers <= len(distinct):
        return
    one_gpu = device is not None and device.startswith("cuda:")
    raise ConfigError(
        f"--workers = {n_workers} on {len(distinct)} GPU(s) (CUDA_VISIBLE_DEVICES "
        f"{','.join(distinct)}) metered by {meter.method}: NVML reads a whole GPU's energy "
        f"counter, so workers sharing a GPU would each count the others' joules as their "
        f"own. Use --workers {len(distinct)} or fewer (one per GPU), "
        + (f"train.device = 'cuda' (one worker on each visible GPU; train.device = "
           f"{device!r} puts every worker on that one GPU), " if one_gpu else
           "make more GPUs visible (CUDA_VISIBLE_DEVICES), ")
        + "or train on the CPU (train.device = 'cpu')")

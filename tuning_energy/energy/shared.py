"""Package-wide energy shared by several worker processes, attributed by CPU time.

A RAPL counter measures the whole CPU package: with N workers training at once, each
worker's window would see every worker's joules, and the trials would add up to about N
times what the package used. Here one `CpuTimeLedger` (in one process per machine) reads
the package counters for everybody. Each time a worker opens or closes a window (or reads),
the ledger closes a *segment*: the package energy since the previous event is split over the
workers whose windows are open, in proportion to the CPU seconds each worker's process
tree used in the segment (the worker, all its threads, and the processes it started:
cputree.py; an even split when the segment is too short to show CPU time). The workers are
siblings, so a child process is in one worker's tree only and is never counted twice. A
worker that died (no /proc entry, or a zombie) takes no share from then on. Energy spent while no window is open, in idle-baseline windows, and the share of a
window that never closed (its worker was killed), and of a window closed off any trial
(`end_off_trial`: the recording of a run's last trial, objective/overhead.py) is on no
trial: *unattributed*. So, exactly:

    sum of the trials' package energy + unattributed_j == total_j (what the meter saw)

An idle-baseline window (`SharedCpuTimeMeter.begin_idle`, used by `measure_idle`) takes its
share like any window, which is the worker's idle reading, but the ledger books it as
`idle_j` (a part of `unattributed_j`), never as a trial's. A killed worker's window that
the heartbeat had already written on its trial as partial energy (workers.py) is moved
from unattributed to `in_trials_j` by the pool, from the store, when it stores the ledger
(`died_in_window` lists those workers).

Unknown energy is never 0 J: a segment over which a package device has no trustworthy
reading (the device vanished from the meter's readings, its counter went backwards, or the
meter reported a fault for it: `Meter.faults`) is attributed to nobody, and the ledger counts
a fault for that device. Each reading the ledger hands a worker carries its fault counts,
taken in the same step, so that every window over such a segment has None for the device,
with the reason in its errors (base.py), like a single meter's window. The ledger's own
books then say which devices were unknown (`errors`) and give `total_j` and
`unattributed_j` as None (`known_total_j`: the measured segments only).

The worker side is `SharedCpuTimeMeter`, a `Meter` whose method is the inner method with
`rapl` replaced by `rapl-shared-cputime` (`nvml-counter+rapl` becomes
`nvml-counter+rapl-shared-cputime`). GPU devices (`gpu*`) are not shared: a worker pinned to
its own GPU reads them from its own inner meter, unchanged.

The `estimate` meter needs none of this: it charges CPU seconds of its own process tree
only, so workers never count each other's joules (its method stays `estimate-cpu-tdp-tree`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from tuning_energy.energy.base import Meter, Window
from tuning_energy.energy.cputree import TreeCpuSeconds

SUFFIX = "-shared-cputime"
#: A worker's cumulative joules per package device, and the ledger's faults (device ->
#: (unknown segments so far, last reason)), taken in one step.
LedgerReading = tuple[dict[str, float], dict[str, tuple[int, str]]]


def is_package_device(device: str) -> bool:
    """Counters that every process on the machine shares (RAPL package / DRAM / ...)."""
    return not device.startswith("gpu")


def needs_attribution(meter: Meter) -> bool:
    """True for meters whose counters are package-wide (RAPL, or a fake declaring so)."""
    return bool(getattr(meter, "package_wide", False)) or "rapl" in meter.method


def shared_method(method: str) -> str:
    return method.replace("rapl", "rapl" + SUFFIX) if "rapl" in method else method + SUFFIX


class CpuTimeLedger:
    """Splits a package-wide meter's joules over the workers' open windows by CPU time.

    One instance per machine, used by every worker (through a multiprocessing manager).
    `cpu_s`: pid -> cumulative CPU seconds of its process tree, None once it is gone
    (default: cputree.TreeCpuSeconds); a parameter so that tests can drive the CPU shares.
    """

    def __init__(self, meter: Meter, cpu_s: Callable[[int], float | None] | None = None):
        self.meter = meter
        self.cpu_s = cpu_s if cpu_s is not None else TreeCpuSeconds()
        self._lock = threading.Lock()
        self._last_j = self._read()
        self.devices = sorted(self._last_j)
        self._meter_faults = self._read_faults()  # the meter's fault counts at the last read
        self._t0 = time.perf_counter()
        self._open: dict[int, float] = {}  # pid -> its CPU seconds at the previous event
        self._depth: dict[int, int] = {}  # pid -> open windows (they may nest)
        self._cum: dict[int, dict[str, float]] = {}  # pid -> cumulative attributed joules
        self._at_open: dict[int, dict[str, float]] = {}
        self._faults_at_open: dict[int, dict[str, int]] = {}
        self._idle: set[int] = set()  # pids whose open window is an idle baseline
        self._died: dict[int, float] = {}  # pid -> joules of the trial window it died in
        self._faults: dict[str, tuple[int, str]] = {}  # device -> (unknown segments, last why)
        self.total_j = dict.fromkeys(self.devices, 0.0)  # of the segments that were measured
        self.in_windows_j = dict.fromkeys(self.devices, 0.0)  # of trial windows that closed
        self.idle_j = dict.fromkeys(self.devices, 0.0)  # of idle-baseline windows that closed
        self.n_windows = 0

    def _read(self) -> dict[str, float]:
        return {d: j for d, j in self.meter.read_j().items() if is_package_device(d)}

    def _read_faults(self) -> dict[str, tuple[int, str]]:
        return {d: f for d, f in self.meter.faults().items() if is_package_device(d)}

    def _segment(self) -> dict[str, float | None]:
        """Each package device's joules since the previous event; None when unknown (the
        device gave no reading, its counter went backwards, or the meter saw a fault)."""
        now_j = self._read()
        faults = self._read_faults()
        delta: dict[str, float | None] = {}
        for d, last in self._last_j.items():
            now = now_j.get(d)
            count, problem = faults.get(d, (0, ""))
            if count != self._meter_faults.get(d, (0, ""))[0]:
                why = problem or f"{self.meter.method} reported a reading it could not trust"
            elif now is None:
                why = "no reading" + (f": {problem}" if problem else "")
            elif now < last:
                why = f"its counter went backwards by {last - now:.6g} J"
            else:
                delta[d] = now - last
                self._last_j[d] = now
                continue
            delta[d] = None
            if now is not None:  # start over from the new value
                self._last_j[d] = now
            n, _ = self._faults.get(d, (0, ""))
            self._faults[d] = (n + 1, f"package energy unknown in the shared ledger: {why}")
        self._meter_faults = faults
        return delta

    def _advance(self) -> None:
        delta = self._segment()
        for d, j in delta.items():
            if j is not None:
                self.total_j[d] += j
        if not self._open:
            return
        used = {}
        for pid, before in list(self._open.items()):
            now = self.cpu_s(pid)
            if now is None:  # died with its window open: no share from now on
                self._forget(pid)
                continue
            used[pid] = max(0.0, now - before)
            self._open[pid] = now
        if not used:
            return
        total = sum(used.values())
        for pid, u in used.items():
            share = u / total if total > 0 else 1.0 / len(used)
            cum = self._cum.setdefault(pid, dict.fromkeys(self.devices, 0.0))
            for d, j in delta.items():
                if j is not None:  # an unknown segment is nobody's: the windows say None
                    cum[d] += j * share

    def _fault_counts(self) -> dict[str, int]:
        return {d: n for d, (n, _) in self._faults.items()}

    def faults(self) -> dict[str, tuple[int, str]]:
        """Per package device: unknown segments so far and the last reason (Meter.faults)."""
        with self._lock:
            return dict(self._faults)

    def _cumulative(self, pid: int) -> dict[str, float]:
        return dict(self._cum.setdefault(pid, dict.fromkeys(self.devices, 0.0)))

    def _forget(self, pid: int) -> None:
        """`pid` died inside its window: it never closes; its energy stays unattributed."""
        self._open.pop(pid, None)
        self._depth.pop(pid, None)
        start = self._at_open.pop(pid, None)
        if start is not None and pid not in self._idle:
            now = self._cumulative(pid)
            self._died[pid] = sum(now[d] - start[d] for d in self.devices)
        self._idle.discard(pid)

    def open_window(self, pid: int, idle: bool = False) -> LedgerReading:
        """Charge `pid` from now on; returns its cumulative joules (the window's start) and
        the ledger's fault counts, taken together (see `faults`).

        idle: an idle-baseline window, booked as `idle_j` when it closes, not as a trial's.
        """
        with self._lock:
            self._advance()
            self._depth[pid] = self._depth.get(pid, 0) + 1
            if self._depth[pid] == 1:
                self._open[pid] = self.cpu_s(pid) or 0.0
                self._at_open[pid] = self._cumulative(pid)
                self._faults_at_open[pid] = self._fault_counts()
                if idle:
                    self._idle.add(pid)
            return self._cumulative(pid), dict(self._faults)

    def close_window(self, pid: int, on_trial: bool = True) -> LedgerReading:
        """Close one of `pid`'s windows; returns its cumulative joules (the window's end)
        and the ledger's fault counts. on_trial=False: a window whose energy no trial
        carries (the recording of a run's last trial): unattributed."""
        with self._lock:
            self._advance()
            end = self._cumulative(pid)
            self._depth[pid] = self._depth.get(pid, 1) - 1
            if self._depth[pid] <= 0:
                self._depth.pop(pid, None)
                self._open.pop(pid, None)
                start = self._at_open.pop(pid, end)
                at_open = self._faults_at_open.pop(pid, {})
                book = self.idle_j if pid in self._idle else \
                    self.in_windows_j if on_trial else None
                self._idle.discard(pid)
                now = self._fault_counts()
                for d in self.devices if book is not None else ():
                    if now.get(d, 0) == at_open.get(d, 0):  # else the window's d is unknown
                        book[d] += end[d] - start[d]
                self.n_windows += 1
            return end, dict(self._faults)

    def read(self, pid: int) -> LedgerReading:
        """`pid`'s cumulative joules now (a peek into an open window) and the fault counts."""
        with self._lock:
            self._advance()
            return self._cumulative(pid), dict(self._faults)

    def totals(self) -> dict[str, Any]:
        """What the meter saw, what went into closed trial windows, and the rest.

        unattributed_j = total_j - in_trials_j: on no trial, of which idle_j in idle-baseline
        windows. died_in_window: pid -> joules of the trial window it died in, up to its death
        (the pool moves what the heartbeat wrote on that trial to in_trials_j).
        When a device's energy was unknown over some segment (`errors`: device -> why),
        total_j and unattributed_j are None (unknown, never a made-up figure) and
        known_total_j is the energy of the segments that were measured.
        """
        with self._lock:
            self._advance()
            known = sum(self.total_j.values())
            in_windows = sum(self.in_windows_j.values())
            errors = {d: why for d, (_, why) in self._faults.items()}
            return {
                "method": shared_method(self.meter.method),
                "total_j": None if errors else known,
                "known_total_j": known,
                "in_trials_j": in_windows,
                "unattributed_j": None if errors else known - in_windows,
                "idle_j": sum(self.idle_j.values()),
                "by_device_total_j": {d: None if d in errors else j
                                      for d, j in self.total_j.items()},
                "errors": errors,
                "windows": self.n_windows,
                "still_open": len(self._open) + len(self._died),
                "died_in_window": dict(self._died),
                "duration_s": time.perf_counter() - self._t0,
            }


class SharedCpuTimeMeter(Meter):
    """A worker's meter: package devices from the shared ledger, GPUs from its own meter.

    `ledger` is a `CpuTimeLedger` or a proxy to one (open_window, close_window, read).
    """

    def __init__(self, inner: Meter, ledger: Any, pid: int | None = None):
        self.inner = inner
        self.ledger = ledger
        self.pid = os.getpid() if pid is None else pid
        self.method = shared_method(inner.method)
        self._mode = threading.local()  # per thread: a heartbeat may peek during an end()

    @property
    def sees_idle_power(self) -> bool:  # type: ignore[override]
        return self.inner.sees_idle_power

    def _own(self) -> dict[str, float]:
        return {d: j for d, j in self.inner.read_j().items() if not is_package_device(d)}

    def read_j(self) -> dict[str, float]:
        mode = getattr(self._mode, "value", "read")
        if mode == "open":
            shared, faults = self.ledger.open_window(self.pid)
        elif mode == "open-idle":
            shared, faults = self.ledger.open_window(self.pid, idle=True)
        elif mode == "close":
            shared, faults = self.ledger.close_window(self.pid)
        elif mode == "close-off-trial":
            shared, faults = self.ledger.close_window(self.pid, on_trial=False)
        else:  # peek() into an open window
            shared, faults = self.ledger.read(self.pid)
        self._mode.faults = faults  # for the faults() call that follows (base.py)
        return {**self._own(), **shared}

    def faults(self) -> dict[str, tuple[int, str]]:
        """GPUs: the inner meter's faults. Package devices: the ledger's, as they were at
        this thread's last reading (taken with it, so that no other worker's reading can
        slip in between), else as they are now."""
        own = {d: f for d, f in self.inner.faults().items() if not is_package_device(d)}
        shared = getattr(self._mode, "faults", None)
        self._mode.faults = None
        if shared is None:
            shared = self.ledger.faults()
        return {**own, **shared}

    def _in_mode(self, mode: str, fn: Callable, *args):
        self._mode.value = mode
        try:
            return fn(*args)
        finally:
            self._mode.value = "read"

    def begin(self) -> Window:
        return self._in_mode("open", super().begin)

    def begin_idle(self) -> Window:
        """A window for the idle baseline: the ledger books it as idle, not as a trial's."""
        return self._in_mode("open-idle", super().begin)

    def end(self, window: Window):
        return self._in_mode("close", super().end, window)

    def end_off_trial(self, window: Window):
        """End a window whose energy no trial carries: the ledger leaves it unattributed."""
        return self._in_mode("close-off-trial", super().end, window)

    def sync(self) -> None:
        self.inner.sync()

    def describe(self) -> dict[str, Any]:
        return {
            **self.inner.describe(),
            "method": self.method,
            "attribution": "package energy split over the workers' open windows by the CPU "
            "seconds of each worker's process tree (the worker and the processes it "
            "started); energy outside windows is stored on the study as "
            "energy_unattributed_j",
        }

    def close(self) -> None:
        self.inner.close()

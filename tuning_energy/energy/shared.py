"""Package-wide energy shared by several worker processes, attributed by CPU time.

A RAPL counter measures the whole CPU package: with N workers training at once, each
worker's window would see every worker's joules, and the trials would add up to about N
times what the package used. Here one `CpuTimeLedger` (in one process per machine) reads
the package counters for everybody. Each time a worker opens or closes a window (or reads),
the ledger closes a *segment*: the package energy since the previous event is split over the
workers whose windows are open, in proportion to the CPU seconds each used in the segment
(/proc/PID/stat utime + stime, all threads; an even split when the segment is too short to
show CPU time). A worker that died (no /proc entry, or a zombie) takes no share from then
on. Energy spent while no window is open, in idle-baseline windows, and the share of a
window that never closed (its worker was killed), is on no trial: *unattributed*. So, exactly:

    sum of the trials' package energy + unattributed_j == total_j (what the meter saw)

An idle-baseline window (`SharedCpuTimeMeter.begin_idle`, used by `measure_idle`) takes its
share like any window, which is the worker's idle reading, but the ledger books it as
`idle_j` (a part of `unattributed_j`), never as a trial's. A killed worker's window that
the heartbeat had already written on its trial as partial energy (workers.py) is moved
from unattributed to `in_trials_j` by the pool, from the store, when it stores the ledger
(`died_in_window` lists those workers).

The worker side is `SharedCpuTimeMeter`, a `Meter` whose method is the inner method with
`rapl` replaced by `rapl-shared-cputime` (`nvml-counter+rapl` becomes
`nvml-counter+rapl-shared-cputime`). GPU devices (`gpu*`) are not shared: a worker pinned to
its own GPU reads them from its own inner meter, unchanged.

The `estimate` meter needs none of this: it charges CPU seconds of its own process only, so
workers never count each other's joules (its method stays `estimate-cpu-tdp`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from .base import Meter, Window

SUFFIX = "-shared-cputime"
_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def is_package_device(device: str) -> bool:
    """Counters that every process on the machine shares (RAPL package / DRAM / ...)."""
    return not device.startswith("gpu")


def needs_attribution(meter: Meter) -> bool:
    """True for meters whose counters are package-wide (RAPL, or a fake declaring so)."""
    return bool(getattr(meter, "package_wide", False)) or "rapl" in meter.method


def shared_method(method: str) -> str:
    return method.replace("rapl", "rapl" + SUFFIX) if "rapl" in method else method + SUFFIX


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) of process `pid`; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "(comm)", fields start at 3 (state)
    if fields[0] in ("Z", "X"):  # zombie / dead: its CPU time will not grow
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S  # utime, stime (fields 14, 15)


class CpuTimeLedger:
    """Splits a package-wide meter's joules over the workers' open windows by CPU time.

    One instance per machine, used by every worker (through a multiprocessing manager).
    `cpu_s` is a parameter so that tests can drive the CPU shares.
    """

    def __init__(self, meter: Meter, cpu_s: Callable[[int], float | None] = process_cpu_s):
        self.meter = meter
        self.cpu_s = cpu_s
        self._lock = threading.Lock()
        self._last_j = self._read()
        self.devices = sorted(self._last_j)
        self._t0 = time.perf_counter()
        self._open: dict[int, float] = {}  # pid -> its CPU seconds at the previous event
        self._depth: dict[int, int] = {}  # pid -> open windows (they may nest)
        self._cum: dict[int, dict[str, float]] = {}  # pid -> cumulative attributed joules
        self._at_open: dict[int, dict[str, float]] = {}
        self._idle: set[int] = set()  # pids whose open window is an idle baseline
        self._died: dict[int, float] = {}  # pid -> joules of the trial window it died in
        self.total_j = dict.fromkeys(self.devices, 0.0)
        self.in_windows_j = dict.fromkeys(self.devices, 0.0)  # of trial windows that closed
        self.idle_j = dict.fromkeys(self.devices, 0.0)  # of idle-baseline windows that closed
        self.n_windows = 0

    def _read(self) -> dict[str, float]:
        return {d: j for d, j in self.meter.read_j().items() if is_package_device(d)}

    def _advance(self) -> None:
        now_j = self._read()
        delta = {d: max(0.0, now_j.get(d, last) - last) for d, last in self._last_j.items()}
        self._last_j = {d: now_j.get(d, last) for d, last in self._last_j.items()}
        for d, j in delta.items():
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
                cum[d] += j * share

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

    def open_window(self, pid: int, idle: bool = False) -> dict[str, float]:
        """Charge `pid` from now on; returns its cumulative joules (the window's start).

        idle: an idle-baseline window, booked as `idle_j` when it closes, not as a trial's.
        """
        with self._lock:
            self._advance()
            self._depth[pid] = self._depth.get(pid, 0) + 1
            if self._depth[pid] == 1:
                self._open[pid] = self.cpu_s(pid) or 0.0
                self._at_open[pid] = self._cumulative(pid)
                if idle:
                    self._idle.add(pid)
            return self._cumulative(pid)

    def close_window(self, pid: int) -> dict[str, float]:
        """Close one of `pid`'s windows; returns its cumulative joules (the window's end)."""
        with self._lock:
            self._advance()
            end = self._cumulative(pid)
            self._depth[pid] = self._depth.get(pid, 1) - 1
            if self._depth[pid] <= 0:
                self._depth.pop(pid, None)
                self._open.pop(pid, None)
                start = self._at_open.pop(pid, end)
                book = self.idle_j if pid in self._idle else self.in_windows_j
                self._idle.discard(pid)
                for d in self.devices:
                    book[d] += end[d] - start[d]
                self.n_windows += 1
            return end

    def read(self, pid: int) -> dict[str, float]:
        """`pid`'s cumulative joules now (a peek into an open window)."""
        with self._lock:
            self._advance()
            return self._cumulative(pid)

    def totals(self) -> dict[str, Any]:
        """What the meter saw, what went into closed trial windows, and the rest.

        unattributed_j = total_j - in_trials_j: on no trial, of which idle_j in idle-baseline
        windows. died_in_window: pid -> joules of the trial window it died in, up to its death
        (the pool moves what the heartbeat wrote on that trial to in_trials_j).
        """
        with self._lock:
            self._advance()
            total = sum(self.total_j.values())
            in_windows = sum(self.in_windows_j.values())
            return {
                "method": shared_method(self.meter.method),
                "total_j": total,
                "in_trials_j": in_windows,
                "unattributed_j": total - in_windows,
                "idle_j": sum(self.idle_j.values()),
                "by_device_total_j": dict(self.total_j),
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

    def _own(self) -> dict[str, float]:
        return {d: j for d, j in self.inner.read_j().items() if not is_package_device(d)}

    def read_j(self) -> dict[str, float]:
        mode = getattr(self._mode, "value", "read")
        if mode == "open":
            shared = self.ledger.open_window(self.pid)
        elif mode == "open-idle":
            shared = self.ledger.open_window(self.pid, idle=True)
        elif mode == "close":
            shared = self.ledger.close_window(self.pid)
        else:  # peek() into an open window
            shared = self.ledger.read(self.pid)
        return {**self._own(), **shared}

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

    def sync(self) -> None:
        self.inner.sync()

    def describe(self) -> dict[str, Any]:
        return {
            **self.inner.describe(),
            "method": self.method,
            "attribution": "package energy split over the workers' open windows by CPU "
            "seconds (/proc/PID/stat); energy outside windows is stored on the study as "
            "energy_unattributed_j",
        }

    def close(self) -> None:
        self.inner.close()

"""CPU seconds of a process *and every process it started*: its process tree.

A trial's work is often not in its own process: scikit-learn's `n_jobs=-1` (joblib/loky
workers), a `multiprocessing` pool, a DataLoader's worker processes. The estimate meter
(estimate.py) and the workers' CPU-time ledger (shared.py) charge a window the CPU time of
the whole tree, counted by `ProcessTreeCpu`, a cumulative clock read at each window edge:

- the process itself: user + system seconds of all its threads;
- children that exited and were collected (`wait`ed for) by the process or by a
  descendant: their whole CPU time lands in the collector's children times
  (psutil `cpu_times().children_user / children_system`, getrusage(RUSAGE_CHILDREN)),
  which the clock reads for the process and for each live descendant;
- live descendants, recursively (psutil, or /proc/PID/task/TID/children where the kernel
  has it, which is 40x cheaper than psutil's scan of every process): each one's CPU time is
  sampled at every reading and the growth since the previous reading is counted. A process
  that lives across trials (loky workers, DataLoader `persistent_workers`) is so charged
  to each window for the work it did inside that window; what it did before the clock
  first saw it (or between windows) is in no window.

A descendant that was seen alive and then collected moves its time from "live" to its
collector's children times; the clock counts only the growth since its last sample.
Limits: a descendant that leaves the tree alive (re-parented to init when its parent
exits: a daemon) is counted until it leaves; one whose parent exits without collecting it
and that then exits is counted up to the last reading that saw it.

With `--workers N`, each worker process reads its own tree only: the workers are siblings
(children of the pool), so a process is in exactly one worker's tree and no CPU second is
counted by two workers.
"""

from __future__ import annotations

import os
import threading
import time

import psutil

_HAS_CHILDREN_FILE = os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def _children_pids(pid: int) -> list[int]:
    """Direct children of `pid` (from /proc/PID/task/*/children)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:  # os.open/read: a quarter of open()'s cost, read at every window edge
            fd = os.open(f"/proc/{pid}/task/{tid}/children", os.O_RDONLY)
        except OSError:  # the thread ended meanwhile
            continue
        try:
            text = b"".join(iter(lambda fd=fd: os.read(fd, 65536), b""))
        except OSError:
            continue
        finally:
            os.close(fd)
        out.extend(int(c) for c in text.split())
    return out


def descendants(pid: int) -> list[int]:
    """Every live (or not yet collected) descendant of `pid`, recursively."""
    if not _HAS_CHILDREN_FILE:
        try:
            return [p.pid for p in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return []
    out, todo = [], [pid]
    while todo:
        kids = _children_pids(todo.pop())
        out.extend(kids)
        todo.extend(kids)
    return out


def _total_s(times) -> float:
    """A process's CPU seconds and those of the children it collected."""
    return times.user + times.system + times.children_user + times.children_system


class ProcessTreeCpu:
    """Cumulative CPU seconds of process `pid` (default: this one) and its descendants,
    since this clock was created (see the module doc). Thread-safe."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = os.getpid() if pid is None else pid
        self._self = self.pid == os.getpid()
        self._root = None if self._self else psutil.Process(self.pid)
        self._lock = threading.Lock()
        self._seen: dict[tuple[int, float], float] = {}  # (pid, start) -> CPU s last read
        self._root_s: float | None = None
        self._total_s = 0.0
        self.read_s()  # the baseline: what the tree used before is nobody's here

    def _root_now(self) -> float | None:
        if self._self:  # finer than the clock ticks of /proc: process_time is in ns
            t = os.times()
            return time.process_time() + t.children_user + t.children_system
        try:
            if self._root.status() == psutil.STATUS_ZOMBIE:
                return None
            return _total_s(self._root.cpu_times())
        except psutil.Error:
            return None

    def _sample(self) -> dict[tuple[int, float], float]:
        now: dict[tuple[int, float], float] = {}
        for pid in descendants(self.pid):
            try:
                p = psutil.Process(pid)
                with p.oneshot():
                    now[(pid, p.create_time())] = _total_s(p.cpu_times())
            except psutil.Error:  # gone meanwhile: it is in its collector's times
                continue
        return now

    def read_s(self) -> float | None:
        """CPU seconds of the tree since the clock was created; None once the root process
        is gone."""
        with self._lock:
            root = self._root_now()
            if root is None:
                return None
            now = self._sample()
            if self._root_s is None:  # the first reading
                self._root_s, self._seen = root, now
                return 0.0
            grew = root - self._root_s
            for key, s in now.items():
                grew += s - self._seen.get(key, 0.0)  # a new process: all of it
            for key, s in self._seen.items():
                if key not in now and not _left_alive(*key):
                    grew -= s  # collected: its whole time is in a collector's times now
            self._root_s, self._seen = root, now
            self._total_s += max(0.0, grew)
            return self._total_s


def _left_alive(pid: int, start: float) -> bool:
    """The process is alive outside the tree (re-parented): its time went nowhere."""
    try:
        p = psutil.Process(pid)
        return p.create_time() == start and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class TreeCpuSeconds:
    """`pid -> CPU seconds of its tree` (one `ProcessTreeCpu` per pid, made at the first
    call; None once the process is gone): the ledger's `cpu_s` (shared.py)."""

    def __init__(self) -> None:
        self._clocks: dict[int, ProcessTreeCpu] = {}

    def __call__(self, pid: int) -> float | None:
        clock = self._clocks.get(pid)
        if clock is None:
            try:
                clock = self._clocks[pid] = ProcessTreeCpu(pid)
            except psutil.Error:
                return None
        s = clock.read_s()
        if s is None:
            self._clocks.pop(pid, None)
        return s

"""Is a process alive? The one `/proc/PID/stat` parser, and the worker identity it serves.

A worker stores who it is on each trial it runs (`WORKER_ATTR`: host, pid, and the pid's
start time in clock ticks, which tells a reused pid from the original process). A trial
whose worker is dead on this host is stale (workers.py reaps it). (The CPU-time ledger
counts a worker's process tree through psutil: energy/cputree.py.)
"""

from __future__ import annotations

import os
import socket
from typing import Any

from optuna.trial import FrozenTrial

WORKER_ATTR = "te_worker"  # trial system attr: which worker ran it
TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after "(comm)" (index 0 is field 3, the state);
    None when the process is gone or a zombie (its parent has not collected it yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] in ("Z", "X"):
        return None
    return fields


def proc_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22); None when dead."""
    fields = proc_stat(pid)
    return None if fields is None else int(fields[19])


def worker_identity(index: int, n_workers: int, threads: int, gpu: str | None) -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start_ticks": proc_start_ticks(pid),
            "index": index, "workers": n_workers, "torch_threads": threads, "gpu": gpu}


def worker_alive(ident: dict[str, Any]) -> bool | None:
    """True/False for a worker on this host; None when it ran elsewhere (cannot tell)."""
    if ident.get("host") != socket.gethostname():
        return None
    start = proc_start_ticks(int(ident["pid"]))
    return start is not None and start == ident.get("start_ticks")


def pid_on(host: str, trial: FrozenTrial) -> int | None:
    """The pid of the worker that ran `trial`, when it ran on `host`."""
    ident = trial.system_attrs.get(WORKER_ATTR) or {}
    return ident.get("pid") if ident.get("host") == host else None

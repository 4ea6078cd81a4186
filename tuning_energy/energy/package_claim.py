"""One command per machine reads the RAPL package counters (issue 23: two commands).

A RAPL counter measures the whole CPU package. Two tuning-energy commands on one machine
(two `compare` or `study` processes, even on one journal store) would each charge their
trials the whole package's joules, the other command's included: both overcount. Within
one command the pool's ledger splits the package between its workers by CPU time
(shared.py); across commands nothing can. So, as the pool refuses more NVML-metered workers
than GPUs (run/worker_energy.check_gpu_sharing), a process that opens a RAPL meter claims
the package first, and a second command is refused with the fix.

The claim is an `flock` on a file per powercap tree (in the system's temporary folder,
named after the tree's real path, so a fake tree in a test is its own machine) holding the
claimant's pid and command. The kernel releases it when the process ends however it ends;
the process keeps it until then, closing its meters included (a pool's parent opens the
meter before it starts its ledger and workers). Its descendants (the pool's ledger and
workers) read the package under it; any other process is refused.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

from tuning_energy.errors import MeterUnavailable
from tuning_energy.liveness import proc_stat


class PackageInUse(MeterUnavailable):
    """Another command reads the package: refused under `auto` too (falling back to the
    estimate here would leave the other command charging itself this one's joules)."""


_HELD: dict[str, IO[str]] = {}  # lock path -> the open file holding this process's claim


def claim_path(root: str | Path) -> Path:
    """The lock file of the powercap tree `root` (one per machine and tree)."""
    key = hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"tuning-energy-rapl-{key}.lock"


def _ancestors(pid: int) -> set[int]:
    out: set[int] = set()
    while pid > 1 and pid not in out:
        out.add(pid)
        fields = proc_stat(pid)
        if fields is None:
            break
        pid = int(fields[1])  # ppid (field 4)
    return out


def _holder(f: IO[str]) -> dict:
    for _ in range(20):  # the holder writes who it is right after taking the lock
        f.seek(0)
        try:
            if holder := json.loads(f.read() or "{}"):
                return holder
        except ValueError:
            pass
        time.sleep(0.05)
    return {}


def claim_package(root: str | Path) -> None:
    """Claim the RAPL package of the tree `root` for this process (and its descendants).

    Raises MeterUnavailable naming the other command and the fix when another process
    holds it. Idempotent in the claiming process."""
    path = claim_path(root)
    if str(path) in _HELD:
        return
    try:
        f = open(path, "a+")  # noqa: SIM115 - held open until the process ends
    except PermissionError:  # another user's claim file: read it to lock it
        f = open(path)  # noqa: SIM115
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(f)
        f.close()
        if holder.get("pid") in _ancestors(os.getpid()):
            return  # our pool's parent: its ledger splits the package between us
        raise PackageInUse(
            f"RAPL counters under {root} are already read by another tuning-energy command "
            f"(pid {holder.get('pid', '?')}, started {holder.get('started_utc', '?')}: "
            f"{holder.get('command', '?')}). A RAPL counter measures the whole CPU package, "
            f"so each command would charge its trials the other's joules too. Fix: wait for "
            f"it to end, or run the strategies in one command (`tuning-energy compare "
            f"--strategies a,b`; with --workers N its ledger splits the package between "
            f"the workers by CPU time), or meter this command with meter.kind = 'estimate' "
            f"(the CPU time of its own process tree only)") from None
    if f.writable():
        f.seek(0)
        f.truncate()
        json.dump({"pid": os.getpid(), "command": " ".join(sys.argv) or sys.executable,
                   "started_utc": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}, f)
        f.flush()
    _HELD[str(path)] = f

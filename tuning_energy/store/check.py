"""`tuning-energy check --storage URL`: a store's health, read without changing anything.

What it reports:
- whether the store opens. A journal is read by Optuna's own reader, which skips a torn
  last line: the file is not repaired here (tuning-energy cuts a torn line at its next
  open, keeping a copy: journal_repair.py);
- a journal file's torn last line (bytes without a newline), its first invalid complete
  line (tuning-energy refuses to open it; the message says how to mend it), and a lock file
  left by a writer that was killed while holding it (`FILE.lock`: Optuna breaks it after
  30 s without a change);
- each study with its trials by state;
- RUNNING trials without a live worker: a worker's trial (`te_worker`: host, pid, start
  time; liveness.py) whose process is gone on this host, or a SQLite study's trial while no
  run holds the study's run lock. The next run marks them FAIL. A worker on another host
  cannot be checked from here and is reported as such.

`check_store` returns the lines and the problems; the CLI prints them and exits 1 when there
is a problem, 0 when there is none.
"""

from __future__ import annotations

import fcntl
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from tuning_energy.liveness import WORKER_ATTR, worker_alive
from tuning_energy.store.journal_repair import first_invalid_line, read_tail
from tuning_energy.store.storage import (
    journal_path,
    lock_path,
    open_storage,
    redact,
    storage_kind,
    store_exists,
)


@dataclass
class Health:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        self.problems.append(text)
        self.lines.append(f"  PROBLEM: {text}")


def check_store(url: str) -> Health:
    """The store's health (see the module doc); nothing in it is changed."""
    health = Health()
    kind = storage_kind(url)
    health.lines.append(f"store     {redact(url)} ({kind})")
    if not store_exists(url):
        health.problem("no store there")
        return health
    if kind == "journal":
        _journal_file(journal_path(url), health)
    try:
        storage = _open_as_is(url, kind)
        summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    except Exception as exc:  # what keeps it from opening is the report
        health.problem(f"does not open: {type(exc).__name__}: {str(exc).strip()[:300]}")
        return health
    health.lines.append(f"opens     yes; {len(summaries)} "
                        f"stud{'y' if len(summaries) == 1 else 'ies'}")
    for s in summaries:
        _study(url, kind, storage, s.study_name, health)
    n = len(health.problems)
    health.lines.append(f"health    {'ok' if not n else f'{n} problem(s)'}")
    return health


def _open_as_is(url: str, kind: str):
    """The store, opened without repairing or creating anything."""
    if kind == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(journal_path(url))))
    if kind == "sqlite":
        return optuna.storages.RDBStorage(url, skip_table_creation=True)
    return open_storage(url, create=False)


def _journal_file(path: Path, health: Health) -> None:
    tail = read_tail(path)
    if tail.fragment:
        health.problem(f"{path}: torn last line, {tail.fragment} bytes without a newline "
                       f"(left by a writer killed mid-write); the next tuning-energy open "
                       f"cuts it, keeping a copy beside the file")
    if (invalid := first_invalid_line(path)) is not None:
        number, why = invalid
        health.problem(f"{path}: line {number} is not a valid journal record ({why}); "
                       f"tuning-energy refuses to open the store until it is mended")
    lock = Path(f"{path}.lock")
    if lock.is_symlink() or lock.exists():
        age = time.time() - lock.lstat().st_mtime
        health.lines.append(f"journal   lock file {lock} held for {age:.0f} s (a writer now, "
                            f"or one killed while writing: Optuna breaks it after 30 s)")
    if not tail.fragment and invalid is None:
        health.lines.append(f"journal   {path}: {tail.size} bytes, every line complete")


def _study(url: str, kind: str, storage, name: str, health: Health) -> None:
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state.name for t in trials)
    by_state = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "none"
    health.lines.append(f"study     {name}: {len(trials)} trials ({by_state})")
    running = [t for t in trials if t.state == TrialState.RUNNING]
    if not running:
        return
    run_held = _run_lock_held(url, name) if kind == "sqlite" else None
    dead, elsewhere = [], []
    for t in running:
        ident = t.system_attrs.get(WORKER_ATTR)
        alive = worker_alive(ident) if ident else run_held
        if alive is False:
            dead.append(t.number)
        elif alive is None:
            elsewhere.append(t.number)
    if dead:
        health.problem(f"{name}: RUNNING trial(s) {dead} without a live worker (its process "
                       f"ended without finishing them); the next run of the study marks "
                       f"them FAIL")
    if elsewhere:
        health.lines.append(f"          RUNNING trial(s) {elsewhere} ran on another host: "
                            f"cannot tell from here whether their worker lives")


def _run_lock_held(url: str, study_name: str) -> bool:
    """Whether a run holds the study's run lock (storage.run_lock), tested without taking
    it for longer than the test; no lock file: no run."""
    path = lock_path(url, study_name)
    if path is None or not path.exists():
        return False
    try:
        with open(path) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False
    except FileNotFoundError:
        return False


__all__ = ["Health", "check_store"]

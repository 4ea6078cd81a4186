"""Optuna storages from a URL, chosen in one place.

- `sqlite:///studies/energy.db`: the default; one process per study at a time, enforced by
  `run_lock` (a lock file per running study in `energy.db.locks/` beside the store).
- `journal:///path/to/file.log`: Optuna's JournalStorage on a file; several processes on
  one machine, no server.
- `postgresql://user@host:port/db`: several machines share a study; opened with psycopg 3
  or psycopg2, whichever is installed (`postgres_driver_url`).

`open_storage` and `run_lock` take the URL parsed (url.StoreURL) or as text.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage

from tuning_energy.errors import StorageError
from tuning_energy.store.fast_rdb import FastRDBStorage
from tuning_energy.store.url import StoreURL, password, redact

#: How long a SQLite write waits for another process's lock before "database is locked".
SQLITE_TIMEOUT_S = 60.0

#: The RDB storage class per store kind: Optuna's RDBStorage with its hot paths in SQLAlchemy
#: Core (fast_rdb.py) where Optuna's storage suite runs on it; RDBStorage for the rest (MySQL).
RDB_STORAGES = {"sqlite": FastRDBStorage, "postgresql": FastRDBStorage}

#: PostgreSQL drivers the project can use, in order of preference: (module, SQLAlchemy name).
POSTGRES_DRIVERS = (("psycopg", "psycopg"), ("psycopg2", "psycopg2"))


def postgres_driver_url(url: str) -> str:
    """`postgresql://` with the first driver of POSTGRES_DRIVERS that imports here.

    The `postgres` extra installs psycopg (3), which SQLAlchemy 2.1 also takes for a bare
    `postgresql://`, so the same URL works in plain Optuna and optuna-dashboard. Naming the
    driver keeps a venv with only psycopg2 (or SQLAlchemy 2.0, whose default is psycopg2)
    working through tuning-energy. An explicit `postgresql+DRIVER://` is left alone.
    """
    if not url.startswith("postgresql://"):
        return url
    import importlib

    for module, driver in POSTGRES_DRIVERS:
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        return f"postgresql+{driver}://" + url[len("postgresql://"):]
    raise StorageError(
        f"--storage = {redact(url)!r}: no PostgreSQL driver is installed; install the "
        f"`postgres` extra (pip install 'tuning-energy[postgres]', which brings psycopg 3) or "
        f"psycopg2-binary")


#: Journal storages opened by this process, per file: opening one replays the whole log
#: (5 s for a 20-seed comparison's 4,200 trials), and `compare` opens the store once per
#: study. A JournalStorage reads what other processes appended before every read, so one
#: per process stays current. Keyed by process (a forked child opens its own) and inode (a
#: file deleted and made anew is a new store).
_JOURNALS: dict[tuple[int, str], tuple[int, BaseStorage]] = {}


def _journal(path: Path, where: str) -> BaseStorage:
    """A torn last line is cut at open, a corrupt line refused (journal_repair.py)."""
    from tuning_energy.store.journal_repair import open_journal

    path.parent.mkdir(parents=True, exist_ok=True)
    key = (os.getpid(), str(path.resolve()))
    cached = _JOURNALS.get(key)
    if cached is not None and path.exists() and path.stat().st_ino == cached[0]:
        return cached[1]
    storage = open_journal(path, where)
    _JOURNALS[key] = (path.stat().st_ino, storage)
    return storage


def open_storage(url: StoreURL | str, create: bool = True,
                 heartbeat_interval: int | None = None, grace_period: int | None = None,
                 stale_trial_callback=None) -> BaseStorage:
    """An Optuna storage for `url`. With create=False a missing local store is an error.

    heartbeat_interval / grace_period / stale_trial_callback: RDB storages only (see
    workers.py); the callback runs for each trial failed for a stale heartbeat.
    """
    store = StoreURL.parse(url)
    kind, text = store.kind, store.text
    if not create and not store.exists():
        raise StorageError(
            f"--storage = {text!r}: no store there yet; run `make study` (or "
            f"`tuning-energy study --storage {text}`) first"
        )
    try:
        if kind == "journal":
            return _journal(store.path, store.redacted)
        engine_kwargs = {}
        if kind == "postgresql":
            text = postgres_driver_url(text)
        if kind == "sqlite":
            if store.path is not None:
                store.path.parent.mkdir(parents=True, exist_ok=True)
            engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
        else:
            engine_kwargs = {"pool_pre_ping": True}
        if stale_trial_callback is not None:  # the keyword was renamed in Optuna 4.9
            import inspect

            params = inspect.signature(optuna.storages.RDBStorage).parameters
            name = "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in \
                params else "failed_trial_callback"
            callback_kwargs = {name: stale_trial_callback}
        else:
            callback_kwargs = {}
        storage = RDB_STORAGES.get(kind, optuna.storages.RDBStorage)(
            text, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
            grace_period=grace_period, **callback_kwargs,
        )
        if kind == "sqlite":
            _fast_sqlite(storage)
        return storage
    except StorageError:
        raise
    except Exception as exc:
        # Never the password: the URL here may carry one (postgresql://user:pw@host/db),
        # and a driver may repeat it in its own message.
        why, secret = str(exc), password(text)
        if secret:
            why = why.replace(secret, "***")
        raise StorageError(f"--storage = {store.redacted!r}: cannot open the store: {why}") \
            from exc


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _fast_sqlite(storage: optuna.storages.RDBStorage) -> None:
    """WAL journal + synchronous=NORMAL on every connection of a SQLite store.

    With the default rollback journal every commit (each set_user_attr, each parameter) waits
    for an fsync: recording one trial took ~0.4 s here (bench: storage_overhead). In WAL
    mode with synchronous=NORMAL a commit is durable across a crash or kill -9 of the
    process; only a power loss may drop the last commits.
    """
    from sqlalchemy import event

    event.listen(storage.engine, "connect", _sqlite_pragmas)
    storage.engine.dispose()  # connections opened while creating the schema: reopen with pragmas


# ---------------------------------------------------------------- one run per study (SQLite)


def lock_path(url: StoreURL | str, study_name: str) -> Path | None:
    """The lock file of `study_name` in a SQLite store (None: not a SQLite file)."""
    store = StoreURL.parse(url)
    if store.kind != "sqlite" or (db := store.path) is None:
        return None
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", study_name)
    return db.parent / f"{db.name}.locks" / f"{safe}.lock"


def _holder(f) -> dict[str, Any]:
    import json

    f.seek(0)
    try:
        return json.loads(f.read() or "{}")
    except ValueError:
        return {}


def _program(argv: list[str]) -> list[str]:
    """The command line as a user would type it (`tuning-energy study ...`)."""
    if argv and (argv[0].endswith(("tuning_energy/cli.py", "/tuning-energy")) or
                 argv[0] == "tuning-energy"):
        return ["tuning-energy", *argv[1:]]
    return argv


@contextlib.contextmanager
def run_lock(url: StoreURL | str, study_name: str) -> Iterator[dict[str, Any] | None]:
    """Hold the one-run lock of `study_name` in a SQLite store while a run of it is going.

    SQLite gives one process a study: a second run of the same study would run the budget
    again, or take the first run's live trial for one left by a killed run. The lock is an
    `flock` on a file beside the store holding the runner's pid, host and command: the
    kernel releases it when the process ends however it ends, so a run killed with
    SIGKILL leaves no stale lock. Raises StorageError naming the holder, and how to run
    several workers on one study. Other stores (journal, PostgreSQL) share a study between
    processes through the workers' claim lock (workers.py) and yield None here.
    """
    import fcntl
    import json
    import os
    import socket
    import sys
    import time

    path = lock_path(url, study_name)
    if path is None:
        yield None
        return
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            f = open(path, "a+")  # noqa: SIM115 - held open for the whole run
        except FileNotFoundError:  # the last holder removed the empty folder meanwhile
            continue
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(f)
            for _ in range(20):  # its holder writes who it is right after taking it
                if holder:
                    break
                time.sleep(0.05)
                holder = _holder(f)
            f.close()
            who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started " \
                  f"{holder.get('started_utc', '?')}: {holder.get('command', '?')}"
            raise StorageError(
                f"study {study_name!r} in {StoreURL.parse(url)} is being run by another process "
                f"({who}). A SQLite store runs one process per study: wait for it to end, "
                f"then run this command again to resume. To run several processes on one "
                f"study, give the study a store made for it and start the workers with "
                f"--workers N: --storage journal:///studies/NAME.log (one machine) or "
                f"--storage postgresql://USER@HOST:PORT/DB (several machines)") from None
        try:  # the previous holder may have removed the file between our open and flock
            same = os.fstat(f.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        f.close()
    import datetime as dt

    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "started_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
          "command": " ".join(_program(sys.argv))[:500], "study": study_name}
    f.seek(0)
    f.truncate()
    f.write(json.dumps(me))
    f.flush()
    try:
        yield me
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still holding it: a waiting opener then retries
        f.close()
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # when no other study of the store is running

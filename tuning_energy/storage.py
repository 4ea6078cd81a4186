"""Optuna storages from a URL, chosen in one place.

- `sqlite:///studies/energy.db`: the default; one process at a time.
- `journal:///path/to/file.log`: Optuna's JournalStorage on a file; several processes on
  one machine, no server.
- `postgresql://user@host:port/db`: several machines share a study.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.storages import BaseStorage

from .errors import StorageError

DEFAULT_STORAGE = "sqlite:///studies/energy.db"
ALLOWED = "sqlite:///PATH, journal:///PATH, postgresql://USER@HOST:PORT/DB"


def storage_kind(url: str) -> str:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    base = scheme.split("+", 1)[0]
    if base not in ("sqlite", "journal", "postgresql", "mysql"):
        raise StorageError(f"--storage = {url!r}: not a storage URL; allowed forms are {ALLOWED}")
    return base


def sqlite_path(url: str) -> Path | None:
    """The file behind a sqlite:/// URL (None for in-memory)."""
    rest = url.split(":///", 1)[1] if ":///" in url else ""
    return Path(rest) if rest and rest != ":memory:" else None


def journal_path(url: str) -> Path:
    """As for SQLite: journal:///rel/path.log is relative, journal:////abs/path.log absolute."""
    rest = url.split("://", 1)[1]
    if not rest.startswith("/") or len(rest) < 2:
        raise StorageError(f"--storage = {url!r}: a journal URL is journal:///PATH (three slashes)")
    return Path(rest[1:])


def store_exists(url: str) -> bool:
    kind = storage_kind(url)
    if kind == "sqlite":
        path = sqlite_path(url)
        return path is not None and path.is_file()
    if kind == "journal":
        return journal_path(url).is_file()
    return True  # a server: ask it


def open_storage(url: str, create: bool = True, heartbeat_interval: int | None = None,
                 grace_period: int | None = None) -> BaseStorage:
    """An Optuna storage for `url`. With create=False a missing local store is an error."""
    kind = storage_kind(url)
    if not create and not store_exists(url):
        raise StorageError(
            f"--storage = {url!r}: no store there yet; run `make study` (or "
            f"`tuning-energy study --storage {url}`) first"
        )
    try:
        if kind == "journal":
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            path = journal_path(url)
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        engine_kwargs = {}
        if kind == "sqlite":
            path = sqlite_path(url)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            engine_kwargs = {"connect_args": {"timeout": 60}}
        else:
            engine_kwargs = {"pool_pre_ping": True}
        return optuna.storages.RDBStorage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
        )
    except StorageError:
        raise
    except Exception as exc:
        raise StorageError(f"--storage = {url!r}: cannot open the store: {exc}") from exc

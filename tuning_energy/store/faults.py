"""Storage faults a machine throws, as one line that names the store, the cause and the fix.

A full disk, a read-only file or folder, a SQLite database locked by another process past
its timeout: SQLite reports them as `sqlite3.OperationalError` ("database or disk is
full", "attempt to write a readonly database", "database is locked"), wrapped by
SQLAlchemy; a journal file as an OSError (ENOSPC, EDQUOT, EFBIG, EROFS, EACCES, EPERM).
`storage_fault` turns any of them, wherever in an exception's chain, into a `StoreFault`
(a StorageError: the CLI prints it and exits 2). What is stored stays stored: SQLite rolls
back the failed transaction, a journal's failed append is cut back (journal_repair.py),
and a rerun of the same command resumes.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path

from tuning_energy.errors import StorageError
from tuning_energy.store.journal_repair import StoreWriteError

#: cause -> lower-case fragments of the database's message that mean it.
MESSAGES = {
    "full": ("database or disk is full", "no space left on device", "disk quota exceeded",
             "file too large"),
    "read-only": ("attempt to write a readonly database", "read-only file system",
                  "readonly database", "unable to open database file"),
    "locked": ("database is locked", "database table is locked"),
}
ERRNOS = {
    "full": (errno.ENOSPC, errno.EDQUOT, errno.EFBIG),
    "read-only": (errno.EROFS, errno.EACCES, errno.EPERM),
}


class StoreFault(StorageError):
    """The store could not be written: full, read-only or locked (`cause`)."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


def _store(url: object) -> tuple[str, Path | None]:
    """The store's URL (password redacted) and the file behind it, for messages."""
    from tuning_energy.store.storage import journal_path, redact, sqlite_path, storage_kind

    if isinstance(url, (list, tuple)):
        url = url[0] if len(url) == 1 else None
    if not isinstance(url, str):
        return "the store", None
    try:
        kind = storage_kind(url)
        path = sqlite_path(url) if kind == "sqlite" else \
            journal_path(url) if kind == "journal" else None
    except StorageError:
        path = None
    return redact(url), path


def fault_message(cause: str, url: object, detail: str) -> str:
    where, path = _store(url)
    folder = f"{path.parent}" if path is not None else "its folder"
    resume = ("then rerun the same command: the trials stored so far are kept and the run "
              "resumes where it stopped")
    if cause == "full":
        fix = (f"free space on the disk that holds {folder} (df -h {folder}) or give "
               f"--storage a store on a disk with room")
        what = "is out of space"
    elif cause == "read-only":
        fix = (f"make {path if path is not None else 'the store'} and {folder} writable by "
               f"this user (ls -l; a read-only mount: mount | grep; an immutable file: lsattr)")
        what = "cannot be written"
    else:
        fix = ("another process holds a write lock on it (a second run on this store, a "
               "sqlite3 shell or a tool in an open transaction): end it or wait for it "
               "(several processes on one study need journal:///PATH or postgresql://)")
        from tuning_energy.store import storage

        what = f"stayed locked past SQLite's {storage.SQLITE_TIMEOUT_S:g} s timeout"
    return f"the store {where} {what} ({detail}): {fix}; {resume}"


def os_fault(exc: OSError, url: object) -> StoreFault | OSError:
    """An OSError as a StoreFault when it is one (else `exc` itself)."""
    for cause, numbers in ERRNOS.items():
        if exc.errno in numbers:
            detail = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
            return StoreFault(fault_message(cause, url, detail), cause)
    return exc


def storage_fault(exc: BaseException, url: object, os_errors: bool = True) -> StoreFault | None:
    """The StoreFault that `exc` (or an exception in its chain) is, or None.

    A journal's failed write (StoreWriteError) is always one. os_errors: also take any OSError (a full disk, a read-only folder) raised outside
    the store's own calls, e.g. while writing the lock file beside it; the runner's trial
    loop passes False, where an OSError may be the objective's own.
    """
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, StoreFault):
            return e
        if _is_operational(e):
            text = str(e).lower()
            for cause, fragments in MESSAGES.items():
                if any(f in text for f in fragments):
                    detail = str(getattr(e, "orig", None) or e).splitlines()[0][:200]
                    return StoreFault(fault_message(cause, url, detail), cause)
        if isinstance(e, OSError) and (os_errors or isinstance(e, StoreWriteError)):
            fault = os_fault(e, url)
            if isinstance(fault, StoreFault):
                return fault
        e = e.__cause__ or e.__context__
    return None


def _is_operational(e: BaseException) -> bool:
    """sqlite3's or SQLAlchemy's OperationalError (and psycopg's, by name)."""
    return type(e).__name__ in ("OperationalError", "DiskFull", "ReadOnlySqlTransaction")


def record_in_flight(study, trial, fault: StoreFault) -> StoreFault:
    """Mark the trial in flight FAIL, its `fail_reason` naming the fault, when the store
    still takes it (not tried on a locked store: it would wait out the timeout again);
    the fault, saying whether it was recorded. Its energy attrs were written before, when
    the store took them (objective.py)."""
    from optuna.trial import TrialState

    note = f"trial {trial.number} in flight is left RUNNING; the next run marks it FAIL"
    if fault.cause != "locked":
        try:
            study._storage.set_trial_user_attr(trial._trial_id, "fail_reason",
                                               f"storage fault: the store {fault.cause}")
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            note = f"trial {trial.number} in flight is recorded FAIL"
        except Exception:  # the store takes nothing more now
            pass
    return StoreFault(f"{fault} ({note})", fault.cause)


@contextlib.contextmanager
def recorded_on_fault(study, trial, url: object) -> Iterator[None]:
    """Around the store's writes of a trial just created: a storage fault records it FAIL
    (record_in_flight) and is raised as a StoreFault; any other error passes as it is."""
    try:
        yield
    except Exception as exc:
        if (fault := storage_fault(exc, url, os_errors=False)) is None:
            raise
        raise record_in_flight(study, trial, fault) from exc

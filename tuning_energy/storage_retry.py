"""Storage calls that survive a lost database connection: retried with back-off.

A worker on PostgreSQL wraps its storage (`wrap_storage`) so that a dropped connection
(a restarted server, a network blip) is retried for up to `reconnect_limit_s` seconds
before the worker exits with a StorageError that says so. Also Optuna's callback that
re-runs a trial whose worker died (`retry_callback`).
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable

import optuna
from optuna.storages import BaseStorage

from .errors import StorageError


def is_connection_error(exc: BaseException) -> bool:
    try:
        from sqlalchemy import exc as sa_exc
    except ImportError:  # pragma: no cover
        return False
    e: BaseException | None = exc
    while e is not None:
        if isinstance(e, (sa_exc.OperationalError, sa_exc.InterfaceError,
                          sa_exc.DisconnectionError)):
            return True
        e = e.__cause__ or e.__context__
    return False


_in_retry = threading.local()


def retrying(fn: Callable, what: str, limit_s: float, out=None) -> Callable:
    """`fn`, retried with back-off (0.5 s doubling to 8 s) on a lost database connection.

    Calls made inside a retried call are not retried again (the outer call does it).
    """

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if getattr(_in_retry, "active", False):
            return fn(*args, **kwargs)
        _in_retry.active = True
        try:
            return _call(*args, **kwargs)
        finally:
            _in_retry.active = False

    def _call(*args, **kwargs):
        t0 = time.monotonic()
        delay, attempt = 0.5, 0
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                attempt += 1
                waited = time.monotonic() - t0
                if waited >= limit_s:
                    root = exc
                    while root.__cause__ is not None:
                        root = root.__cause__
                    raise StorageError(
                        f"lost the connection to {what} and could not reconnect in "
                        f"{waited:.0f} s ({attempt} attempts, limit {limit_s:g} s); last error: "
                        f"{type(root).__name__}: {str(root).strip()[:300]}. This worker exits; "
                        f"its trial in flight is failed and re-run by the other workers."
                    ) from exc
                print(f"[worker {os.getpid()}] database connection lost ({type(exc).__name__});"
                      f" retry {attempt} in {min(delay, limit_s - waited):.1f} s", file=out or sys.stderr)
                time.sleep(min(delay, limit_s - waited))
                delay = min(delay * 2, 8.0)

    return call


def wrap_storage(storage: BaseStorage, what: str, limit_s: float) -> BaseStorage:
    names = [n for n in dir(BaseStorage) if not n.startswith("__") and
             callable(getattr(BaseStorage, n, None))]
    # What Optuna's _CachedStorage calls on an RDBStorage besides the public methods:
    names += ["record_heartbeat", "_get_stale_trial_ids", "_create_new_trial",
              "_get_best_trial_id", "_get_trials", "_set_trial_param"]
    for name in names:
        fn = getattr(storage, name, None)
        if callable(fn):
            setattr(storage, name, retrying(fn, what, limit_s))
    return storage


def retry_callback(max_retry: int):
    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or \
        optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(max_retry=max_retry)

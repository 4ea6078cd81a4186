"""Storage calls that survive a lost database connection, retried only where that is safe.

A worker on PostgreSQL wraps its storage (`wrap_storage`: a `RetryingStorage`) so that a
dropped connection (a restarted server, a network blip) is retried with back-off for up to
`reconnect_limit_s` seconds, then the worker exits with a StorageError that says so.

`RetryingStorage` is an RDBStorage in its own right that delegates every call to the one it
wraps (as Optuna's _CachedStorage does), so it pickles, and Optuna treats it as the RDB
storage it is: a study opened on it puts Optuna's _CachedStorage in front of it, as in front
of any RDBStorage, and heartbeats work through it (RDBStorage is a BaseHeartbeat). It passes
Optuna's own storage test suite (`make test-optuna-storages`).

A connection can drop after the server committed a write and before the client heard of
it, so a write is repeated only when repeating it cannot do it twice:

- reads, and writes that set a value (attrs, params, intermediate values, heartbeats):
  retried as they are (`READS`, `IDEMPOTENT`);
- `set_trial_state_values`: before a retry the trial is read again; if it already has the
  state (and values) asked for, the write happened and is not repeated. A claim of a
  WAITING trial (state RUNNING) found RUNNING is taken as this worker's: workers claim
  under one lock (workers.py), so no other worker took it meanwhile;
- trial creation (`_create_new_trial`; `create_new_trial` and Optuna's _CachedStorage go
  through it): each creation call draws a token and, in the transaction that adds the trial
  (the study row locked, as Optuna locks it), stores it beside the trial in a table of its
  own (`CREATIONS`), which Optuna's readers never look at: nothing is added to the trial.
  The transaction looks for its token first, so a repeat of a creation that committed
  returns the trial already there;
- `create_new_study` with a name: a study of that name found after the drop is taken;
- anything else (`delete_study`, a method a later Optuna adds) is not retried: RDBStorage's
  own code runs on the wrapped storage's engine and sessions.

Also Optuna's callback that re-runs a trial whose worker died (`retry_callback`).
"""

from __future__ import annotations

import copy
import functools
import os
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from tuning_energy.errors import StorageError

#: Retried as they are. Names: BaseStorage's, and what Optuna's _CachedStorage and
#: heartbeat call on an RDBStorage besides.
READS = (
    "check_trial_is_updatable", "get_all_studies", "get_all_trials", "get_best_trial",
    "get_n_trials", "get_study_directions", "get_study_id_from_name",
    "get_study_name_from_id", "get_study_system_attrs", "get_study_user_attrs", "get_trial",
    "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id",
    "get_trial_param", "get_trial_params", "get_trial_system_attrs", "get_trial_user_attrs",
    "_get_best_trial_id", "_get_stale_trial_ids", "_get_trials",
)
IDEMPOTENT = (
    "set_study_system_attr", "set_study_user_attr", "set_trial_intermediate_value",
    "set_trial_param", "_set_trial_param", "set_trial_system_attr", "set_trial_user_attr",
    "record_heartbeat",
)
#: Retried after checking that the first attempt did not already write (see above).
CHECKED = ("set_trial_state_values", "_create_new_trial", "create_new_trial",
           "create_new_study")
#: The table of creation tokens: which creation call added which trial.
CREATIONS = "tuning_energy_trial_creations"


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

#: check(*args, **kwargs) -> (done, result): whether a call that lost its connection wrote.
Check = Callable[..., tuple[bool, Any]]


def retrying(fn: Callable, what: str, limit_s: float, out=None,
             check: Check | None = None) -> Callable:
    """`fn`, retried with back-off (0.5 s doubling to 8 s) on a lost database connection.

    check: for a write that must not happen twice. After a lost connection, each attempt
    first calls check with fn's arguments; (True, result) means the write happened, and
    the call returns result without writing again.
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
        lost = False  # a connection dropped: a write may have happened
        while True:
            try:
                if lost and check is not None:
                    done, result = check(*args, **kwargs)
                    if done:
                        return result
                return fn(*args, **kwargs)
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                lost = True
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


def wrap_storage(storage: RDBStorage, what: str, limit_s: float) -> RetryingStorage:
    """`storage` with its calls retried on a lost connection, each only where that is safe.
    what: the store as messages name it (its URL, password redacted)."""
    if not isinstance(storage, RDBStorage):
        raise TypeError(f"wrap_storage takes an RDBStorage (PostgreSQL, MySQL, SQLite), "
                        f"not {type(storage).__name__}")
    return RetryingStorage(storage, what, limit_s)


class RetryingStorage(RDBStorage):
    """An RDBStorage whose calls go to `backend`, retried as the module docstring says.

    State (engine, url, heartbeat settings, ...) is the backend's; methods not named in
    READS, IDEMPOTENT or CHECKED are RDBStorage's own, run on that state, not retried.
    """

    def __init__(self, backend: RDBStorage, what: str, limit_s: float) -> None:
        # RDBStorage.__init__ is not called: the backend has the engine, this has none.
        self._backend = backend
        self._what = what
        self._limit_s = limit_s
        self._retried(_create_creations_table)(backend.engine)

    def __getstate__(self) -> dict[str, Any]:  # RDBStorage's would drop the engine
        return self.__dict__.copy()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __getattr__(self, name: str) -> Any:
        """RDBStorage's state (engine, scoped_session, url, heartbeat_interval, ...): the
        backend's. Only called for what the instance and its class do not have."""
        if name.startswith("__") or name == "_backend":
            raise AttributeError(name)
        return getattr(self._backend, name)

    def __setattr__(self, name: str, value: Any) -> None:
        """The backend's state is set there (`storage.heartbeat_interval = 10`, as Optuna's
        own tests do); only this wrapper's own three attributes are its."""
        if name in ("_backend", "_what", "_limit_s"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._backend, name, value)

    def _retried(self, fn: Callable, check: Check | None = None) -> Callable:
        return retrying(fn, self._what, self._limit_s, check=check)

    # -- CHECKED
    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        return self._retried(self._backend.set_trial_state_values, self._state_written)(
            trial_id, state, values)

    def _state_written(self, trial_id: int, state: TrialState, values=None) -> tuple[bool, Any]:
        trial = self._backend.get_trial(trial_id)
        if trial.state == state and (values is None or trial.values == list(values)):
            return True, True
        return False, None  # not written: repeat it (a finished trial then raises as before)

    def create_new_study(self, directions, study_name: str | None = None) -> int:
        if study_name is None:  # a name made up by the store: nothing to look for
            return self._backend.create_new_study(directions, study_name)
        return self._retried(self._backend.create_new_study, self._study_named)(
            directions, study_name)

    def _study_named(self, directions, study_name: str) -> tuple[bool, Any]:
        try:
            return True, self._backend.get_study_id_from_name(study_name)
        except KeyError:
            return False, None

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        return self._create_new_trial(study_id, template_trial)._trial_id

    def _create_new_trial(self, study_id: int,
                          template_trial: FrozenTrial | None = None) -> FrozenTrial:
        """RDBStorage._create_new_trial, with a token that makes a repeat find its trial
        (Optuna's own 5 tries on a deadlock are these retries: a deadlock is an
        OperationalError)."""
        return self._retried(_create_trial_once)(
            self._backend, study_id, template_trial, uuid.uuid4().hex)


def _delegate(name: str) -> Callable:
    def method(self: RetryingStorage, *args, **kwargs):
        return self._retried(getattr(self._backend, name))(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"RDBStorage.{name} of the wrapped storage, retried as it is."
    return method


for _name in READS + IDEMPOTENT:
    setattr(RetryingStorage, _name, _delegate(_name))
del _name


def _creations_table():
    """The token table, beside Optuna's tables (its rows go with their trial's)."""
    import sqlalchemy as sa
    from optuna.storages._rdb import models

    return sa.Table(CREATIONS, sa.MetaData(),
                    sa.Column("token", sa.String(32), primary_key=True),
                    sa.Column("trial_id", sa.Integer, sa.ForeignKey(
                        models.TrialModel.__table__.c.trial_id, ondelete="CASCADE"),
                        nullable=False, index=True))


def _create_creations_table(engine) -> None:
    import sqlalchemy as sa

    table = _creations_table()
    try:
        table.create(engine, checkfirst=True)
    except (sa.exc.ProgrammingError, sa.exc.IntegrityError):
        # Another worker created it meanwhile (PostgreSQL: DuplicateTable or pg_type's key).
        if not sa.inspect(engine).has_table(CREATIONS):
            raise


def _create_trial_once(backend: RDBStorage, study_id: int, template: FrozenTrial | None,
                       token: str) -> FrozenTrial:
    """One try of RDBStorage._create_new_trial that adds no trial if its token has one."""
    import sqlalchemy as sa
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    table = _creations_table()
    with _create_scoped_session(backend.scoped_session) as session:
        # Optuna's lock: trial numbers are counted in this transaction.
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        trial = session.execute(
            sa.select(models.TrialModel)
            .join(table, table.c.trial_id == models.TrialModel.trial_id)
            .where(table.c.token == token)).scalars().first()
        if trial is None:  # the first try, or an earlier one rolled back
            trial = backend._get_prepared_new_trial(study_id, template, session)
            session.flush()
            session.execute(table.insert().values(token=token, trial_id=trial.trial_id))
        return _frozen(trial, template)  # before the commit, as Optuna's


def _frozen(trial: Any, template: FrozenTrial | None) -> FrozenTrial:
    """The created trial as RDBStorage._create_new_trial returns it."""
    if template is not None:
        frozen = copy.deepcopy(template)
        frozen.number = trial.number
        frozen.datetime_start = trial.datetime_start
        frozen._trial_id = trial.trial_id
        return frozen
    return FrozenTrial(
        number=trial.number, state=trial.state, value=None, values=None,
        datetime_start=trial.datetime_start, datetime_complete=None, params={},
        distributions={}, user_attrs={}, system_attrs={}, intermediate_values={},
        trial_id=trial.trial_id)


def retry_callback(max_retry: int):
    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or \
        optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(max_retry=max_retry)

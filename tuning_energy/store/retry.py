"""Storage calls that survive a lost database connection, retried only where that is safe.

A worker on PostgreSQL wraps its storage (`wrap_storage`) so that a dropped connection
(a restarted server, a network blip) is retried with back-off for up to
`reconnect_limit_s` seconds, then the worker exits with a StorageError that says so.

A connection can drop after the server committed a write and before the client heard of
it, so a write is repeated only when repeating it cannot do it twice:

- reads, and writes that set a value (attrs, params, intermediate values, heartbeats):
  retried as they are (`READS`, `IDEMPOTENT`);
- `set_trial_state_values`: before a retry the trial is read again; if it already has the
  state (and values) asked for, the write happened and is not repeated. A claim of a
  WAITING trial (state RUNNING) found RUNNING is taken as this worker's: workers claim
  under one lock (workers.py), so no other worker took it meanwhile;
- trial creation (`_create_new_trial`; `create_new_trial` goes through it): each new
  trial carries a token (the system attr `CREATE_TOKEN`), and the creation looks for a
  trial with its token inside Optuna's own transaction, with the study row locked, before
  adding one. A repeat of a creation that committed, ours or Optuna's (RDBStorage retries a
  failed creation itself, up to 5 times), returns the trial already there;
- `create_new_study` with a name: a study of that name found after the drop is taken;
- anything else (`delete_study`, a method a later Optuna adds) is not retried.

Also Optuna's callback that re-runs a trial whose worker died (`retry_callback`).
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
import os
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from tuning_energy.errors import StorageError

CREATE_TOKEN = "te_create_token"  # trial system attr: which creation call made the trial

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


def wrap_storage(storage: BaseStorage, what: str, limit_s: float) -> BaseStorage:
    """Retry `storage`'s calls on a lost connection, each only where that is safe."""
    for name in READS + IDEMPOTENT:
        fn = getattr(storage, name, None)
        if callable(fn):
            setattr(storage, name, retrying(fn, what, limit_s))
    storage.set_trial_state_values = retrying(  # type: ignore[method-assign]
        storage.set_trial_state_values, what, limit_s, check=_state_written(storage))
    if callable(getattr(storage, "_create_new_trial", None)):
        _idempotent_creation(storage, what, limit_s)
    create_study = storage.create_new_study
    retried_create_study = retrying(create_study, what, limit_s, check=_study_named(storage))

    def create_new_study(directions, study_name=None):
        if study_name is None:  # a name made up by the store: nothing to look for
            return create_study(directions, study_name)
        return retried_create_study(directions, study_name)

    storage.create_new_study = create_new_study  # type: ignore[method-assign]
    return storage


def _state_written(storage: BaseStorage) -> Check:
    def check(trial_id: int, state: TrialState, values=None) -> tuple[bool, Any]:
        trial = storage.get_trial(trial_id)
        if trial.state == state and (values is None or trial.values == list(values)):
            return True, True
        return False, None  # not written: repeat it (a finished trial then raises as before)

    return check


def _study_named(storage: BaseStorage) -> Check:
    def check(directions, study_name) -> tuple[bool, Any]:
        try:
            return True, storage.get_study_id_from_name(study_name)
        except KeyError:
            return False, None

    return check


def _idempotent_creation(storage: Any, what: str, limit_s: float) -> None:
    """Trial creation that a repeat cannot do twice: a token on each new trial, looked for
    in the creating transaction (RDBStorage._get_prepared_new_trial) before adding one."""
    from optuna.storages._rdb import models
    from sqlalchemy import select

    prepare = storage._get_prepared_new_trial
    create = retrying(storage._create_new_trial, what, limit_s)

    def _get_prepared_new_trial(study_id, template_trial, session):
        token = None if template_trial is None else template_trial.system_attrs.get(CREATE_TOKEN)
        if token is not None:
            attr = models.TrialSystemAttributeModel
            found = session.execute(
                select(models.TrialModel)
                .join(attr, attr.trial_id == models.TrialModel.trial_id)
                .where(models.TrialModel.study_id == study_id, attr.key == CREATE_TOKEN,
                       attr.value_json == json.dumps(token))).scalars().first()
            if found is not None:  # this creation committed before: the trial is there
                return found
        return prepare(study_id, template_trial, session)

    def _create_new_trial(study_id: int, template_trial: FrozenTrial | None = None):
        return create(study_id, with_token(template_trial, uuid.uuid4().hex))

    def create_new_trial(study_id: int, template_trial: FrozenTrial | None = None) -> int:
        return storage._create_new_trial(study_id, template_trial)._trial_id

    storage._get_prepared_new_trial = _get_prepared_new_trial
    storage._create_new_trial = _create_new_trial
    storage.create_new_trial = create_new_trial


def with_token(template: FrozenTrial | None, token: str) -> FrozenTrial:
    """The trial to create, as Optuna makes one without a template (RUNNING, started now),
    or a copy of `template`, with the creation's token among its system attrs."""
    if template is None:
        template = FrozenTrial(
            number=-1, state=TrialState.RUNNING, value=None, values=None,
            datetime_start=dt.datetime.now(), datetime_complete=None, params={},
            distributions={}, user_attrs={}, system_attrs={}, intermediate_values={},
            trial_id=-1)
    else:
        template = copy.deepcopy(template)
    template.system_attrs[CREATE_TOKEN] = token
    return template


def retry_callback(max_retry: int):
    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or \
        optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(max_retry=max_retry)

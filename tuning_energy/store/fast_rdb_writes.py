"""FastRDBStorage's trial writes in SQLAlchemy Core: finishing (or claiming) a trial and
creating one, as Optuna's RDBStorage does them, without its ORM.

Each `study.tell` finishes a trial with `set_trial_state_values` and each `study.ask` creates
one with `_create_new_trial`; through Optuna's ORM they cost ~3 ms of CPU each on SQLite
(mapped objects, a unit of work, queries built per call). Here each is one transaction of
Core statements built once, with Optuna's semantics:

- `set_trial_state_values`: the trial row read FOR UPDATE (PostgreSQL locks it: of two
  workers claiming one WAITING trial, the second waits, then sees RUNNING and gets False),
  KeyError when missing, Optuna's finished-trial check, each objective's value inserted or
  updated as Optuna stores it, False for RUNNING unless the trial was WAITING (the values
  written before that check are committed, as Optuna's session commits them), the state and
  its datetime, False on an IntegrityError;
- `create_new_trial` (no template trial: what `study.ask` creates): the study row locked
  FOR UPDATE (KeyError when missing), the trial inserted RUNNING with no number, its number
  = its study's trials with a smaller trial id; five tries on a StorageInternalError (a
  deadlock), as Optuna's.

Datetimes are stored as the installed Optuna stores them (`stored_datetime`): naive UTC
since the models map `datetime_start` through `_datetime_start_utc`, naive local time before.

FastRDBStorage's calls each run in one `transaction` (store/transaction.py).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuning_energy.store.transaction import transaction

#: Optuna's tries of a trial creation (RDBStorage._create_new_trial's MAX_RETRIES).
CREATE_TRIES = 5


def _models():
    from optuna.storages._rdb import models

    return models


def _utc() -> bool:
    """Whether the installed Optuna stores trial datetimes as naive UTC."""
    return hasattr(_models().TrialModel, "_datetime_start_utc")


def stored_datetime(value: datetime) -> datetime:
    """A naive local datetime as Optuna's TrialModel stores it."""
    if _utc():
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def read_datetime(value: datetime | None) -> datetime | None:
    """A stored trial datetime as Optuna's TrialModel reads it back (naive local)."""
    if value is None or not _utc():
        return value
    return value.replace(tzinfo=timezone.utc).astimezone().replace(tzinfo=None)


def set_trial_state_values(storage: Any, trial_id: int, state: TrialState,
                           values: Sequence[float] | None = None) -> bool:
    """RDBStorage.set_trial_state_values on `storage` (an RDBStorage), in Core."""
    import sqlalchemy as sa

    try:
        with transaction(storage) as conn:
            row = conn.first(_statement("trial_for_update"), {"trial_id": trial_id})
            if row is None:
                raise KeyError(_models().NOT_FOUND_MSG)
            stored_state = row[0]
            storage.check_trial_is_updatable(trial_id, stored_state)
            if values is not None:
                _write_values(conn, trial_id, values)
            if state == TrialState.RUNNING and stored_state != TrialState.WAITING:
                return False  # the values still committed, as Optuna's session commits them
            now = stored_datetime(datetime.now())
            update = {"state": state}
            if state == TrialState.RUNNING:
                update["datetime_start"] = now
            if state.is_finished():
                update["datetime_complete"] = now
            update["b_trial_id"] = trial_id
            conn.run(_statement("update_trial"), update)
    except sa.exc.IntegrityError:
        return False
    return True


def _write_values(conn: Any, trial_id: int, values: Sequence[float]) -> None:
    """Each objective's value, inserted or updated (RDBStorage._set_trial_value_without_commit)."""
    to_stored = _models().TrialValueModel.value_to_stored_repr
    stored = [r[0] for r in conn.rows(_statement("objectives"), {"trial_id": trial_id})]
    inserts, updates = [], []
    for objective, value in enumerate(values):
        stored_value, value_type = to_stored(value)
        if objective in stored:
            updates.append({"b_trial_id": trial_id, "b_objective": objective,
                            "value": stored_value, "value_type": value_type})
        else:
            inserts.append({"trial_id": trial_id, "objective": objective,
                            "value": stored_value, "value_type": value_type})
    if inserts:
        conn.run(_statement("insert_values"), inserts)
    if updates:
        conn.run(_statement("update_values"), updates)


def create_new_trial(storage: Any, study_id: int) -> FrozenTrial:
    """RDBStorage._create_new_trial(study_id) (no template trial) on `storage`, in Core."""
    for attempt in range(1, CREATE_TRIES + 1):
        try:
            return _create_trial_once(storage, study_id)
        except optuna.exceptions.StorageInternalError:
            # Optuna's: a deadlock between workers; a plain random wait, then again.
            if attempt == CREATE_TRIES:
                raise
            time.sleep(random.random() * 2.0)
    raise AssertionError("not reached")


def _create_trial_once(storage: Any, study_id: int) -> FrozenTrial:
    with transaction(storage) as conn:
        # Optuna's lock: the number is counted in this transaction.
        if conn.first(_statement("study_for_update"), {"study_id": study_id}) is None:
            raise KeyError(_models().NOT_FOUND_MSG)
        start = stored_datetime(datetime.now())
        trial_id = conn.run(_statement("insert_trial"), {
            "study_id": study_id, "number": None, "state": TrialState.RUNNING,
            "datetime_start": start})
        keys = {"study_id": study_id, "trial_id": trial_id}
        number = conn.first(_statement("past_trials"), keys)[0]
        conn.run(_statement("update_trial"), {"number": number, "b_trial_id": trial_id})
    return FrozenTrial(
        number=number, state=TrialState.RUNNING, value=None, values=None,
        datetime_start=read_datetime(start), datetime_complete=None, params={},
        distributions={}, user_attrs={}, system_attrs={}, intermediate_values={},
        trial_id=trial_id)


def _statement(key: Any) -> Any:
    """The writes' statements, built once: "trial_for_update" (:trial_id's state, the row
    locked), "objectives" (:trial_id's stored objectives), "insert_values" /
    "update_values" (trial_values rows; the update by :b_trial_id, :b_objective),
    "study_for_update" (:study_id, the row locked), "insert_trial", "past_trials" (the
    trials of :study_id before :trial_id), "update_trial" (the trial :b_trial_id, the
    columns the parameters name)."""
    if key in _STATEMENTS:
        return _STATEMENTS[key]
    import sqlalchemy as sa

    models = _models()
    t, v = models.TrialModel.__table__, models.TrialValueModel.__table__
    studies = models.StudyModel.__table__
    statement = {
        "trial_for_update": lambda: sa.select(t.c.state).where(
            t.c.trial_id == sa.bindparam("trial_id")).with_for_update(),
        "objectives": lambda: sa.select(v.c.objective).where(
            v.c.trial_id == sa.bindparam("trial_id")),
        "insert_values": lambda: v.insert(),
        "update_values": lambda: v.update().where(
            v.c.trial_id == sa.bindparam("b_trial_id"),
            v.c.objective == sa.bindparam("b_objective")),
        "study_for_update": lambda: sa.select(studies.c.study_id).where(
            studies.c.study_id == sa.bindparam("study_id")).with_for_update(),
        "insert_trial": lambda: t.insert(),
        "past_trials": lambda: sa.select(sa.func.count(t.c.trial_id)).where(
            t.c.study_id == sa.bindparam("study_id"),
            t.c.trial_id < sa.bindparam("trial_id")),
        "update_trial": lambda: t.update().where(
            t.c.trial_id == sa.bindparam("b_trial_id")),
    }[key]()
    _STATEMENTS[key] = statement
    return statement


#: Statements built once, by `_statement`'s key.
_STATEMENTS: dict[Any, Any] = {}

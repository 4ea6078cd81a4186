"""A running trial's records, written in one transaction: its attrs and its learning curve.

`trial.set_user_attr` commits once per attr and `trial.report` once per step (each after
three ORM queries on an RDB store); a default trial's two dozen attrs and 20 epochs cost
~45 commits. `set_user_attrs` writes them all at once:

- SQLite and PostgreSQL: one `INSERT ... ON CONFLICT DO UPDATE` per table (Optuna's
  `trial_user_attributes` and `trial_intermediate_values`, encoded as Optuna encodes them),
  after the same finished-trial check, in one transaction;
- a journal file: Optuna's own SET_TRIAL_USER_ATTR / SET_TRIAL_INTERMEDIATE_VALUE records in
  one append (one lock, one fsync; a process killed meanwhile leaves all of them or none);
- any other store: Optuna's calls, one per attr and per step.

Optuna's cached storage passes these writes straight to its backend, so writing to the
backend keeps it consistent; the trial's own view is updated as Optuna's calls update it.

`written_at_once(trial)`: the parameters suggested inside the block (Optuna commits each one)
and the attrs set there are written in one transaction when the block ends, on a
FastRDBStorage (SQLite, PostgreSQL; store/fast_rdb.py holds the parameters); elsewhere they are
written as they come. A proposal's six parameters and its attrs were seven commits.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import optuna


def set_user_attrs(trial: optuna.Trial, attrs: dict[str, Any],
                   steps: dict[int, float] | None = None) -> None:
    """Set several user attrs of a running trial (and, `steps`, its intermediate values
    {step: value}, as `trial.report` would) in one transaction."""
    from optuna.storages import JournalStorage, RDBStorage

    steps = steps or {}
    backend = _backend(trial)
    if not attrs and not steps:
        return
    held = backend.held(trial._trial_id) if _holds(backend) else None
    if held is not None:  # written at the end of `written_at_once`
        held.attrs.update(attrs)
        held.steps.update(steps)
    elif isinstance(trial, optuna.Trial) and isinstance(backend, JournalStorage):
        _append(backend, trial._trial_id, attrs, steps)
    elif isinstance(trial, optuna.Trial) and isinstance(backend, RDBStorage) \
            and backend.engine.dialect.name in ("sqlite", "postgresql"):
        _upsert(backend, trial._trial_id, attrs, steps)
    else:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        for step, value in steps.items():
            trial.report(value, step)
        return
    # What trial.set_user_attr and trial.report do after writing: keep the trial's own view.
    trial._cached_frozen_trial.user_attrs.update(attrs)
    trial._cached_frozen_trial.intermediate_values.update(steps)


def _backend(trial: Any) -> Any:
    """The storage behind Optuna's cache of a trial's study."""
    from optuna.storages._cached_storage import _CachedStorage

    storage = getattr(trial, "storage", None)
    return storage._backend if isinstance(storage, _CachedStorage) else storage


def _holds(backend: Any) -> bool:
    """A FastRDBStorage itself, not a worker's retrying storage (store/retry.py): that one
    passes `hold` through to the FastRDBStorage it wraps, but retries each write of Optuna's
    path, and a held batch would be written past its retries."""
    from tuning_energy.store.fast_rdb import FastRDBStorage

    return isinstance(backend, FastRDBStorage)


@dataclass
class Batch:
    """A running trial's writes held by `written_at_once`: its trial_params rows (checked
    when they were set), attrs, steps."""

    params: list[dict[str, Any]] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    steps: dict[int, float] = field(default_factory=dict)


@contextmanager
def written_at_once(trial: optuna.Trial) -> Iterator[None]:
    """The parameters suggested and the attrs set (`set_user_attrs`) on `trial` by this
    thread inside the block, written in one transaction when it ends, also when it raises
    (what Optuna would have committed by then). Any other store, a worker's retrying one
    included: as they come."""
    backend = _backend(trial)
    if not isinstance(trial, optuna.Trial) or not _holds(backend) \
            or backend.held(trial._trial_id) is not None:  # nested: the outer block writes
        yield
        return
    batch = Batch()
    backend.hold(trial._trial_id, batch)
    try:
        yield
    finally:
        backend.hold(trial._trial_id, None)
        _write(backend, trial._trial_id, batch)


def _write(backend: Any, trial_id: int, batch: Batch) -> None:
    """A batch in one transaction: the parameters (their distributions were checked when
    they were set: fast_rdb's `_set_trial_param`), after Optuna's check that the trial is
    still updatable, then the attrs and steps (`_upsert`). A parameter row already there
    (IntegrityError), which Optuna's own path ignores per parameter: the batch again, one
    write at a time."""
    from sqlalchemy.exc import IntegrityError

    from tuning_energy.store.fast_rdb import _statement, updatable_row
    from tuning_energy.store.transaction import transaction

    if not batch.params:
        _upsert(backend, trial_id, batch.attrs, batch.steps)
        return
    try:
        with transaction(backend) as conn:
            updatable_row(backend, conn, trial_id)
            conn.run(_statement("add_param"), batch.params)
            for stmt, values in _upsert_rows(conn.dialect.name, trial_id, batch.attrs,
                                             batch.steps):
                conn.run(stmt, values)
    except IntegrityError:
        for row in batch.params:
            with transaction(backend, ignore_integrity_error=True) as conn:
                updatable_row(backend, conn, trial_id)
                conn.run(_statement("add_param"), row)
        _upsert(backend, trial_id, batch.attrs, batch.steps)


def _append(storage: Any, trial_id: int, attrs: dict[str, Any],
            steps: dict[int, float]) -> None:
    """All records in one append to a journal file. The lines are Optuna's own records, one
    attr or step each, as `set_trial_user_attr` / `set_trial_intermediate_value` write them,
    after the same finished-trial check."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages.journal._storage import JournalOperation

    storage.check_trial_is_updatable(trial_id, storage.get_trial(trial_id).state)
    with storage._thread_lock:
        worker_id = storage._replay_result.worker_id
        logs = [{"op_code": JournalOperation.SET_TRIAL_USER_ATTR, "worker_id": worker_id,
                 "trial_id": trial_id, "user_attr": {k: v}} for k, v in attrs.items()]
        logs += [{"op_code": JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE,
                  "worker_id": worker_id, "trial_id": trial_id, "step": step,
                  "intermediate_value": value} for step, value in steps.items()]
        storage._backend.append_logs(logs)
        # Replaying our own lines for a trial finished meanwhile raises once per line: read
        # them all, then raise once, as a single set_trial_user_attr would.
        error: Exception | None = None
        for _ in range(len(logs) + 1):
            try:
                storage._sync_with_backend()
                break
            except UpdateFinishedTrialError as exc:
                error = error or exc
        if error is not None:
            raise error


def _upsert(backend: Any, trial_id: int, attrs: dict[str, Any],
            steps: dict[int, float]) -> None:
    """One INSERT ... ON CONFLICT DO UPDATE per table, in one transaction (SQLite and
    PostgreSQL). Optuna's own path runs three ORM queries per attr or step (find the trial,
    find the row, insert or update) and commits each; a dozen attrs took ~60 ms here."""
    from tuning_energy.store.fast_rdb import updatable_row
    from tuning_energy.store.transaction import transaction

    if not attrs and not steps:
        return
    statements = _upsert_rows(backend.engine.dialect.name, trial_id, attrs, steps)
    with transaction(backend, ignore_integrity_error=True) as conn:
        updatable_row(backend, conn, trial_id)
        for stmt, rows in statements:
            conn.run(stmt, rows)


def _upsert_rows(dialect: str, trial_id: int, attrs: dict[str, Any],
                 steps: dict[int, float]) -> list[tuple[Any, list[dict]]]:
    """(statement, rows) of the upserts of a trial's attrs and steps, encoded as Optuna
    encodes them."""
    from optuna.storages._rdb import models

    statements = []
    if attrs:
        statements.append((_upsert_statement(dialect, "attrs"), [
            {"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
            for k, v in attrs.items()]))
    if steps:
        model = models.TrialIntermediateValueModel
        rows = []
        for step, value in steps.items():
            stored, kind = model.intermediate_value_to_stored_repr(float(value))
            rows.append({"trial_id": trial_id, "step": int(step), "intermediate_value": stored,
                         "intermediate_value_type": kind})
        statements.append((_upsert_statement(dialect, "steps"), rows))
    return statements


#: {(dialect, "attrs" | "steps"): statement}: built once (a statement with its rows inlined
#: is compiled anew for each count of rows: most of a call's time).
_UPSERTS: dict[tuple[str, str], Any] = {}


def _upsert_statement(dialect: str, what: str) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE of a user attr (`attrs`) or a step's value (`steps`),
    run with a list of rows (executemany; SQLAlchemy pages them under the database's limit
    on bind parameters)."""
    if (dialect, what) in _UPSERTS:
        return _UPSERTS[dialect, what]
    from optuna.storages._rdb import models

    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    if what == "attrs":
        table = models.TrialUserAttributeModel.__table__
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(index_elements=[table.c.trial_id, table.c.key],
                                          set_={"value_json": stmt.excluded.value_json})
    else:
        table = models.TrialIntermediateValueModel.__table__
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.trial_id, table.c.step],
            set_={"intermediate_value": stmt.excluded.intermediate_value,
                  "intermediate_value_type": stmt.excluded.intermediate_value_type})
    _UPSERTS[dialect, what] = stmt
    return stmt


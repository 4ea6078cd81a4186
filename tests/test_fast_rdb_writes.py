"""FastRDBStorage finishes, claims and creates trials in a real store exactly as Optuna's
RDBStorage does: the same results, errors and stored rows (SQLite and PostgreSQL), the
claim of a WAITING trial safe between workers, and no ORM on a study's ask and tell."""

from __future__ import annotations

import contextlib
import copy
import math
import threading
import time
import uuid
from datetime import datetime

import optuna
import pytest
from optuna.storages import RDBStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from tuning_energy.store.fast_rdb import FastRDBStorage

MIN, MAX = StudyDirection.MINIMIZE, StudyDirection.MAXIMIZE


def _outcome(call, *args, **kwargs):
    """What a storage call gives back: its result (a trial without its datetime, checked
    to be now), or its error's type and message."""
    before = datetime.now()
    try:
        result = call(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - compared between the storages
        return type(exc), str(exc)
    if isinstance(result, FrozenTrial):
        assert before <= result.datetime_start <= datetime.now()
        result = copy.copy(result)
        result.datetime_start = None
    return result


def _writes(storage) -> dict:
    """Trials created in two studies interleaved, finished, claimed and refused every way:
    {what: outcome}."""
    out: dict = {}

    def do(what, call, *args):
        out[what] = _outcome(call, *args)
        return out[what]

    one = storage.create_new_study([MIN], "one")
    two = storage.create_new_study([MIN, MAX], "two")
    a, b, c, d, e, f, g, h = [do(f"create {i}", storage._create_new_trial, study)._trial_id
                              for i, study in enumerate((one, two, one, one, two, one, one, one))]
    state_values = storage.set_trial_state_values
    do("complete", state_values, a, TrialState.COMPLETE, [0.5])
    do("complete inf", state_values, c, TrialState.COMPLETE, [math.inf])
    do("complete -inf", state_values, d, TrialState.COMPLETE, [-math.inf])
    do("complete two", state_values, b, TrialState.COMPLETE, [1.0, math.inf])
    do("complete two -inf", state_values, e, TrialState.COMPLETE, [-math.inf, -2.5])
    do("pruned", state_values, f, TrialState.PRUNED, [7.0])
    do("fail", state_values, g, TrialState.FAIL)
    do("running -> running", state_values, h, TrialState.RUNNING)
    do("running -> running, a value", state_values, h, TrialState.RUNNING, [3.0])
    do("pruned, the value updated", state_values, h, TrialState.PRUNED, [4.0])
    do("finished -> complete", state_values, h, TrialState.COMPLETE, [5.0])
    do("finished -> running", state_values, a, TrialState.RUNNING)
    waiting = storage.create_new_trial(one, FrozenTrial(
        number=0, state=TrialState.WAITING, value=None, values=None, datetime_start=None,
        datetime_complete=None, params={}, distributions={}, user_attrs={},
        system_attrs={"fixed_params": {}}, intermediate_values={}, trial_id=0))
    do("waiting -> waiting", state_values, waiting, TrialState.WAITING)
    do("waiting -> running", state_values, waiting, TrialState.RUNNING)
    do("claimed -> running", state_values, waiting, TrialState.RUNNING)
    do("claimed -> fail", state_values, waiting, TrialState.FAIL, [1.0])
    do("no trial", state_values, 10_000, TrialState.COMPLETE, [1.0])
    do("no study", storage._create_new_trial, 10_000)
    do("create after", storage.create_new_trial, one)
    return out


def _rows(url: str, **engine_kwargs) -> dict:
    """Every row of Optuna's trial tables, datetimes as whether they are set."""
    import sqlalchemy as sa
    from optuna.storages._rdb import models

    engine = sa.create_engine(url, **engine_kwargs)
    rows = {}
    with engine.connect() as conn:
        for table in models.BaseModel.metadata.sorted_tables:
            if table.name.startswith(("trial", "studies", "study")):
                rows[table.name] = [
                    tuple(v is not None if isinstance(v, datetime) or c.startswith("datetime")
                          else v for c, v in row._mapping.items())
                    for row in conn.execute(sa.select(table).order_by(*table.primary_key))]
    engine.dispose()
    return rows


def _datetimes_are_now(storage, since: datetime) -> None:
    """The trials' datetimes, read back by Optuna's own RDBStorage, are when they were set."""
    plain = RDBStorage(storage.url, engine_kwargs=_engine_kwargs(storage))
    trials = [t for s in plain.get_all_studies() for t in plain.get_all_trials(s._study_id)]
    assert trials
    for t in trials:
        assert since <= t.datetime_start <= datetime.now()
        assert t.datetime_complete is None or \
            t.datetime_start <= t.datetime_complete <= datetime.now()
    plain.engine.dispose()


def _engine_kwargs(storage) -> dict:
    return getattr(storage, "_test_engine_kwargs", {})


def _compare_writes(plain, fast) -> None:
    since = datetime.now()
    got = _writes(fast)
    assert got == _writes(plain)
    assert [got[f"create {i}"].number for i in range(8)] == [0, 0, 1, 2, 1, 3, 4, 5]
    assert got["waiting -> running"] is True
    assert got["running -> running"] is got["claimed -> running"] is False
    assert got["finished -> complete"][0] is optuna.exceptions.UpdateFinishedTrialError
    assert got["no trial"][0] is got["no study"][0] is KeyError
    assert _rows(fast.url, **_engine_kwargs(fast)) == _rows(plain.url, **_engine_kwargs(plain))
    for storage in (plain, fast):
        _datetimes_are_now(storage, since)
        storage.engine.dispose()


def test_trials_are_written_as_optunas_rdb_storage_writes_them(tmp_path, zone):
    _compare_writes(RDBStorage(f"sqlite:///{tmp_path / 'plain.db'}"),
                    FastRDBStorage(f"sqlite:///{tmp_path / 'fast.db'}"))


@contextlib.contextmanager
def _schema_storage(cls, pg_url: str):
    """A storage of class `cls` on PostgreSQL, in a schema of its own (dropped after)."""
    import sqlalchemy as sa

    from tuning_energy.store.storage import postgres_driver_url

    url, schema = postgres_driver_url(pg_url), f"fast_rdb_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    kwargs = {"connect_args": {"options": f"-csearch_path={schema}"}}
    try:
        storage = cls(url, engine_kwargs=kwargs)
        storage._test_engine_kwargs = kwargs
        yield storage
        storage.engine.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_postgresql_trials_are_written_as_optunas(pg_url):
    with _schema_storage(RDBStorage, pg_url) as plain, \
            _schema_storage(FastRDBStorage, pg_url) as fast:
        _compare_writes(plain, fast)


def test_postgresql_two_workers_claiming_one_waiting_trial_one_wins(pg_url):
    """Workers racing to start the same WAITING trial: the row lock lets exactly one."""
    workers = 4
    with _schema_storage(FastRDBStorage, pg_url) as setup:
        study = optuna.create_study(storage=setup)
        for i in range(12):
            study.enqueue_trial({"i": i})
        ids = [t._trial_id for t in study.get_trials(states=[TrialState.WAITING])]
        storages = [FastRDBStorage(setup.url, engine_kwargs=setup._test_engine_kwargs)
                    for _ in range(workers)]
        for trial_id in ids:
            start, won = threading.Barrier(workers), []

            def claim(storage, trial_id=trial_id, start=start, won=won):
                start.wait()
                won.append(storage.set_trial_state_values(trial_id, TrialState.RUNNING))

            threads = [threading.Thread(target=claim, args=(s,)) for s in storages]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(won) == [False] * (workers - 1) + [True], trial_id
        for storage in storages:
            storage.engine.dispose()


@pytest.mark.parametrize("cls", [RDBStorage, FastRDBStorage])
def test_a_trial_creation_that_hits_a_deadlock_is_tried_five_times(tmp_path, monkeypatch,
                                                                  cls):
    """As Optuna's: a failed transaction (a deadlock between workers) is tried again, up to
    five times, then its StorageInternalError is raised; nothing half-made is left."""
    import sqlalchemy as sa
    from sqlalchemy import event

    monkeypatch.setattr(time, "sleep", lambda _s: None)
    storage = cls(f"sqlite:///{tmp_path / 'store.db'}")
    study = storage.create_new_study([MIN], "one")
    failures = {"left": 0, "tries": 0}

    def deadlock(conn, cursor, statement, *_):
        if statement.startswith("INSERT INTO trials "):
            failures["tries"] += 1
            if failures["left"]:
                failures["left"] -= 1
                raise sa.exc.OperationalError(statement, None, Exception("deadlock detected"))

    event.listen(storage.engine, "before_cursor_execute", deadlock)
    failures.update(left=4, tries=0)
    assert storage._create_new_trial(study).number == 0
    assert failures["tries"] == 5
    failures.update(left=5, tries=0)
    with pytest.raises(optuna.exceptions.StorageInternalError):
        storage._create_new_trial(study)
    assert failures["tries"] == 5
    assert [t.number for t in storage.get_all_trials(study)] == [0]
    storage.engine.dispose()


def test_a_studys_ask_and_tell_run_no_orm_query(tmp_path):
    """study.ask, suggests and study.tell on a FastRDBStorage: Core statements only (each
    through Optuna's ORM costs ~3 ms of CPU per call on SQLite)."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    study = optuna.create_study(storage=FastRDBStorage(f"sqlite:///{tmp_path / 's.db'}"),
                                directions=[MIN, MAX],
                                sampler=optuna.samplers.RandomSampler(seed=0))  # no attrs
    study.tell(study.ask(), [1.0, 2.0])  # the study's directions, cached
    orm: list[str] = []

    def on_orm(state):
        orm.append(str(state.statement).split("\n")[0])

    event.listen(Session, "do_orm_execute", on_orm)
    try:
        for _ in range(3):
            trial = study.ask()
            trial.suggest_float("x", 0, 1)
            trial.suggest_int("n", 1, 8)
            study.tell(trial, [trial.params["x"], math.inf])
        study.tell(study.ask(), state=TrialState.PRUNED)
    finally:
        event.remove(Session, "do_orm_execute", on_orm)
    assert orm == []
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4 + [TrialState.PRUNED]

"""FastRDBStorage's reads on SQLite: two statements a read, through sqlite3 itself unless
something watches the engine, with Optuna's results and errors either way."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from sqlalchemy import event

from tuning_energy.store.fast_rdb import FastRDBStorage

SPACE = {"lr": FloatDistribution(1e-4, 1.0, log=True), "units": IntDistribution(8, 64, step=8)}


def _traced(storage) -> list[str]:
    """The SQL sqlite3 runs on the storage's connections (its trace callback: whatever runs
    it, SQLAlchemy or not), SELECT / INSERT / UPDATE statements only."""
    seen: list[str] = []

    def on_connect(dbapi_conn, _record):
        dbapi_conn.set_trace_callback(
            lambda sql: seen.append(sql) if sql.lstrip().split()[0].upper() in
            ("SELECT", "WITH", "INSERT", "UPDATE") else None)

    event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()
    return seen


def _study(storage, n: int = 3) -> optuna.Study:
    study = optuna.create_study(storage=storage, study_name="s",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for i in range(n):
        trial = study.ask(SPACE)
        trial.set_user_attr("energy_j", {"cpu": [1.5, None], "i": i})
        trial.report(0.5, 1)
        study.tell(trial, [0.1 * i, math.inf, None][i % 3],
                   state=TrialState.FAIL if i % 3 == 2 else None)
    study.ask(SPACE)  # a running trial
    return study


def test_a_trial_read_is_two_statements(tmp_path):
    """A trial, or a study's trials, with their params, values, attrs and steps: the trials,
    then the five child tables in one statement (Optuna's: one per table, and a study's
    existence checked first); a missing study, or one without such trials: one."""
    storage = FastRDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    study = _study(storage)
    ids = [t._trial_id for t in study.trials]
    seen = _traced(storage)
    for read in (lambda: storage.get_trial(ids[0]),
                 lambda: storage.get_all_trials(study._study_id),
                 lambda: storage._get_trials(study._study_id, None, {ids[0]}, ids[-2])):
        seen.clear()
        assert read()
        assert len(seen) == 2, seen
    seen.clear()
    assert storage._get_trials(study._study_id, None, set(), ids[-1]) == []
    assert len(seen) == 1, seen
    seen.clear()
    with pytest.raises(KeyError, match="Record does not exist"):
        storage.get_all_trials(study._study_id + 1)
    assert len(seen) == 1, seen
    storage.engine.dispose()


def test_watched_or_not_the_same_trials_as_optunas(tmp_path):
    """Unwatched, the statements run on sqlite3 itself; with a listener on the engine's
    statements (a user's instrumentation), through SQLAlchemy, which it sees all of. The
    trials read back are RDBStorage's either way."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    fast = FastRDBStorage(url)
    study = _study(fast)
    traced = _traced(fast)
    plain = RDBStorage(url)
    expected = plain.get_all_trials(study._study_id)
    unwatched = fast.get_all_trials(study._study_id)
    assert traced
    seen: list[str] = []
    event.listen(fast.engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_: seen.append(statement))
    traced.clear()
    watched = fast.get_all_trials(study._study_id)
    trial = optuna.load_study(study_name="s", storage=fast).ask(SPACE)
    fast.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, [1.0])
    assert len(seen) == len(traced) > 0
    for trials in (unwatched, watched):
        assert [t._trial_id for t in trials] == [t._trial_id for t in expected]
        for got, want in zip(trials, expected, strict=True):
            for name in ("number", "state", "values", "datetime_start", "datetime_complete",
                         "params", "distributions", "user_attrs", "system_attrs",
                         "intermediate_values"):
                assert getattr(got, name) == getattr(want, name), name
    for storage in (fast, plain):
        storage.engine.dispose()


@pytest.mark.parametrize("cls", [RDBStorage, FastRDBStorage])
def test_a_locked_database_is_optunas_storage_error(tmp_path, cls):
    """A write that finds the database locked by another connection: Optuna's
    StorageInternalError (sqlite3's error, wrapped as SQLAlchemy wraps it)."""
    import sqlite3

    path = tmp_path / "s.db"
    storage = cls(f"sqlite:///{path}", engine_kwargs={"connect_args": {"timeout": 0.05}})
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(optuna.exceptions.StorageInternalError) as error:
            storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, [1.0])
        assert "database is locked" in str(error.value.__cause__)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert storage.get_trial(trial._trial_id).state == TrialState.RUNNING
    storage.engine.dispose()


def test_each_read_has_its_own_attr_lists_and_dicts(tmp_path):
    """A list or dict attr read twice: two objects (a user changing one changes no other
    read); numbers and strings read back equal."""
    storage = FastRDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    attrs = {"d": {"cpu": [1.5, None]}, "l": [1, 2], "f": 0.1, "s": "x", "n": None,
             "b": True, "i": 3, "nan": math.nan}
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    first = storage.get_trial(trial._trial_id).user_attrs
    first["d"]["cpu"].append(2.0)
    first["l"].append(3)
    again = storage.get_trial(trial._trial_id).user_attrs
    assert again["d"] == {"cpu": [1.5, None]} and again["l"] == [1, 2]
    assert math.isnan(again.pop("nan")) and math.isnan(attrs.pop("nan"))
    assert again == attrs
    storage.engine.dispose()


def test_a_write_that_raises_leaves_nothing_for_the_next_call(tmp_path):
    """A transaction whose body raised is rolled back before its connection goes back to
    the pool, as Optuna's session rolls back: not left to the pool's reset-on-return,
    which an engine may turn off (then the next call on that connection committed it)."""
    from tuning_energy.store.fast_rdb import _statement
    from tuning_energy.store.transaction import transaction

    storage = FastRDBStorage(f"sqlite:///{tmp_path / 's.db'}", engine_kwargs={
        "pool_reset_on_return": None, "pool_use_lifo": True})
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    trial_id = trial._trial_id
    row = {"trial_id": trial_id, "param_name": "x", "param_value": 0.5,
           "distribution_json": optuna.distributions.distribution_to_json(
               FloatDistribution(0, 1))}
    with pytest.raises(RuntimeError), transaction(storage) as conn:
        conn.run(_statement("add_param"), row)
        raise RuntimeError("the write fails after its first statement")
    study.tell(trial, 1.0)  # a write on the same pooled connection, committed
    assert storage.get_trial(trial_id).params == {}

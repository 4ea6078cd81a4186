"""FastRDBStorage reads and writes a real SQLite store exactly as Optuna's RDBStorage does."""

from __future__ import annotations

import copy
import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from tuning_energy.store.fast_rdb import FastRDBStorage
from tuning_energy.store.storage import open_storage

SPACE = {"lr": FloatDistribution(1e-4, 1.0, log=True), "units": IntDistribution(8, 64, step=8),
         "act": CategoricalDistribution(["relu", None, 1.5]), "drop": FloatDistribution(0, 0.5)}


def _fill(storage, prefix: str = "") -> list[str]:
    """Two studies (one multi-objective), trials in every state, with inf/nan values."""
    names = [f"{prefix}one", f"{prefix}two"]
    study = optuna.create_study(storage=storage, study_name=names[0])
    for i, (state, value) in enumerate([
            (TrialState.COMPLETE, 0.5), (TrialState.COMPLETE, math.inf),
            (TrialState.COMPLETE, -math.inf), (TrialState.PRUNED, None),
            (TrialState.FAIL, None), (TrialState.RUNNING, None)]):
        trial = study.ask(SPACE if i % 2 else {"lr": SPACE["lr"], "act": SPACE["act"]})
        for step, v in enumerate([1.0, math.nan, math.inf, -math.inf, 2.0 + i]):
            trial.report(v, step * (i + 1))
        trial.set_user_attr("energy_j", {"cpu": [1.5, None], "i": i})
        trial.set_user_attr("a_note", "x" * i)
        trial.storage.set_trial_system_attr(trial._trial_id, "sys", [i, "y"])
        if state != TrialState.RUNNING:
            study.tell(trial, value, state=state)
    study.enqueue_trial({"lr": 0.01})  # WAITING, with a fixed param in its system attrs
    two = optuna.create_study(storage=storage, study_name=names[1],
                              directions=["minimize", "maximize"])
    two.optimize(lambda t: (t.suggest_float("x", -1, 1), math.inf), n_trials=3)
    two.ask()
    return names


def _same(a, b) -> None:
    """Equal trials. Orders: params by their id, as Optuna sorts them; attrs and steps come
    in the database's order in both (no ORDER BY), which differs between databases."""
    assert [t._trial_id for t in a] == [t._trial_id for t in b]
    for x, y in zip(a, b, strict=True):
        # nan != nan (and FrozenTrial's == compares the dicts): intermediate values by repr
        assert repr(sorted(x.intermediate_values.items())) == \
            repr(sorted(y.intermediate_values.items()))
        x, y = copy.deepcopy(x), copy.deepcopy(y)
        x.intermediate_values = y.intermediate_values = {}
        assert x == y
        for name in ("number", "state", "values", "datetime_start", "datetime_complete",
                     "params", "user_attrs", "system_attrs", "distributions", "_trial_id"):
            assert getattr(x, name) == getattr(y, name), name
        for name in ("params", "distributions"):
            assert list(getattr(x, name).items()) == list(getattr(y, name).items()), name


def _compare(url: str, names: list[str]) -> None:
    """Every read of FastRDBStorage against RDBStorage's, on the studies `names`."""
    plain, fast = RDBStorage(url), FastRDBStorage(url)
    sids = [plain.get_study_id_from_name(name) for name in names]
    assert {t.state for sid in sids for t in plain.get_all_trials(sid)} == set(TrialState)
    for sid in sids:
        trials = plain.get_all_trials(sid)
        _same(fast.get_all_trials(sid), trials)
        _same([fast.get_trial(t._trial_id) for t in trials],
              [plain.get_trial(t._trial_id) for t in trials])
        for states in ([TrialState.WAITING], [TrialState.RUNNING, TrialState.COMPLETE], []):
            _same(fast.get_all_trials(sid, states=states), plain.get_all_trials(sid, states=states))
        ids = {t._trial_id for t in trials}
        for included, above in [(set(), -1), ({min(ids), max(ids)}, min(ids) + 1),
                                (set(), min(ids) + 2), (ids, max(ids))]:
            _same(fast._get_trials(sid, None, included, above),
                  plain._get_trials(sid, None, included, above))
    # what a study reads through Optuna's cached storage
    _same(optuna.load_study(study_name=names[0], storage=fast).trials,
          optuna.load_study(study_name=names[0], storage=plain).trials)
    for storage in (plain, fast):
        storage.engine.dispose()


@pytest.mark.parametrize("writer", [RDBStorage, FastRDBStorage])
def test_trials_read_back_exactly_as_optunas_rdb_storage_reads_them(tmp_path, writer, zone):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    _compare(url, _fill(writer(url)))


def test_postgresql_trials_read_back_as_optunas(pg_url):
    import uuid

    from tuning_energy.store.storage import postgres_driver_url

    url = postgres_driver_url(pg_url)
    writer = FastRDBStorage(url)
    _compare(url, _fill(writer, f"fast-rdb-{uuid.uuid4().hex[:8]}-"))
    writer.engine.dispose()


def test_errors_are_optunas(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    fast = FastRDBStorage(url)
    study = optuna.create_study(storage=fast)
    trial = study.ask({"act": SPACE["act"]})
    with pytest.raises(KeyError, match="Record does not exist"):
        fast.get_trial(trial._trial_id + 100)
    with pytest.raises(KeyError, match="Record does not exist"):
        fast.get_all_trials(study._study_id + 100)
    with pytest.raises(KeyError, match="Record does not exist"):
        fast.set_trial_param(trial._trial_id + 100, "x", 0.0, SPACE["lr"])
    other = study.ask()
    # the distribution of an earlier trial's param is checked, on the backend itself
    with pytest.raises(ValueError, match="Cannot set different distribution kind"):
        fast.set_trial_param(other._trial_id, "act", 0.0, SPACE["lr"])
    with pytest.raises(ValueError, match="CategoricalDistribution does not support dynamic"):
        fast.set_trial_param(other._trial_id, "act", 0.0, CategoricalDistribution(["relu"]))
    fast.set_trial_param(other._trial_id, "act", 1.0, SPACE["act"])
    fast.set_trial_param(other._trial_id, "act", 2.0, SPACE["act"])  # a repeat: ignored
    assert fast.get_trial(other._trial_id).params == {"act": None}
    study.tell(other, 1.0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        fast.set_trial_param(other._trial_id, "lr", 0.1, SPACE["lr"])


def test_open_storage_builds_it_for_sqlite(tmp_path):
    assert type(open_storage(f"sqlite:///{tmp_path / 'a.db'}")) is FastRDBStorage


def test_more_trial_ids_than_the_database_takes_fall_back_as_optuna_does(tmp_path, caplog):
    """SQLite refuses a statement with more variables than its limit (here the study's
    number of trials, which Optuna's fallback needs): both storages warn and read the
    study's trials without the IN list."""
    import sqlite3

    from sqlalchemy import event

    url = f"sqlite:///{tmp_path / 'store.db'}"
    _fill(RDBStorage(url))
    plain, fast = RDBStorage(url), FastRDBStorage(url)
    sid = plain.get_study_id_from_name("one")
    ids = sorted(t._trial_id for t in plain.get_all_trials(sid))
    for storage in (plain, fast):
        event.listen(storage.engine, "connect", lambda conn, _: conn.setlimit(
            sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, len(ids)))
        storage.engine.dispose()
    included, above = set(ids[:-1]), ids[-2]  # study id + len(ids) - 1 ids + above
    with caplog.at_level("WARNING"):
        got = fast._get_trials(sid, None, included, above)
    assert "Falling back to a slower alternative" in caplog.text
    _same(got, plain._get_trials(sid, None, included, above))
    assert [t._trial_id for t in got] == ids

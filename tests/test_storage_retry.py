"""A worker's storage retries a lost connection without doing a write twice.

The connection is cut right after the database committed (the write happened, the client
hears of an error), the worst moment for a retry: a real SQLite store whose DB-API
connection commits and then raises what a dropped connection raises.
"""

from __future__ import annotations

import pickle
import sqlite3
import time

import optuna
import pytest
from optuna.trial import TrialState

from tuning_energy.store.retry import CREATIONS, RetryingStorage, wrap_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


class _Cuts:
    """Which commits drop the connection: those of a transaction that created a trial or
    changed its state, while `n` > 0 (one cut each); `after`: once the data is committed."""

    def __init__(self, after: bool = True):
        self.n = 0
        self.after = after
        self.wrote = False
        self.cut = 0


class _Connection:
    """A sqlite3 connection whose commit can drop the connection (see _Cuts)."""

    def __init__(self, conn: sqlite3.Connection, cuts: _Cuts):
        object.__setattr__(self, "_conn", conn)
        object.__setattr__(self, "_cuts", cuts)

    def commit(self):
        cuts = self._cuts
        wrote, cuts.wrote = cuts.wrote, False
        if not (wrote and cuts.n > 0):
            return self._conn.commit()
        cuts.n -= 1
        cuts.cut += 1
        if cuts.after:
            self._conn.commit()
        else:
            self._conn.rollback()
        raise sqlite3.OperationalError("server closed the connection unexpectedly")

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def __setattr__(self, name, value):
        setattr(self._conn, name, value)


def _storage(tmp_path, cuts: _Cuts, kind=optuna.storages.RDBStorage,
             cut=("INSERT INTO TRIALS ", "UPDATE TRIALS SET")):
    from sqlalchemy import event

    path = tmp_path / "store.db"
    storage = kind(f"sqlite:///{path}", engine_kwargs={
        "creator": lambda: _Connection(sqlite3.connect(str(path), check_same_thread=False),
                                       cuts)})

    @event.listens_for(storage.engine, "before_cursor_execute")
    def _watch(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(cut):
            cuts.wrote = True

    return wrap_storage(storage, "the test store", limit_s=30)


def test_a_write_committed_before_the_connection_dropped_is_not_done_again(tmp_path):
    cuts = _Cuts(after=True)
    study = optuna.create_study(storage=_storage(tmp_path, cuts), study_name="s")
    cuts.n = 10**6  # every trial creation and every state change loses its connection

    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    # A queued trial: claiming it (WAITING -> RUNNING) is a state change too.
    study.enqueue_trial({"x": 0.25})
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)

    trials = study.get_trials()
    assert cuts.cut >= 8  # 4 creations (3 + the queued one) and 5 state changes, each cut
    assert [t.number for t in trials] == [0, 1, 2, 3]  # no trial created twice
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4  # none left RUNNING
    assert trials[3].params == {"x": 0.25}  # the queued trial ran, once
    # Each trial was added by one creation call, its token kept beside the trials ...
    assert _created_by(tmp_path) == {t._trial_id: 1 for t in trials}
    # ... and nothing of it is on the trials, as any Optuna reader sees them.
    plain = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'store.db'}")
    assert [t.system_attrs for t in plain.get_trials()] == [{}] * 3 + [  # Optuna's own only
        {"fixed_params": {"x": 0.25}}]


def _created_by(tmp_path) -> dict[int, int]:
    """How many creation tokens each trial has in the store."""
    with sqlite3.connect(tmp_path / "store.db") as conn:
        return dict(conn.execute(
            f"SELECT trial_id, COUNT(*) FROM {CREATIONS} GROUP BY trial_id").fetchall())


def test_a_write_lost_with_the_connection_is_done_on_retry(tmp_path):
    cuts = _Cuts(after=False)
    study = optuna.create_study(storage=_storage(tmp_path, cuts), study_name="s")
    cuts.n = 2  # the first creation and the first state change are lost
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    trials = study.get_trials()
    assert cuts.cut == 2
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2


def test_a_trial_finished_elsewhere_is_not_finished_again(tmp_path):
    """The state check repeats a write the first attempt did not do: a trial finished with
    other values meanwhile still raises, as Optuna's own call does."""
    cuts = _Cuts(after=False)
    storage = _storage(tmp_path, cuts)
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, [1.0])
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, [2.0])
    assert storage.get_trial(trial._trial_id).values == [1.0]


def test_a_study_on_the_wrapped_storage_pickles_and_goes_on(tmp_path):
    """A study sent to another process (pickled) keeps the retrying storage and its trials."""
    storage = wrap_storage(optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'p.db'}"),
                           "the test store", limit_s=30)
    study = optuna.create_study(storage=storage, study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)

    restored = pickle.loads(pickle.dumps(study))
    restored.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert isinstance(restored._storage._backend, RetryingStorage)
    assert [t.number for t in study.get_trials()] == [0, 1, 2]
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 3


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_heartbeats_and_stale_trials_go_through_the_wrapper(tmp_path):
    """Optuna's heartbeat sees the wrapped storage's settings, set on the wrapper too."""
    failed = []
    storage = wrap_storage(optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'h.db'}"),
                           "the test store", limit_s=30)
    storage.heartbeat_interval, storage.grace_period = 1, 1
    # (named failed_trial_callback before Optuna 4.9)
    storage.heartbeat_stale_trial_callback = storage.failed_trial_callback = \
        lambda study, trial: failed.append(trial.number)
    study = optuna.create_study(storage=storage, study_name="s")
    with pytest.warns(UserWarning, match="Heartbeat"):
        trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    time.sleep(2.5)
    optuna.storages.fail_stale_trials(study)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL]
    assert failed == [0]


def test_a_proposals_parameters_on_the_retrying_storage_are_each_retried(tmp_path):
    """`written_at_once` holds nothing on a worker's retrying storage: each parameter's
    commit is retried as before (a held batch was written past the retries, and a dropped
    connection failed the proposal)."""
    from tuning_energy.store.fast_rdb import FastRDBStorage
    from tuning_energy.store.trial_writes import set_user_attrs, written_at_once

    cuts = _Cuts(after=False)
    storage = _storage(tmp_path, cuts, FastRDBStorage, ("INSERT INTO TRIAL_PARAMS",))
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    cuts.n = 1
    with written_at_once(trial):
        trial.suggest_float("x", 0, 1)
        trial.suggest_int("n", 0, 3)
        set_user_attrs(trial, {"store_s": 0.5})
    study.tell(trial, 0.5)
    assert cuts.cut == 1
    stored = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'store.db'}")
    assert set(stored.trials[0].params) == {"x", "n"}
    assert stored.trials[0].user_attrs == {"store_s": 0.5}

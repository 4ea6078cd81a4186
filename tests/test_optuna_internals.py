"""The parts of Optuna that tuning-energy uses beyond its public API exist on the Optuna
installed here, each checked on a real store so that an upgrade fails here, by name.

pyproject.toml allows optuna >= 4.3 (UpdateFinishedTrialError), < 6 (the next major may
move these). `scripts/optuna_range.sh oldest|newest` runs this file and the storage tests
under the oldest and the newest Optuna in that range.
"""

from __future__ import annotations

import importlib
import inspect

import optuna
import pytest

#: (object, attribute path, who uses it and why)
MODULES = [
    ("optuna.exceptions", "UpdateFinishedTrialError",
     "storage.py, workers.py: a write to a finished trial (public, Optuna >= 4.3)"),
    ("optuna.storages._cached_storage", "_CachedStorage",
     "trial_writes.set_user_attrs: the backend behind a study's storage"),
    ("optuna.storages.journal._storage", "JournalOperation.SET_TRIAL_USER_ATTR",
     "trial_writes._append: Optuna's own journal record for a user attr"),
    ("optuna.storages.journal._storage", "JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE",
     "trial_writes._append: Optuna's own journal record for a step's value"),
    ("optuna.storages._rdb.models", "TrialIntermediateValueModel.__table__",
     "trial_writes._upsert: INSERT ... ON CONFLICT (trial_id, step)"),
    ("optuna.storages._rdb.models",
     "TrialIntermediateValueModel.intermediate_value_to_stored_repr",
     "trial_writes._upsert: a step's value encoded as Optuna encodes it"),
    ("optuna.storages._rdb.models", "TrialUserAttributeModel.__table__",
     "trial_writes._upsert: INSERT ... ON CONFLICT (trial_id, key)"),
    ("optuna.storages._rdb.models", "TrialModel.__table__.c.trial_id",
     "store.retry: the creation tokens' table refers to it"),
    ("optuna.storages._rdb.models", "StudyModel.find_or_raise_by_id",
     "store.retry: a trial's creation locks its study row, as Optuna's"),
    ("optuna.storages._rdb.models", "TrialModel.study_id", "store.retry, store.storage"),
    ("optuna.storages._rdb.storage", "_create_scoped_session",
     "trial_writes._upsert, store.retry's trial creation: one transaction"),
    ("optuna.storages._rdb.models", "NOT_FOUND_MSG",
     "store.fast_rdb: the KeyError of a missing trial or study, Optuna's"),
    ("optuna.storages._rdb.models", "TrialValueModel.stored_repr_to_value",
     "store.fast_rdb: a trial's values decoded as Optuna decodes them"),
    ("optuna.storages._rdb.models",
     "TrialIntermediateValueModel.stored_repr_to_intermediate_value",
     "store.fast_rdb: a step's value decoded as Optuna decodes it"),
    *[("optuna.storages._rdb.models", f"{model}.__table__", "store.fast_rdb: Core queries")
      for model in ("StudyModel", "TrialParamModel", "TrialValueModel",
                    "TrialSystemAttributeModel")],
    ("optuna.storages._rdb.models", "TrialValueModel.value_to_stored_repr",
     "store.fast_rdb_writes: a trial's values encoded as Optuna encodes them"),
    ("optuna.distributions", "check_distribution_compatibility",
     "store.fast_rdb._set_trial_param: Optuna's check and error"),
    ("optuna.storages._heartbeat", "is_heartbeat_enabled", "workers.py: reaping"),
    ("optuna.storages._heartbeat", "get_heartbeat_thread", "workers.py: heartbeats"),
    ("optuna.samplers._lazy_random_state", "LazyRandomState", "samplers.py: seeding"),
    ("optuna.study._tell", "_tell_with_warning",
     "run/tell.py: study.tell's checks and writes, without its read-back"),
]
JOURNAL = [
    ("_thread_lock", "trial_writes._append: appends under the storage's lock"),
    ("_replay_result.worker_id", "trial_writes._append: the records' worker id"),
    ("_backend.append_logs", "trial_writes._append: one append for all attrs"),
    ("_sync_with_backend", "trial_writes._append: replays its own records"),
]
RDB = [
    ("_get_prepared_new_trial", "store.retry: the idempotent trial creation adds the trial"),
    ("_create_new_trial", "store.retry; Optuna's _CachedStorage creates trials with it"),
    ("_get_stale_trial_ids", "workers.py: reaping trials whose heartbeat stopped"),
    ("_get_trials", "store.fast_rdb overrides it: Optuna's _CachedStorage reads trials with it"),
    ("scoped_session", "trial_writes._upsert"),
    ("engine", "storage.py (SQLite pragmas), workers.py (the claim lock)"),
]
TRIAL = [
    ("_cached_frozen_trial.user_attrs", "trial_writes.set_user_attrs keeps the trial's view current"),
    ("_cached_frozen_trial.intermediate_values", "trial_writes.set_user_attrs, as report does"),
    ("_trial_id", "storage.py, workers.py"),
    ("storage", "trial_writes.set_user_attrs"),
]


def _missing(obj, path: str) -> bool:
    for part in path.split("."):
        if not hasattr(obj, part):
            return True
        obj = getattr(obj, part)
    return False


def _fail(what: str, path: str, why: str) -> str:
    return (f"Optuna {optuna.__version__} has no {what}.{path}, which tuning-energy uses "
            f"({why}). pyproject.toml allows optuna>=4.3,<6: port that use to this "
            f"version, or narrow the range")


@pytest.mark.parametrize("module,path,why", MODULES)
def test_optuna_modules_have_what_we_use(module, path, why):
    assert not _missing(importlib.import_module(module), path), _fail(module, path, why)


def test_journal_rdb_and_trial_internals_exist_on_real_stores(tmp_path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    journal = JournalStorage(JournalFileBackend(str(tmp_path / "j.log")))
    rdb = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'r.db'}")
    trial = optuna.create_study(storage=rdb).ask()
    missing = [_fail(type(obj).__name__, path, why)
               for obj, names in ((journal, JOURNAL), (rdb, RDB), (trial, TRIAL))
               for path, why in names if _missing(obj, path)]
    assert not missing, "\n".join(missing)
    # store.retry calls it with these arguments, in its own transaction
    params = list(inspect.signature(rdb._get_prepared_new_trial).parameters)
    assert params == ["study_id", "template_trial", "session"], _fail(
        "RDBStorage", f"_get_prepared_new_trial{tuple(params)}", "store.retry")
    # The upsert needs the unique (trial_id, key) the attr tables have.
    from optuna.storages._rdb import models

    uniques = [sorted(c.name for c in con.columns)
               for con in models.TrialUserAttributeModel.__table__.constraints
               if con.__class__.__name__ == "UniqueConstraint"]
    assert ["key", "trial_id"] in uniques, _fail(
        "TrialUserAttributeModel", "UniqueConstraint(trial_id, key)", "trial_writes._upsert")
    uniques = [sorted(c.name for c in con.columns)
               for con in models.TrialIntermediateValueModel.__table__.constraints
               if con.__class__.__name__ == "UniqueConstraint"]
    assert ["step", "trial_id"] in uniques, _fail(
        "TrialIntermediateValueModel", "UniqueConstraint(trial_id, step)", "trial_writes._upsert")


def test_fast_rdb_overrides_take_rdb_storages_arguments():
    """FastRDBStorage replaces these RDBStorage methods: Optuna calls them by these names."""
    from tuning_energy.store.fast_rdb import FastRDBStorage

    for name in ("get_trial", "_get_trials", "set_trial_param", "_set_trial_param",
                 "set_trial_state_values", "_create_new_trial"):
        if name == "_set_trial_param" and not hasattr(optuna.storages.RDBStorage, name):
            continue  # Optuna < 5: its cached storage calls set_trial_param, ours calls this
        theirs = list(inspect.signature(getattr(optuna.storages.RDBStorage, name)).parameters)
        ours = list(inspect.signature(getattr(FastRDBStorage, name)).parameters)
        assert ours == theirs, _fail("RDBStorage", f"{name}{tuple(theirs[1:])}",
                                     f"store.fast_rdb overrides it as {name}{tuple(ours[1:])}")

"""`tuning-energy delete`: remove one study, and its trials, from a store.

The way out of a study that can no longer be resumed (its config changed before any trial
finished: runner.open_study names this command in its refusal). A study is data: the CLI
asks before deleting (y/N on a terminal), `--yes` deletes without asking, and without a
terminal and without `--yes` nothing is deleted. A study that a run holds (SQLite's
one-run lock, storage.run_lock) is not deleted under it.
"""

from __future__ import annotations

from collections import Counter

from tuning_energy.errors import StorageError
from tuning_energy.store.storage import open_storage, run_lock
from tuning_energy.store.url import StoreURL


def delete_command(study_name: str, storage_url: StoreURL | str) -> str:
    """The command line that deletes `study_name` from `storage_url` (for messages)."""
    return f"tuning-energy delete --study {study_name} --storage {StoreURL.parse(storage_url).redacted}"


def describe(study_name: str, storage_url: StoreURL | str) -> str:
    """'study NAME in URL: 3 trials (2 COMPLETE, 1 FAIL)'; StorageError when it is not
    there, naming the studies that are."""
    import optuna

    storage = open_storage(storage_url, create=False)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, False)]
    if study_name not in names:
        raise StorageError(f"--study = {study_name!r}: no such study in {StoreURL.parse(storage_url).redacted}; "
                           f"its studies: {', '.join(sorted(names)) or 'none'}")
    trials = optuna.load_study(study_name=study_name, storage=storage).get_trials(
        deepcopy=False)
    states = Counter(t.state.name for t in trials)
    parts = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    return f"study {study_name!r} in {StoreURL.parse(storage_url).redacted}: {len(trials)} trial(s)" + \
        (f" ({parts})" if parts else "")


def delete_study(study_name: str, storage_url: StoreURL | str) -> None:
    """Delete the study and all its trials (describe() first: it must exist)."""
    import optuna

    describe(study_name, storage_url)
    with run_lock(storage_url, study_name):  # not under a run of it
        optuna.delete_study(study_name=study_name,
                            storage=open_storage(storage_url, create=False))

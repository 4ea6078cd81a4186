"""Batched trial attrs on the real stores users use (SQLite file, journal file)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from tuning_energy.errors import StorageError
from tuning_energy.store.storage import open_storage
from tuning_energy.store.trial_writes import set_user_attrs
from tuning_energy.store.url import StoreURL


@pytest.mark.parametrize("scheme", ["sqlite", "journal"])
def test_set_user_attrs_writes_overwrites_and_refuses_finished_trials(tmp_path, scheme):
    url = f"{scheme}:///{tmp_path / 'store'}"
    study = optuna.create_study(storage=open_storage(url), study_name="s")
    trial = study.ask()
    set_user_attrs(trial, {"energy_j": 1.5, "energy_by_device_j": {"cpu0": 1.5},
                           "train_loss": None, "energy_method": "estimate-cpu-tdp-tree"})
    set_user_attrs(trial, {"energy_j": 2.5})  # a second write replaces, not duplicates
    assert trial.user_attrs["energy_j"] == 2.5
    study.tell(trial, 0.9)
    stored = optuna.load_study(study_name="s", storage=open_storage(url)).trials[0].user_attrs
    assert stored == {"energy_j": 2.5, "energy_by_device_j": {"cpu0": 1.5},
                      "train_loss": None, "energy_method": "estimate-cpu-tdp-tree"}
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        set_user_attrs(trial, {"late": 1})


def test_bad_storage_urls_name_the_allowed_forms():
    with pytest.raises(StorageError, match="allowed forms are sqlite:///PATH") as err:
        StoreURL.parse("studies/energy.db")
    assert "--storage = 'studies/energy.db'" in str(err.value)
    assert "sqlite, journal, postgresql, mysql" in str(err.value)
    with pytest.raises(StorageError, match="three slashes"):
        open_storage("journal://x")


def test_a_storage_url_is_parsed_into_its_kind_and_file(tmp_path):
    rel = StoreURL.parse("sqlite:///studies/energy.db")
    assert (rel.kind, rel.path, rel.name, rel.shared) == (
        "sqlite", Path("studies/energy.db"), "energy", False)
    assert StoreURL.parse(f"sqlite:///{tmp_path}/a.db").path == tmp_path / "a.db"  # absolute
    assert StoreURL.parse("sqlite:///:memory:").path is None
    journal = StoreURL.parse("journal:///runs/j.log")
    assert (journal.kind, journal.path, journal.shared) == ("journal", Path("runs/j.log"), True)
    server = StoreURL.parse("postgresql+psycopg://tuner:s3cret-pw@db:5432/energy")
    assert (server.kind, server.path, server.name, server.shared) == (
        "postgresql", None, "postgresql", True)
    assert "s3cret-pw" not in f"{server} {server.redacted}" and "s3cret-pw" in server.text
    assert StoreURL.parse(server) is server  # a parsed URL passes through
    # the URL's file decides where figures and dashboard artifacts go
    from tuning_energy.commands import default_figures_dir
    from tuning_energy.report.dashboard import default_artifact_dir

    assert default_figures_dir("journal:///runs/j.log") == "figures/j"
    assert default_artifact_dir(journal) == Path("runs/artifacts")
    assert default_figures_dir(server) == "figures/postgresql"


def test_the_cli_refuses_a_bad_storage_url_naming_the_forms(capsys):
    from tuning_energy.cli import main

    assert main(["show", "--storage", "studies/energy.db"]) == 2
    assert "allowed forms are sqlite:///PATH" in capsys.readouterr().err


def test_a_store_that_cannot_be_opened_never_shows_the_password():
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://tuner:s3cret-pw@127.0.0.1:{port}/energy"
    with pytest.raises(StorageError) as err:
        open_storage(url)
    message = str(err.value)
    assert "cannot open the store" in message and f"127.0.0.1:{port}" in message
    assert "s3cret-pw" not in message and "tuner:***@" in message
    with pytest.raises(StorageError) as err:
        open_storage("postgres-ish://tuner:s3cret-pw@host/db")
    assert "s3cret-pw" not in str(err.value)


def test_a_journal_is_replayed_once_per_process_and_stays_current(tmp_path):
    """`compare` opens the store once per study: a 20-seed comparison's journal took 5 s
    to replay at each open. One storage per file and process, which still sees what
    another process appends, and a file made anew is a new store."""
    import subprocess
    import sys

    url = f"journal:///{tmp_path}/j.log"
    first = open_storage(url)
    optuna.create_study(storage=first, study_name="s")
    assert open_storage(url) is first
    code = ("import optuna; from tuning_energy.store.storage import open_storage; "
            f"s = optuna.load_study(study_name='s', storage=open_storage({url!r})); "
            "s.enqueue_trial({}); t = s.ask(); s.tell(t, 0.5)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    again = optuna.load_study(study_name="s", storage=open_storage(url))
    assert [t.value for t in again.trials] == [0.5]  # the other process's trial
    (tmp_path / "j.log").unlink()
    fresh = open_storage(url)
    assert fresh is not first
    assert optuna.get_all_study_names(fresh) == []


@pytest.mark.parametrize("scheme", ["sqlite", "journal", "memory"])
def test_set_user_attrs_writes_a_learning_curve_with_the_attrs(tmp_path, scheme):
    """A trial's reported values, written with its attrs, read back as trial.report's are
    (inf too), on a fresh connection to the store."""
    url = None if scheme == "memory" else f"{scheme}:///{tmp_path / 'store'}"
    storage = open_storage(url) if url else optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    curve = {0: 0.5, 1: 0.75, 2: float("inf"), 3: 0.875}
    set_user_attrs(trial, {"energy_j": 1.0}, curve)
    assert trial._cached_frozen_trial.intermediate_values == curve
    study.tell(trial, 0.9)
    again = optuna.load_study(study_name="s", storage=open_storage(url) if url else storage)
    assert again.trials[0].intermediate_values == curve
    assert again.trials[0].user_attrs == {"energy_j": 1.0}
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        set_user_attrs(trial, {}, {4: 1.0})


def test_a_curve_of_twenty_thousand_steps_lands_on_postgresql(pg_url):
    """PostgreSQL takes at most 65,535 bind parameters in one statement: a long curve is
    written in several INSERTs of one transaction (before: one INSERT, refused at the end
    of the trial, and the trial's attrs lost with it)."""

    import uuid

    name = f"long-curve-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(storage=open_storage(pg_url), study_name=name)
    trial = study.ask()
    curve = {step: step / 20_000 for step in range(20_000)}
    set_user_attrs(trial, {"energy_j": 1.0}, curve)
    study.tell(trial, 0.5)
    again = optuna.load_study(study_name=name, storage=open_storage(pg_url)).trials[0]
    assert again.intermediate_values == curve and again.user_attrs == {"energy_j": 1.0}
    optuna.delete_study(study_name=name, storage=open_storage(pg_url))


def _commits(engine) -> list[int]:
    """A counter of the transactions that wrote something, committed on `engine` from now
    on (reads commit too: not counted)."""
    from sqlalchemy import event

    count, wrote = [0], [False]

    def on_execute(_conn, _cursor, statement, *_):
        wrote[0] = wrote[0] or statement.lstrip().split()[0].upper() in ("INSERT", "UPDATE")

    def on_commit(_conn):
        count[0] += wrote[0]
        wrote[0] = False

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)
    return count


SPACE = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
         "units": optuna.distributions.IntDistribution(8, 64, step=8),
         "act": optuna.distributions.CategoricalDistribution(["relu", "tanh"])}


def _suggest(trial, space=SPACE) -> dict:
    return {name: trial._suggest(name, dist) for name, dist in space.items()}


@pytest.mark.parametrize("scheme", ["sqlite", "postgresql"])
def test_a_proposals_parameters_and_attrs_are_one_commit(tmp_path, scheme, request):
    """`written_at_once`: the parameters a proposal suggests (Optuna commits each) and the
    attrs set with them land in one transaction, read back as Optuna's own writes are,
    with Optuna's checks (a distribution that changed is refused; a finished trial too)."""
    import uuid

    from tuning_energy.store.trial_writes import written_at_once

    url = request.getfixturevalue("pg_url") if scheme == "postgresql" \
        else f"sqlite:///{tmp_path / 's.db'}"
    name = f"once-{uuid.uuid4().hex[:8]}"
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name=name)
    plain = study.ask()
    want = _suggest(plain)  # Optuna's own path: the study's first distributions
    study.tell(plain, 0.1)
    trial = study.ask()
    commits = _commits(storage.engine)
    with written_at_once(trial):
        params = _suggest(trial)
        set_user_attrs(trial, {"propose_s": 0.01, "run_id": "r1"})
        assert trial.params == params  # the trial's own view, before the commit
    assert commits[0] == 1  # before: one per parameter and one for the attrs
    study.tell(trial, 0.2)
    again = optuna.load_study(study_name=name, storage=open_storage(url)).trials
    assert again[1].params == params and again[1].distributions == again[0].distributions
    assert again[1].user_attrs == {"propose_s": 0.01, "run_id": "r1"}
    assert set(again[0].params) == set(want)

    # a distribution that changed fails the suggest itself (Optuna's cache never keeps
    # it), in a new process (nothing cached: the store is read) and for its next trial too
    fresh = optuna.load_study(study_name=name, storage=open_storage(url))
    for _ in range(2):
        changed = fresh.ask()
        with written_at_once(changed):
            with pytest.raises(ValueError):
                changed._suggest("act", optuna.distributions.CategoricalDistribution(["gelu"]))
            set_user_attrs(changed, {"store_s": 0.5})
        fresh.tell(changed, state=optuna.trial.TrialState.FAIL)
    stored = optuna.load_study(study_name=name, storage=open_storage(url)).trials
    assert [t.distributions.get("act") for t in stored[2:]] == [None, None]
    assert [t.user_attrs for t in stored[2:]] == [{"store_s": 0.5}] * 2
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError), written_at_once(trial):
        set_user_attrs(trial, {"late": 1})
    optuna.delete_study(study_name=name, storage=storage)


def test_held_writes_land_when_the_block_raises_and_other_threads_write_at_once(tmp_path):
    """What Optuna would have committed by the time the block raised is written; a write
    from another thread (a worker's heartbeat) is not held."""
    import threading

    from tuning_energy.store.trial_writes import written_at_once

    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(storage=open_storage(url), study_name="s")
    trial = study.ask()
    seen = {}

    def heartbeat():
        set_user_attrs(trial, {"beat": 1})
        seen.update(optuna.load_study(study_name="s", storage=open_storage(url))
                    .trials[0].user_attrs)

    with pytest.raises(RuntimeError), written_at_once(trial):
        trial._suggest("lr", SPACE["lr"])
        set_user_attrs(trial, {"store_s": 0.5})
        other = threading.Thread(target=heartbeat)
        other.start()
        other.join()
        raise RuntimeError("the sampler failed")
    assert seen == {"beat": 1}
    stored = optuna.load_study(study_name="s", storage=open_storage(url)).trials[0]
    assert set(stored.params) == {"lr"} and stored.user_attrs == {"beat": 1, "store_s": 0.5}


def test_a_held_parameter_already_stored_is_ignored_as_optunas_own_write_ignores_it(tmp_path):
    """A parameter row already in the store (Optuna's path ignores the IntegrityError of each
    such write): the batch is written again one write at a time, the other rows land."""
    from tuning_energy.store.trial_writes import written_at_once

    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    storage._set_trial_param(trial._trial_id, "lr", 0.5, SPACE["lr"], None)  # already there
    with written_at_once(trial):
        storage._set_trial_param(trial._trial_id, "lr", 0.25, SPACE["lr"], None)
        _suggest(trial, {"act": SPACE["act"]})
        set_user_attrs(trial, {"store_s": 0.5})
    stored = optuna.load_study(study_name="s", storage=open_storage(url)).trials[0]
    assert stored.params["lr"] == 0.5 and set(stored.params) == {"lr", "act"}
    assert stored.user_attrs == {"store_s": 0.5}

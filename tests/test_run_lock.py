"""One process per study in a SQLite store: a second run is refused, naming the first, and
never takes the first's live trial for one left behind by a killed run."""

from __future__ import annotations

import os
import socket

import pytest
from optuna.trial import TrialState

from tuning_energy.errors import StorageError
from tuning_energy.store.storage import lock_path, run_lock

from .test_runner import _cli, _slow_config, _wait_for_running, load


def test_a_second_process_on_the_same_study_is_refused_and_the_first_finishes(tmp_path):
    # trials of a second or more each, so that the first run is still going when the
    # second process (which imports torch first: seconds) reaches the store
    cfg = _slow_config(tmp_path, n_trials=6, conv_low=2)
    url = f"sqlite:///{tmp_path / 'energy.db'}"
    args = ["study", "--config", str(cfg), "--strategy", "random", "--storage", url,
            "--no-progress"]
    first = _cli(*args)
    second = None
    try:
        _wait_for_running(url, "slow-random-s0", max_complete=2)  # the first is in a trial
        second = _cli(*args)
        out2, _ = second.communicate(timeout=120)
        assert second.returncode == 2, out2
        assert f"pid {first.pid} on {socket.gethostname()}" in out2
        assert "--workers N" in out2 and "journal:///" in out2 and "postgresql://" in out2
        out1, _ = first.communicate(timeout=300)
        assert first.returncode == 0, out1
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    states = [t.state for t in load(url, "slow-random-s0").trials]
    assert states == [TrialState.COMPLETE] * 6  # exactly the budget; the live trial kept
    assert not lock_path(url, "slow-random-s0").exists()  # removed when the run ended
    assert not lock_path(url, "slow-random-s0").parent.exists()


def test_the_lock_is_per_study_and_names_its_holder(tmp_path):
    url = f"sqlite:///{tmp_path / 'energy.db'}"
    with run_lock(url, "a-random-s0") as me:
        assert me["pid"] == os.getpid()
        with run_lock(url, "a-random-s1"):  # another study of the store: its own lock
            pass
        with pytest.raises(StorageError, match=rf"another process \(pid {os.getpid()} on "):
            with run_lock(url, "a-random-s0"):
                pass
    with run_lock(url, "a-random-s0"):  # released
        pass
    with run_lock(f"journal:///{tmp_path / 'j.log'}", "a-random-s0") as none:
        assert none is None  # journal and PostgreSQL share a study through the claim lock


def test_a_study_in_memory_needs_no_lock():
    with run_lock("sqlite:///:memory:", "x") as none:
        assert none is None

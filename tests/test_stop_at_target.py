"""budget.stop_at_target: on a real SQLite store with a fast own objective, and with two
workers on a real journal file."""

from __future__ import annotations

import uuid

import pytest
from optuna.trial import TrialState

from tuning_energy.config import parse_config
from tuning_energy.energy.accounting import charged_energy_j
from tuning_energy.errors import ConfigError
from tuning_energy.run.pool import WorkerPool
from tuning_energy.run.workers import WorkerOptions

from .conftest import tiny_doc
from .test_user_objective import _run, _study, _trials
from .test_workers import tick_meters


def _stopping(tmp_path, stop: bool, n_trials: int = 12):
    """The quadratic loss (minimised, target 0.05) with stop_at_target on or off."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    toml = _study(tmp_path, n_trials=n_trials, extra="")
    text = toml.read_text().replace("[budget]\n", f"[budget]\nstop_at_target = {str(stop).lower()}\n")
    toml.write_text(text)
    return toml


def _first_reaching(trials, target=0.05):
    return next(t for t in sorted(trials, key=lambda t: t.number)
                if t.state == TrialState.COMPLETE and t.value <= target)


def test_a_study_ends_at_the_first_trial_that_reaches_the_target(tmp_path, storage_url):
    whole = _run(_stopping(tmp_path / "a", False), "random", f"sqlite:///{tmp_path / 'a.db'}")
    every = _trials(f"sqlite:///{tmp_path / 'a.db'}", whole)
    hit = _first_reaching(every)
    assert hit.number < len(every) - 1, "the seed must reach the target before the end"

    summary = _run(_stopping(tmp_path / "b", True), "random", storage_url)
    stopped = _trials(storage_url, summary)
    assert summary.stop_reason.startswith("target reached")
    assert [t.number for t in stopped] == list(range(hit.number + 1))
    # The same trials up to the target (same seed): energy to target is that of the whole
    # search cut at the same trial; only the rest of the budget is not spent.
    assert [t.params for t in stopped] == [t.params for t in every[: hit.number + 1]]
    assert all(charged_energy_j(t.user_attrs) is not None for t in stopped)

    # A resume of a study that has reached its target runs nothing.
    again = _run(_stopping(tmp_path / "b", True), "random", storage_url)
    assert len(_trials(storage_url, again)) == hit.number + 1
    assert again.stop_reason.startswith("target reached")


def test_stop_at_target_without_a_target_is_refused_naming_the_key():
    doc = tiny_doc(budget={"n_trials": 3, "stop_at_target": True})
    del doc["target_accuracy"]
    with pytest.raises(ConfigError, match="budget.stop_at_target = true: needs the config's "
                                          "target; set target_accuracy"):
        parse_config(doc)


def test_two_workers_stop_claiming_once_one_reached_the_target(tmp_path):
    """Each worker finishes the trial it runs and claims no other: at most one trial per
    worker after the one that reached it."""
    url = f"journal:///{tmp_path / 'study.log'}"
    name = f"t{uuid.uuid4().hex[:8]}"
    config = parse_config(tiny_doc(name=name, target_accuracy=0.3,
                                   budget={"n_trials": 40, "stop_at_target": True},
                                   search_space={"lr": {"type": "float", "low": 1e-3,
                                                        "high": 1e-2, "log": True}}))
    pool = WorkerPool(config, "random", 0, url, WorkerOptions(n_workers=2, poll_s=0.2),
                      meter_factory=tick_meters)
    pool.start()
    summary = pool.wait(timeout_s=300)
    trials = pool.study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    hit = min(t.number for t in finished if t.value is not None and t.value >= 0.3)
    assert summary.stop_reason.startswith("target reached")
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert len(finished) <= hit + 1 + 2, "a worker went on claiming after the target"
    assert len(finished) < 40

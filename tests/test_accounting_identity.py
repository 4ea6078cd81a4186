"""Training + proposing + storage is everything the study's process spent in its trial loop
(objective/overhead.py): real studies on real SQLite stores, the estimate meter (CPU time
of the process tree x watts per core), the loop's CPU time read independently."""

from __future__ import annotations

import io

import optuna
import pytest

from tuning_energy.config import load_config, parse_config
from tuning_energy.energy.accounting import charged_energy_j
from tuning_energy.energy.cputree import ProcessTreeCpu
from tuning_energy.run.runner import run_study
from tuning_energy.run.trial_source import LocalTrials

from .conftest import tiny_doc
from .test_user_objective import _study

MODULE = '''
def light(params, ctx):
    """Little work, many reports: storage is a large share, as on a fast objective."""
    loss = 0.0
    for step in range(12):
        loss += sum(i * i for i in range(3000)) * 1e-12 + (params["x"] - 0.3) ** 2
        ctx.report(step, loss)
    return loss

def reports_only(params, ctx):
    """No work of its own: whatever its window holds beyond the loop is the report writes."""
    for step in range(30):
        ctx.report(step, params["x"])
    return params["x"]

def one_report(params, ctx):
    ctx.report(0, params["x"])
    return params["x"]
'''


class LoopCpu(LocalTrials):
    """LocalTrials that reads the process tree's CPU seconds when the first proposal window
    has opened and after every trial is told: the trial loop's CPU time."""

    def __init__(self, storage_url: str):
        super().__init__(storage_url, partial_energy_s=None)
        self.cpu = ProcessTreeCpu()
        self.t0: float | None = None
        self.t1: float | None = None

    def claim(self, study, n_budget, begin, propose, **limits):
        def first_begin():
            window = begin()
            if self.t0 is None:
                self.t0 = self.cpu.read_s()
            return window

        return super().claim(study, n_budget, first_begin, propose, **limits)

    def n_finished(self, study, counted):
        self.t1 = self.cpu.read_s()
        return counted


def _config(tmp_path, function: str, n_trials: int, extra: str = ""):
    space = """
        [search_space.x]
        type = "float"
        low = -1.0
        high = 1.0
    """
    return load_config(_study(tmp_path, function=function, n_trials=n_trials, space=space,
                              source=MODULE, extra=extra))


def _identity(config, strategy: str, storage_url: str):
    source = LoopCpu(storage_url)
    summary = run_study(config, strategy, 0, storage_url, progress=False, out=io.StringIO(),
                        source=source)
    study = optuna.load_study(study_name=summary.study_name, storage=storage_url)
    w = study.user_attrs["meter"]["watts_per_busy_core_w"]
    charged_s = sum(charged_energy_j(t.user_attrs) for t in study.trials) / w
    tail_s = study.user_attrs["tail_store_energy_j"] / w
    # before the loop: building the sampler, charged to the first trial's proposing
    setup_s = sum(t.user_attrs.get("setup_energy_j", 0.0) for t in study.trials) / w
    return study, charged_s, tail_s, source.t1 - source.t0 + setup_s


@pytest.mark.parametrize("strategy", ["tpe", "bayes"])
def test_the_trials_charges_add_up_to_the_trial_loops_cpu_time(tmp_path, storage_url,
                                                               strategy):
    study, charged_s, tail_s, loop_s = _identity(_config(tmp_path, "light", 6), strategy,
                                                 storage_url)
    # Every CPU second of the loop is in a window; outside: only the few microseconds
    # between one window's closing reading and the next one's opening (two per trial), and
    # the tail's bit after the last `n_finished` (closing the progress bar). Before, the
    # tell, the attrs written after the training window and the loop were outside: 20-40%
    # of this loop (a light objective on SQLite).
    assert charged_s + tail_s == pytest.approx(loop_s, rel=0.01, abs=0.005)
    # the tail (recording the last trial) is small beside the loop, yet not nothing
    assert 0 < tail_s < 0.5 * loop_s / len(study.trials)


def test_with_a_pruner_the_report_writes_are_storage_not_training(tmp_path, storage_url):
    config = _config(tmp_path, "reports_only", 3, extra='[pruning]\npruner = "median"')
    study, *_ = _identity(config, "random", storage_url)
    for t in study.trials:
        a = t.user_attrs
        assert len(t.intermediate_values) == 30
        # 30 reports, each Optuna's report + should_prune on SQLite, are storage; the
        # function itself did next to nothing
        assert a["energy_j"] < 0.2 * a["store_energy_j"], a


def _statements(tmp_path, function: str) -> tuple[int, optuna.Study]:
    """SQL statements run on SQLite by a 3-trial random study of `function`, no pruner."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    count = [0]

    def on_execute(*_):
        count[0] += 1

    url = f"sqlite:///{tmp_path / f'{function}.db'}"
    event.listen(Engine, "before_cursor_execute", on_execute)
    try:
        study, *_ = _identity(_config(tmp_path / function, function, 3), "random", url)
    finally:
        event.remove(Engine, "before_cursor_execute", on_execute)
    return count[0], study


def test_without_a_pruner_a_trials_reports_are_written_once_with_its_attrs(tmp_path):
    """Nothing reads a step's value while the trial runs when no pruner is on: 30 reports
    cost the store what one does (before: three ORM queries and a commit each, ~1 ms per
    epoch, a third of a default trial's storage energy), and every value lands."""
    (tmp_path / "one_report").mkdir()
    (tmp_path / "reports_only").mkdir()
    one, _ = _statements(tmp_path, "one_report")
    many, study = _statements(tmp_path, "reports_only")
    assert many == one, (many, one)
    for t in study.trials:
        assert t.intermediate_values == {step: t.params["x"] for step in range(30)}


def test_the_cnns_model_build_is_preparation_in_the_proposing_account(storage_url):
    config = parse_config(tiny_doc(budget={"n_trials": 2}))
    summary = run_study(config, "random", 0, storage_url, progress=False, out=io.StringIO())
    for t in optuna.load_study(study_name=summary.study_name, storage=storage_url).trials:
        a = t.user_attrs
        assert 0 < a["prepare_energy_j"] < a["propose_energy_j"]
        assert a["prepare_s"] < a["propose_s"]

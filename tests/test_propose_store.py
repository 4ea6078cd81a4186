"""What a trial is charged besides training: the strategy's own computation (propose_*) and
the storage round trips of proposing (store_*), and the energy budget that counts them.

The estimate meter charges CPU seconds x watts per core, so a sampler and a store that burn
known CPU seconds have known joules: at 10 W per core, 0.3 CPU seconds are 3 J.
"""

from __future__ import annotations

import inspect
import time

import optuna
import pytest
from optuna.samplers import RandomSampler

from tuning_energy.config import parse_config
from tuning_energy.run import runner as runner_mod
from tuning_energy.run.runner import run_study
from tuning_energy.store.storage import open_storage

from .conftest import tiny_doc

W_PER_CORE = 10.0
METER = {"kind": "estimate", "idle_s": 0, "cpu_tdp_w": W_PER_CORE, "cpu_cores": 1}


def burn_cpu(seconds: float) -> None:
    t0 = time.process_time()
    while time.process_time() - t0 < seconds:
        pass


class CostlySampler(RandomSampler):
    """A strategy whose own computation costs `before_s` CPU seconds per trial plus
    `per_param_s` per parameter (the tiny config has 4)."""

    def __init__(self, seed: int, before_s: float, per_param_s: float) -> None:
        super().__init__(seed=seed)
        self.before_s, self.per_param_s = before_s, per_param_s

    def before_trial(self, study, trial) -> None:
        burn_cpu(self.before_s)
        super().before_trial(study, trial)

    def sample_independent(self, study, trial, param_name, param_distribution):
        burn_cpu(self.per_param_s)
        return super().sample_independent(study, trial, param_name, param_distribution)


def use_sampler(monkeypatch, before_s: float, per_param_s: float) -> None:
    monkeypatch.setattr(runner_mod, "make_sampler",
                        lambda strategy, config, seed: CostlySampler(seed, before_s, per_param_s))


def slow_store(monkeypatch, per_call_s: float) -> None:
    """A real SQLite store whose trial creation and each parameter's commit also burn
    `per_call_s` CPU seconds (the two storage round trips of proposing a trial)."""

    def opened(url, *args, **kwargs):
        storage = open_storage(url, *args, **kwargs)
        # _set_trial_param: Optuna >= 5 (earlier, _CachedStorage calls set_trial_param)
        for name in ("_create_new_trial", "_set_trial_param" if hasattr(
                storage, "_set_trial_param") else "set_trial_param"):
            real = getattr(storage, name)

            def slow(*a, _real=real, **kw):
                burn_cpu(per_call_s)
                return _real(*a, **kw)

            setattr(storage, name, slow)
        return storage

    monkeypatch.setattr(runner_mod, "open_storage", opened)


def test_propose_is_the_samplers_work_and_store_the_storages(storage_url, monkeypatch):
    use_sampler(monkeypatch, before_s=0.1, per_param_s=0.05)  # 0.3 CPU s = 3 J per trial
    slow_store(monkeypatch, per_call_s=0.05)  # 1 trial + 4 params = 0.25 CPU s = 2.5 J
    config = parse_config(tiny_doc(meter=METER))
    run_study(config, "random", 0, storage_url, progress=False)
    trials = optuna.load_study(study_name="tiny-random-s0", storage=storage_url).trials
    assert len(trials) == 3
    for t in trials:
        a = t.user_attrs
        assert 3.0 <= a["propose_energy_j"] < 4.0, a  # the sampler's 3 J, not the store's
        assert a["propose_s"] >= 0.3
        assert 2.5 <= a["store_energy_j"] < 4.0, a  # the store's 2.5 J and Optuna's own
        assert a["store_s"] >= 0.25
        assert a["energy_j"] < 2.5  # training is neither


def test_a_study_without_costly_parts_still_records_both(storage_url):
    config = parse_config(tiny_doc(meter=METER))
    summary = run_study(config, "tpe", 0, storage_url, progress=False)
    for t in optuna.load_study(study_name="tiny-tpe-s0", storage=storage_url).trials:
        a = t.user_attrs
        assert a["propose_energy_j"] >= 0 and a["store_energy_j"] > 0  # a commit costs CPU
        assert a["propose_s"] >= 0 and a["store_s"] > 0
    assert summary.store_energy_j > 0
    assert any("storage round trips" in line for line in summary.lines())


def test_workers_charge_their_claims_storage_round_trips_to_store(tmp_path):
    from tuning_energy.run.pool import run_workers
    from tuning_energy.run.workers import WorkerOptions

    url = f"journal:///{tmp_path / 'w.log'}"
    config = parse_config(tiny_doc(meter=METER))
    run_workers(config, "random", 0, url, WorkerOptions(n_workers=1), progress=False)
    study = optuna.load_study(study_name="tiny-random-s0", storage=open_storage(url))
    for t in study.trials:
        assert t.user_attrs["store_energy_j"] > 0 and t.user_attrs["propose_energy_j"] >= 0


def test_the_energy_budget_counts_proposing_energy(storage_url, monkeypatch):
    """A strategy whose proposals cost ~2 J each against tiny trials of ~0.1-0.3 J: a 5 J
    budget stops after a trial or two, long before the trials' training energy would."""
    use_sampler(monkeypatch, before_s=0.2, per_param_s=0.0)
    max_j = 5.0
    config = parse_config(tiny_doc(meter=METER, budget={"n_trials": 6, "max_energy_j": max_j}))
    summary = run_study(config, "random", 0, storage_url, progress=False)
    assert "energy budget" in summary.stop_reason and summary.ran_now <= 2
    trials = optuna.load_study(study_name="tiny-random-s0", storage=storage_url).trials
    training_j = sum(t.user_attrs["energy_j"] for t in trials)
    assert training_j < max_j / 2  # training alone had most of the budget left
    charged = [t.user_attrs["energy_j"] + t.user_attrs["propose_energy_j"]
               + t.user_attrs["store_energy_j"] for t in trials]
    assert sum(charged) <= max_j + max(charged)  # it stops before a trial predicted to pass


def test_a_samplers_no_op_hooks_open_no_meter_window():
    """Optuna's BaseSampler.before_trial / after_trial do nothing: metering them cost two
    clock readings each per trial for nothing. A sampler with its own hook is metered."""
    from optuna.samplers import RandomSampler

    from tuning_energy.energy.estimate import EstimateMeter
    from tuning_energy.search.metered_sampler import MeteredSampler
    from tuning_energy.search.samplers import ResumableRandomSampler

    class Counting(EstimateMeter):
        windows = 0

        def begin(self):
            Counting.windows += 1
            return super().begin()

    def windows(sampler) -> int:
        Counting.windows = 0
        study = optuna.create_study(sampler=MeteredSampler(sampler, Counting()))
        study.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_int("n", 0, 3), 3)
        return Counting.windows

    # per trial: infer_relative_search_space, sample_relative, 2 x sample_independent
    assert windows(RandomSampler(0)) == 3 * 4
    assert windows(ResumableRandomSampler(0)) == 3 * 5  # + its before_trial (reseeding)


def test_building_the_strategy_is_charged_to_the_runs_first_proposal(storage_url,
                                                                     monkeypatch):
    """A strategy's set-up (importing its libraries, building its model template: skopt's
    for `bayes`) is the strategy's cost, paid once per run: the run's first trial's
    proposing carries it, not a later one (the first GP proposal used to) nor none."""

    class SlowToBuild(RandomSampler):
        def __init__(self, seed: int) -> None:
            burn_cpu(0.3)  # 3 J at 10 W per core
            super().__init__(seed=seed)

    monkeypatch.setattr(runner_mod, "make_sampler",
                        lambda strategy, config, seed: SlowToBuild(seed))
    config = parse_config(tiny_doc(meter=METER))
    run_study(config, "random", 0, storage_url, progress=False)
    trials = optuna.load_study(study_name="tiny-random-s0", storage=storage_url).trials
    first, *rest = [t.user_attrs["propose_energy_j"] for t in trials]
    assert 3.0 <= first < 4.0
    assert all(e < 0.5 for e in rest), rest
    assert 0.3 <= trials[0].user_attrs["setup_s"] < 0.4 and "setup_s" not in \
        trials[1].user_attrs
    # not taken from its proposal window's storage part (it ran before that window)
    stores = [t.user_attrs["store_energy_j"] for t in trials]
    assert min(stores) > 0 and stores[0] < 3 * max(stores[1:]), stores


def test_recording_a_trial_reads_it_back_once(storage_url, monkeypatch):
    """Optuna's study.tell reads the trial back from the store and deep-copies it to return
    it; the runner's tell (run/tell.py) stores the same state and values without that read:
    a trial is read from the store twice in its loop (ask's Trial, tell's check), not three
    times, and ends as Optuna's tell leaves it."""
    reads: list[int] = []

    def opened(*args, **kwargs):
        storage = open_storage(*args, **kwargs)
        backend = getattr(storage, "_backend", storage)
        real = backend.get_trial

        def get_trial(trial_id, _real=real):
            reads.append(trial_id)
            return _real(trial_id)

        backend.get_trial = get_trial
        return storage

    monkeypatch.setattr(runner_mod, "open_storage", opened)
    config = parse_config(tiny_doc(meter=METER))
    run_study(config, "random", 0, storage_url, progress=False)
    trials = optuna.load_study(study_name="tiny-random-s0", storage=storage_url).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert all(t.value is not None and t.datetime_complete is not None for t in trials)
    # Optuna < 4.5: its _tell_with_warning reads the trial back itself (3 reads)
    from optuna.study._tell import _tell_with_warning
    reads_back = "FrozenTrial" in str(inspect.signature(_tell_with_warning).return_annotation)
    assert {i: reads.count(i) for i in set(reads)} == {t._trial_id: 2 + reads_back
                                                       for t in trials}


@pytest.mark.parametrize("shape", ["4.3", "4.4", "4.5"])
def test_tell_reads_each_optunas_private_tell(shape, monkeypatch):
    """Optuna's `_tell_with_warning` returned the trial (4.3), (trial, message) (4.4), then
    (state, values, message) (4.5 on): the runner's tell gives the stored state and values
    from each, so that the loop counts the trial finished."""
    import optuna.study._tell as optuna_tell

    from tuning_energy.run.tell import tell

    real = optuna_tell._tell_with_warning

    def shaped(**kwargs):
        state, values, message = real(**kwargs)  # this Optuna's (>= 4.5)
        trial = kwargs["study"]._storage.get_trial(kwargs["trial"]._trial_id)
        return {"4.3": trial, "4.4": (trial, message), "4.5": (state, values, message)}[shape]

    monkeypatch.setattr(optuna_tell, "_tell_with_warning", shaped)
    study = optuna.create_study()
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    told = tell(study, trial, 0.25, optuna.trial.TrialState.COMPLETE)
    assert (told.state, told.values) == (optuna.trial.TrialState.COMPLETE, [0.25])
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE

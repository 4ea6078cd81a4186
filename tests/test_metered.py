"""`tuning_energy.metered(f)`: a plain Optuna objective, energy-metered, on a real SQLite store
that the rest of the tool then reads."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

import tuning_energy
from tuning_energy.analysis import strategy_label
from tuning_energy.cli import main
from tuning_energy.errors import ConfigError
from tuning_energy.objective.plain_optuna import strategy_of
from tuning_energy.search.samplers import SkoptSampler

ENERGY_ATTRS = {"energy_j", "energy_method", "energy_by_device_j", "energy_error",
                "duration_s", "avg_power_w", "idle_power_w", "energy_net_j", "co2_g",
                "propose_s", "propose_energy_j", "run_id", "hardware_id"}


def _work(n: int = 20000) -> None:
    sum(i * i for i in range(n))


def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -2.0, 2.0)
    _work()
    if trial.number == 1:
        raise RuntimeError("diverged (test)")
    if trial.number == 2:
        trial.report(9.0, 0)
        raise optuna.TrialPruned()
    return (x - 1.0) ** 2


def _study(storage_url: str, sampler=None) -> optuna.Study:
    study = optuna.create_study(storage=storage_url, study_name="plain-s0", direction="minimize",
                                sampler=sampler or optuna.samplers.TPESampler(seed=0))
    study.set_metric_names(["loss"])
    study.optimize(tuning_energy.metered(objective, meter="estimate", target=0.5), n_trials=6,
                   catch=(RuntimeError,))
    return study


def test_every_trial_keeps_its_energy_also_when_it_raises_or_prunes(storage_url):
    study = _study(storage_url)
    states = [t.state for t in study.trials]
    assert states[1] == TrialState.FAIL and states[2] == TrialState.PRUNED
    assert states.count(TrialState.COMPLETE) == 4
    for t in study.trials:
        assert ENERGY_ATTRS <= set(t.user_attrs), ENERGY_ATTRS - set(t.user_attrs)
        assert t.user_attrs["energy_j"] > 0
        assert t.user_attrs["energy_method"] == "estimate-cpu-tdp-tree"


def test_the_study_gets_what_the_analysis_reads(storage_url):
    attrs = _study(storage_url).user_attrs
    assert attrs["strategy"] == "tpe" and attrs["seed"] == 0
    assert attrs["energy_method"] == "estimate-cpu-tdp-tree" and attrs["hardware"]["host"]
    assert attrs["config"]["objective"] == {"function": None, "metric": "loss",
                                           "direction": "minimize", "target": 0.5}
    # a trial was pruned: the study's (default) MedianPruner is part of its strategy's label
    assert strategy_label(attrs) == "tpe+median"


def test_a_nan_or_inf_value_fails_the_trial_as_diverged_and_the_study_goes_on(storage_url):
    def f(trial):
        x = trial.suggest_float("x", -2.0, 2.0)
        _work()
        return {1: float("nan"), 2: float("inf")}.get(trial.number, x ** 2)

    study = optuna.create_study(storage=storage_url, study_name="plain-s0")
    study.optimize(tuning_energy.metered(f, meter="estimate"), n_trials=4)
    trials = optuna.load_study(study_name="plain-s0", storage=storage_url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL,
                                         TrialState.FAIL, TrialState.COMPLETE]
    for t, what in ((trials[1], "nan"), (trials[2], "inf")):
        assert t.user_attrs["diverged"] is True and t.user_attrs["energy_j"] > 0
        assert t.user_attrs["fail_reason"] == f"diverged: the objective returned {what} (not " \
            "a finite number)"


@pytest.mark.parametrize("sampler, name", [
    (optuna.samplers.RandomSampler(), "random"), (optuna.samplers.TPESampler(), "tpe"),
    (SkoptSampler(seed=0), "bayes"), (SkoptSampler(seed=0, cost_attr="energy_j"), "bayes-eips"),
    (optuna.samplers.GridSampler({"x": [0.0]}), "grid"),
])
def test_the_strategy_is_named_from_the_sampler(sampler, name):
    assert strategy_of(sampler) == name


def test_show_and_export_read_a_metered_store(storage_url, tmp_path, capsys):
    _study(storage_url)
    assert main(["show", "--storage", storage_url]) == 0
    out = capsys.readouterr().out
    assert "plain-s0" in out and "tpe" in out and "loss (minimized)" in out
    best = min(t.value for t in optuna.load_study(study_name="plain-s0",
                                                  storage=storage_url).trials
               if t.state == TrialState.COMPLETE)
    assert f"{best:.4f}" in out
    csv = tmp_path / "t.csv"
    assert main(["export", "--storage", storage_url, "--format", "csv", "--out", str(csv)]) == 0
    import pandas as pd

    table = pd.read_csv(csv)
    assert len(table) == 6 and table["energy_j"].gt(0).all()


def test_a_bad_meter_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"metered\(meter='gpu'\): allowed values are 'auto'"):
        tuning_energy.metered(objective, meter="gpu")


def test_the_api_exports_metered():
    assert "metered" in tuning_energy.__all__ and callable(tuning_energy.metered)

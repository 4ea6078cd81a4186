"""Energy-aware search through the runner: pruning, energy caps, predictions, MO."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from tuning_energy.config import parse_config
from tuning_energy.energy.predict import EnergyPredictor
from tuning_energy.errors import ConfigError
from tuning_energy.run.runner import run_study

from .conftest import tiny_doc


def trials(url, name):
    return optuna.load_study(study_name=name, storage=url).trials


def test_pruned_trials_keep_their_energy_and_are_counted(storage_url):
    # Median pruning after 1 startup trial: with random lr in [1e-3, 1e-1] some trials
    # fall below the running median at epoch 2 of 4.
    cfg = parse_config(tiny_doc(
        train={"epochs": 4}, budget={"n_trials": 8},
        pruning={"pruner": "median", "n_startup_trials": 1, "n_warmup_epochs": 1},
        search_space={"lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True}}))
    summary = run_study(cfg, "random", 0, storage_url, progress=False)
    ts = trials(storage_url, "tiny-random-median-s0")
    pruned = [t for t in ts if t.state == TrialState.PRUNED]
    assert pruned, "no trial was pruned"
    assert summary.n_finished == 8 and summary.n_pruned == len(pruned)
    for t in pruned:
        a = t.user_attrs
        assert a["energy_j"] > 0 and a["epochs_run"] < 4
        assert math.isclose(a["energy_saved_j"], a["energy_j"] / a["epochs_run"] * (4 - a["epochs_run"]))
        assert a["pruned_reason"] == "pruner median"
        assert len(t.intermediate_values) == a["epochs_run"]
    assert math.isclose(summary.training_energy_j, sum(t.user_attrs["energy_j"] for t in ts))
    assert math.isclose(summary.energy_saved_j, sum(t.user_attrs["energy_saved_j"] for t in pruned))
    study = optuna.load_study(study_name="tiny-random-median-s0", storage=storage_url)
    assert math.isclose(study.user_attrs["pruning_energy_saved_j"], summary.energy_saved_j)


def test_a_trial_projected_over_the_energy_cap_is_pruned(storage_url):
    cfg = parse_config(tiny_doc(train={"epochs": 5}, budget={"n_trials": 2, "max_trial_energy_j": 1e-6}))
    summary = run_study(cfg, "random", 0, storage_url, progress=False)
    for t in trials(storage_url, "tiny-random-s0"):
        assert t.state == TrialState.PRUNED
        assert t.user_attrs["epochs_run"] == 1
        assert t.user_attrs["pruned_reason"].startswith("energy cap: projected")
        assert t.user_attrs["energy_j"] > 0
    assert summary.n_pruned == 2


def test_every_trial_stores_its_predicted_energy(storage_url):
    cfg = parse_config(tiny_doc(train={"epochs": 2}, budget={"n_trials": 3}))
    run_study(cfg, "random", 0, storage_url, progress=False)
    ts = trials(storage_url, "tiny-random-s0")
    assert ts[0].user_attrs["predicted_energy_j"] is None  # nothing measured yet: no guess
    for t in ts[1:]:
        assert t.user_attrs["predicted_energy_j"] > 0
    for t in ts:
        assert t.user_attrs["predicted_energy_epoch1_j"] > 0
        assert t.user_attrs["propose_energy_j"] is not None and t.user_attrs["propose_s"] > 0


def test_flops_predictor_is_the_ratio_of_energy_to_work():
    p = EnergyPredictor()
    assert p.predict(100, 2) is None
    p.observe(100, 2, 4.0)   # 0.02 J per flop-epoch
    p.observe(300, 1, 2.0)   # total 6 J over 500 flop-epochs
    assert math.isclose(p.predict(50, 10), 6.0 / 500 * 500)
    p.observe(None, 1, 1.0)  # incomplete records are ignored, not guessed
    assert p.n == 2


def test_the_study_energy_budget_stops_before_overrunning(storage_url):
    cfg = parse_config(tiny_doc(budget={"n_trials": 3}))
    first = run_study(cfg, "random", 0, storage_url, progress=False)
    per_trial = first.total_energy_j / 3
    # A fresh study with room for about 2.5 trials: the third would overrun, so it stops at 2.
    capped = parse_config(tiny_doc(name="capped", budget={"n_trials": 50, "max_energy_j": 2.5 * per_trial}))
    summary = run_study(capped, "random", 0, storage_url, progress=False)
    assert "energy budget" in summary.stop_reason
    assert summary.total_energy_j <= 2.5 * per_trial * 1.5
    assert 1 <= summary.ran_now <= 4  # about 2; trial energies vary with the sampled model
    # one rule for one process and for workers: the study-wide check on the store says the
    # same, word for word
    from tuning_energy.run.budget import energy_budget_stop

    study = optuna.load_study(study_name="capped-random-s0", storage=storage_url)
    assert summary.stop_reason == energy_budget_stop(study.get_trials(),
                                                     capped.budget.max_energy_j)


def test_mo_study_stores_accuracy_and_energy_objectives(storage_url):
    cfg = parse_config(tiny_doc(budget={"n_trials": 4}))
    summary = run_study(cfg, "mo", 0, storage_url, progress=False)
    study = optuna.load_study(study_name="tiny-mo-s0", storage=storage_url)
    assert study.metric_names == ["accuracy", "energy_j"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    for t in study.trials:
        assert t.values[1] == t.user_attrs["energy_j"]
    assert summary.best_accuracy == max(t.values[0] for t in study.trials)


def test_mo_with_a_pruner_is_refused(storage_url):
    cfg = parse_config(tiny_doc(pruning={"pruner": "median"}))
    with pytest.raises(ConfigError, match="pruning.pruner"):
        run_study(cfg, "mo", 0, storage_url, progress=False)


@pytest.mark.parametrize("pruner", ["asha", "hyperband"])
def test_every_pruner_runs(storage_url, pruner):
    cfg = parse_config(tiny_doc(train={"epochs": 3}, budget={"n_trials": 4},
                                pruning={"pruner": pruner}))
    summary = run_study(cfg, "tpe", 0, storage_url, progress=False)
    assert summary.n_finished == 4


def test_trials_table_reads_multi_objective_studies(storage_url):
    from tuning_energy.analysis import trials_table

    run_study(parse_config(tiny_doc(budget={"n_trials": 3})), "mo", 0, storage_url,
              progress=False)
    table = trials_table(storage_url)
    study = optuna.load_study(study_name="tiny-mo-s0", storage=storage_url)
    assert list(table["accuracy"]) == [t.values[0] for t in study.trials]
    assert list(table["energy_j"]) == [t.values[1] for t in study.trials]


def test_compare_runs_a_pruned_variant_beside_its_strategy(storage_url):
    """`make compare STRATEGIES=random,random+median`: the pruned variant is its own study
    and its own strategy in the analysis, with its pruned trials' energy counted."""
    from tuning_energy.analysis import energy_to_target, trials_table
    from tuning_energy.run.compare import run_comparison

    cfg = parse_config(tiny_doc(
        train={"epochs": 4}, budget={"n_trials": 6},
        pruning={"n_startup_trials": 1, "n_warmup_epochs": 1},
        search_space={"lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True}}))
    summaries = run_comparison(cfg, 1, ["random", "random+median"], storage_url,
                               progress=False)
    assert [s.study_name for s in summaries] == ["tiny-random-s0", "tiny-random-median-s0"]
    table = trials_table(storage_url)
    assert set(table["strategy"]) == {"random", "random+median"}
    pruned = table[table["strategy"] == "random+median"]
    assert (pruned["state"] == "PRUNED").any()
    ett = energy_to_target(table, target=2.0).set_index("strategy")  # unreachable: totals
    assert math.isclose(ett.loc["random+median", "training_energy_j"], pruned["energy_j"].sum())


@pytest.mark.parametrize("spec, message", [
    ("tpe+fast", "unknown pruner 'fast' after '\\+'; allowed values are median, asha, "
                 "hyperband"),
    ("mo+asha", "mo is multi-objective and Optuna cannot prune it"),
    ("tpx+asha", "unknown strategy; allowed values are grid"),
])
def test_a_bad_strategy_variant_names_what_is_allowed(spec, message):
    from tuning_energy.search.strategies import parse_variant

    assert parse_variant("tpe+asha") == ("tpe", "asha") and parse_variant("grid") == ("grid", None)
    with pytest.raises(ConfigError, match=message):
        parse_variant(spec)

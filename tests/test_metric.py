"""The analysis in a minimised metric's direction, on hand-made trials tables: a loss reaches
its target at or below it, its best is its smallest, its Pareto front keeps low losses."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tuning_energy import analysis as an
from tuning_energy.analysis import selection
from tuning_energy.analysis.target import comparison_target
from tuning_energy.errors import TuningEnergyError


def _table(values, direction="minimize", metric="val_loss", target=None, study="s-tpe-s0"):
    n = len(values)
    return pd.DataFrame({
        "comparison": "s", "study": study, "strategy": "tpe", "seed": 0,
        "trial": range(n), "number": range(n), "state": "COMPLETE",
        "accuracy": values, "energy_j": [1.0] * n, "duration_s": 1.0,
        "charged_energy_j": [1.0] * n, "charged_known_j": [1.0] * n,
        "target_accuracy": target, "metric": metric, "direction": direction,
    })


LOSSES = [0.9, 0.6, 0.7, 0.4, 0.5]


def test_a_minimised_metric_reaches_its_target_at_or_below_it():
    row = an.energy_to_target(_table(LOSSES), 0.6).iloc[0]
    # trial 1 (0.6 <= 0.6) is the first at or below; a maximised reading would take trial 0
    assert row["reached"] and row["trials_to_target"] == 2 and row["energy_to_target_j"] == 2.0
    assert row["best_accuracy"] == 0.4
    as_accuracy = an.energy_to_target(_table(LOSSES, direction="maximize"), 0.6).iloc[0]
    assert as_accuracy["trials_to_target"] == 1 and as_accuracy["best_accuracy"] == 0.9
    never = an.energy_to_target(_table(LOSSES), 0.3).iloc[0]
    assert not never["reached"] and math.isnan(never["energy_to_target_j"])


def test_best_so_far_runs_down_for_a_minimised_metric():
    df = an.best_so_far(_table(LOSSES))
    assert df["best_accuracy_so_far"].tolist() == [0.9, 0.6, 0.6, 0.4, 0.4]


def test_the_summary_and_the_selected_trial_take_the_smallest():
    ett = pd.concat([an.energy_to_target(_table(LOSSES, study=f"s-tpe-s{i}"), 0.6)
                     for i in range(2)])
    assert an.strategy_summary(ett, n_boot=10).iloc[0]["best_accuracy"] == 0.4
    assert selection.selected(_table(LOSSES))["accuracy"].tolist() == [0.4]


def test_the_pareto_front_of_a_loss_keeps_low_losses():
    t = _table([0.5, 0.3, 0.8]).assign(energy_j=[1.0, 2.0, 0.5])
    front = an.pareto_front(t)
    assert front["accuracy"].tolist() == [0.8, 0.5, 0.3]  # by energy, each a lower loss
    t = _table([0.5, 0.9, 0.8]).assign(energy_j=[1.0, 2.0, 3.0])
    assert an.pareto_front(t)["accuracy"].tolist() == [0.5]  # dearer and worse: dominated


def test_the_target_names_the_metric_and_its_direction():
    goal = comparison_target(_table(LOSSES, target=0.55))
    assert goal.text() == "target val_loss 0.5500 (at or below) from the config's objective.target"
    fallback = comparison_target(_table(LOSSES))
    assert fallback.accuracy == pytest.approx(0.4 / 0.99)  # 1% above the best loss
    assert "the best val_loss of any trial in the comparison (0.4000) / 0.99" in fallback.rule
    assert an.target_from_best(_table(LOSSES), 0.5) == pytest.approx(0.8)
    with pytest.raises(Exception, match="--target = 2.5"):
        comparison_target(_table(LOSSES, metric="accuracy", direction="maximize"), target=2.5)
    assert comparison_target(_table(LOSSES), target=2.5).accuracy == 2.5  # a loss: any number


def test_studies_of_different_directions_are_not_compared():
    both = pd.concat([_table(LOSSES), _table(LOSSES, direction="maximize", study="s-rnd-s0")])
    with pytest.raises(TuningEnergyError, match="different directions.*'minimize' in s-tpe-s0"):
        an.energy_to_target(both, 0.5)

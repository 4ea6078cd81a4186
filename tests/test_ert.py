"""The expected energy to target (ERT) against numbers worked out by hand, on small trials
tables run through `energy_to_target` as every output runs them."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from tuning_energy import analysis as an

inf = math.inf
TARGET = 0.9


def _trials(seeds: dict[int, list[tuple[float, float]]], strategy: str = "s") -> pd.DataFrame:
    """A trials table: per seed, its trials as (accuracy, training energy J) in order."""
    rows = [{"study": f"{strategy}-s{seed}", "strategy": strategy, "seed": seed, "trial": i,
             "state": "COMPLETE", "accuracy": acc, "energy_j": e}
            for seed, trials in seeds.items() for i, (acc, e) in enumerate(trials)]
    return pd.DataFrame(rows)


def _ert(trials: pd.DataFrame) -> pd.Series:
    out = an.expected_energy_to_target(an.energy_to_target(trials, TARGET))
    assert len(out) == 1
    return out.iloc[0]


def test_every_seed_reaching_gives_the_mean_energy_to_target():
    row = _ert(_trials({
        0: [(0.5, 10.0), (0.8, 20.0), (0.95, 30.0), (0.99, 100.0)],  # 60 J to the target
        1: [(0.91, 5.0), (0.2, 7.0)],  # 5 J
        2: [(0.1, 10.0), (0.2, 10.0), (0.9, 10.0)],  # 30 J
    }))
    assert row["ert_j"] == pytest.approx((60 + 5 + 30) / 3)
    assert (row["successes"], row["runs"]) == (3, 3)
    # Resamples of 3 seeds: all seed 1 (5 J) has probability 1/27 > 2.5%, so the low end is
    # 5 J; all seed 0 (60 J) likewise, the high end.
    assert (row["ert_ci_low_j"], row["ert_ci_high_j"]) == (5.0, 60.0)
    assert not row["lower_bound"]


def test_no_seed_reaching_is_infinite():
    row = _ert(_trials({0: [(0.5, 10.0)], 1: [(0.6, 10.0), (0.7, 3.0)]}))
    assert row["ert_j"] == inf
    assert (row["ert_ci_low_j"], row["ert_ci_high_j"]) == (inf, inf)
    assert (row["successes"], row["runs"]) == (0, 2)
    assert row["success_ci_low"] == 0.0


def test_one_seed_reaching_pays_for_the_others_whole_searches():
    row = _ert(_trials({
        0: [(0.5, 10.0), (0.95, 20.0), (0.99, 500.0)],  # reached after 30 J
        1: [(0.5, 15.0), (0.6, 25.0)],  # never: its whole search, 40 J
        2: [(0.5, 50.0)],  # never: 50 J
    }))
    assert row["ert_j"] == pytest.approx((30 + 40 + 50) / 1)
    assert (row["successes"], row["runs"]) == (1, 3)
    # Without a success in (2/3)^3 = 30% of the resamples: unbounded above. Seed 0 three
    # times (1/27 = 3.7%) gives the lowest ERT, 30 J.
    assert (row["ert_ci_low_j"], row["ert_ci_high_j"]) == (30.0, inf)
    lo, hi = proportion_confint(1, 3, alpha=0.05, method="wilson")
    assert (row["success_ci_low"], row["success_ci_high"]) == pytest.approx((lo, hi))


def test_an_unmeasured_trial_makes_it_a_lower_bound():
    row = _ert(_trials({0: [(0.5, math.nan), (0.95, 20.0)], 1: [(0.95, 10.0)]}))
    assert row["ert_j"] == pytest.approx(15.0)  # the unmeasured trial adds what is known: 0
    assert row["lower_bound"]


def test_one_row_per_strategy_with_the_documented_columns():
    trials = pd.concat([_trials({0: [(0.95, 1.0)]}, "a"), _trials({0: [(0.1, 1.0)]}, "b")])
    out = an.expected_energy_to_target(an.energy_to_target(trials, TARGET))
    assert list(out["strategy"]) == ["a", "b"]
    assert {"strategy", "ert_j", "ert_ci_low_j", "ert_ci_high_j", "successes",
            "runs"} <= set(out.columns)
    assert list(out["ert_j"]) == [1.0, inf]

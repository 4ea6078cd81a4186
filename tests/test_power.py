"""power.seeds_needed (on the ERT ratio) on synthetic seeds whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tuning_energy.analysis import seeds_needed as pw

inf = math.inf
WHOLE_SEARCH_J = 500.0  # what a seed that never reaches the target costs


def _seeds(energies) -> pd.DataFrame:
    """ert.seed_costs's columns: per seed its energy to target (inf: never reached, then it
    costs its whole search)."""
    e = np.asarray(energies, float)
    return pd.DataFrame({"cost_j": np.where(np.isfinite(e), e, WHOLE_SEARCH_J),
                         "success": np.isfinite(e)})


REFERENCE = _seeds(np.random.default_rng(7).lognormal(np.log(100.0), 0.3, 20))  # +-30%


def _question(p: pw.Power, label: str) -> pw.Question:
    return next(q for q in p.questions if q.label == label)


def test_a_strategy_ten_times_cheaper_needs_few_seeds():
    cheap = _seeds(np.random.default_rng(8).lognormal(np.log(10.0), 0.3, 20))
    p = pw.seeds_needed(cheap, REFERENCE)
    third, one = _question(p, "1/3"), _question(p, "1")
    assert third.decision == "established" and one.decision == "established"
    assert third.seeds_needed == 5 and one.seeds_needed == 5


def test_a_wide_spread_needs_tens_of_seeds_to_establish_one_third():
    """One fifth of the reference's energy, but seeds spread by a factor of
    about 2 (lognormal sigma 0.8): 1 is excluded with few seeds, 1/3 only with tens."""
    rng = np.random.default_rng(9)
    ref = _seeds(rng.lognormal(np.log(100.0), 0.8, 20))
    new = _seeds(rng.lognormal(np.log(20.0), 0.8, 20))
    p = pw.seeds_needed(new, ref)
    third, one = _question(p, "1/3"), _question(p, "1")
    assert third.decision == "established" and 20 <= third.seeds_needed <= 80
    assert one.seeds_needed is not None and one.seeds_needed <= 10
    assert third.shares[0] < third.shares[-1]  # more seeds, more often decided
    assert third.shares[0] < 0.8 < 0.95 < third.shares[-1]


def test_identical_distributions_never_exclude_1_and_soon_refute_one_third():
    p = pw.seeds_needed(REFERENCE, REFERENCE)
    one, third = _question(p, "1"), _question(p, "1/3")
    assert one.observed_ratio == 1.0 and one.decision == "established"
    assert one.seeds_needed is None  # the CI keeps reaching above 1: "> 160"
    assert max(one.shares) < 0.8
    assert third.decision == "refuted" and third.seeds_needed is not None
    assert third.seeds_needed <= 20


def test_a_strategy_that_never_reaches_the_target_is_refuted_at_once():
    p = pw.seeds_needed(_seeds([inf] * 20), REFERENCE)
    assert all(q.decision == "refuted" and q.seeds_needed == 5 for q in p.questions)
    assert p.to_json()["questions"]["1/3"]["observed_ratio"] is None  # infinite


def test_an_undefined_ratio_has_nothing_to_decide():
    p = pw.seeds_needed(_seeds([inf] * 5), _seeds([inf] * 5), "s", "bayes", n_grid=(5, 10), n_sim=20)
    assert all(q.decision is None and q.seeds_needed is None for q in p.questions)
    assert "nothing to decide" in "\n".join(pw.power_lines(p.to_json()))


def test_power_lines_state_the_seeds_needed_or_more_than_the_grid():
    p = pw.seeds_needed(REFERENCE, REFERENCE, "tpe", "bayes", n_grid=(5, 10, 20),
                        n_sim=50, n_boot=500)
    text = "\n".join(pw.power_lines(p.to_json()))
    assert "the CI's high end at or below 1 needs **> 20** seeds per strategy" in text
    assert "| seeds per strategy | 5 | 10 | 20 |" in text


def test_no_observed_seeds_is_an_error_naming_both_counts():
    with pytest.raises(ValueError, match=r"tpe: 0, bayes: 3"):
        pw.seeds_needed(_seeds([]), _seeds([1.0, 2.0, 3.0]), "tpe", "bayes")

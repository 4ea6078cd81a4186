"""The analysis functions on a small table built by hand; expected numbers worked out by hand
and written next to each assertion."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tuning_energy import analysis as an
from tuning_energy.errors import TuningEnergyError

NAN = math.nan

# (study, strategy, seed, trial, state, accuracy, energy_j)
ROWS = [
    # grid-s0: target 0.85 first reached at trial 2 (0.90): 3 trials, 10+20+30 = 60 J
    ("grid-s0", "grid", 0, 0, "COMPLETE", 0.50, 10.0),
    ("grid-s0", "grid", 0, 1, "COMPLETE", 0.80, 20.0),
    ("grid-s0", "grid", 0, 2, "COMPLETE", 0.90, 30.0),
    ("grid-s0", "grid", 0, 3, "COMPLETE", 0.85, 40.0),  # total 100 J
    # grid-s1: reached at once: 1 trial, 5 J; total 10 J
    ("grid-s1", "grid", 1, 0, "COMPLETE", 0.86, 5.0),
    ("grid-s1", "grid", 1, 1, "COMPLETE", 0.70, 5.0),
    # bayes-s0: never reaches 0.85 (best 0.84); a FAIL keeps its 7 J; total 24 J
    ("bayes-s0", "bayes", 0, 0, "FAIL", NAN, 7.0),
    ("bayes-s0", "bayes", 0, 1, "COMPLETE", 0.60, 8.0),
    ("bayes-s0", "bayes", 0, 2, "COMPLETE", 0.84, 9.0),
    # bayes-s1: reached at trial 1: 2 trials, 1+2 = 3 J; last trial's energy unmeasured
    ("bayes-s1", "bayes", 1, 0, "COMPLETE", 0.70, 1.0),
    ("bayes-s1", "bayes", 1, 1, "COMPLETE", 0.95, 2.0),
    ("bayes-s1", "bayes", 1, 2, "COMPLETE", 0.99, NAN),
]


@pytest.fixture
def trials() -> pd.DataFrame:
    df = pd.DataFrame(ROWS, columns=["study", "strategy", "seed", "trial", "state", "accuracy",
                                     "energy_j"])
    df["energy_method"] = "rapl"
    return df.sample(frac=1.0, random_state=3).reset_index(drop=True)  # any row order


def test_best_so_far_accumulates_energy_and_best_accuracy_per_study(trials):
    df = an.best_so_far(trials).set_index(["study", "trial"])
    assert df.loc["grid-s0", "cum_energy_j"].tolist() == [10, 30, 60, 100]
    assert df.loc["grid-s0", "best_accuracy_so_far"].tolist() == [0.5, 0.8, 0.9, 0.9]
    assert df.loc["bayes-s0", "cum_energy_j"].tolist() == [7, 15, 24]  # the FAIL counts
    assert math.isnan(df.loc[("bayes-s0", 0), "best_accuracy_so_far"])
    assert df.loc["bayes-s0", "best_accuracy_so_far"].tolist()[1:] == [0.6, 0.84]
    assert df.loc["bayes-s1", "cum_energy_j"].tolist() == [1, 3, 3]  # nothing measured
    assert df.loc["bayes-s1", "cum_unmeasured"].tolist() == [0, 0, 1]  # ... and counted
    assert math.isnan(df.loc[("bayes-s1", 2), "energy_j"])  # ... but stays visibly NaN


def test_a_pruned_or_failed_trial_keeps_the_best_accuracy_so_far():
    """A trial without accuracy (PRUNED, FAIL) after a result: the best so far does not
    vanish there (figures would break the line at every pruned trial)."""
    df = pd.DataFrame({"study": ["s"] * 4, "trial": [0, 1, 2, 3],
                       "state": ["COMPLETE", "PRUNED", "FAIL", "COMPLETE"],
                       "accuracy": [0.7, NAN, NAN, 0.6], "energy_j": [1.0, 0.5, 0.2, 1.0]})
    b = an.best_so_far(df)
    assert b["best_accuracy_so_far"].tolist() == [0.7, 0.7, 0.7, 0.7]
    assert b["cum_energy_j"].tolist() == [1.0, 1.5, 1.7, 2.7]


def test_energy_to_target_matches_the_hand_calculation(trials):
    ett = an.energy_to_target(trials, 0.85).set_index("study")
    assert ett.loc["grid-s0", ["reached", "trials_to_target", "energy_to_target_j",
                               "total_energy_j", "best_accuracy"]].tolist() == \
        [True, 3, 60, 100, 0.90]
    assert ett.loc["grid-s1", ["trials_to_target", "energy_to_target_j", "total_energy_j"]] \
        .tolist() == [1, 5, 10]
    assert not ett.loc["bayes-s0", "reached"]
    assert math.isnan(ett.loc["bayes-s0", "energy_to_target_j"])
    assert math.isnan(ett.loc["bayes-s0", "trials_to_target"])
    assert ett.loc["bayes-s0", "total_energy_j"] == 24
    assert ett.loc["bayes-s1", ["trials_to_target", "energy_to_target_j", "total_energy_j"]] \
        .tolist() == [2, 3, 3]
    assert set(ett["target"]) == {0.85}
    assert set(ett["energy_method"]) == {"rapl"}
    assert ett.loc["bayes-s1", "strategy"] == "bayes" and ett.loc["bayes-s1", "seed"] == 1


def test_energy_to_target_charges_proposing_and_storage_energy():
    """s: (0.5, 10 J training + 2 J proposing + 1 J storage), FAIL (4 J + 2 J, no storage
    recorded), (0.9, 20 J + 3 J + 1 J) -> target 0.85 reached at trial 3: 13 + 6 + 24 = 43 J;
    then (0.95, unmeasured training, 5 J proposing + 1 J storage): its charge is unknown,
    its measured 6 J count and it is counted as unmeasured. Search total at least 49 J; its
    training alone (measured) 34 J."""
    df = pd.DataFrame({"study": "s", "strategy": "x", "seed": 0, "trial": [0, 1, 2, 3],
                       "state": ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"],
                       "accuracy": [0.5, NAN, 0.9, 0.95], "energy_j": [10.0, 4.0, 20.0, NAN],
                       "propose_energy_j": [2.0, 2.0, 3.0, 5.0],
                       "store_energy_j": [1.0, NAN, 1.0, 1.0]})
    row = an.energy_to_target(df, 0.85).iloc[0]
    assert row["energy_to_target_j"] == 43 and row["trials_to_target"] == 3
    assert row["n_unmeasured"] == 0  # the unmeasured trial comes after the target
    assert row["total_energy_j"] == 49 and row["training_energy_j"] == 34
    assert row["n_unmeasured_total"] == 1  # so the total is a lower bound
    assert an.best_so_far(df)["cum_energy_j"].tolist() == [13, 19, 43, 49]
    assert an.best_so_far(df)["cum_unmeasured"].tolist() == [0, 0, 0, 1]
    assert an.charged_what(df) == "training + proposing + storage"
    assert "training energy only" not in an.energy_counted(df)
    # without the proposing and storage columns (another tool's CSV): training alone, said
    training = df.drop(columns=["propose_energy_j", "store_energy_j"])
    assert an.energy_to_target(training, 0.85).iloc[0]["energy_to_target_j"] == 34
    assert "energy to target counts training energy only" in an.energy_counted(training)


def test_method_label_names_the_estimated_devices_of_the_table():
    df = pd.DataFrame({"energy_method": ["nvml-counter+estimate-cpu-tdp-tree", "rapl"],
                       "energy_dev_gpu0_j": [5.0, NAN], "energy_dev_cpu0_j": [2.0, 3.0],
                       "energy_dev_dram0_j": [NAN, 1.0]})
    lab = an.method_label(df)
    assert lab.methods == ("nvml-counter+estimate-cpu-tdp-tree", "rapl")
    assert lab.estimated == {"estimate-cpu-tdp-tree": ("cpu0",)}  # not dram0: rapl measured it
    assert not an.method_label(df.drop(columns=["energy_method"])).any_estimate


def test_target_from_best_is_a_fraction_of_the_best_accuracy(trials):
    assert an.target_from_best(trials, 0.9) == pytest.approx(0.9 * 0.99)
    assert an.target_from_best(trials) == pytest.approx(0.99 * 0.99)
    with pytest.raises(TuningEnergyError, match="fraction"):
        an.target_from_best(trials, 1.5)


def test_strategy_summary_counts_never_reached_as_infinite(trials):
    s = an.strategy_summary(an.energy_to_target(trials, 0.85)).set_index("strategy")
    # grid: energies [60, 5] -> median 32.5; both reached
    assert s.loc["grid", "median_energy_to_target_j"] == 32.5
    assert s.loc["grid", "reached_share"] == 1.0
    assert s.loc["grid", "median_trials_to_target"] == 2.0  # [3, 1]
    assert s.loc["grid", "total_energy_j"] == 110  # 100 + 10
    assert s.loc["grid", "best_accuracy"] == 0.90
    # bootstrap medians of two values can only be 5, 32.5 or 60 (each end with p = 1/4)
    assert (s.loc["grid", "ci_low_j"], s.loc["grid", "ci_high_j"]) == (5.0, 60.0)
    # bayes: [inf, 3] -> median inf (only half reached): not a number to quote
    assert math.isinf(s.loc["bayes", "median_energy_to_target_j"])
    assert s.loc["bayes", "reached_share"] == 0.5
    assert s.loc["bayes", "total_energy_j"] == 27  # 24 + 3 (the unmeasured trial: nothing
    # measured at all, so nothing added, and counted)
    assert s.loc["bayes", "total_lower_bound"] and not s.loc["grid", "total_lower_bound"]
    # bayes-s1's unmeasured trial comes after its target: its energy to target is exact
    assert not s.loc["bayes", "lower_bound"]
    assert s.loc["bayes", "best_accuracy"] == 0.99


def test_bootstrap_ci_is_reproducible_and_brackets_the_median():
    values = [12.0, 15.0, 9.0, 30.0, 14.0, 11.0, 25.0]
    first = an.bootstrap_median_ci(values)
    assert first == an.bootstrap_median_ci(values)
    med, lo, hi = first
    assert med == 14.0 and lo <= med <= hi and lo >= 9.0 and hi <= 30.0
    assert (lo, hi) == (11.0, 25.0)  # pinned: the fixed rng seed gives these on any machine
    assert an.bootstrap_median_ci([4.0]) == (4.0, 4.0, 4.0)
    _, lo_inf, hi_inf = an.bootstrap_median_ci([1.0, math.inf, math.inf])
    assert lo_inf == 1.0 and math.isinf(hi_inf)  # not NaN


def test_a12_on_known_values():
    assert an.a12([1, 2, 3], [1, 2, 3]) == 0.5
    assert an.a12([4, 5], [1, 2]) == 1.0
    assert an.a12([1, 2], [2, 3]) == 0.125  # (0 + 0 + 0.5 + 0) / 4
    assert an.a12_magnitude(0.5) == "negligible"
    assert an.a12_magnitude(0.125) == "large"
    assert an.a12_magnitude(0.6) == "small"
    assert an.a12_magnitude(0.34) == "medium"


def test_strategy_tests_name_the_tests_and_holm_correct():
    ett = pd.DataFrame({"strategy": list("aaabbbccc"),
                        "reached": [True] * 9,
                        "energy_to_target_j": [1, 2, 3, 4, 5, 6, 7, 8, 9]})
    t = an.strategy_tests(ett)
    assert t["test"].iloc[0] == "Kruskal-Wallis H"
    assert t["p_value"].iloc[0] < 0.05
    pairs = t.iloc[1:].set_index(["group_a", "group_b"])
    assert set(pairs["test"]) == {"Mann-Whitney U (two-sided)"}
    # fully separated groups of 3: U = 0, exact two-sided p = 2 / C(6, 3) = 0.1
    assert pairs.loc[("a", "b"), "statistic"] == 0
    assert pairs.loc[("a", "b"), "p_value"] == pytest.approx(0.1)
    # Holm on three p = 0.1: 0.3, max(0.3, 0.2), max(0.3, 0.1) -> all 0.3
    assert pairs["p_holm"].tolist() == pytest.approx([0.3, 0.3, 0.3])
    assert pairs.loc[("a", "c"), "a12"] == 0.0  # a always needs less energy than c


def test_strategy_tests_rank_never_reached_above_any_energy(trials):
    t = an.strategy_tests(an.energy_to_target(trials, 0.85))
    row = t[t["group_a"] == "bayes"].iloc[0]
    # bayes [inf, 3] vs grid [60, 5]: inf > 60, inf > 5, 3 < 60, 3 < 5 -> A12 = 2/4
    assert row["group_b"] == "grid" and row["a12"] == 0.5


@pytest.mark.parametrize("func,args,column", [
    (an.best_so_far, (), "energy_j"),
    (an.energy_to_target, (0.9,), "energy_j"),
    (an.pareto_front, (), "energy_j"),
    (an.layer_attribution, (), "energy_j"),
])
def test_missing_column_is_named(trials, func, args, column):
    with pytest.raises(TuningEnergyError, match=repr(column)):
        func(trials.drop(columns=[column]), *args)


def test_missing_strategy_column_is_named_by_summary():
    with pytest.raises(TuningEnergyError, match="'strategy'"):
        an.strategy_summary(pd.DataFrame({"reached": [True], "energy_to_target_j": [1.0]}))


def test_pareto_front_keeps_only_non_dominated_trials():
    df = pd.DataFrame({"energy_j": [1, 2, 2, 3, 4, 5, NAN],
                       "accuracy": [0.5, 0.7, 0.6, 0.7, 0.9, 0.8, 0.99]})
    front = an.pareto_front(df)
    # (2, .6) and (3, .7) are dominated by (2, .7); (5, .8) by (4, .9); NaN energy left out
    assert list(zip(front["energy_j"], front["accuracy"], strict=True)) == \
        [(1, 0.5), (2, 0.7), (4, 0.9)]


def test_prediction_error_by_hand():
    df = pd.DataFrame({
        "study": ["s"] * 6, "strategy": ["a", "a", "a", "b", "b", "b"],
        "state": ["COMPLETE"] * 4 + ["PRUNED", "COMPLETE"],
        "epochs_run": [4, 4, 4, 4, 2, 2],  # the last ran 2 of 4 epochs (diverged): left out
        "energy_j": [10.0, 20.0, 40.0, 10.0, 5.0, 5.0],
        "predicted_energy_j": [NAN, 30.0, 30.0, 11.0, 10.0, 10.0],
        "predicted_energy_epoch1_j": [10.0, 20.0, 44.0, 10.0, 10.0, 10.0],
    })
    e = an.prediction_error(df).set_index("predictor")
    flops = e.loc["predicted_energy_j"]
    # |30-20|/20 = 0.5, |30-40|/40 = 0.25, |11-10|/10 = 0.1
    assert flops["n"] == 3
    assert flops["median_ape"] == pytest.approx(0.25)
    assert flops["mean_ape"] == pytest.approx(0.85 / 3)
    assert flops["median_ratio"] == pytest.approx(1.1)  # ratios 1.5, 0.75, 1.1
    assert flops["within_25pct"] == pytest.approx(2 / 3)
    # ranks: predicted (2.5, 2.5, 1), measured (2, 3, 1): r = 1.5 / sqrt(1.5 x 2)
    assert flops["spearman"] == pytest.approx(1.5 / math.sqrt(3))
    epoch1 = e.loc["predicted_energy_epoch1_j"]
    assert epoch1["n"] == 4 and epoch1["median_ape"] == pytest.approx(0.0)
    by = an.prediction_error(df, by="strategy")
    assert list(by["n"]) == [2, 3, 1, 1]  # a: flops, epoch1; b: flops, epoch1
    with pytest.raises(TuningEnergyError, match="predicted_energy_j"):
        an.prediction_error(df.drop(columns=["predicted_energy_j", "predicted_energy_epoch1_j"]))
    with pytest.raises(TuningEnergyError, match="'state'"):
        an.prediction_error(df.drop(columns=["state"]))


def _layer_table() -> pd.DataFrame:
    # full 2 x 2 x 2 factorial, two replicates; energy = 10 n_conv + 2 (n_linear - 1) +- 0.5
    rows = []
    for rep, noise in enumerate((0.5, -0.5)):
        for c in (0, 1):
            for lin in (1, 2):
                for relu in (False, True):
                    rows.append({"param_n_conv": c, "param_n_linear": lin, "param_relu": relu,
                                 "energy_j": 10 * c + 2 * (lin - 1) + noise, "epochs_run": 2,
                                 "accuracy": 0.9 - 0.1 * c, "state": "COMPLETE", "rep": rep})
    rows.append({**rows[0], "state": "FAIL", "energy_j": 1000.0})  # not in the ANOVA
    return pd.DataFrame(rows)


def test_layer_attribution_eta_squared_by_hand():
    a = an.layer_attribution(_layer_table()).set_index("factor")
    # SS conv = 16 * 5^2 = 400, SS linear = 16 * 1^2 = 16, SS relu = 0, residual 16 * 0.25 = 4
    assert a.loc["n_conv", "sum_sq"] == pytest.approx(400)
    assert a.loc["n_conv", "eta_sq"] == pytest.approx(400 / 420)
    assert a.loc["n_linear", "eta_sq"] == pytest.approx(16 / 420)
    assert a.loc["relu", "eta_sq"] == pytest.approx(0, abs=1e-12)
    assert a.loc["Residual", "eta_sq"] == pytest.approx(4 / 420)
    assert a.loc["n_conv", "paper_eta_sq_fashion_mnist"] == 0.990
    assert a.loc["relu", "paper_eta_sq_cifar10"] == 0.003


def test_layer_attribution_leaves_out_a_constant_factor():
    df = _layer_table()
    df = df[df["param_relu"]]
    a = an.layer_attribution(df).set_index("factor")
    assert math.isnan(a.loc["relu", "eta_sq"]) and "one level" in a.loc["relu", "note"]
    assert a.loc["n_conv", "eta_sq"] == pytest.approx(200 / 210)


def test_energy_per_epoch_by_factor():
    lv = an.energy_per_epoch_by_factor(_layer_table())
    conv = lv[lv["factor"] == "n_conv"].set_index("level")
    # n_conv = 0: mean energy 1 J over 2 epochs; n_conv = 1: 11 J -> 5.5 J per epoch
    assert conv["mean_energy_per_epoch_j"].tolist() == pytest.approx([0.5, 5.5])
    assert conv["n_trials"].tolist() == [8, 8]  # the FAIL row is left out
    assert conv["median_accuracy"].tolist() == pytest.approx([0.9, 0.8])
    assert np.isfinite(lv["mean_energy_j"]).all()


def test_ratio_ci_upper_bound_is_unbounded_not_nan_when_resamples_never_reach():
    """Seeds that never reached the target are inf: a bootstrap bound among such resamples
    is unbounded (inf), never inf - inf = nan (compare.md printed '0.00-nan')."""
    from tuning_energy.analysis import ratio_ci

    inf = math.inf
    best = [100.0, inf, inf, 90.0, 110.0]  # median 110: 3 of 5 seeds reached the target
    ref = [200.0, 150.0, 180.0, inf, 170.0]
    point, lo, hi = ratio_ci(best, ref)
    assert point == pytest.approx(110.0 / 180.0)
    # A third of the resamples of `best` have an infinite median: the upper bound is
    # unbounded; the lower one is a number (0 where the reference never reached it).
    assert hi == inf
    assert not math.isnan(lo) and 0.0 <= lo < point

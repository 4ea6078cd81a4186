"""Strategies compared across seeds: bootstrap intervals of medians and of their ratios,
Kruskal-Wallis and Mann-Whitney U tests (Holm-corrected), and the Vargha-Delaney A12 that
the Mann-Whitney U gives (A12 = U / (n_a n_b)). Inputs: `energy_to_target`'s table
(to_target.py), or any values.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tuning_energy.analysis.metric import best_of, direction_of
from tuning_energy.analysis.table import require
from tuning_energy.analysis.to_target import censored_energy

BOOTSTRAP_SEED = 20230324  # fixed: the same store gives the same confidence intervals


def bootstrap_median_ci(values: Sequence[float], n_boot: int = 10_000, level: float = 0.95,
                        seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """Median and percentile-bootstrap CI of the median; `inf` values allowed (censored)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    meds = np.median(rng.choice(x, size=(n_boot, x.size), replace=True), axis=1)
    alpha = (1 - level) / 2
    # inverted_cdf: no interpolation, so inf bounds stay inf instead of becoming NaN
    lo, hi = np.quantile(meds, [alpha, 1 - alpha], method="inverted_cdf")
    return float(np.median(x)), float(lo), float(hi)


RATIO_SEED = 20_230_323  # fixed: the same store gives the same ratio intervals


def ratio_ci(a: Sequence[float], b: Sequence[float], n_boot: int = 10_000,
             level: float = 0.95, seed: int = RATIO_SEED) -> tuple[float, float, float]:
    """median(a) / median(b) with a percentile bootstrap CI (seeds resampled per group).

    Never-reached seeds are inf in a and b; a ratio with an inf median is inf or 0, and
    undefined (nan) when both medians are inf (or both 0). A resample whose ratio is
    undefined could have any ratio: it counts as 0 for the low bound and inf for the high
    one, so the high end is unbounded unless a's median reaches the target in at least
    (1 + level) / 2 of the resamples. Empty a or b: all nan."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    if x.size == 0 or y.size == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        point = float(np.median(x) / np.median(y))
        bx = np.median(rng.choice(x, (n_boot, x.size)), axis=1)
        by = np.median(rng.choice(y, (n_boot, y.size)), axis=1)
        r = bx / by
    undefined = np.isnan(r)
    # Percentiles as order statistics (no interpolation): a bound among the resamples whose
    # reference or own is inf is inf (unbounded), not inf - inf = nan.
    lo = np.quantile(np.where(undefined, 0.0, r), (1 - level) / 2, method="inverted_cdf")
    hi = np.quantile(np.where(undefined, math.inf, r), (1 + level) / 2, method="inverted_cdf")
    return point, float(lo), float(hi)


def strategy_summary(ett: pd.DataFrame, n_boot: int = 10_000, level: float = 0.95,
                     seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """Per strategy across seeds, from `energy_to_target`'s table.

    Columns: strategy, n_seeds, reached, reached_share, median_energy_to_target_j,
    ci_low_j, ci_high_j (percentile bootstrap of the median, `level`, fixed rng seed;
    never-reached seeds count as inf, so a bound or the median can be inf),
    median_trials_to_target (same rule), median_total_energy_j, total_energy_j (the
    search's charged energy, median over seeds and sum over seeds: what the comparison
    spent on this strategy), best_accuracy (the best over seeds, in the metric's
    direction),
    median_best_accuracy; n_unmeasured (trials without a training-energy measurement that
    the energies to target count, summed over seeds), lower_bound (the median energy to
    target and its CI are lower bounds: a seed that reached the target has such a trial
    before it), total_lower_bound (the same for the search energy: some seed has such a
    trial). A table without the n_unmeasured columns counts none.
    """
    require(ett, ("strategy", "reached", "energy_to_target_j", "trials_to_target",
                  "total_energy_j", "best_accuracy"), "strategy_summary")
    n_eta = ett["n_unmeasured"] if "n_unmeasured" in ett.columns else \
        pd.Series(0, index=ett.index)
    n_total = ett["n_unmeasured_total"] if "n_unmeasured_total" in ett.columns else n_eta
    rows = []
    energy = censored_energy(ett)
    trials = ett["trials_to_target"].where(ett["reached"].astype(bool), math.inf)
    direction = direction_of(ett)
    for strategy, s in ett.groupby("strategy", sort=True):
        med, lo, hi = bootstrap_median_ci(energy[s.index], n_boot, level, seed)
        rows.append({
            "strategy": strategy, "n_seeds": len(s), "reached": int(s["reached"].sum()),
            "reached_share": float(s["reached"].mean()),
            "median_energy_to_target_j": med, "ci_low_j": lo, "ci_high_j": hi,
            "median_trials_to_target": float(np.median(trials[s.index].astype(float))),
            "median_total_energy_j": float(s["total_energy_j"].median()),
            "total_energy_j": float(s["total_energy_j"].sum()),
            "best_accuracy": best_of(s["best_accuracy"], direction),
            "median_best_accuracy": float(s["best_accuracy"].median()),
            "n_unmeasured": int(n_eta[s.index].sum()),
            "lower_bound": bool(((n_eta[s.index] > 0) & s["reached"].astype(bool)).any()),
            "total_lower_bound": bool((n_total[s.index] > 0).any()),
        })
    return pd.DataFrame(rows)


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Two-sided Mann-Whitney U of `a` against `b`, and its effect size.

    Keys: statistic (U of `a`), p_value, a12 (Vargha-Delaney A12 = U / (n_a n_b):
    P(X > Y) + 0.5 P(X = Y), X from `a`, Y from `b`; 0.5 = no difference; for energy, lower
    is better, so A12 < 0.5 means `a` tends to need less energy than `b`), note (why the
    test could not run, e.g. an empty group; the numbers are then NaN). `inf` values
    (never reached) are allowed.
    """
    from scipy import stats

    out: dict[str, Any] = {"statistic": math.nan, "p_value": math.nan, "a12": math.nan,
                           "note": ""}
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size == 0 or y.size == 0:
        out["note"] = "an empty group"
        return out
    try:
        with warnings.catch_warnings():  # tied infs: scipy warns on the way to its answer
            warnings.simplefilter("ignore", RuntimeWarning)
            u, p = stats.mannwhitneyu(x, y, alternative="two-sided")
    except ValueError as exc:
        out["note"] = str(exc)
        return out
    out.update(statistic=float(u), p_value=float(p), a12=float(u) / (x.size * y.size))
    return out


def a12(a: Sequence[float], b: Sequence[float]) -> float:
    """Vargha-Delaney A12 of `a` against `b` (`mann_whitney`'s): NaN for an empty group."""
    return mann_whitney(a, b)["a12"]


def a12_magnitude(value: float) -> str:
    """Vargha and Delaney's thresholds on |A12 - 0.5|: .06 small, .14 medium, .21 large."""
    if math.isnan(value):
        return ""
    d = abs(value - 0.5)
    return "negligible" if d < 0.06 else "small" if d < 0.14 else "medium" if d < 0.21 \
        else "large"


def strategy_tests(ett: pd.DataFrame, value: str = "energy_to_target_j") -> pd.DataFrame:
    """Do the strategies differ in `value` across seeds?

    Rows: one Kruskal-Wallis H test across all strategies, then two-sided Mann-Whitney U for
    every pair with Holm-corrected p-values and Vargha-Delaney A12 (group_a vs group_b).
    For `energy_to_target_j` never-reached seeds count as inf (worse than any energy).
    Columns: test, value, group_a, group_b, n_a, n_b, statistic, p_value, p_holm, a12,
    a12_magnitude, note.
    """
    require(ett, ("strategy", value), "strategy_tests")
    from scipy import stats
    from statsmodels.stats.multitest import multipletests

    v = censored_energy(ett) if value == "energy_to_target_j" else ett[value].astype(float)
    groups = {k: v[s.index].to_numpy() for k, s in ett.groupby("strategy", sort=True)}
    names = list(groups)
    rows: list[dict[str, Any]] = []
    kw: dict[str, Any] = {"test": "Kruskal-Wallis H", "value": value, "group_a": "all",
                          "group_b": "", "n_a": sum(len(g) for g in groups.values()),
                          "n_b": math.nan, "statistic": math.nan, "p_value": math.nan,
                          "p_holm": math.nan, "a12": math.nan, "a12_magnitude": "", "note": ""}
    if len(names) < 2:
        kw["note"] = "needs at least two strategies"
    else:
        try:
            with warnings.catch_warnings():  # every value tied (all inf): scipy warns, gives nan
                warnings.simplefilter("ignore", RuntimeWarning)
                h, p = stats.kruskal(*groups.values())
            kw.update(statistic=float(h), p_value=float(p))
            if math.isnan(h):
                kw["note"] = "all values are tied (e.g. no seed reached the target)"
        except ValueError as exc:  # all values identical
            kw["note"] = str(exc)
    rows.append(kw)
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            row = {"test": "Mann-Whitney U (two-sided)", "value": value, "group_a": a,
                   "group_b": b, "n_a": len(groups[a]), "n_b": len(groups[b]),
                   "p_holm": math.nan, **mann_whitney(groups[a], groups[b])}
            row["a12_magnitude"] = a12_magnitude(row["a12"])
            pairs.append(row)
    ps = [r["p_value"] for r in pairs]
    ok = [i for i, p in enumerate(ps) if not math.isnan(p)]
    if ok:
        adjusted = multipletests([ps[i] for i in ok], method="holm")[1]
        for i, p in zip(ok, adjusted, strict=True):
            pairs[i]["p_holm"] = float(p)
    rows += pairs
    return pd.DataFrame(rows)

"""The expected energy to target (ERT, analysis/ert.py) as compare.md, report.md and the
dashboard note show it: one table, one definition in words, the same cells everywhere."""

from __future__ import annotations

import math

import pandas as pd

from tuning_energy.report.markdown import at_least, fmt, md_table

ERT_DEFINITION = (
    "Expected energy to target (ERT, the headline): the energy of every seed's search up to "
    "the target, where it reached it, plus the whole search's energy of the seeds that never "
    "did, divided by the number of seeds that reached it. It is the energy a user spends, on "
    "average, until they hold a model at the target if they rerun a failed search with a "
    "new seed (COCO's expected running time, in joules). It exists as soon as one seed "
    "reaches the target and it charges a strategy for the seeds that fail; with every seed "
    "reaching it is their mean energy to target. Its 95% CI is a percentile bootstrap over "
    "the strategy's seeds (a resample without a seed that reached the target is unbounded); "
    "the share of seeds that reached the target has a Wilson 95% interval.")


def joules(j: float, bound: bool = False) -> str:
    """A number of joules as the ERT tables show it: 'not reached' for an infinite ERT."""
    if math.isinf(j):
        return "not reached"
    return f"{at_least(bound)}{j:,.1f}" if j >= 100 else f"{at_least(bound)}{j:.3g}"


def ert_ci(lo: float, hi: float, bound: bool = False) -> str:
    """An ERT interval: an infinite end is 'unbounded' (resamples without a success)."""
    def end(v: float) -> str:
        return "unbounded" if math.isinf(v) else joules(v, bound)
    return f"{end(lo)} to {end(hi)}"


def ert_cells(ert: pd.DataFrame) -> pd.DataFrame:
    """analysis.expected_energy_to_target's table as text cells: strategy, ert, ert_ci,
    reached (successes/runs), reached_ci (Wilson, in %); sorted by ERT."""
    rows = []
    for r in ert.sort_values(["ert_j", "strategy"]).itertuples():
        b = bool(r.lower_bound)
        rows.append({"strategy": r.strategy, "ert": joules(r.ert_j, b),
                     "ert_ci": ert_ci(r.ert_ci_low_j, r.ert_ci_high_j, b),
                     "reached": f"{r.successes}/{r.runs}",
                     "reached_ci": f"{r.success_ci_low:.0%} to {r.success_ci_high:.0%}"})
    return pd.DataFrame(rows, columns=["strategy", "ert", "ert_ci", "reached", "reached_ci"])


def ert_table(ert: pd.DataFrame, summary: pd.DataFrame, metric: str = "accuracy") -> str:
    """The per-strategy table of compare.md and report.md: the ERT and its CI, seeds that
    reached the target with their Wilson interval, then the secondary columns of
    analysis.strategy_summary (median energy to target, trials to it, search energy, best
    metric)."""
    cells = ert_cells(ert)
    s = summary.set_index("strategy")

    def median_eta(name: str) -> str:
        v = s.loc[name, "median_energy_to_target_j"]
        return "n/a (half or more not reached)" if math.isinf(v) else \
            joules(v, bool(s.loc[name, "lower_bound"]))

    cells["median_eta"] = [median_eta(n) for n in cells["strategy"]]
    cells["median_trials"] = [fmt(s.loc[n, "median_trials_to_target"]) for n in cells["strategy"]]
    cells["median_total"] = [joules(s.loc[n, "median_total_energy_j"],
                                    bool(s.loc[n, "total_lower_bound"]))
                             for n in cells["strategy"]]
    cells["best"] = [f"{s.loc[n, 'median_best_accuracy']:.4f}" for n in cells["strategy"]]
    return md_table(cells, {
        "strategy": "strategy", "ert": "**ERT J**", "ert_ci": "ERT 95% CI J",
        "reached": "seeds reached", "reached_ci": "reached 95% CI (Wilson)",
        "median_eta": "median energy to target J", "median_trials": "median trials to target",
        "median_total": "search J (median)", "best": f"best {metric} (median)"})


def lowest_ert_sentence(ert: pd.DataFrame) -> str:
    """'**S** reaches the target for the fewest expected joules: ...', or why none does."""
    reached = ert[ert["successes"] > 0].sort_values(["ert_j", "strategy"])
    if reached.empty:
        return "No strategy reached the target in any seed: every ERT is infinite."
    b = reached.iloc[0]
    low = bool(b["lower_bound"])
    return (f"**{b['strategy']}** reaches the target for the fewest expected joules: ERT "
            f"{joules(b['ert_j'], low)} J (95% CI "
            f"{ert_ci(b['ert_ci_low_j'], b['ert_ci_high_j'], low)} J), reaching it in {b['successes']} of {b['runs']} seeds."
            + (" Its energies are lower bounds (trials without a training-energy "
               "measurement), so the ranking is uncertain." if low else ""))

"""compare.md: compare.json's numbers (compare_report.compare_summary) in sentences that a
reader follows without the code: the ERT per strategy, its ratios to the references with
plain and family-wise intervals, the one-third goal's verdict, the seeds a verdict would
need, then the secondary medians and tests."""

from __future__ import annotations

import math
from typing import Any

from tuning_energy.analysis import ratios as rt
from tuning_energy.analysis import seeds_needed as pw
from tuning_energy.analysis import verdict as vd
from tuning_energy.report.ert_text import ERT_DEFINITION, ert_table, lowest_ert_sentence
from tuning_energy.report.findings import prediction_lines
from tuning_energy.report.markdown import co2_number, md_table


def trials_per_study(result: dict) -> str:
    """'30 trials', or '30 to 31 trials (failed ones included)' when the studies' finished
    trials differ (a trial that failed, e.g. killed and marked FAIL on resume, is counted)."""
    hi = result["trials_per_study"]
    lo = result.get("trials_per_study_min", hi)
    return f"{hi} trials" if lo == hi else f"{lo} to {hi} trials (failed ones included)"


def familywise_text(k: int, level: float) -> str:
    """What the family-wise CI is, for the k strategies compared with one reference."""
    return (
        "Family-wise CI: picking the best of k strategies favours one that looks good by "
        "luck. Were each judged by its own 95% CI, k strategies no better than the reference "
        "would show one whose interval excludes 1 far more often than 1 time in 40. The "
        "family-wise interval is the Bonferroni one for the k strategies compared with the "
        f"same reference: each at the 1 - 0.05/k level (here k = {k}: {level:.2%}), so that "
        "all k hold together with at least 95% confidence and a claim about the best of "
        "them means what it says.")


def render_compare_md(result: dict[str, Any], c, stem: str = "compare") -> str:
    """compare.md from compare.json's content and the analysed comparison; `stem`: the
    figures' file stem (compare.png, compare-ecdf.png beside it)."""
    lines = [
        f"# Which strategy reaches the target for the fewest expected joules? "
        f"({result['config']})",
        "",
        f"Seeds {result['seeds']}, {trials_per_study(result)} per study, the same "
        f"objective for every strategy. {c.goal.sentence()} Energy "
        f"counted: {result['energy_counted']}; method "
        f"`{result['energy_method']}`"
        + (f" ({result['energy_estimate']})" if result.get("energy_estimate") else "") + "."
        + (f" {result['unmeasured']}" if result.get("unmeasured") else "")
        + (f" CO2 of the whole comparison: "
           f"{co2_number(result['co2_g_total'], bool(result.get('n_unmeasured')))} g CO2e (its charged "
           f"energy, each trial at the carbon intensity its study recorded)."
           if result.get("co2_g_total") is not None else ""),
        "",
        "## Expected energy to target (ERT) per strategy",
        "",
        ERT_DEFINITION + " Secondary columns: the median energy to target over seeds (it "
        "exists only when more than half of the seeds reached the target), the median "
        "number of trials to it, and the median energy of a whole search.",
        "",
        ert_table(c.ert, c.summary, c.goal.metric),
        "",
        lowest_ert_sentence(c.ert),
        "",
        f"![best so far vs energy]({stem}.png) ![runtime ECDF]({stem}-ecdf.png)",
        "",
        f"Left: the best {c.goal.metric} so far against the energy spent (median over seeds). "
        "Right: the runtime ECDF (COCO's data profile): for each strategy, the share of "
        "(seed, target) pairs reached against the energy spent, over targets from an easy "
        "one (what a search's first trial gets, in the median) up to the comparison's "
        "target; higher and further left is better, and a curve's end below 1 shows the "
        "pairs it never reached.",
        "",
    ]
    lines += _ratio_section(result, c)
    lines += _tests_section(c)
    lines += _median_section(c)
    lines += _prediction_section(c)
    return "\n".join(lines)


def _ratio_section(result: dict[str, Any], c) -> list[str]:
    """ERT ratios to bayes, random and grid (compare.json's `ert_ratios`), the one-third
    goal's verdict (`verdict`) and the seeds a verdict would need (`power`)."""
    table = c.ert_ratios
    if table is None or table.empty:
        return []
    refs = ", ".join(r for r in rt.REFERENCES if r in set(table["reference"]))
    v = result["verdict"]
    lines = [f"## ERT relative to {refs}", "",
             "S/R = ERT of strategy S / ERT of the reference R: below 1, S needs fewer "
             "expected joules to reach the target. 95% CI: percentile bootstrap resampling "
             "the seeds of S and of R independently. "
             + familywise_text(int(table["candidates"].iloc[0]), float(table["fw_level"].iloc[0]))
             + " \"0 (R not reached)\": R never reached the target, S did; \"not reached\": S "
             "never did; an unbounded end comes from resamples in which S (or both) had no "
             "seed that reached the target. The numbers are compare.json's `ert_ratios`.", "",
             *rt.ratio_lines(table, {"95% CI": ("ci_low", "ci_high"),
                                     "family-wise CI": ("fw_low", "fw_high")}), "",
             "## Verdict: one third of bayes's energy?", "",
             vd.goal_sentence(v), "",
             f"The goal: some strategy reaches the target with at most one third of the "
             f"expected energy of `{v['reference']}`. It is *established* when the family-wise "
             f"CI's high end of the best strategy's ERT ratio is at or below 1/3, *suggested* "
             f"when the ratio is but its CI reaches above, *not met* when the ratio is above "
             f"1/3 and the CI reaches below, *refuted* when the CI's low end is above 1/3 for "
             f"every strategy. With fewer than {vd.MIN_SEEDS} seeds of a strategy the verdict "
             f"is *{vd.TOO_FEW}*: a bootstrap over so few seeds shrinks towards a point and "
             f"decides nothing. compare.json's `verdict` holds the same.", ""]
    if result.get("power"):
        lines += ["## Seeds needed to decide (power)", "", *pw.power_lines(result["power"])]
    return lines


def _tests_section(c) -> list[str]:
    """Kruskal-Wallis across strategies and Mann-Whitney U for the lowest-ERT strategy."""
    tests = c.tests
    reached = c.ert[c.ert["successes"] > 0].sort_values(["ert_j", "strategy"])
    if not len(tests) or reached.empty:
        return []
    best = reached.iloc[0]["strategy"]
    lines = ["## Tests on the energy to target per seed", ""]
    kw = tests[tests["test"].str.startswith("Kruskal")]
    if len(kw) and math.isfinite(kw.iloc[0]["p_value"]):
        k = kw.iloc[0]
        lines += [f"Kruskal-Wallis H across strategies (energy to target per seed, "
                  f"never-reached = infinite): H = {k['statistic']:.2f}, "
                  f"p = {k['p_value']:.3g}"
                  + (" - no significant difference at 0.05." if k["p_value"] >= 0.05
                     else "."), ""]
    pairs = tests[~tests["test"].str.startswith("Kruskal")]
    pairs = pairs[(pairs["group_a"] == best) | (pairs["group_b"] == best)]
    if len(pairs):
        lines += [f"Pairwise two-sided Mann-Whitney U for {best}, Holm-corrected over all "
                  "pairs; A12 = P(a needs more energy than b):", "",
                  md_table(pairs, {"group_a": "a", "group_b": "b", "p_value": "p",
                                   "p_holm": "p (Holm)", "a12": "A12",
                                   "a12_magnitude": "effect"}), ""]
    return lines


def _median_section(c) -> list[str]:
    """The secondary table: median energy to target ratios (compare.json's
    `median_ratios`)."""
    table = c.median_ratios
    if table is None or table.empty:
        return []
    return ["## Secondary: median energy to target relative to the references", "",
            "S/R = the median energy to target of S over that of R (seeds that never reached "
            "the target count as infinite), with a percentile-bootstrap 95% CI; compare.json's "
            "`median_ratios`. A median does not exist when half of the seeds or more never "
            "reach the target, which is why the verdict above rests on ERT instead.", "",
            *rt.ratio_lines(table, {"95% CI": ("ci_low", "ci_high")}, what="median"), ""]


def _prediction_section(c) -> list[str]:
    if c.prediction is None:
        return []
    return ["## Energy predicted before training", "",
            *prediction_lines(c.prediction, c.trials), ""]

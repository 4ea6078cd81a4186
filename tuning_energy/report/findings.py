"""One comparison analysed (`analyse`: energy to target at its target, the strategies'
summary and tests, RQ2 and the energy predictions where the data has them), its figures,
and the sentences that report.md and compare.md say about it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from tuning_energy.analysis.energy_factors import (
    LAYER_FACTORS,
    energy_per_epoch_by_factor,
    layer_attribution,
    prediction_error,
)
from tuning_energy.analysis.ert import expected_energy_to_target
from tuning_energy.analysis.stats import strategy_summary, strategy_tests
from tuning_energy.analysis.table import method_label
from tuning_energy.analysis.target import Target, comparison_target
from tuning_energy.analysis.to_target import charged_what, energy_to_target
from tuning_energy.report import figures as fg
from tuning_energy.report.ecdf_figure import N_TARGETS
from tuning_energy.report.ert_text import lowest_ert_sentence
from tuning_energy.report.markdown import at_least, fmt, kj, md_table

SIGNIFICANCE = 0.05


@dataclass
class Comparison:
    """One comparison's analysis: its trials, its target (target.py) and the tables derived
    from them."""

    name: str
    trials: pd.DataFrame
    goal: Target
    ett: pd.DataFrame
    summary: pd.DataFrame
    tests: pd.DataFrame
    ert: pd.DataFrame  # analysis.expected_energy_to_target(ett): the headline per strategy
    anova: pd.DataFrame | None = None
    by_level: pd.DataFrame | None = None
    prediction: pd.DataFrame | None = None
    # compare.json's tables (compare_report.compare_summary): ratios.ert_ratio_table and
    # ratios.median_ratio_table of ett
    ert_ratios: pd.DataFrame | None = None
    median_ratios: pd.DataFrame | None = None
    figures: dict[str, Any] = field(default_factory=dict)  # file stem -> Figure

    @property
    def target(self) -> float:
        return self.goal.accuracy


def analyse(trials: pd.DataFrame, name: str, target: float | None = None,
            target_fraction: float | None = None) -> Comparison:
    """Energy to target (analysis.energy_to_target: charged energy) at the comparison's
    target (target.comparison_target: the config's target_accuracy unless `target` or
    `target_fraction` overrides it), its summary, tests and expected energy to target
    (ERT), RQ2 where layers were varied, and the predictions (of the training energy)."""
    goal = comparison_target(trials, target, target_fraction)
    ett = energy_to_target(trials, goal.accuracy)
    c = Comparison(name, trials, goal, ett, strategy_summary(ett), strategy_tests(ett),
                   expected_energy_to_target(ett))
    if fg.has_layer_sweep(trials):
        c.anova = layer_attribution(trials)
        c.by_level = energy_per_epoch_by_factor(trials)
    if fg.has_predictions(trials):
        c.prediction = prediction_error(trials)
    return c


def make_figures(c: Comparison, ecdf_targets: int = N_TARGETS) -> dict[str, Any]:
    """The comparison's figures, by file stem; `ecdf_targets`: the runtime ECDF's number of
    targets (ecdf_figure.py)."""
    figs = {
        "best-so-far": fg.fig_best_so_far(c.trials, c.target,
                                          title=f"{c.name}: best {c.goal.metric} so far vs "
                                                f"energy"),
        "ecdf": fg.fig_runtime_ecdf(c.trials, c.target, ecdf_targets,
                                    title=ecdf_title(c.name)),
        "energy-to-target": fg.fig_energy_to_target(
            c.ett, title=f"{c.name}: energy to reach {c.goal.metric} {c.target:.3f}"
                         f"{' (at or below)' if c.goal.direction == 'minimize' else ''} "
                         f"(one dot per seed)",
            methods=method_label(c.trials), counted=charged_what(c.trials)),
        "pareto": fg.fig_pareto(c.trials, title=f"{c.name}: {c.goal.metric} vs energy per "
                                                f"trial"),
    }
    if "flops_per_sample" in c.trials.columns and c.trials["flops_per_sample"].nunique() > 1:
        figs["flops"] = fg.fig_flops(c.trials, title=f"{c.name}: energy vs FLOPs")
    if c.anova is not None:
        figs["layers"] = fg.fig_layers(c.trials, title=f"{c.name}: RQ2, energy per trial by "
                                                       f"layer kind")
    if c.prediction is not None:
        figs["prediction"] = fg.fig_prediction(c.trials, title=f"{c.name}: predicted vs "
                                                              f"measured energy per trial")
    if fg.has_net_energy(c.trials):
        figs["net-vs-gross"] = fg.fig_net_vs_gross(c.trials, title=f"{c.name}: gross vs "
                                                                   f"idle-corrected energy")
    c.figures = figs
    return figs


def ecdf_title(name: str) -> str:
    return (f"{name}: runtime ECDF, the share of (seed, target) pairs reached vs energy "
            f"spent")


# ---------------------------------------------------------------- sentences


def rq1_findings(c: Comparison) -> list[str]:
    s = c.summary
    if s.empty:
        return ["No studies."]
    out: list[str] = [lowest_ert_sentence(c.ert) + " (ERT: expected energy to target, the "
                      "headline; the medians below are secondary.)"]
    best = s.sort_values(["median_energy_to_target_j", "reached_share"],
                         ascending=[True, False]).iloc[0]
    for _, r in s.iterrows():
        if math.isinf(r["median_energy_to_target_j"]):
            how = ("so its median energy to target is undefined (half or more of the seeds "
                   "never got there)")
        else:
            low = at_least(bool(r.get("lower_bound", False)))
            how = (f"median energy to get there {low}{kj(r['median_energy_to_target_j'])} "
                   f"(95% bootstrap CI {low}{kj(r['ci_low_j'])} to {low}"
                   f"{kj(r['ci_high_j'])}), after a median of "
                   f"{fmt(r['median_trials_to_target'])} trials")
            if low:
                how += (f" ({r['n_unmeasured']} trial(s) on the way without a training-energy "
                        f"measurement: a lower bound)")
        out.append(
            f"**{r['strategy']}** reached {c.goal.metric} {c.target:.3f} in {r['reached']} of "
            f"{r['n_seeds']} seeds; {how}. The whole search cost "
            f"{at_least(bool(r.get('total_lower_bound', False)))}"
            f"{kj(r['median_total_energy_j'])} per seed (median) and reached at best "
            f"{r['best_accuracy']:.4f}.")
    t = c.trials
    done = t[(t.get("state", "COMPLETE") == "COMPLETE") & t["energy_j"].notna()]
    if same_model(done) and len(done) > 2 and done["energy_j"].mean() > 0:
        e = done["energy_j"]
        out.append(f"The model is the same in every trial, yet its training energy per trial "
                   f"ranges from {e.min():.3g} to {e.max():.3g} J (coefficient of variation "
                   f"{e.std() / e.mean():.0%}): strategies differ in energy mainly through how "
                   f"many trials they need, and differences smaller than this spread are noise.")
    if len(s) < 2:
        out.append("Only one strategy in this comparison: nothing to compare it with.")
        return out
    kw = c.tests[c.tests["test"].str.startswith("Kruskal")].iloc[0]
    significant = not math.isnan(kw["p_value"]) and kw["p_value"] < SIGNIFICANCE
    if math.isinf(best["median_energy_to_target_j"]):
        out.append("No strategy reached the target in more than half of its seeds, so no "
                   "median energy-to-target is finite.")
    else:
        out.append(
            f"Lowest median energy to target: **{best['strategy']}**. Kruskal-Wallis across "
            f"strategies: H = {fmt(kw['statistic'])}, p = {fmt(kw['p_value'])} "
            f"({'a' if significant else 'no'} significant difference at {SIGNIFICANCE}"
            f"{'' if significant else ' with these seeds'}).")
    pairs = c.tests[c.tests["test"].str.startswith("Mann")]
    reached = c.ett.groupby("strategy")["reached"].any() if len(c.ett) else pd.Series()
    for _, p in pairs.iterrows():
        if math.isnan(p["a12"]):
            continue
        if not (reached.get(p["group_a"], False) or reached.get(p["group_b"], False)):
            out.append(f"{p['group_a']} vs {p['group_b']}: neither reached the target in any "
                       f"seed, so their energies to target cannot be told apart.")
            continue
        tendency = "no tendency either way" if p["a12"] == 0.5 else \
            f"{p['group_a'] if p['a12'] < 0.5 else p['group_b']} tends to need less energy"
        out.append(f"{p['group_a']} vs {p['group_b']}: A12 = {p['a12']:.2f} "
                   f"({p['a12_magnitude']}; {tendency}), "
                   f"Holm-corrected p = {fmt(p['p_holm'])}.")
    strategies = set(s["strategy"])
    if "bayes" in strategies and math.isinf(best["median_energy_to_target_j"]):
        out.append("These seeds cannot confirm or refute Yarally et al.'s finding that "
                   "Bayesian optimisation dominates grid and random search.")
    elif "bayes" in strategies:
        if best["strategy"] == "bayes" and significant:
            verdict = "agrees with"
        elif best["strategy"] == "bayes":
            verdict = "points the same way as, but does not establish,"
        else:
            verdict = "disagrees with"
        out.append(f"This {verdict} Yarally et al.'s finding that Bayesian optimisation "
                   f"dominates grid and random search.")
    return out


def same_model(trials: pd.DataFrame) -> bool:
    """Every trial trained the same model: they record its size (`n_params`,
    `flops_per_sample`, as the built-in CNN does) and it never varies. A user's objective
    that records neither may search its model: nothing is claimed."""
    cols = [c for c in ("n_params", "flops_per_sample") if c in trials.columns]
    return bool(cols) and all(trials[c].notna().all() and trials[c].nunique() == 1
                              for c in cols)


def rq2_findings(c: Comparison) -> list[str]:
    a, lv = c.anova, c.by_level
    if a is None or lv is None:
        return []
    out = []
    eta = {r["factor"]: r["eta_sq"] for _, r in a.iterrows()}
    ranked = sorted((f for f in LAYER_FACTORS if not math.isnan(eta[f])),
                    key=lambda f: -eta[f])
    if ranked:
        parts = ", ".join(f"{f} {eta[f]:.3f}" for f in ranked)
        out.append(f"Share of the variance of energy per trial (eta²): {parts}; residual "
                   f"{fmt(eta.get('Residual'))}. The paper: conv 0.990 / 0.976, linear "
                   f"0.006 / 0.016, ReLU 0.002 / 0.003 (Fashion-MNIST / CIFAR-10).")
        if ranked[0] == "n_conv":
            out.append("As in the paper, the number of conv layers explains most of the "
                       "energy" + (" (though less of it than the paper's 0.98-0.99)."
                                   if eta["n_conv"] < 0.9 else "."))
        else:
            out.append(f"Unlike the paper, {ranked[0]} explains more of the energy than the "
                       f"conv depth here.")
    conv = lv[lv["factor"] == "n_conv"].sort_values("level")
    if len(conv) > 1:
        e0, e1 = conv["mean_energy_per_epoch_j"].iloc[0], conv["mean_energy_per_epoch_j"].iloc[-1]
        if e0 > 0 and not math.isnan(e1):
            out.append(f"Energy per epoch goes from {e0:.3g} J at n_conv = "
                       f"{conv['level'].iloc[0]} to {e1:.3g} J at n_conv = "
                       f"{conv['level'].iloc[-1]} ({e1 / e0:.1f}x).")
        accs = ", ".join(f"{lvl}: {acc:.3f}" for lvl, acc in
                         zip(conv["level"], conv["median_accuracy"], strict=True))
        out.append(f"Median accuracy by n_conv: {accs}.")
        base = conv["median_accuracy"].iloc[0]
        more = conv["median_accuracy"].iloc[1:].max()
        costlier = e1 > e0
        if conv["level"].iloc[0] == 0 and not more > base:
            out.append("Here conv layers do not make the model more accurate than the plain "
                       "MLP (n_conv = 0)" + (", while they cost more energy" if costlier else "")
                       + "; this disagrees with the paper, which saw accuracy rise with conv "
                       "depth (with diminishing returns) on 28x28 and 32x32 images. 8x8 "
                       "digits leave little spatial structure for convolutions to exploit.")
        elif more > base:
            out.append("Deeper conv stacks are more accurate here, as in the paper; compare "
                       "the gain with the energy per epoch above for the trade-off.")
    return out


PREDICTION_COLUMNS = {"what": "predictor", "n": "trials", "median_ape": "median abs. error",
                      "p90_ape": "90th pct abs. error", "median_ratio": "predicted / measured "
                      "(median)", "within_25pct": "within ±25 %", "spearman": "Spearman rho"}


def prediction_lines(pred: pd.DataFrame, trials: pd.DataFrame | None = None) -> list[str]:
    """The prediction-error table and one sentence on what it shows (`trials`: to say when
    every trial had the same FLOPs, so that the FLOPs model had nothing to tell apart)."""
    table = pred.copy()
    for col in ("median_ape", "p90_ape", "within_25pct"):
        table[col] = [f"{v:.0%}" if pd.notna(v) else "-" for v in table[col]]
    lines = ["Each trial's energy was predicted, and stored beside the measurement, twice: "
             "before training from its forward FLOPs x the joules per FLOP the study had "
             "measured so far (`predicted_energy_j`), and after its first epoch as that "
             "epoch's energy x epochs (`predicted_energy_epoch1_j`). Completed trials that "
             "ran every epoch.", "", md_table(table, PREDICTION_COLUMNS), ""]
    rows = {r.predictor: r for r in pred.itertuples()}
    flops, epoch1 = rows.get("predicted_energy_j"), rows.get("predicted_energy_epoch1_j")
    if flops is not None and flops.n and epoch1 is not None and epoch1.n:
        rank = (f", though they rank trials well (Spearman rho {flops.spearman:.2f})"
                if flops.spearman >= 0.9 else f" (Spearman rho {flops.spearman:.2f})")
        same = trials is not None and "flops_per_sample" in trials.columns and \
            trials["flops_per_sample"].nunique() == 1
        if same:
            lines.append(
                f"Every trial here trains the same model (same FLOPs), so the FLOPs "
                f"prediction is the study's mean energy per epoch so far x epochs: it misses by "
                f"{flops.median_ape:.0%} in the median, the first epoch by "
                f"{epoch1.median_ape:.0%}. This comparison cannot test FLOPs as a predictor.")
        elif flops.median_ape > 2 * epoch1.median_ape:
            lines.append(
                f"FLOPs alone miss a trial's energy by {flops.median_ape:.0%} in the median "
                f"and {flops.p90_ape:.0%} at the 90th percentile{rank}: the joules per FLOP "
                f"are not the same for every model. One measured epoch predicts the whole "
                f"trial to {epoch1.median_ape:.0%}.")
        else:
            lines.append(
                f"FLOPs predict a trial's energy about as well as its first epoch does "
                f"({flops.median_ape:.0%} vs {epoch1.median_ape:.0%} median error; FLOPs "
                f"Spearman rho {flops.spearman:.2f}).")
    return lines

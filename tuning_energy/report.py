"""Figures and `report.md` from a store: one section per comparison (studies run from the
same config), an RQ2 section where the depth of the layers was varied.

`render_report` builds the markdown from DataFrames (no I/O); `write_figures` is what the
CLI calls: it reads the store, saves every figure as PNG and PDF and writes report.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from . import analysis as an
from . import environments, selection
from . import figures as fg
from .errors import TuningEnergyError
from .storage import redact
from .target import Target, comparison_target

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
    anova: pd.DataFrame | None = None
    by_level: pd.DataFrame | None = None
    prediction: pd.DataFrame | None = None
    figures: dict[str, Any] = field(default_factory=dict)  # file stem -> Figure

    @property
    def target(self) -> float:
        return self.goal.accuracy


def analyse(trials: pd.DataFrame, name: str, target: float | None = None,
            target_fraction: float | None = None) -> Comparison:
    """Energy to target (analysis.energy_to_target: charged energy) at the comparison's
    target (target.comparison_target: the config's target_accuracy unless `target` or
    `target_fraction` overrides it), its summary and tests, RQ2 where layers were varied,
    and the predictions (of the training energy)."""
    goal = comparison_target(trials, target, target_fraction)
    ett = an.energy_to_target(trials, goal.accuracy)
    c = Comparison(name, trials, goal, ett, an.strategy_summary(ett), an.strategy_tests(ett))
    if fg.has_layer_sweep(trials):
        c.anova = an.layer_attribution(trials)
        c.by_level = an.energy_per_epoch_by_factor(trials)
    if fg.has_predictions(trials):
        c.prediction = an.prediction_error(trials)
    return c


def make_figures(c: Comparison) -> dict[str, Any]:
    figs = {
        "best-so-far": fg.fig_best_so_far(c.trials, c.target,
                                          title=f"{c.name}: best {c.goal.metric} so far vs "
                                                f"energy"),
        "energy-to-target": fg.fig_energy_to_target(
            c.ett, title=f"{c.name}: energy to reach {c.goal.metric} {c.target:.3f}"
                         f"{' (at or below)' if c.goal.direction == 'minimize' else ''} "
                         f"(one dot per seed)",
            methods=an.method_label(c.trials), counted=an.charged_what(c.trials)),
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


# ---------------------------------------------------------------- markdown helpers


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "not reached" if v > 0 else "-inf"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return str(v)


#: Summary columns that are lower bounds where the row's flag column is true (analysis:
#: strategy_summary), shown "≥ X".
LOWER_BOUNDS = {"median_energy_to_target_j": "lower_bound", "ci_low_j": "lower_bound",
                "ci_high_j": "lower_bound", "median_total_energy_j": "total_lower_bound",
                "total_energy_j": "total_lower_bound"}


def md_table(df: pd.DataFrame, columns: dict[str, str], digits: int = 3) -> str:
    """Markdown table of `columns` (name -> header) of df; a finite number in a column of
    LOWER_BOUNDS is shown "≥ X" where the row's flag column (when df has it) is true."""
    head = "| " + " | ".join(columns.values()) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    lines = [head, sep]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(_cell(r, c, digits) for c in columns) + " |")
    return "\n".join(lines)


def _cell(row: pd.Series, column: str, digits: int) -> str:
    text = _fmt(row[column], digits)
    flag = LOWER_BOUNDS.get(column)
    value = row[column]
    if flag is not None and flag in row.index and bool(row[flag]) and \
            isinstance(value, float) and math.isfinite(value):
        return f"≥ {text}"
    return text


def at_least(bound: bool) -> str:
    """'≥ ' before a lower bound, '' otherwise."""
    return "≥ " if bound else ""


def _kj(j: float) -> str:
    if math.isinf(j):
        return "not reached"
    return f"{j / 1e3:.3g} kJ" if j >= 1000 else f"{j:.3g} J"


# ---------------------------------------------------------------- sentences


def rq1_findings(c: Comparison) -> list[str]:
    s = c.summary
    out: list[str] = []
    if s.empty:
        return ["No studies."]
    best = s.sort_values(["median_energy_to_target_j", "reached_share"],
                         ascending=[True, False]).iloc[0]
    for _, r in s.iterrows():
        if math.isinf(r["median_energy_to_target_j"]):
            how = ("so its median energy to target is undefined (half or more of the seeds "
                   "never got there)")
        else:
            low = at_least(bool(r.get("lower_bound", False)))
            how = (f"median energy to get there {low}{_kj(r['median_energy_to_target_j'])} "
                   f"(95% bootstrap CI {low}{_kj(r['ci_low_j'])} to {low}"
                   f"{_kj(r['ci_high_j'])}), after a median of "
                   f"{_fmt(r['median_trials_to_target'])} trials")
            if low:
                how += (f" ({r['n_unmeasured']} trial(s) on the way without a training-energy "
                        f"measurement: a lower bound)")
        out.append(
            f"**{r['strategy']}** reached {c.goal.metric} {c.target:.3f} in {r['reached']} of "
            f"{r['n_seeds']} seeds; {how}. The whole search cost "
            f"{at_least(bool(r.get('total_lower_bound', False)))}"
            f"{_kj(r['median_total_energy_j'])} per seed (median) and reached at best "
            f"{r['best_accuracy']:.4f}.")
    t = c.trials
    searched_model = any(f"param_{f}" in t.columns for f in an.LAYER_FACTORS)
    done = t[(t.get("state", "COMPLETE") == "COMPLETE") & t["energy_j"].notna()]
    if not searched_model and len(done) > 2 and done["energy_j"].mean() > 0:
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
            f"strategies: H = {_fmt(kw['statistic'])}, p = {_fmt(kw['p_value'])} "
            f"({'a' if significant else 'no'} significant difference at {SIGNIFICANCE}"
            f"{'' if significant else ' with these seeds'}).")
    pairs = c.tests[c.tests["test"].str.startswith("Mann")]
    for _, p in pairs.iterrows():
        if not math.isnan(p["a12"]):
            lower = p["group_a"] if p["a12"] < 0.5 else p["group_b"]
            out.append(f"{p['group_a']} vs {p['group_b']}: A12 = {p['a12']:.2f} "
                       f"({p['a12_magnitude']}; {lower} tends to need less energy), "
                       f"Holm-corrected p = {_fmt(p['p_holm'])}.")
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


def rq2_findings(c: Comparison) -> list[str]:
    a, lv = c.anova, c.by_level
    if a is None or lv is None:
        return []
    out = []
    eta = {r["factor"]: r["eta_sq"] for _, r in a.iterrows()}
    ranked = sorted((f for f in an.LAYER_FACTORS if not math.isnan(eta[f])),
                    key=lambda f: -eta[f])
    if ranked:
        parts = ", ".join(f"{f} {eta[f]:.3f}" for f in ranked)
        out.append(f"Share of the variance of energy per trial (eta²): {parts}; residual "
                   f"{_fmt(eta.get('Residual'))}. The paper: conv 0.990 / 0.976, linear "
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


# ---------------------------------------------------------------- the report


def method_line(trials: pd.DataFrame) -> str:
    """'- Energy method(s): ...', saying ESTIMATE and naming the estimated devices when any
    part of a method is an estimate (energy.methods)."""
    lab = an.method_label(trials)
    line = f"- Energy method(s): {', '.join(lab.methods) or 'not recorded'}"
    if lab.any_estimate:
        line += (f" — {lab.text()}: compare strategies with it, do not quote its joules as "
                 f"measured.")
    return line


def mixed_lines(trials: pd.DataFrame) -> list[str]:
    """A MIXED line for each study whose trials ran on several machines (`hardware_id`) or
    were metered by several methods: its energy figures pool them (a resume elsewhere)."""
    out = []
    for study, g in trials.groupby("study", sort=True):
        for col, what in (("hardware_id", "ran on {n} machines"),
                          ("energy_method", "were metered by {n} methods")):
            if col not in g.columns:
                continue
            values = sorted(g[col].dropna().astype(str).unique())
            if len(values) > 1:
                out.append(f"- **MIXED**: `{study}`'s trials {what.format(n=len(values))} "
                           f"({'; '.join(values)}); its energy figures pool them.")
    return out


def _setup(info: pd.DataFrame, trials: pd.DataFrame) -> list[str]:
    lines = ["## Setup", "", *mixed_lines(trials)]
    if info.empty:
        return lines + [method_line(trials),
                        "- No study metadata (the table did not come from a store)."]
    first = info.iloc[0]
    hw = first["hardware"] or {}
    if isinstance(hw, dict):
        lines.append("- Hardware: " + ", ".join(f"{k} {v}" for k, v in hw.items()))
    meter = first["meter"]
    lines.append(method_line(trials))
    if meter:
        lines.append(f"- Meter: `{json.dumps(meter, sort_keys=True, default=str)}`")
    lines.append(f"- Software: tuning-energy {first['tuning_energy_version']}, torch "
                 f"{first['torch_version']} with {first['torch_threads']} thread(s)")
    for comp, g in info.groupby("comparison", sort=True):
        cfg = g.iloc[0]["config"] or {}
        data, train = cfg.get("data", {}), cfg.get("train", {})
        space = ", ".join(p["name"] for p in cfg.get("search_space", []))
        fixed = ", ".join(f"{k}={v}" for k, v in (cfg.get("fixed") or {}).items())
        objective = cfg.get("objective") or {}
        # the built-in CNN objective trains on [data] with [train]; a user's function does
        # its own work: its name and metric say what was searched
        what = f"dataset {data.get('dataset')}, {train.get('epochs')} epochs, batch " \
            f"{train.get('batch_size')}" if not objective.get("function") and data else \
            f"objective `{objective.get('function') or 'an Optuna objective (metered)'}`, " \
            f"{objective.get('metric', 'value')} ({objective.get('direction', 'maximize')}d)"
        lines.append(
            f"- Comparison `{comp}`: {what}, {cfg.get('budget', {}).get('n_trials', '?')}"
            f" trials per study; searched: {space or '-'}; fixed: {fixed or '-'}; strategies "
            f"{', '.join(sorted(g['strategy'].astype(str).unique()))}; seeds "
            f"{', '.join(str(s) for s in sorted(g['seed'].dropna().unique()))}")
    return lines


SUMMARY_COLUMNS = {
    "strategy": "strategy", "n_seeds": "seeds", "reached_share": "reached share",
    "median_energy_to_target_j": "median energy to target (J)", "ci_low_j": "CI low (J)",
    "ci_high_j": "CI high (J)", "median_trials_to_target": "median trials to target",
    "median_total_energy_j": "median search energy per seed (J)",
    "total_energy_j": "search energy, all seeds (J)",
    "best_accuracy": "best accuracy",
}
TEST_COLUMNS = {"test": "test", "group_a": "a", "group_b": "b", "n_a": "n a", "n_b": "n b",
                "statistic": "statistic", "p_value": "p", "p_holm": "p (Holm)", "a12": "A12",
                "a12_magnitude": "effect"}
ANOVA_COLUMNS = {"factor": "factor", "levels": "levels", "df": "df", "sum_sq": "sum sq (J²)",
                 "F": "F", "p_value": "p", "eta_sq": "eta² here",
                 "paper_eta_sq_fashion_mnist": "eta² paper FMNIST",
                 "paper_eta_sq_cifar10": "eta² paper CIFAR-10"}
LEVEL_COLUMNS = {"factor": "factor", "level": "level", "n_trials": "trials",
                 "median_energy_j": "median energy per trial (J)",
                 "mean_energy_per_epoch_j": "mean energy per epoch (J)",
                 "median_accuracy": "median accuracy"}


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


def render_report(comparisons: Sequence[Comparison], info: pd.DataFrame, trials: pd.DataFrame,
                  storage_url: str | Sequence[str], image_ext: str = "png",
                  extra: Sequence[str] = ()) -> str:
    """`extra`: lines of further sections (Environments), before the methods note."""
    urls = [storage_url] if isinstance(storage_url, str) else list(storage_url)
    lines = ["# tuning-energy report", "",
             f"Generated from {', '.join(f'`{redact(u)}`' for u in urls)} by `tuning-energy "
             "figures`; every number below is computed from "
             f"{'that store' if len(urls) == 1 else 'those stores'}. Energy to target is the cumulative charged "
             "energy of a search (each trial's training energy + the strategy's energy "
             "proposing it + its storage round trips, as recorded) up to and including its "
             "first trial at or past the target (at or above a target accuracy, at or below a "
             "minimised metric's target); a search's energy is its charged "
             "energy too (training-only figures say \"training\"). A seed that never reaches "
             "the target counts as infinitely expensive in the medians, bootstrap intervals "
             "(10,000 resamples, fixed seed) and tests.", ""]
    lines += _setup(info, trials)
    if unmeasured := an.unmeasured_text(trials):
        lines += ["", unmeasured]
    for c in comparisons:
        n_fail = int((c.trials.get("state") == "FAIL").sum()) if "state" in c.trials else 0
        lines += ["", f"## Comparison `{c.name}`", "",
                  f"{c.goal.sentence()} {len(c.trials)} finished "
                  f"trials in {c.trials['study'].nunique()} studies ({n_fail} failed; their "
                  f"energy is counted). Energy counted: {an.energy_counted(c.trials)}.", "",
                  "### Per strategy, across seeds", "",
                  md_table(c.summary, {**SUMMARY_COLUMNS,
                                       "best_accuracy": f"best {c.goal.metric}"}), ""]
        lines += selection.report_lines(c.trials, info, md_table)
        if len(c.summary) > 1:
            lines += ["### Tests", "",
                      "Energy to target per seed; never-reached = infinite. A12 is the "
                      "probability that a seed of *a* needs more energy than one of *b* "
                      "(0.5 = no difference).", "", md_table(c.tests, TEST_COLUMNS), ""]
        lines += ["### What the data shows", ""]
        lines += [f"- {s}" for s in rq1_findings(c)]
        if c.anova is not None:
            lines += ["", "### RQ2: which layers the energy goes to", "",
                      "ANOVA of energy per trial (completed trials) on C(n_conv) + C(n_linear) "
                      "+ C(relu), type II sums of squares; eta² = factor sum of squares / "
                      "total sum of squares, next to Yarally et al.'s values.", "",
                      md_table(c.anova, ANOVA_COLUMNS), "", md_table(c.by_level, LEVEL_COLUMNS),
                      ""]
            lines += [f"- {s}" for s in rq2_findings(c)]
        if c.prediction is not None:
            lines += ["", "### Energy predicted before training", ""]
            lines += prediction_lines(c.prediction, c.trials)
        if "flops" in c.figures:
            lines += ["", f"FLOPs: {c.figures['flops'].axes[0].get_title().splitlines()[-1]} "
                          "between forward FLOPs per sample and energy per epoch."]
        lines += ["", "### Figures", ""]
        for stem in c.figures:
            lines.append(f"![{c.name} {stem}]({c.name}-{stem}.{image_ext})")
    lines += ["", *extra] if extra else []
    lines += ["", "_Methods: Kruskal-Wallis H and two-sided Mann-Whitney U (scipy), Holm "
                  "correction (statsmodels), Vargha-Delaney A12 (negligible < 0.56, small < "
                  "0.64, medium < 0.71, large otherwise, on max(A12, 1 - A12)); ANOVA with "
                  "statsmodels OLS._", ""]
    return "\n".join(lines)


def write_figures(storage_url: str | Sequence[str], out_dir: str | Path,
                  target: float | None = None, target_fraction: float | None = None,
                  studies: str | None = None, out=None) -> list[Path]:
    """Read the store(s), write `<comparison>-<figure>.png/.pdf` and report.md into out_dir.
    Several stores: one analysis, with an Environments section (environments.py).

    Each comparison's target: its config's target_accuracy, unless `target` or
    `target_fraction` overrides it (target.py)."""
    import matplotlib.pyplot as plt

    urls = [storage_url] if isinstance(storage_url, str) else list(storage_url)
    trials, info = environments.read_stores(urls, studies)
    if trials.empty:
        raise TuningEnergyError(
            f"--storage = {', '.join(repr(redact(u)) for u in urls)}"
            + (f", --studies = {studies!r}" if studies else "")
            + ": no finished trials to analyse; run `tuning-energy compare` first")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    comparisons = []
    for name, t in trials.groupby("comparison", sort=True):
        c = analyse(an.tidy(t), str(name), target, target_fraction)
        for stem, fig in make_figures(c).items():
            for ext in ("png", "pdf"):
                path = out_dir / f"{name}-{stem}.{ext}"
                fig.savefig(path, dpi=130 if ext == "png" else None,
                            metadata={"CreationDate": None} if ext == "pdf" else None)
                written.append(path)
        comparisons.append(c)
    report = out_dir / "report.md"
    report.write_text(render_report(
        comparisons, info, trials, storage_url, extra=environments.report_lines(
            trials, info, md_table, target, target_fraction)))
    for c in comparisons:
        for fig in c.figures.values():
            plt.close(fig)
    written.append(report)
    return written

"""Figures and `report.md` from a store: one section per comparison (studies run from the
same config), an RQ2 section where the depth of the layers was varied.

`render_report` builds the markdown from DataFrames (no I/O); `write_figures` is what the
CLI calls: it reads the store, saves every figure as PNG and PDF and writes report.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from tuning_energy.analysis import environments, selection
from tuning_energy.analysis.table import method_label, tidy
from tuning_energy.analysis.to_target import (
    charged_co2_total_g,
    energy_counted,
    unmeasured,
    unmeasured_text,
)
from tuning_energy.errors import TuningEnergyError
from tuning_energy.report.ecdf_figure import N_TARGETS
from tuning_energy.report.ert_text import ERT_DEFINITION, ert_table, lowest_ert_sentence
from tuning_energy.report.findings import (
    Comparison,
    analyse,
    make_figures,
    prediction_lines,
    rq1_findings,
    rq2_findings,
)
from tuning_energy.report.markdown import carbon_sources, co2_number, md_table
from tuning_energy.store.url import StoreURL, redact

# ---------------------------------------------------------------- the report


def method_line(trials: pd.DataFrame) -> str:
    """'- Energy method(s): ...', saying ESTIMATE and naming the estimated devices when any
    part of a method is an estimate (energy.methods)."""
    lab = method_label(trials)
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
    torch = f", torch {first['torch_version']} with {first['torch_threads']} thread(s)" \
        if first["torch_version"] else ""  # a metered() study records no torch
    lines.append(f"- Software: tuning-energy {first['tuning_energy_version']}{torch}")
    for comp, g in info.groupby("comparison", sort=True):
        cfg = g.iloc[0]["config"] or {}
        data, train = cfg.get("data", {}), cfg.get("train", {})
        ran = trials[trials["comparison"] == comp]
        space = ", ".join(p["name"] for p in cfg.get("search_space", [])) or ", ".join(
            c.removeprefix("param_") for c in ran.columns
            if c.startswith("param_") and ran[c].notna().any())  # metered(): as suggested
        n_trials = cfg.get("budget", {}).get("n_trials") or \
            _trials_run(ran.groupby("study").size())
        fixed = ", ".join(f"{k}={v}" for k, v in (cfg.get("fixed") or {}).items())
        objective = cfg.get("objective") or {}
        # the built-in CNN objective trains on [data] with [train]; a user's function does
        # its own work: its name and metric say what was searched
        what = f"dataset {data.get('dataset')}, {train.get('epochs')} epochs, batch " \
            f"{train.get('batch_size')}" if not objective.get("function") and data else \
            f"objective `{objective.get('function') or 'an Optuna objective (metered)'}`, " \
            f"{objective.get('metric', 'value')} ({objective.get('direction', 'maximize')}d)"
        lines.append(
            f"- Comparison `{comp}`: {what}, {n_trials}"
            f" trials per study; searched: {space or '-'}; fixed: {fixed or '-'}; strategies "
            f"{', '.join(sorted(g['strategy'].astype(str).unique()))}; seeds "
            f"{', '.join(str(s) for s in sorted(g['seed'].dropna().unique()))}")
    return lines


def _trials_run(per_study: pd.Series) -> str:
    """'8' or '6 to 8 (as run)': finished trials per study, for a study without a budget
    (metered())."""
    if not len(per_study):
        return "no"
    lo, hi = int(per_study.min()), int(per_study.max())
    return f"{lo} (as run)" if lo == hi else f"{lo} to {hi} (as run)"


SUMMARY_COLUMNS = {
    "strategy": "strategy", "n_seeds": "seeds", "reached_share": "reached share",
    "median_energy_to_target_j": "median energy to target (J)", "ci_low_j": "CI low (J)",
    "ci_high_j": "CI high (J)", "median_trials_to_target": "median trials to target",
    "median_total_energy_j": "median search energy per seed (J)",
    "total_energy_j": "search energy, all seeds (J)",
    "co2_g_total": "CO2, all seeds (g CO2e)",
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


def with_co2(summary: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """The strategies' summary with `co2_g_total`, as shown: the CO2 of each strategy's
    charged energy over all its seeds (to_target.charged_co2_total_g, as compare.json's
    `co2_g_total`), '≥' where its search energy is a lower bound."""
    by = {s: charged_co2_total_g(g) for s, g in trials.groupby("strategy", sort=False)}
    return summary.assign(co2_g_total=[
        co2_number(by.get(r["strategy"]), bool(r.get("total_lower_bound", False)))
        for _, r in summary.iterrows()])


def co2_lines(trials: pd.DataFrame, info: pd.DataFrame, comparison: str) -> list[str]:
    """The comparison's CO2 (to_target.charged_co2_total_g, the figure compare.md gives),
    where its intensity came from, and ESTIMATE where its energy is one."""
    total = charged_co2_total_g(trials)
    if total is None:
        return ["CO2: not recorded (no trial can be priced: no carbon intensity on its study "
                "and no `co2_g`).", ""]
    sources = info.loc[info["comparison"] == comparison, "carbon_source"] \
        if "carbon_source" in info.columns else ()
    lab = method_label(trials)
    return [f"CO2 of the charged energy: {co2_number(total, bool(unmeasured(trials).any()))} "
            f"g CO2e for the whole comparison (per strategy in the CO2 column above), each "
            f"trial at the carbon intensity its study recorded: {carbon_sources(sources)}."
            + (f" Like its energy, it is {lab.text()}." if lab.any_estimate else ""), ""]


def render_report(comparisons: Sequence[Comparison], info: pd.DataFrame, trials: pd.DataFrame,
                  storage_url: StoreURL | str | Sequence[StoreURL | str], image_ext: str = "png",
                  extra: Sequence[str] = ()) -> str:
    """`extra`: lines of further sections (Environments), before the methods note."""
    # where the table came from: store URLs, or any label (a table read from elsewhere)
    urls = [storage_url] if isinstance(storage_url, (str, StoreURL)) else list(storage_url)
    lines = ["# tuning-energy report", "",
             f"Generated from {', '.join(f'`{redact(str(u))}`' for u in urls)} by `tuning-energy "
             "figures`; every number below is computed from "
             f"{'that store' if len(urls) == 1 else 'those stores'}. Energy to target is the cumulative charged "
             "energy of a search (each trial's training energy + the strategy's energy "
             "proposing it + its storage round trips, as recorded) up to and including its "
             "first trial at or past the target (at or above a target accuracy, at or below a "
             "minimised metric's target); a search's energy is its charged "
             "energy too (training-only figures say \"training\"). A seed that never reaches "
             "the target counts as infinitely expensive in the medians, bootstrap intervals "
             "(10,000 resamples, fixed seed) and tests; the expected energy to target (ERT, "
             "the headline) charges it its whole search instead.", ""]
    lines += _setup(info, trials)
    if unmeasured := unmeasured_text(trials):
        lines += ["", unmeasured]
    for c in comparisons:
        n_fail = int((c.trials.get("state") == "FAIL").sum()) if "state" in c.trials else 0
        lines += ["", f"## Comparison `{c.name}`", "",
                  f"{c.goal.sentence()} {len(c.trials)} finished "
                  f"trials in {c.trials['study'].nunique()} studies ({n_fail} failed; their "
                  f"energy is counted). Energy counted: {energy_counted(c.trials)}.", "",
                  "### Per strategy, across seeds", "",
                  ERT_DEFINITION, "",
                  ert_table(c.ert, c.summary, c.goal.metric), "",
                  lowest_ert_sentence(c.ert), "",
                  "Secondary, the medians over seeds (a never-reached seed counts as "
                  "infinitely expensive):", "",
                  md_table(with_co2(c.summary, c.trials),
                           {**SUMMARY_COLUMNS, "best_accuracy": f"best {c.goal.metric}"}), ""]
        lines += co2_lines(c.trials, info, c.name)
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
                  studies: str | None = None, out=None,
                  ecdf_targets: int = N_TARGETS) -> list[Path]:
    """Read the store(s), write `<comparison>-<figure>.png/.pdf` and report.md into out_dir.
    Several stores: one analysis, with an Environments section (environments.py).

    Each comparison's target: its config's target_accuracy, unless `target` or
    `target_fraction` overrides it (target.py). `ecdf_targets`: the runtime ECDF's number
    of targets (ecdf_figure.py)."""
    from tuning_energy.report.figure_style import use_file_backend

    use_file_backend()
    import matplotlib.pyplot as plt

    urls = StoreURL.parse_all(storage_url)
    trials, info = environments.read_stores(urls, studies)
    if trials.empty:
        raise TuningEnergyError(
            f"--storage = {', '.join(repr(u.redacted) for u in urls)}"
            + (f", --studies = {studies!r}" if studies else "")
            + ": no finished trials to analyse; run `tuning-energy compare` first")
    names = sorted(trials["comparison"].astype(str).unique())
    if target is not None and len(names) > 1:  # one absolute target, in one metric's units
        raise TuningEnergyError(
            f"--target = {target!r}: the store holds {len(names)} comparisons "
            f"({', '.join(names)}), each with its own metric and target; pick one with "
            f"--studies (e.g. --studies {names[0]}), or use --target-fraction, which is "
            f"relative to each comparison's best")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    comparisons = []
    for name, t in trials.groupby("comparison", sort=True):
        c = analyse(tidy(t), str(name), target, target_fraction)
        for stem, fig in make_figures(c, ecdf_targets).items():
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

"""A comparison: every strategy for every seed of one config, into one store.

Studies run in one process, seeds outer and strategies inner, so that no strategy always
runs first or last on a machine that warms up or heats up. Each study starts with an
unmetered warm-up step (`train.warm_up`, in the runner): the first training in a process
pays one-off costs that would otherwise be charged to whichever trial happens to be first.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tuning_energy import analysis as an
from tuning_energy.analysis import ratios as rt
from tuning_energy.analysis import seeds_needed as pw
from tuning_energy.analysis.metric import best_of, direction_of
from tuning_energy.config import StudyConfig
from tuning_energy.energy.accounting import CHARGED_PARTS, charged_total_j
from tuning_energy.errors import ConfigError
from tuning_energy.run.pool import run_workers
from tuning_energy.run.runner import StudySummary, run_study
from tuning_energy.run.workers import WorkerOptions, check_workers
from tuning_energy.search.strategies import STRATEGIES, parse_variant
from tuning_energy.store.storage import redact


def run_comparison(config: StudyConfig, seeds: int, strategies: Sequence[str] | None = None,
                   storage_url: str = "sqlite:///studies/energy.db", progress: bool = True,
                   out=None, workers: int = 1) -> list[StudySummary]:
    """Run (or resume) `{config.name}-{strategy}-s{seed}` for seeds 0..seeds-1.

    A strategy may carry a pruner, `tpe+asha`: that study runs with `[pruning] pruner =
    "asha"` (named `{config.name}-tpe-asha-s{seed}`), beside the unpruned one.

    Each study runs as `tuning-energy study` runs it: one process (runner.run_study: on
    SQLite under the study's run lock, on journal / PostgreSQL as one worker that claims
    trials under the workers' lock, so that two comparisons running at once on one store
    share each study's budget), or `workers` worker processes (workers.run_workers).
    """
    out = out or sys.stdout
    names = list(strategies) if strategies else list(STRATEGIES)
    variants = [parse_variant(s) for s in names]
    if seeds <= 0:
        raise ConfigError(f"--seeds = {seeds}: must be > 0")
    check_workers(storage_url, workers)
    summaries = []
    for seed in range(seeds):
        for variant in variants:
            summary = run_variant(config, variant, seed, storage_url, progress, out, workers)
            summaries.append(summary)
            if summary.interrupted:
                return summaries
    return summaries


def variant_config(config: StudyConfig, variant: tuple[str, str | None]) -> StudyConfig:
    """The config a variant's study runs: with `[pruning] pruner` set when it has one."""
    pruner = variant[1]
    return config if pruner is None else config.with_overrides(
        pruning=dataclasses.replace(config.pruning, pruner=pruner))


def run_variant(config: StudyConfig, variant: tuple[str, str | None], seed: int,
                storage_url: str, progress: bool = True, out=None,
                workers: int = 1) -> StudySummary:
    """Run (or resume) one study of a comparison: `variant` = (strategy, pruner or None), as
    search.strategies.parse_variant returns it."""
    strategy, _ = variant
    cfg = variant_config(config, variant)
    # one process: SQLite under the run lock, journal / PostgreSQL as one claiming
    # worker (run_study); more: a pool of workers (as `study --workers N`)
    return run_study(cfg, strategy, seed, storage_url, progress=progress,
                     out=out) if workers == 1 else \
        run_workers(cfg, strategy, seed, storage_url, WorkerOptions(n_workers=workers),
                    out=out, progress=progress)


def studies_lines(storage_url: str, names: Sequence[str]) -> list[str]:
    """The table `tuning-energy compare` prints after running `names`, read from the store
    (see study_lines)."""
    return study_lines(an.trials_table(storage_url, list(names)), names)


def study_lines(trials: pd.DataFrame, names: Sequence[str]) -> list[str]:
    """One line per study: finished (complete + pruned) and failed trials, the best metric
    (accuracy, or a user's, in its direction),
    the search's charged energy (accounting.charged_total_j, as every output counts it) and
    its method, marked when any part is an estimate; then what the energy counts and the
    methods' label (energy.methods)."""
    parts = [c for c in CHARGED_PARTS if c in trials.columns]
    lines = [f"{'study':36} {'trials':>7} {'failed':>6} {'best':>9} {'charged J':>11}  "
             f"method"]
    for name in names:
        t = trials[trials["study"] == name]
        finished = int(t["state"].isin(["COMPLETE", "PRUNED"]).sum())
        failed = int((t["state"] == "FAIL").sum())
        best = "-" if t["accuracy"].isna().all() else \
            f"{best_of(t['accuracy'], direction_of(t)):.4f}"
        low = "≥ " if t["energy_j"].isna().any() else ""  # a trial without training energy
        energy = "-" if t["energy_j"].isna().all() else \
            f"{low}{charged_total_j(t[parts].to_dict('records')):,.1f}"
        lab = an.method_label(t)
        method = ", ".join(lab.methods) or "-"
        if lab.any_estimate:
            method += " (ESTIMATE)" if lab.fully_estimated else " (partly ESTIMATE)"
        lines.append(f"{name:36} {finished:>7} {failed:>6} {best:>9} {energy:>11}  {method}")
    lines.append(f"charged J: the {an.charged_what(trials)} energy of every finished trial "
                 f"(complete, pruned and failed)")
    if text := an.unmeasured_text(trials[trials["study"].isin(list(names))]):
        lines.append(text)
    lab = an.method_label(trials)
    if lab.any_estimate:
        lines.append(f"energy method {', '.join(lab.methods)}: {lab.text()}")
    return lines


# ---------------------------------------------------------------- compare.md / compare.json

def _finite(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def compare_summary(trials: pd.DataFrame, config_name: str, target: float | None = None,
                    target_fraction: float | None = None) -> tuple[dict[str, Any], Any]:
    """compare.json's content, and the analysed comparison (for the markdown and figure).

    The target is the comparison's (target.comparison_target): the studies' stored
    target_accuracy unless `target` or `target_fraction` overrides it."""
    from tuning_energy.report.report import analyse

    df = an.with_charged_energy(trials)
    c = analyse(an.tidy(df), config_name, target, target_fraction)
    methods = an.method_label(df)
    per_study = df.groupby("study")["trial"].count()
    result: dict[str, Any] = {
        "config": config_name,
        "seeds": sorted(int(s) for s in df["seed"].dropna().unique()),
        "trials_per_study": int(per_study.max()) if len(per_study) else 0,
        "target": c.target,
        "target_source": c.goal.source,
        "target_rule": c.goal.rule,
        "target_text": c.goal.text(),
        "energy_method": ", ".join(methods.methods) or None,
        "energy_estimate": methods.text() or None,
        "energy_counted": an.energy_counted(df),
        "n_unmeasured": int(an.unmeasured(df).sum()),  # trials without training energy
        "unmeasured": an.unmeasured_text(df) or None,
        "strategies": {},
    }
    if c.prediction is not None:
        result["prediction"] = {
            r.predictor: {"n": int(r.n), "median_ape": _finite(r.median_ape),
                          "p90_ape": _finite(r.p90_ape), "within_25pct": _finite(r.within_25pct),
                          "spearman": _finite(r.spearman)}
            for r in c.prediction.itertuples()}
    for row in c.summary.itertuples():
        enough = row.reached_share > 0.5
        result["strategies"][row.strategy] = {
            "eta_median_j": _finite(row.median_energy_to_target_j) if enough else None,
            "eta_ci95_j": [_finite(row.ci_low_j), _finite(row.ci_high_j)],
            "reached_share": float(row.reached_share),
            "total_energy_median_j": float(row.median_total_energy_j),
            "best_accuracy_median": float(row.median_best_accuracy),
            # trials without a training-energy measurement that the ETAs count; lower_bound:
            # eta_median_j and its CI are lower bounds (total_lower_bound: the search's)
            "n_unmeasured": int(row.n_unmeasured),
            "lower_bound": bool(row.lower_bound),
            "total_lower_bound": bool(row.total_lower_bound),
        }
    table = rt.ratio_table(c.ett)
    result["ratios"] = rt.ratios_json(table)
    result["power"] = _power(c.ett, table)
    return result, c


def _power(ett: pd.DataFrame, table: pd.DataFrame) -> dict[str, Any] | None:
    """power.seeds_needed for the strategy that decides the one-third goal against bayes
    (ratios.goal_candidate); None without bayes or another strategy."""
    best = rt.goal_candidate(table)
    if best is None:
        return None
    energy = an.censored_energy(ett)
    return pw.seeds_needed(energy[ett["strategy"] == best["strategy"]],
                           energy[ett["strategy"] == best["reference"]],
                           best["strategy"], best["reference"]).to_json()


def _bound(x: float, fmt: str = "{:.2f}") -> str:
    """A CI bound: 'unbounded' where resamples never reached the target (inf)."""
    return "unbounded" if math.isinf(x) else fmt.format(x)


def render_compare_md(result: dict[str, Any], c) -> str:
    from tuning_energy.report.report import md_table

    s = c.summary.copy()
    reached = s[s["reached_share"] > 0.5]
    table = rt.ratio_table(c.ett)
    lines = [
        f"# Which strategy reaches the target for the fewest joules? ({result['config']})",
        "",
        f"Seeds {result['seeds']}, {result['trials_per_study']} trials per study, the same "
        f"objective for every strategy. {c.goal.sentence()} Energy "
        f"counted: {result['energy_counted']}; method "
        f"`{result['energy_method']}`"
        + (f" ({result['energy_estimate']})" if result.get("energy_estimate") else "") + "."
        + (f" {result['unmeasured']}" if result.get("unmeasured") else ""),
        "",
        "Energy to target (ETA) = cumulative energy as counted above up to and including the "
        "first trial that reaches the target; total = the whole search's energy, counted the "
        "same way. Median over seeds with a percentile-bootstrap 95% CI; a seed "
        "that never reaches the target counts as infinitely expensive, so a median exists "
        "only when more than half of the seeds reached it.",
        "",
        md_table(s.sort_values("median_energy_to_target_j"), {
            "strategy": "strategy", "reached_share": "reached", "median_energy_to_target_j":
            "ETA median J", "ci_low_j": "CI low J", "ci_high_j": "CI high J",
            "median_trials_to_target": "trials to target", "median_total_energy_j":
            "search J (median)", "median_best_accuracy":
            "best acc (median)" if c.goal.metric == "accuracy" else
            f"best {c.goal.metric} (median)"}),
        "",
    ]
    if reached.empty:
        lines += ["No strategy reached the target in more than half of its seeds.", ""]
        return "\n".join(lines + _ratio_section(result, table) + _prediction_section(c))
    best = reached.sort_values("median_energy_to_target_j").iloc[0]
    low = "≥ " if best["lower_bound"] else ""
    lines += [f"**{best['strategy']}** reaches the target for the least energy: median "
              f"{low}{best['median_energy_to_target_j']:,.1f} J "
              f"(95% CI {low}{_bound(best['ci_low_j'], '{:,.1f} J')} to "
              f"{low}{_bound(best['ci_high_j'], '{:,.1f} J')})."
              + (" Its energies are lower bounds (trials without a training-energy "
                 "measurement), so the ranking is uncertain." if low else ""), ""]
    mine = table[table["strategy"] == best["strategy"]]
    if len(mine):
        lines += [f"| {best['strategy']} vs | ETA ratio (median) | 95% CI |",
                  "| --- | --- | --- |"]
        lines += [f"| {r.reference} | {rt.median_text(r)} | {rt.ci_text(r.ci_low, r.ci_high)} |"
                  for r in mine.itertuples()]
        lines.append("")
    tests = c.tests
    if len(tests):
        kw = tests[tests["test"].str.startswith("Kruskal")]
        if len(kw) and math.isfinite(kw.iloc[0]["p_value"]):
            k = kw.iloc[0]
            lines += [f"Kruskal-Wallis H across strategies (energy to target per seed, "
                      f"never-reached = infinite): H = {k['statistic']:.2f}, "
                      f"p = {k['p_value']:.3g}"
                      + (" - no significant difference at 0.05." if k["p_value"] >= 0.05
                         else "."), ""]
        pairs = tests[~tests["test"].str.startswith("Kruskal")]
        pairs = pairs[(pairs["group_a"] == best["strategy"]) | (pairs["group_b"] == best["strategy"])]
        if len(pairs):
            lines += [f"Pairwise two-sided Mann-Whitney U for {best['strategy']}, Holm-corrected "
                      "over all pairs; A12 = P(a needs more energy than b):", "",
                      md_table(pairs, {"group_a": "a", "group_b": "b", "p_value": "p",
                                       "p_holm": "p (Holm)", "a12": "A12",
                                       "a12_magnitude": "effect"}), ""]
    return "\n".join(lines + _ratio_section(result, table) + _prediction_section(c))


def _ratio_section(result: dict[str, Any], table: pd.DataFrame) -> list[str]:
    """Every strategy against bayes, random and grid (compare.json's `ratios`), the one-third
    goal's verdict, and the seeds the verdict would need (compare.json's `power`)."""
    if table.empty:
        return []
    refs = ", ".join(r for r in rt.REFERENCES if r in set(table["reference"]))
    lines = ["## Energy to target relative to " + refs, "",
             "S/R = the median energy to target of strategy S over that of the reference R "
             "(seeds that never reached the target count as infinite), with a "
             "percentile-bootstrap 95% CI that resamples the seeds of each strategy "
             "independently; the numbers in compare.json's `ratios`.", "",
             *rt.ratio_lines(table), "",
             rt.goal_sentence(table), "",
             "\"0 (R not reached)\": R's median seed never reached the target, S's did; \"not "
             "reached\": S's median seed never did. A CI bound of 0 comes from resamples in "
             "which R's median seed never reached the target, an unbounded one from resamples "
             "in which S's did not (nor, in some, R's: their ratio could be anything).", ""]
    if result.get("power"):
        lines += ["## Seeds needed to decide (power)", "", *pw.power_lines(result["power"])]
    return lines


def _prediction_section(c) -> list[str]:
    from tuning_energy.report.report import prediction_lines

    if c.prediction is None:
        return []
    return ["## Energy predicted before training", "",
            *prediction_lines(c.prediction, c.trials), ""]


def write_compare(storage_url: str, config: StudyConfig, out_dir: str | Path = "figures",
                  target: float | None = None, target_fraction: float | None = None,
                  studies: Sequence[str] | None = None) -> list[Path]:
    """compare.md, compare.json and compare.png/pdf from the store (no training).

    The target is the studies' stored target_accuracy (the config's, as report.md and the
    dashboard note use it) unless `target` or `target_fraction` overrides it (target.py).

    Named `compare.*` for the default config and `compare-{name}.*` for others, so that
    `make paper` does not overwrite the default comparison. `studies`: the studies to
    compare (default: every study of this config in the store).
    """
    import matplotlib.pyplot as plt

    from tuning_energy.report import figures as fg

    names = list(studies) if studies is not None else _study_names(storage_url, config)
    trials = an.trials_table(storage_url, names)
    if trials.empty:
        raise ConfigError(f"no finished trials of {config.name!r} in {redact(storage_url)}; "
                          f"run `make compare CONFIG=...` first")
    result, c = compare_summary(trials, config.name, target, target_fraction)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = "compare" if config.name == "default" else f"compare-{config.name}"
    paths = [out / f"{stem}.json", out / f"{stem}.md"]
    paths[0].write_text(json.dumps(result, indent=2) + "\n")
    paths[1].write_text(render_compare_md(result, c))
    fig = fg.fig_best_so_far(c.trials, c.target,
                             title=f"{config.name}: best {c.goal.metric} vs energy spent "
                                   f"({an.charged_what(c.trials)}), all strategies")
    if c.goal.metric == "accuracy" and c.goal.direction == "maximize":
        # Zoom on the race to the target: every strategy starts far below it after one trial.
        ax = fig.axes[0]
        ax.set_ylim(max(0.0, c.target - 0.06), min(1.0, c.target + 0.02))
        ax.set_ylabel(f"best validation accuracy so far (axis from {c.target - 0.06:.2f})")
    for ext in ("png", "pdf"):
        fig.savefig(out / f"{stem}.{ext}", dpi=130 if ext == "png" else None,
                    metadata={"CreationDate": None} if ext == "pdf" else None)
        paths.append(out / f"{stem}.{ext}")
    plt.close(fig)
    if c.prediction is not None:
        fig = fg.fig_prediction(trials, title=f"{config.name}: predicted vs measured energy "
                                              f"per trial")
        fig.savefig(out / f"{stem}-prediction.png", dpi=110)
        paths.append(out / f"{stem}-prediction.png")
        plt.close(fig)
    return paths


def _study_names(storage_url: str, config: StudyConfig) -> list[str]:
    import optuna

    from tuning_energy.store.storage import open_storage

    storage = open_storage(storage_url, create=False)
    prefix = f"{config.name}-"
    return [s.study_name for s in optuna.get_all_study_summaries(storage, False)
            if s.study_name.startswith(prefix)
            and s.user_attrs.get("config", {}).get("name") == config.name]

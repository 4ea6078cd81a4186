"""compare.json, compare.md and compare.png / compare-ecdf.png of a comparison, from the store
(no training; run/compare.py runs the studies).

compare.json's content is `compare_summary`; compare.md (compare_md.py) shows the same
numbers in sentences. The headline is the expected energy to target (ERT, analysis/ert.py),
its ratios to bayes, random and grid (analysis/ratios.py) and the one-third goal's verdict
(analysis/verdict.py); the median energy to target stays as a secondary column and table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tuning_energy.analysis import ratios as rt
from tuning_energy.analysis import seeds_needed as pw
from tuning_energy.analysis import verdict as vd
from tuning_energy.analysis.ert import seed_costs
from tuning_energy.analysis.table import method_label, tidy, trials_table
from tuning_energy.analysis.to_target import (
    charged_co2_total_g,
    charged_what,
    energy_counted,
    unmeasured,
    unmeasured_text,
    with_charged_energy,
)
from tuning_energy.config import StudyConfig
from tuning_energy.errors import ConfigError
from tuning_energy.report.compare_md import render_compare_md  # noqa: F401 - one name
from tuning_energy.report.ecdf_figure import N_TARGETS
from tuning_energy.report.findings import analyse, ecdf_title
from tuning_energy.store.url import StoreURL

_finite = rt.json_number

#: compare.json's own key saying what its nulls mean (JSON has no infinity).
NULLS = ("null stands for a number JSON cannot hold. In \"ert\": an ert_j of null is "
         "infinite (no seed reached the target), a CI end of null is unbounded (resamples "
         "without a seed that reached it). In \"ert_ratios\" and \"verdict\": a ratio of null "
         "is infinite (S never reached the target) or undefined (neither S nor R did; see "
         "both in \"ert\"), a CI end of null is infinite (unbounded). In \"strategies\": an "
         "eta_median_j of null means half of the seeds or more never reached the target; in "
         "\"median_ratios\" a median of null is infinite or undefined in the same way. "
         "Elsewhere null means not measured (no trial had that value).")


def ert_json(ert: pd.DataFrame) -> dict[str, Any]:
    """compare.json's `"ert"`: {strategy: {ert_j, ci95_j, successes, runs, success_ci95,
    lower_bound}} from analysis.expected_energy_to_target."""
    return {r.strategy: {"ert_j": _finite(r.ert_j),
                         "ci95_j": [_finite(r.ert_ci_low_j), _finite(r.ert_ci_high_j)],
                         "successes": int(r.successes), "runs": int(r.runs),
                         "success_ci95": [float(r.success_ci_low), float(r.success_ci_high)],
                         "lower_bound": bool(r.lower_bound)}
            for r in ert.itertuples()}


def compare_summary(trials: pd.DataFrame, config_name: str, target: float | None = None,
                    target_fraction: float | None = None) -> tuple[dict[str, Any], Any]:
    """compare.json's content, and the analysed comparison (for the markdown and figures:
    findings.Comparison, with `ert_ratios` and `median_ratios` tables).

    The target is the comparison's (target.comparison_target): the studies' stored
    target_accuracy unless `target` or `target_fraction` overrides it."""
    df = with_charged_energy(trials)
    c = analyse(tidy(df), config_name, target, target_fraction)
    methods = method_label(df)
    per_study = df.groupby("study")["trial"].count()
    result: dict[str, Any] = {
        "config": config_name,
        "seeds": sorted(int(s) for s in df["seed"].dropna().unique()),
        "trials_per_study": int(per_study.max()) if len(per_study) else 0,
        "trials_per_study_min": int(per_study.min()) if len(per_study) else 0,
        "target": c.target,
        "target_source": c.goal.source,
        "target_rule": c.goal.rule,
        "target_text": c.goal.text(),
        "energy_method": ", ".join(methods.methods) or None,
        "energy_estimate": methods.text() or None,
        "energy_counted": energy_counted(df),
        "co2_g_total": charged_co2_total_g(df),
        "n_unmeasured": int(unmeasured(df).sum()),  # trials without training energy
        "unmeasured": unmeasured_text(df) or None,
        "nulls": NULLS,
        "ert": ert_json(c.ert),
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
            "total_energy_median_j": _finite(row.median_total_energy_j),
            "best_accuracy_median": _finite(row.median_best_accuracy),
            # trials without a training-energy measurement that the ETAs count; lower_bound:
            # eta_median_j and its CI are lower bounds (total_lower_bound: the search's)
            "n_unmeasured": int(row.n_unmeasured),
            "lower_bound": bool(row.lower_bound),
            "total_lower_bound": bool(row.total_lower_bound),
        }
    c.ert_ratios = rt.ert_ratio_table(c.ett)
    c.median_ratios = rt.median_ratio_table(c.ett)
    result["ert_ratios"] = rt.ert_ratios_json(c.ert_ratios)
    result["verdict"] = vd.goal_verdict(c.ert_ratios, dict(zip(c.ert["strategy"],
                                                               c.ert["runs"], strict=True)))
    result["median_ratios"] = rt.median_ratios_json(c.median_ratios)
    result["power"] = _power(c.ett, result["verdict"])
    return result, c


def _power(ett: pd.DataFrame, verdict: dict[str, Any]) -> dict[str, Any] | None:
    """seeds_needed for the strategy that decides the goal (the verdict's), at the verdict's
    family-wise level; None without bayes or another strategy."""
    if verdict["strategy"] is None:
        return None
    costs = seed_costs(ett)
    return pw.seeds_needed(costs[costs["strategy"] == verdict["strategy"]],
                           costs[costs["strategy"] == verdict["reference"]],
                           verdict["strategy"], verdict["reference"],
                           level=verdict["level"]).to_json()


def write_compare(storage_url: str, config: StudyConfig, out_dir: str | Path = "figures",
                  target: float | None = None, target_fraction: float | None = None,
                  studies: Sequence[str] | None = None,
                  ecdf_targets: int = N_TARGETS) -> list[Path]:
    """compare.md, compare.json, compare.png/pdf (best so far) and compare-ecdf.png/pdf (the
    runtime ECDF over `ecdf_targets` targets) from the store (no training).

    The target is the studies' stored target_accuracy (the config's, as report.md and the
    dashboard note use it) unless `target` or `target_fraction` overrides it (target.py).

    Named `compare.*` for the default config and `compare-{name}.*` for others, so that
    `make paper` does not overwrite the default comparison. `studies`: the studies to
    compare (default: every study of this config in the store).
    """
    from tuning_energy.report import figures as fg

    fg.use_file_backend()
    import matplotlib.pyplot as plt

    names = list(studies) if studies is not None else _study_names(storage_url, config)
    trials = trials_table(storage_url, names)
    if trials.empty:
        raise ConfigError(f"no finished trials of {config.name!r} in "
                          f"{StoreURL.parse(storage_url)}; run `make compare CONFIG=...` first")
    result, c = compare_summary(trials, config.name, target, target_fraction)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = "compare" if config.name == "default" else f"compare-{config.name}"
    paths = [out / f"{stem}.json", out / f"{stem}.md"]
    paths[0].write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    paths[1].write_text(render_compare_md(result, c, stem))
    fig = fg.fig_best_so_far(c.trials, c.target,
                             title=f"{config.name}: best {c.goal.metric} vs energy spent "
                                   f"({charged_what(c.trials)}), all strategies")
    if c.goal.metric == "accuracy" and c.goal.direction == "maximize":
        # Zoom on the race to the target: every strategy starts far below it after one trial.
        ax = fig.axes[0]
        ax.set_ylim(max(0.0, c.target - 0.06), min(1.0, c.target + 0.02))
        ax.set_ylabel(f"best validation accuracy so far (axis from {c.target - 0.06:.2f})")
    ecdf = fg.fig_runtime_ecdf(c.trials, c.target, ecdf_targets, title=ecdf_title(config.name))
    for name, figure in ((stem, fig), (f"{stem}-ecdf", ecdf)):
        for ext in ("png", "pdf"):
            figure.savefig(out / f"{name}.{ext}", dpi=130 if ext == "png" else None,
                           metadata={"CreationDate": None} if ext == "pdf" else None)
            paths.append(out / f"{name}.{ext}")
        plt.close(figure)
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

"""Environments side by side: the same config run on two machines, devices or thread counts.

del Rey et al. found that the training environment moves energy as much as the model does.
`tuning-energy study|compare --environment NAME` labels a run (study attr `environment`);
`tuning-energy figures --storage A --storage B` reads several stores (one per environment,
say a laptop's SQLite file and a GPU server's) into one trials table, and report.md gets an
`## Environments` section for every config that ran in more than one environment:

- per environment: energy per trial and per epoch, average power, trial duration (medians
  over completed trials, bootstrap CI of the median energy), best validation accuracy and
  the selected configuration's test accuracy (medians over studies), energy method;
- energy to a common target per strategy and environment (analysis.energy_to_target and
  strategy_summary: the strategy tables' statistics, grouped by environment);
- ratios to the first environment (alphabetical): median ratio with a bootstrap CI
  (analysis.ratio_ci), two-sided Mann-Whitney U, Holm-corrected over the table, and
  Vargha-Delaney A12, as in the strategy tables.

Its search energy is the charged energy (training + proposing + storage, accounting.py),
as every other total; an environment's methods are listed ", "-joined and labelled by
`analysis.method_label` (energy/methods.py), as everywhere else.

When a config ran in several environments, its `comparison` and `study` names get
`@<environment slug>` so that the per-comparison sections and figures stay one per
environment; `config_name` keeps the config's name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from tuning_energy.analysis import (
    selection,
    to_target,  # energy_to_target: a name defined here too
)
from tuning_energy.analysis.metric import best_of, direction_of
from tuning_energy.analysis.stats import (
    a12_magnitude,
    bootstrap_median_ci,
    mann_whitney,
    ratio_ci,
    strategy_summary,
)
from tuning_energy.analysis.table import energy_methods, method_label, studies_info, trials_table
from tuning_energy.analysis.target import comparison_target
from tuning_energy.analysis.to_target import censored_energy, unmeasured, with_charged_energy
from tuning_energy.energy.hardware import slug
from tuning_energy.errors import TuningEnergyError
from tuning_energy.store.url import StoreURL


def read_stores(storage_urls: StoreURL | str | Sequence[StoreURL | str],
                studies: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials table, studies info) of one or several stores, with `config_name` and, where
    a config ran in several environments, `@<environment>` on its comparison and studies."""
    urls = StoreURL.parse_all(storage_urls)
    seen: dict[tuple[str, str], StoreURL] = {}
    trials, infos = [], []
    for url in urls:
        info = studies_info(url, studies)
        for study, env in zip(info.get("study", []), info.get("environment", []), strict=True):
            if (study, env) in seen:
                raise TuningEnergyError(
                    f"study {study!r} of environment {env!r} is in both {seen[study, env]}"
                    f" and {url}: run them with different --environment labels, or "
                    f"read one store at a time")
            seen[study, env] = url
        info["store"] = url.redacted
        infos.append(info)
        trials.append(trials_table(url, studies))
    t = pd.concat([x for x in trials if not x.empty] or trials[:1], ignore_index=True)
    info = pd.concat([x for x in infos if not x.empty] or infos[:1], ignore_index=True)
    for df in (t, info):
        df["config_name"] = df["comparison"] if "comparison" in df.columns else []
    if t.empty:
        return t, info
    slugs = {e: slug(e) for e in set(t["environment"]) | set(info.get("environment", []))}
    if len(set(slugs.values())) < len(slugs):
        raise TuningEnergyError(f"environment labels {sorted(slugs)} give the same file "
                                f"names; label the runs more distinctly with --environment")
    multi = {c for c, g in t.groupby("config_name") if g["environment"].nunique() > 1}
    for df in (t, info):
        rows = df["config_name"].isin(multi)
        suffix = "@" + df.loc[rows, "environment"].map(slugs)
        for col in ("comparison", "study"):
            df.loc[rows, col] = df.loc[rows, col] + suffix
    return t, info


# ---------------------------------------------------------------- per environment


def _per_trial(trials: pd.DataFrame) -> pd.DataFrame:
    """Completed trials with a measured energy, with energy_per_epoch_j and power_w."""
    df = trials[(trials["state"] == "COMPLETE") & trials["energy_j"].notna()].copy()
    epochs = df["epochs_run"].where(df["epochs_run"] > 0) if "epochs_run" in df.columns \
        else pd.Series(math.nan, index=df.index)
    df["energy_per_epoch_j"] = df["energy_j"] / epochs.astype(float)
    power = df["avg_power_w"] if "avg_power_w" in df.columns else \
        pd.Series(math.nan, index=df.index)
    df["power_w"] = power.astype(float).fillna(df["energy_j"] / df["duration_s"])
    return df


def environment_table(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per environment of `trials` (one config)."""
    done = _per_trial(trials)
    sel = selection.selected(trials)
    direction = direction_of(trials)
    best = trials.groupby("study")["accuracy"].agg(lambda s: best_of(s, direction))
    rows = []
    charged = with_charged_energy(trials)
    for env, g in charged.groupby("environment", sort=True):
        d = done[done["environment"] == env]
        med, lo, hi = bootstrap_median_ci(d["energy_j"])
        studies = g["study"].unique()
        s = sel[sel["environment"] == env]
        rows.append({
            "environment": env, "energy_method": ", ".join(energy_methods(g)) or "-",
            "studies": len(studies), "trials": len(g), "completed": len(d),
            "median_energy_j": med, "ci_low_j": lo, "ci_high_j": hi,
            "median_energy_per_epoch_j": float(d["energy_per_epoch_j"].median()),
            "median_power_w": float(d["power_w"].median()),
            "median_duration_s": float(d["duration_s"].median()),
            "median_best_accuracy": float(best[studies].median()),
            "median_test_accuracy": float(s["test_accuracy"].median()) if len(s) else math.nan,
            # the charged energy of the environment's searches (a lower bound when a
            # trial's training energy is unknown: report.md shows it "≥")
            "total_energy_j": float(g["charged_known_j"].sum(min_count=1)),
            "total_lower_bound": bool(unmeasured(g).any()),
            "estimate": method_label(g).text(),
        })
    return pd.DataFrame(rows)


def energy_to_target(trials: pd.DataFrame, target: float) -> pd.DataFrame:
    """analysis.energy_to_target per study, with its environment."""
    ett = to_target.energy_to_target(trials, target)
    env = trials.groupby("study")["environment"].first()
    return ett.assign(environment=ett["study"].map(env))


def target_summary(ett: pd.DataFrame) -> pd.DataFrame:
    """analysis.strategy_summary per strategy, grouped by environment within it."""
    parts = []
    for strategy, s in ett.groupby("strategy", sort=True):
        summ = strategy_summary(s.assign(strategy=s["environment"]))
        parts.append(summ.rename(columns={"strategy": "environment"})
                     .assign(strategy=strategy))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def ratios(trials: pd.DataFrame, ett: pd.DataFrame) -> pd.DataFrame:
    """Each environment against the first (alphabetical): median ratio with a bootstrap CI,
    Mann-Whitney U (two-sided; Holm over the table) and A12 (P(other > reference))."""
    from statsmodels.stats.multitest import multipletests

    done = _per_trial(trials)
    envs = sorted(trials["environment"].unique())
    ref = envs[0]
    metrics: list[tuple[str, pd.Series, pd.Series]] = [
        (what, done[col], done["environment"]) for what, col in (
            ("energy per trial (J)", "energy_j"), ("energy per epoch (J)", "energy_per_epoch_j"),
            ("average power (W)", "power_w"), ("trial duration (s)", "duration_s"))]
    energy = censored_energy(ett)
    for strategy, s in ett.groupby("strategy", sort=True):
        metrics.append((f"energy to target, {strategy}", energy[s.index], s["environment"]))
    rows = []
    for env in envs[1:]:
        for what, values, labels in metrics:
            a = values[labels == ref].dropna().to_numpy(float)
            b = values[labels == env].dropna().to_numpy(float)
            row = {"metric": what, "environment": env, "reference": ref, "n": len(b),
                   "n_ref": len(a), "ratio": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                   "p_value": math.nan, "a12": math.nan}
            if len(a) and len(b):
                with np.errstate(invalid="ignore"):  # inf - inf in the quantiles: censored
                    row["ratio"], row["ci_low"], row["ci_high"] = ratio_ci(b, a)
                test = mann_whitney(b, a)
                row["p_value"], row["a12"] = test["p_value"], test["a12"]
            row["a12_magnitude"] = a12_magnitude(row["a12"])
            rows.append(row)
    out = pd.DataFrame(rows)
    out["p_holm"] = math.nan
    ok = out["p_value"].notna() if len(out) else pd.Series(dtype=bool)
    if ok.any():
        out.loc[ok, "p_holm"] = multipletests(out.loc[ok, "p_value"], method="holm")[1]
    return out


# ---------------------------------------------------------------- report section

ENV_COLUMNS = {"environment": "environment", "energy_method": "energy method",
               "studies": "studies", "completed": "completed trials",
               "median_energy_j": "median energy per trial (J)", "ci_low_j": "CI low (J)",
               "ci_high_j": "CI high (J)", "median_energy_per_epoch_j": "per epoch (J)",
               "median_power_w": "average power (W)", "median_duration_s": "trial (s)",
               "median_best_accuracy": "median best accuracy",
               "median_test_accuracy": "median test accuracy (selected)",
               "total_energy_j": "search energy, charged (J)"}
TARGET_COLUMNS = {"strategy": "strategy", "environment": "environment", "n_seeds": "seeds",
                  "reached_share": "reached share",
                  "median_energy_to_target_j": "median energy to target (J)",
                  "ci_low_j": "CI low (J)", "ci_high_j": "CI high (J)",
                  "median_trials_to_target": "median trials to target",
                  "median_best_accuracy": "median best accuracy"}
RATIO_COLUMNS = {"metric": "metric", "environment": "environment", "reference": "/ reference",
                 "ratio": "ratio of medians", "ci_low": "CI low", "ci_high": "CI high",
                 "n": "n", "n_ref": "n ref", "p_value": "p (Mann-Whitney)",
                 "p_holm": "p (Holm)", "a12": "A12", "a12_magnitude": "effect"}


def report_lines(trials: pd.DataFrame, info: pd.DataFrame,
                 md_table: Callable[[pd.DataFrame, dict[str, str]], str],
                 target: float | None = None,
                 target_fraction: float | None = None) -> list[str]:
    """`## Environments` for every config that ran in more than one environment, else []."""
    if "environment" not in trials.columns or "config_name" not in trials.columns:
        return []
    multi = [(n, g) for n, g in trials.groupby("config_name", sort=True)
             if g["environment"].nunique() > 1]
    if not multi:
        return []
    lines = ["## Environments", "",
             "The same config run in more than one environment (`--environment`, study attr "
             "`environment`). Medians over completed trials (energy per trial with a 95% "
             "bootstrap CI of the median) and over studies (accuracies); energy to target "
             "with one target for all environments of a config, never-reached seeds "
             "infinite; ratios are medians of each environment over the reference's, with "
             "a bootstrap CI, a two-sided Mann-Whitney U test (Holm-corrected over the "
             "table) and A12 = P(environment > reference). A ratio of energies to target is "
             "undefined (-) where half or more of an environment's seeds never reached the "
             "target.", ""]
    for name, g in multi:
        lines += _config_lines(str(name), g, info, md_table, target, target_fraction)
    return lines


def _config_lines(name, g, info, md_table, target, fraction) -> list[str]:
    goal = comparison_target(g, target, fraction)  # one target for all its environments
    target, rule = goal.accuracy, goal.rule
    table = environment_table(g)
    ett = energy_to_target(g, target)
    r = ratios(g, ett)
    lines = [f"### Config `{name}` in {len(table)} environments", ""]
    inf = info[info["config_name"] == name] if "config_name" in info.columns else info
    for env, s in inf.groupby("environment", sort=True):
        hw = s.iloc[0]["hardware"] if isinstance(s.iloc[0]["hardware"], dict) else {}
        lab = method_label(g[g["environment"] == env])  # its trials' methods, labelled
        method = ", ".join(lab.methods) or str(s.iloc[0]["energy_method"])
        lines.append(f"- `{env}`: store `{s.iloc[0].get('store', '-')}`, CPU "
                     f"{hw.get('cpu', '?')}, GPUs {hw.get('gpus', '?')}, torch threads "
                     f"{s.iloc[0]['torch_threads']}, energy method {method}"
                     + (f" ({lab.text()})" if lab.any_estimate else ""))
    lines += ["", md_table(table, ENV_COLUMNS), "",
              f"Energy to target accuracy {target:.4f} {rule}:", "",
              md_table(target_summary(ett), TARGET_COLUMNS), "",
              md_table(r, RATIO_COLUMNS), ""]
    lines += [f"- {s}" for s in _findings(table, r)]
    return lines + [""]


def _findings(table: pd.DataFrame, r: pd.DataFrame) -> list[str]:
    out = []
    for _, row in r[r["metric"] == "energy per trial (J)"].iterrows():
        power = r[(r["metric"] == "average power (W)") & (r["environment"] == row["environment"])]
        time = r[(r["metric"] == "trial duration (s)") & (r["environment"] == row["environment"])]
        out.append(f"Per completed trial, `{row['environment']}` used {row['ratio']:.2f}x the "
                   f"energy of `{row['reference']}` (95% CI {row['ci_low']:.2f} to "
                   f"{row['ci_high']:.2f}; A12 {row['a12']:.2f}, {row['a12_magnitude']}), at "
                   f"{power['ratio'].iloc[0]:.2f}x the average power for "
                   f"{time['ratio'].iloc[0]:.2f}x the time.")
    for env, text in zip(table["environment"], table["estimate"], strict=True):
        if text:  # analysis.method_label: "an ESTIMATE (...)" or "partly an ESTIMATE: ..."
            out.append(f"Energy in `{env}` is {text}: an estimate cannot see what another "
                       f"thread count or device does to the chip's real power, so ratios "
                       f"involving it compare estimates.")
    if len(set(table["energy_method"])) > 1:
        out.append("The environments were metered by different methods "
                   f"({', '.join(sorted(set(table['energy_method'])))}): their ratios mix "
                   "what each method counts (for example GPU board energy vs CPU package "
                   "energy).")
    return out


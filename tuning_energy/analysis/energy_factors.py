"""What costs energy, from the trials table (table.py): energy per trial by layer kind
(RQ2, an ANOVA as Yarally et al. report it), how far the stored energy predictions were
from the measurements, and the accuracy-energy Pareto front.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from tuning_energy.analysis.metric import MINIMIZE, direction_of
from tuning_energy.analysis.table import require
from tuning_energy.errors import TuningEnergyError

#: Yarally et al. (CAIN 2023), RQ2: eta^2 of energy per trial by layer kind.
PAPER_ETA_SQ: dict[str, dict[str, float]] = {
    "n_conv": {"fashion-mnist": 0.990, "cifar10": 0.976},
    "n_linear": {"fashion-mnist": 0.006, "cifar10": 0.016},
    "relu": {"fashion-mnist": 0.002, "cifar10": 0.003},
}
LAYER_FACTORS = ("n_conv", "n_linear", "relu")


def _factor_columns(trials: pd.DataFrame, what: str) -> dict[str, str]:
    """factor -> column for the layer factors in the table (a factor that was not searched
    has no column: it was constant). At least one is needed."""
    require(trials, ("energy_j",), what)
    cols = {f: f"param_{f}" for f in LAYER_FACTORS if f"param_{f}" in trials.columns}
    if not cols:
        require(trials, [f"param_{f}" for f in LAYER_FACTORS], what)
    return cols


def _layer_rows(trials: pd.DataFrame) -> pd.DataFrame:
    df = trials
    if "state" in df.columns:
        df = df[df["state"] == "COMPLETE"]
    return df[df["energy_j"].notna()].copy()


def layer_attribution(trials: pd.DataFrame) -> pd.DataFrame:
    """ANOVA of energy per trial on C(n_conv) + C(n_linear) + C(relu) (statsmodels, type II
    sums of squares) over COMPLETE trials with a measured energy.

    Columns: factor (n_conv, n_linear, relu, Residual), df, sum_sq, F, p_value, eta_sq
    (sum_sq / total sum of squares, as Yarally et al. report), partial_eta_sq, levels,
    paper_eta_sq_fashion_mnist, paper_eta_sq_cifar10. A factor with one level in the data
    is left out of the model (row kept, eta_sq NaN, note says why); so is a factor without a
    column (it was not searched), but at least one of the three columns must be there.
    """
    cols = _factor_columns(trials, "layer_attribution")
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    df = _layer_rows(trials)
    data = pd.DataFrame({f: df[cols[f]].astype(str) if f in cols else "constant"
                         for f in LAYER_FACTORS}, index=df.index)
    data["energy_j"] = df["energy_j"].astype(float)
    varying = [f for f in LAYER_FACTORS if data[f].nunique() > 1]
    base = {f: {"factor": f, "df": math.nan, "sum_sq": math.nan, "F": math.nan,
                "p_value": math.nan, "eta_sq": math.nan, "partial_eta_sq": math.nan,
                "levels": int(data[f].nunique()), "note": ""} for f in LAYER_FACTORS}
    resid = {"factor": "Residual", "df": math.nan, "sum_sq": math.nan, "F": math.nan,
             "p_value": math.nan, "eta_sq": math.nan, "partial_eta_sq": math.nan,
             "levels": math.nan, "note": ""}
    for f in LAYER_FACTORS:
        if f not in varying:
            base[f]["note"] = "one level in the data: not in the model" if f in cols \
                else "not searched (no param_ column): not in the model"
    if varying and len(data) > sum(data[f].nunique() - 1 for f in varying) + 1:
        model = smf.ols("energy_j ~ " + " + ".join(f"C({f})" for f in varying), data).fit()
        table = anova_lm(model, typ=2)
        ss_total = float(((data["energy_j"] - data["energy_j"].mean()) ** 2).sum())
        ss_resid = float(table.loc["Residual", "sum_sq"])
        for f in varying:
            r = table.loc[f"C({f})"]
            ss = float(r["sum_sq"])
            base[f].update(df=float(r["df"]), sum_sq=ss, F=float(r["F"]),
                           p_value=float(r["PR(>F)"]),
                           eta_sq=ss / ss_total if ss_total > 0 else math.nan,
                           partial_eta_sq=ss / (ss + ss_resid) if ss + ss_resid > 0
                           else math.nan)
        resid.update(df=float(table.loc["Residual", "df"]), sum_sq=ss_resid,
                     eta_sq=ss_resid / ss_total if ss_total > 0 else math.nan)
    elif varying:
        resid["note"] = "too few trials for the model"
    out = pd.DataFrame([*base.values(), resid])
    out["paper_eta_sq_fashion_mnist"] = out["factor"].map(
        lambda f: PAPER_ETA_SQ.get(f, {}).get("fashion-mnist", math.nan))
    out["paper_eta_sq_cifar10"] = out["factor"].map(
        lambda f: PAPER_ETA_SQ.get(f, {}).get("cifar10", math.nan))
    return out


def energy_per_epoch_by_factor(trials: pd.DataFrame) -> pd.DataFrame:
    """Per level of n_conv, n_linear and relu where searched (COMPLETE trials with energy):
    factor, level, n_trials, median_energy_j, mean_energy_j, mean_energy_per_epoch_j
    (energy_j / epochs_run when `epochs_run` is there, else NaN), median_accuracy."""
    cols = _factor_columns(trials, "energy_per_epoch_by_factor")
    df = _layer_rows(trials)
    per_epoch = df["energy_j"] / df["epochs_run"].where(df["epochs_run"] > 0) \
        if "epochs_run" in df.columns else pd.Series(math.nan, index=df.index)
    df = df.assign(_per_epoch=per_epoch.astype(float))
    rows = []
    for f, c in cols.items():
        for level, s in df.groupby(c, sort=True):
            rows.append({"factor": f, "level": level, "n_trials": len(s),
                         "median_energy_j": float(s["energy_j"].median()),
                         "mean_energy_j": float(s["energy_j"].mean()),
                         "mean_energy_per_epoch_j": float(s["_per_epoch"].mean()),
                         "median_accuracy": float(s["accuracy"].median())
                         if "accuracy" in s.columns else math.nan})
    return pd.DataFrame(rows, columns=["factor", "level", "n_trials", "median_energy_j",
                                       "mean_energy_j", "mean_energy_per_epoch_j",
                                       "median_accuracy"])


# ---------------------------------------------------------------- energy prediction

#: The predictions the objective stores beside the measured energy (see predict.py).
PREDICTORS = {
    "predicted_energy_j": "FLOPs x joules per FLOP measured so far (before training)",
    "predicted_energy_epoch1_j": "first epoch's energy x epochs (after epoch 1)",
}


def full_runs(trials: pd.DataFrame) -> pd.DataFrame:
    """COMPLETE trials with a measured energy that ran every epoch of their study (a pruned,
    failed or diverged trial ran fewer epochs than a prediction made before it assumed)."""
    require(trials, ("state", "energy_j"), "full_runs")
    done = trials[(trials["state"] == "COMPLETE") & (trials["energy_j"] > 0)]
    if "epochs_run" in done.columns and "study" in done.columns:
        full = done.groupby("study")["epochs_run"].transform("max")
        done = done[done["epochs_run"] == full]
    return done


def prediction_error(trials: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """How far each stored energy prediction was from the measured energy.

    Completed trials that ran every epoch only (a pruned, failed or diverged trial ran
    fewer epochs than were predicted),
    with both a prediction and a measurement. One row per predictor (and per value of `by`,
    e.g. "strategy"): `predictor`, `what`, `n`, `median_ape` and `mean_ape` (absolute
    percentage error |predicted - measured| / measured), `p90_ape`, `median_ratio`
    (predicted / measured: > 1 over-predicts), `within_25pct` (share of trials within
    +-25 %), `spearman` (rank correlation of predicted with measured; NaN under 3 trials).
    """
    from scipy import stats

    require(trials, ("state", "energy_j"), "prediction_error")
    present = [p for p in PREDICTORS if p in trials.columns]
    if not present:
        raise TuningEnergyError(
            f"prediction_error: none of the columns {sorted(PREDICTORS)} is in the trials "
            f"table (studies run before energy prediction was stored have none)")
    if by is not None:
        require(trials, (by,), "prediction_error")
    done = full_runs(trials)
    rows = []
    groups = [(None, done)] if by is None else list(done.groupby(by, sort=True))
    for key, g in groups:
        for p in present:
            d = g[g[p].notna()]
            measured = d["energy_j"].to_numpy(float)
            predicted = pd.to_numeric(d[p]).to_numpy(float)
            row: dict[str, Any] = {} if by is None else {by: key}
            row.update(predictor=p, what=PREDICTORS[p], n=len(d))
            if len(d):
                ape = np.abs(predicted - measured) / measured
                ratio = predicted / measured
                row.update(median_ape=float(np.median(ape)), mean_ape=float(np.mean(ape)),
                           p90_ape=float(np.quantile(ape, 0.9)),
                           median_ratio=float(np.median(ratio)),
                           within_25pct=float(np.mean(ape <= 0.25)))
                row["spearman"] = (float(stats.spearmanr(predicted, measured).statistic)
                                   if len(d) >= 3 and np.ptp(predicted) > 0 else math.nan)
            rows.append(row)
    cols = ([] if by is None else [by]) + ["predictor", "what", "n", "median_ape", "mean_ape",
                                           "p90_ape", "median_ratio", "within_25pct",
                                           "spearman"]
    return pd.DataFrame(rows).reindex(columns=cols)


# ---------------------------------------------------------------- Pareto


def pareto_front(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials not dominated in (the best metric: max accuracy, or min of a minimised metric;
    min energy_j), sorted by energy_j ascending.

    A trial is dominated when another has a metric as good and energy <= with one strictly
    better. Trials without accuracy or energy are left out; of exact duplicates one is kept.
    """
    require(trials, ("accuracy", "energy_j"), "pareto_front")
    df = trials[trials["accuracy"].notna() & trials["energy_j"].notna()]
    sign = -1.0 if direction_of(df) == MINIMIZE else 1.0
    df = df.assign(_score=sign * df["accuracy"])
    df = df.sort_values(["energy_j", "_score"], ascending=[True, False], kind="stable")
    keep, best = [], -math.inf
    for idx, acc in zip(df.index, df["_score"], strict=True):
        if acc > best:
            keep.append(idx)
            best = acc
    return df.loc[keep].drop(columns="_score")

"""Figures of what costs energy (the trials table in, a Figure out): energy per trial by
layer kind (RQ2), energy against FLOPs, predicted against measured energy, and gross
against idle-corrected energy.
"""

from __future__ import annotations

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tuning_energy.analysis.energy_factors import (
    LAYER_FACTORS,
    PAPER_ETA_SQ,
    PREDICTORS,
    full_runs,
    layer_attribution,
    prediction_error,
)
from tuning_energy.analysis.table import method_label, require
from tuning_energy.report.figure_style import (
    energy_unit,
    finish,
    strategy_color,
    strategy_order,
)

# ---------------------------------------------------------------- RQ2 and FLOPs


def has_layer_sweep(trials: pd.DataFrame) -> bool:
    """True when the table varies at least one of n_conv, n_linear, relu."""
    cols = [f"param_{f}" for f in LAYER_FACTORS if f"param_{f}" in trials.columns]
    return "energy_j" in trials.columns and any(trials[c].nunique() > 1 for c in cols)


def _level(v) -> str:
    """2.0 -> '2' (a column with a NaN for a failed trial turns ints into floats)."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def fig_layers(trials: pd.DataFrame, title: str = "") -> Figure:
    """Energy per trial by n_conv, n_linear and relu (box per level, trials as dots), with
    the ANOVA eta^2 per factor next to the paper's."""
    anova = layer_attribution(trials)  # checks the columns
    df = trials[trials["energy_j"].notna()]
    if "state" in df.columns:
        df = df[df["state"] == "COMPLETE"]
    eta = dict(zip(anova["factor"], anova["eta_sq"], strict=True))
    fig, axes = plt.subplots(1, 3, figsize=(11, 4.2), sharey=True)
    rng = np.random.default_rng(0)
    labels = {"n_conv": "conv blocks (n_conv)", "n_linear": "hidden linear layers (n_linear)",
              "relu": "ReLU (relu)"}
    for ax, f in zip(axes, LAYER_FACTORS, strict=True):
        col = f"param_{f}"
        ax.set_xlabel(labels[f])
        ax.grid(axis="y", alpha=0.3)
        if col not in df.columns:
            ax.set_xticks([])
            ax.text(0.5, 0.5, "not searched\n(constant in these trials)", ha="center",
                    va="center", transform=ax.transAxes, color="#666666")
            continue
        levels = sorted(df[col].unique())
        vals = [df.loc[df[col] == lv, "energy_j"].to_numpy() for lv in levels]
        ax.boxplot(vals, positions=range(len(levels)), widths=0.55, showfliers=False,
                   medianprops={"color": "k"})
        for i, v in enumerate(vals):
            ax.scatter(i + rng.uniform(-0.15, 0.15, len(v)), v, s=9, alpha=0.5,
                       color="#1f78b4")
        ax.set_xticks(range(len(levels)), [_level(lv) for lv in levels])
        e = eta.get(f, math.nan)
        paper = PAPER_ETA_SQ[f]
        ours = "n/a (one level)" if math.isnan(e) else f"{e:.3f}"
        ax.set_title(f"eta² here {ours}\npaper {paper['fashion-mnist']:.3f} FMNIST / "
                     f"{paper['cifar10']:.3f} CIFAR-10", fontsize=9)
    axes[0].set_ylabel("training energy per trial (J)")
    fig.suptitle(title or f"RQ2: energy per trial by layer kind ({len(df)} completed trials)",
                 fontsize=10)
    return finish(fig, method_label(trials))


def fig_flops(trials: pd.DataFrame, title: str = "") -> Figure:
    """Energy per trial vs forward FLOPs per sample, with Pearson and Spearman correlations.
    Energy per epoch is used when `epochs_run` is there (early-stopped trials stay fair)."""
    require(trials, ("energy_j", "flops_per_sample"), "fig_flops")
    from scipy import stats

    df = trials[trials["energy_j"].notna() & trials["flops_per_sample"].notna()].copy()
    per_epoch = "epochs_run" in df.columns
    if per_epoch:
        df = df[df["epochs_run"] > 0]
        df["y"] = df["energy_j"] / df["epochs_run"]
    else:
        df["y"] = df["energy_j"]
    fig, ax = plt.subplots(figsize=(7.0, 4.8))
    if "param_n_conv" in df.columns:
        levels = sorted(df["param_n_conv"].unique())
        cmap = plt.get_cmap("viridis", max(len(levels), 2))
        for i, lv in enumerate(levels):
            s = df[df["param_n_conv"] == lv]
            ax.scatter(s["flops_per_sample"], s["y"], s=18, alpha=0.7, color=cmap(i),
                       label=f"n_conv = {_level(lv)}")
        ax.legend(fontsize=8, title="conv blocks", title_fontsize=8)
    else:
        ax.scatter(df["flops_per_sample"], df["y"], s=18, alpha=0.7)
    corr = ""
    if len(df) >= 3 and df["flops_per_sample"].nunique() > 1 and df["y"].nunique() > 1:
        r = stats.pearsonr(df["flops_per_sample"], df["y"])[0]
        rho = stats.spearmanr(df["flops_per_sample"], df["y"])[0]
        corr = f"Pearson r = {r:.2f}, Spearman rho = {rho:.2f}, n = {len(df)}"
    else:
        corr = "too few distinct points for a correlation"
    if df["flops_per_sample"].min() > 0 and \
            df["flops_per_sample"].max() / df["flops_per_sample"].min() > 20:
        ax.set_xscale("log")
    ax.set_xlabel("forward FLOPs per sample")
    ax.set_ylabel(f"training energy per {'epoch' if per_epoch else 'trial'} (J)")
    ax.grid(alpha=0.3)
    ax.set_title((title or "How well do FLOPs predict energy?") + f"\n{corr}", fontsize=10)
    return finish(fig, method_label(trials))


def has_predictions(trials: pd.DataFrame) -> bool:
    return any(p in trials.columns and trials[p].notna().any() for p in PREDICTORS)


def fig_prediction(trials: pd.DataFrame, title: str = "") -> Figure:
    """Predicted vs measured energy per trial, one panel per stored predictor (log-log, the
    diagonal and a +-25 % band), each titled with its median absolute percentage error."""
    errors = prediction_error(trials)
    done = full_runs(trials)
    present = [p for p in PREDICTORS if p in done.columns and done[p].notna().any()]
    fig, axes = plt.subplots(1, len(present), figsize=(5.2 * len(present), 4.6), squeeze=False)
    # One scale for every panel, so the spreads compare at a glance.
    values = [done["energy_j"]] + [done.loc[done[p] > 0, p] for p in present]
    lo = min(float(v.min()) for v in values) * 0.8
    hi = max(float(v.max()) for v in values) * 1.25
    xs = np.geomspace(lo, hi, 50)
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    for ax, p in zip(axes[0], present, strict=True):
        d = done[done[p].notna() & (done[p] > 0)]
        err = errors[errors["predictor"] == p].iloc[0]
        strategies = strategy_order(d) if "strategy" in d.columns else []
        for name in strategies or [None]:
            s = d if name is None else d[d["strategy"] == name]
            ax.scatter(s["energy_j"], s[p], s=10, alpha=0.55, label=name,
                       color=None if name is None else strategy_color(name, strategies))
        ax.plot(xs, xs, color="black", lw=1, label="predicted = measured")
        ax.fill_between(xs, xs * 0.75, xs * 1.25, color="grey", alpha=0.15, label="+-25 %")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        for axis in (ax.xaxis, ax.yaxis):  # labels at 1, 2, 5, 10, ...: some in any range
            axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(plain)
            axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("measured training energy per trial (J)")
        ax.set_ylabel("predicted energy (J)")
        ax.grid(alpha=0.3, which="both")
        ax.set_title(f"{PREDICTORS[p]}\nmedian error {err['median_ape']:.0%}, "
                     f"{err['within_25pct']:.0%} within +-25 %, n = {int(err['n'])}",
                     fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title or "How well is a trial's energy predicted?", fontsize=11)
    return finish(fig, method_label(trials))


def has_net_energy(trials: pd.DataFrame) -> bool:
    return "energy_net_j" in trials.columns and trials["energy_net_j"].notna().any()


def fig_net_vs_gross(trials: pd.DataFrame, title: str = "") -> Figure:
    """Gross (energy_j) vs idle-corrected (energy_net_j) energy per strategy, summed over
    seeds. Without energy_net_j the figure says so instead."""
    require(trials, ("strategy", "energy_j"), "fig_net_vs_gross")
    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    if not has_net_energy(trials):
        ax.axis("off")
        ax.text(0.5, 0.5, "No idle-corrected energy (energy_net_j) in these trials:\n"
                "the meter did not record an idle baseline.", ha="center", va="center")
        return finish(fig, method_label(trials))
    order = strategy_order(trials)
    df = trials[trials["energy_j"].notna() & trials["energy_net_j"].notna()]
    gross_j = [df.loc[df["strategy"] == s, "energy_j"].sum() for s in order]
    scale, unit = energy_unit(gross_j)
    gross = [g / scale for g in gross_j]
    net = [df.loc[df["strategy"] == s, "energy_net_j"].sum() / scale for s in order]
    x = np.arange(len(order))
    ax.bar(x - 0.2, gross, 0.4, label="gross (energy_j)", color="#999999")
    ax.bar(x + 0.2, net, 0.4, label="idle-corrected (energy_net_j)", color="#1f78b4")
    for i, (g, n) in enumerate(zip(gross, net, strict=True)):
        if g > 0:
            ax.text(i + 0.2, n, f"{n / g:.0%}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, order)
    ax.set_ylabel(f"training energy, all trials of all seeds ({unit})")
    ax.legend(fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title or "Gross vs idle-corrected energy (label: net share of gross)",
                 fontsize=10)
    return finish(fig, method_label(trials))

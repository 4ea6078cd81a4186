"""Figures: each function takes a DataFrame (the trials table or energy_to_target's table)
and returns a matplotlib Figure. Nothing here writes files; the CLI does.

Every figure carries a footnote naming the energy method, and says "ESTIMATE" when the
method or any part of it is a model (`estimate-*`, also inside `nvml-counter+estimate-cpu-tdp-tree`)
rather than a measurement, naming the estimated devices (`energy.methods.label`).

The figures of RQ1 (how the strategies spend energy) are here; those of what costs energy
are in factor_figures.py, and the shared style in figure_style.py; all are named here.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tuning_energy.analysis.energy_factors import pareto_front
from tuning_energy.analysis.ert import expected_energy_to_target
from tuning_energy.analysis.metric import MINIMIZE, direction_of, metric_of
from tuning_energy.analysis.table import method_label, require
from tuning_energy.analysis.to_target import (
    best_so_far,
    censored_energy,
    charged_what,
)
from tuning_energy.energy.methods import MethodLabel, label
from tuning_energy.report.ecdf_figure import fig_runtime_ecdf  # noqa: F401 - one name
from tuning_energy.report.factor_figures import (  # noqa: F401 - the figures, under one name
    fig_flops,
    fig_layers,
    fig_net_vs_gross,
    fig_prediction,
    has_layer_sweep,
    has_net_energy,
    has_predictions,
)
from tuning_energy.report.figure_style import (  # noqa: F401
    COLORS,
    PRUNER_LINESTYLES,
    energy_unit,
    finish,
    method_note,
    strategy_color,
    strategy_linestyle,
    strategy_order,
    use_file_backend,
)

# ---------------------------------------------------------------- RQ1


def best_so_far_curves(trials: pd.DataFrame, points: int = 400) -> pd.DataFrame:
    """Per strategy on a common cumulative-energy grid: median, q25, q75 of the best accuracy
    so far over seeds, only where every seed of the strategy has a result and has not yet
    stopped (from the latest first result to the earliest end)."""
    df = best_so_far(trials)
    require(df, ("strategy",), "best_so_far_curves")
    rows = []
    for strategy, s in df.groupby("strategy", sort=True):
        by_study = s.groupby("study")
        # from where every seed has a result to where the first seed stopped
        has_acc = s[s["best_accuracy_so_far"].notna()]
        start = float(has_acc.groupby("study")["cum_energy_j"].min().max()) \
            if has_acc["study"].nunique() == s["study"].nunique() else math.inf
        end = float(by_study["cum_energy_j"].max().min())
        if not start <= end:
            continue
        x = np.linspace(start, end, points)
        ys = []
        for _, st in by_study:
            e = st["cum_energy_j"].to_numpy()
            b = st["best_accuracy_so_far"].to_numpy()
            i = np.searchsorted(e, x, side="right") - 1
            ys.append(np.where(i >= 0, b[np.clip(i, 0, None)], np.nan))
        y = np.vstack(ys)
        q = np.quantile(y, [0.25, 0.5, 0.75], axis=0)
        rows.append(pd.DataFrame({"strategy": strategy, "cum_energy_j": x, "q25": q[0],
                                  "median": q[1], "q75": q[2], "n_seeds": len(ys)}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def fig_best_so_far(trials: pd.DataFrame, target: float | None = None,
                    title: str = "") -> Figure:
    """Best accuracy so far vs cumulative energy (J, kJ or MJ: energy_unit): one line per
    strategy, median over
    seeds with the inter-quartile band, each seed as a thin step line, the target dashed."""
    require(trials, ("study", "strategy", "trial", "accuracy", "energy_j"), "fig_best_so_far")
    df = best_so_far(trials)
    curves = best_so_far_curves(trials)
    order = strategy_order(df)
    many = len(order) > 6  # the legend goes beside the axes instead of over the data
    fig, ax = plt.subplots(figsize=(10.0 if many else 7.5, 4.8))
    scale, unit = energy_unit(df["cum_energy_j"])
    for strategy in order:
        c = strategy_color(strategy, order)
        ls = strategy_linestyle(strategy)
        for _, st in df[df["strategy"] == strategy].groupby("study"):
            if many:  # eleven strategies' single seeds would hide every median
                break
            ax.step(st["cum_energy_j"] / scale, st["best_accuracy_so_far"], where="post",
                    color=c, alpha=0.45, lw=0.9, ls=ls)
        cv = curves[curves["strategy"] == strategy] if len(curves) else curves
        n = int(df.loc[df["strategy"] == strategy, "study"].nunique())
        label = f"{strategy} (median of {n} seed{'s' if n != 1 else ''})"
        if not len(cv):  # no energy range that every seed covers: seeds only
            ax.plot([], [], color=c, lw=2.2, label=label, ls=ls)
            continue
        ax.plot(cv["cum_energy_j"] / scale, cv["median"], color=c, lw=2.2, label=label, ls=ls)
        ax.fill_between(cv["cum_energy_j"] / scale, cv["q25"], cv["q75"], color=c,
                        alpha=0.08 if many else 0.2, lw=0)
    metric = metric_of(df)
    if target is not None:
        ax.axhline(target, color="k", ls="--", lw=1, label=f"target {metric} {target:.3f}")
    ax.set_xlabel(f"cumulative energy of the search: {charged_what(trials)} ({unit})")
    minimized = direction_of(df) == MINIMIZE
    ax.set_ylabel(("best validation accuracy" if metric == "accuracy" else f"best {metric}")
                  + " so far" + (" (minimized)" if minimized else ""))
    if metric == "accuracy" and not minimized:  # in [0, 1]: from just below the lowest
        lo = np.nanmin(df["best_accuracy_so_far"]) if df["best_accuracy_so_far"].notna().any() \
            else 0
        ax.set_ylim(max(0.0, min(lo, target or 1) - 0.02), 1.0)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    if many:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0)
    else:  # away from the curves' ends: they fall to a minimised metric's best
        ax.legend(loc="upper right" if minimized else "lower right", fontsize=9)
    ax.set_title(title or f"Best {metric} so far vs energy spent (band: inter-quartile range "
                 "over seeds" + ("" if many else "; thin lines: single seeds") + ")",
                 fontsize=10)
    return finish(fig, method_label(df))


def fig_energy_to_target(ett: pd.DataFrame, title: str = "",
                         methods: MethodLabel | None = None,
                         counted: str | None = None) -> Figure:
    """Energy to reach the target per strategy: box over seeds plus one dot per seed; seeds
    that never reached the target are drawn as crosses above the boxes, labelled; under each
    box, the seeds that reached it, the ERT (analysis.expected_energy_to_target) and the
    median.

    `methods`: the trials' method label (`analysis.method_label(trials)`, which names the
    estimated devices); without it, the label of ett's `energy_method` column.
    `counted`: what the energy counts (`analysis.charged_what(trials)`), for the axis.
    """
    require(ett, ("strategy", "reached", "energy_to_target_j", "total_energy_j", "target"),
            "fig_energy_to_target")
    order = strategy_order(ett)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.2 * len(order)), 4.8))
    energy = censored_energy(ett)
    # the headline per strategy (analysis/ert.py), under each box beside the median
    erts = expected_energy_to_target(ett, n_boot=1).set_index("strategy")["ert_j"].to_dict()
    scale, unit = energy_unit(ett["total_energy_j"])
    finite_max = float(np.nanmax(ett["total_energy_j"])) / scale if len(ett) else 1.0
    top = finite_max * 1.08
    rng = np.random.default_rng(0)
    for i, strategy in enumerate(order):
        s = ett[ett["strategy"] == strategy]
        c = strategy_color(strategy, order)
        reached = s[s["reached"].astype(bool)]
        vals = reached["energy_to_target_j"].to_numpy() / scale
        if len(vals):
            ax.boxplot(vals, positions=[i], widths=0.5, showfliers=False,
                       medianprops={"color": "k"}, boxprops={"color": c},
                       whiskerprops={"color": c}, capprops={"color": c})
            ax.scatter(i + rng.uniform(-0.12, 0.12, len(vals)), vals, color=c, s=28,
                       zorder=3, edgecolor="white", lw=0.5)
        missed = len(s) - len(reached)
        if missed:
            ax.scatter(i + rng.uniform(-0.12, 0.12, missed), [top] * missed, marker="x",
                       color="#b00000", s=40, zorder=3)
        med = float(np.median(energy[s.index])) if len(s) else math.nan
        # The box is over the seeds that reached it; the median counts every seed, a
        # never-reached one as infinite (as the tables do), so say so where they differ.
        med_txt = "median: n/a\n(half or fewer\nreached)" if math.isinf(med) \
            else f"median {med / scale:.3g} {unit}"
        e = erts.get(strategy, math.inf)
        ert_txt = "ERT: not reached" if math.isinf(e) else f"ERT {e / scale:.3g} {unit}"
        ax.annotate(f"reached {len(reached)}/{len(s)}\n{ert_txt}\n{med_txt}", (i, 0),
                    xytext=(0, -30),
                    textcoords="offset points", xycoords=("data", "axes fraction"),
                    ha="center", va="top", fontsize=8)
    ax.axhline(top, color="#b00000", lw=0.6, ls=":")
    ax.set_xticks(range(len(order)), order)
    ax.set_xlim(-0.6, len(order) - 0.4)
    ax.set_ylim(0, top * 1.06)
    ticks = [t for t in ax.get_yticks() if 0 <= t < top * 0.88]
    ax.set_yticks([*ticks, top], [*(f"{t:g}" for t in ticks), "never\nreached"])
    ax.get_yticklabels()[-1].set_color("#b00000")
    ax.set_ylabel(f"energy to reach the target ({unit})" + (f"\n{counted}" if counted else ""))
    target = float(ett["target"].iloc[0]) if len(ett) else math.nan
    way = "<=" if direction_of(ett) == MINIMIZE else ">="
    ax.set_title((title or f"Energy until the first trial with {metric_of(ett)} {way} "
                  f"{target:.3f} "
                  f"(one dot per seed)") + "\nbox: the seeds that reached it; crosses: "
                 "seeds that never did; below: ERT and the median (never reached = "
                 "infinite)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    if methods is None:
        methods = label(m for v in ett.get("energy_method", pd.Series(dtype=object)).dropna()
                        for m in str(v).split(", "))
    fig = finish(fig, methods)
    fig.subplots_adjust(bottom=0.28)
    return fig


def fig_pareto(trials: pd.DataFrame, title: str = "") -> Figure:
    """Accuracy vs energy of every trial, coloured by strategy, with the Pareto front."""
    require(trials, ("strategy", "accuracy", "energy_j"), "fig_pareto")
    df = trials[trials["accuracy"].notna() & trials["energy_j"].notna()]
    order = strategy_order(trials)
    fig, ax = plt.subplots(figsize=(7.0, 4.8))
    for strategy in order:
        s = df[df["strategy"] == strategy]
        ax.scatter(s["energy_j"], s["accuracy"], s=16, alpha=0.6,
                   color=strategy_color(strategy, order), label=f"{strategy} ({len(s)} trials)")
    front = pareto_front(df)
    if len(front):
        x = np.r_[front["energy_j"].to_numpy(), df["energy_j"].max()]
        y = np.r_[front["accuracy"].to_numpy(), front["accuracy"].iloc[-1]]
        ax.step(x, y, where="post", color="k", lw=1.2, label=f"Pareto front ({len(front)})")
        ax.scatter(front["energy_j"], front["accuracy"], facecolor="none", edgecolor="k",
                   s=50, zorder=4)
    if len(df) and df["energy_j"].min() > 0 and df["energy_j"].max() / df["energy_j"].min() > 20:
        ax.set_xscale("log")
    ax.set_xlabel("training energy of the trial (J)")
    metric = metric_of(df)
    ax.set_ylabel("validation accuracy" if metric == "accuracy" else metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="upper right" if direction_of(df) == MINIMIZE else "lower right")
    ax.set_title(title or f"{metric[:1].upper()}{metric[1:]} vs energy per trial, all "
                 f"strategies and seeds", fontsize=10)
    return finish(fig, method_label(trials), pareto_dropped(trials, df, metric))


def pareto_dropped(trials: pd.DataFrame, shown: pd.DataFrame, metric: str) -> str:
    """Why trials are missing from the Pareto figure, by reason: pruned (stopped early: no
    final metric), failed, or without an energy measurement."""
    rest = trials.drop(index=shown.index)
    state = rest["state"] if "state" in rest.columns else pd.Series("COMPLETE", rest.index)
    reasons = {"pruned (stopped early: no final " + metric + ")": state == "PRUNED",
               "failed": state == "FAIL"}
    reasons["without an energy measurement"] = ~(state.isin(["PRUNED", "FAIL"])) & \
        rest["energy_j"].isna()
    reasons["without a " + metric] = ~(state.isin(["PRUNED", "FAIL"])) & \
        rest["energy_j"].notna()
    parts = [f"{int(m.sum())} {why}" for why, m in reasons.items() if m.any()]
    return f"not shown: {', '.join(parts)}" if parts else ""

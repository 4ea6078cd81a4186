"""Figures: each function takes a DataFrame (the trials table or energy_to_target's table)
and returns a matplotlib Figure. Nothing here writes files; the CLI does.

Every figure carries a footnote naming the energy method, and says "ESTIMATE" when the
method or any part of it is a model (`estimate-*`, also inside `nvml-counter+estimate-cpu-tdp`)
rather than a measurement, naming the estimated devices (`energy.methods.label`).
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # no display: figures are written to files

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .analysis import (  # noqa: E402
    LAYER_FACTORS,
    PAPER_ETA_SQ,
    PREDICTORS,
    best_so_far,
    censored_energy,
    charged_what,
    full_runs,
    layer_attribution,
    method_label,
    pareto_front,
    prediction_error,
    require,
)
from .energy.methods import MethodLabel, label  # noqa: E402
from .metric import MINIMIZE, direction_of, metric_of  # noqa: E402

COLORS = {"grid": "#1b9e77", "random": "#d95f02", "bayes": "#7570b3"}
_EXTRA = plt.get_cmap("tab10").colors


def strategy_color(name: str, order: list[str] | None = None) -> str:
    """A strategy's colour; a pruned variant (`tpe+asha`) takes a darker shade of its
    strategy's colour (and dashed or dotted lines: PRUNER_LINESTYLES)."""
    import zlib

    base = str(name).split("+")[0]
    if base in COLORS:
        color = COLORS[base]
    else:
        bases = list(dict.fromkeys(str(o).split("+")[0] for o in order or []))
        i = bases.index(base) if base in bases else zlib.crc32(base.encode())  # stable
        color = matplotlib.colors.to_hex(_EXTRA[(i + 3) % len(_EXTRA)])
    if "+" in str(name):  # darker, so that it shows where it runs over its strategy's line
        r, g, b = matplotlib.colors.to_rgb(color)
        color = matplotlib.colors.to_hex((r * 0.6, g * 0.6, b * 0.6))
    return color


#: Pruned variants (`tpe+asha`) are drawn in their strategy's colour with these lines.
PRUNER_LINESTYLES = {"median": ":", "asha": "--", "hyperband": "-."}


def strategy_linestyle(name: str) -> str:
    return PRUNER_LINESTYLES.get(str(name).partition("+")[2], "-")


def method_note(methods: MethodLabel) -> str:
    """'energy method: rapl', 'energy: an ESTIMATE (estimate-cpu-tdp), modelled, not
    measured' or 'energy: nvml-counter+estimate-cpu-tdp, partly an ESTIMATE: cpu0 from ...'."""
    if not methods.methods:
        return "energy method: not recorded"
    text = ", ".join(methods.methods)
    if methods.fully_estimated:
        return f"energy: {methods.text()}"
    if methods.any_estimate:
        return f"energy: {text}, {methods.text()}"
    return f"energy method: {text}"


def _finish(fig: Figure, methods: MethodLabel, extra: str = "") -> Figure:
    note = method_note(methods) + (f"   |   {extra}" if extra else "")
    color = "#b00000" if methods.any_estimate else "#444444"
    fig.text(0.01, 0.01, note, fontsize=8, color=color, ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def _strategies(df: pd.DataFrame) -> list[str]:
    order = [s for s in ("grid", "random", "bayes") if s in set(df["strategy"])]
    return order + sorted(set(df["strategy"].dropna()) - set(order))


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
    """Best accuracy so far vs cumulative energy (kJ): one line per strategy, median over
    seeds with the inter-quartile band, each seed as a thin step line, the target dashed."""
    require(trials, ("study", "strategy", "trial", "accuracy", "energy_j"), "fig_best_so_far")
    df = best_so_far(trials)
    curves = best_so_far_curves(trials)
    order = _strategies(df)
    many = len(order) > 6  # the legend goes beside the axes instead of over the data
    fig, ax = plt.subplots(figsize=(10.0 if many else 7.5, 4.8))
    for strategy in order:
        c = strategy_color(strategy, order)
        ls = strategy_linestyle(strategy)
        for _, st in df[df["strategy"] == strategy].groupby("study"):
            if many:  # eleven strategies' single seeds would hide every median
                break
            ax.step(st["cum_energy_j"] / 1e3, st["best_accuracy_so_far"], where="post",
                    color=c, alpha=0.45, lw=0.9, ls=ls)
        cv = curves[curves["strategy"] == strategy] if len(curves) else curves
        n = int(df.loc[df["strategy"] == strategy, "study"].nunique())
        label = f"{strategy} (median of {n} seed{'s' if n != 1 else ''})"
        if not len(cv):  # no energy range that every seed covers: seeds only
            ax.plot([], [], color=c, lw=2.2, label=label, ls=ls)
            continue
        ax.plot(cv["cum_energy_j"] / 1e3, cv["median"], color=c, lw=2.2, label=label, ls=ls)
        ax.fill_between(cv["cum_energy_j"] / 1e3, cv["q25"], cv["q75"], color=c,
                        alpha=0.08 if many else 0.2, lw=0)
    metric = metric_of(df)
    if target is not None:
        ax.axhline(target, color="k", ls="--", lw=1, label=f"target {metric} {target:.3f}")
    ax.set_xlabel(f"cumulative energy of the search: {charged_what(trials)} (kJ)")
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
    return _finish(fig, method_label(df))


def fig_energy_to_target(ett: pd.DataFrame, title: str = "",
                         methods: MethodLabel | None = None,
                         counted: str | None = None) -> Figure:
    """Energy to reach the target per strategy: box over seeds plus one dot per seed; seeds
    that never reached the target are drawn as crosses above the boxes, labelled.

    `methods`: the trials' method label (`analysis.method_label(trials)`, which names the
    estimated devices); without it, the label of ett's `energy_method` column.
    `counted`: what the energy counts (`analysis.charged_what(trials)`), for the axis.
    """
    require(ett, ("strategy", "reached", "energy_to_target_j", "total_energy_j", "target"),
            "fig_energy_to_target")
    order = _strategies(ett)
    fig, ax = plt.subplots(figsize=(7.0, 4.8))
    energy = censored_energy(ett)
    finite_max = float(np.nanmax(ett["total_energy_j"])) / 1e3 if len(ett) else 1.0
    top = finite_max * 1.08
    rng = np.random.default_rng(0)
    for i, strategy in enumerate(order):
        s = ett[ett["strategy"] == strategy]
        c = strategy_color(strategy, order)
        reached = s[s["reached"].astype(bool)]
        vals = reached["energy_to_target_j"].to_numpy() / 1e3
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
        med_txt = "median: n/a (half or\nfewer reached)" if math.isinf(med) \
            else f"median {med / 1e3:.3g} kJ" + ("\n(never reached = inf)" if missed else "")
        ax.annotate(f"reached {len(reached)}/{len(s)}\n{med_txt}", (i, 0), xytext=(0, -30),
                    textcoords="offset points", xycoords=("data", "axes fraction"),
                    ha="center", va="top", fontsize=8)
    ax.axhline(top, color="#b00000", lw=0.6, ls=":")
    ax.set_xticks(range(len(order)), order)
    ax.set_xlim(-0.6, len(order) - 0.4)
    ax.set_ylim(0, top * 1.06)
    ticks = [t for t in ax.get_yticks() if 0 <= t < top * 0.88]
    ax.set_yticks([*ticks, top], [*(f"{t:g}" for t in ticks), "never\nreached"])
    ax.get_yticklabels()[-1].set_color("#b00000")
    ax.set_ylabel("energy to reach the target (kJ)" + (f"\n{counted}" if counted else ""))
    target = float(ett["target"].iloc[0]) if len(ett) else math.nan
    way = "<=" if direction_of(ett) == MINIMIZE else ">="
    ax.set_title((title or f"Energy until the first trial with {metric_of(ett)} {way} "
                  f"{target:.3f} "
                  f"(one dot per seed)") + "\nbox: the seeds that reached it; crosses: "
                 "seeds that never did", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    if methods is None:
        methods = label(m for v in ett.get("energy_method", pd.Series(dtype=object)).dropna()
                        for m in str(v).split(", "))
    fig = _finish(fig, methods)
    fig.subplots_adjust(bottom=0.24)
    return fig


def fig_pareto(trials: pd.DataFrame, title: str = "") -> Figure:
    """Accuracy vs energy of every trial, coloured by strategy, with the Pareto front."""
    require(trials, ("strategy", "accuracy", "energy_j"), "fig_pareto")
    df = trials[trials["accuracy"].notna() & trials["energy_j"].notna()]
    order = _strategies(trials)
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
    dropped = len(trials) - len(df)
    ax.set_title(title or f"{metric[:1].upper()}{metric[1:]} vs energy per trial, all "
                 f"strategies and seeds", fontsize=10)
    return _finish(fig, method_label(trials),
                   f"{dropped} trial(s) without accuracy or energy not shown" if dropped else "")


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
    return _finish(fig, method_label(trials))


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
    return _finish(fig, method_label(trials))


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
        strategies = _strategies(d) if "strategy" in d.columns else []
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
    return _finish(fig, method_label(trials))


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
        return _finish(fig, method_label(trials))
    order = _strategies(trials)
    df = trials[trials["energy_j"].notna() & trials["energy_net_j"].notna()]
    gross = [df.loc[df["strategy"] == s, "energy_j"].sum() / 1e3 for s in order]
    net = [df.loc[df["strategy"] == s, "energy_net_j"].sum() / 1e3 for s in order]
    x = np.arange(len(order))
    ax.bar(x - 0.2, gross, 0.4, label="gross (energy_j)", color="#999999")
    ax.bar(x + 0.2, net, 0.4, label="idle-corrected (energy_net_j)", color="#1f78b4")
    for i, (g, n) in enumerate(zip(gross, net, strict=True)):
        if g > 0:
            ax.text(i + 0.2, n, f"{n / g:.0%}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, order)
    ax.set_ylabel("training energy, all trials of all seeds (kJ)")
    ax.legend(fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title or "Gross vs idle-corrected energy (label: net share of gross)",
                 fontsize=10)
    return _finish(fig, method_label(trials))

"""The runtime ECDF (COCO's data profile) in joules: for each strategy, the share of its
(seed, target) pairs whose target was reached against the cumulative charged energy spent.

Targets: N_TARGETS (settable) evenly spaced from an easy one to the comparison's target. The
easy one is what a search gets at once: the median, over the comparison's studies, of each
study's first result (its first finished trial with a value of the metric). Each pair's
energy is `analysis.energy_to_target` at that target (the one definition); a pair that never
reached its target never counts, so a curve ends below 1 by its failures. A cross marks
where a strategy's median search ended (its budget): a curve cannot rise past it but for
seeds that searched longer.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tuning_energy.analysis.metric import MINIMIZE, direction_of, metric_of
from tuning_energy.analysis.table import method_label, require
from tuning_energy.analysis.to_target import charged_what, energy_to_target
from tuning_energy.report.figure_style import (
    finish,
    strategy_color,
    strategy_linestyle,
    strategy_order,
)

N_TARGETS = 5


def ecdf_targets(trials: pd.DataFrame, target: float, n: int = N_TARGETS) -> list[float]:
    """`n` targets evenly spaced from the easy one (module docstring) to `target`, easiest
    first; fewer when the easy one is already at or past `target` (then only `target`)."""
    require(trials, ("study", "trial", "accuracy"), "ecdf_targets")
    if n < 1:
        raise ValueError(f"ECDF targets = {n}: must be >= 1")
    scored = trials[trials["accuracy"].notna()].sort_values(["study", "trial"])
    if scored.empty or n == 1:
        return [float(target)]
    easy = float(scored.groupby("study")["accuracy"].first().median())
    harder = easy > target if direction_of(trials) == MINIMIZE else easy < target
    if not harder:
        return [float(target)]
    return [float(t) for t in np.linspace(easy, target, n)]


def runtime_ecdf(trials: pd.DataFrame, targets: list[float]) -> pd.DataFrame:
    """One row per (study, target): strategy, seed, target, reached, energy_to_target_j
    (analysis.energy_to_target at each target), total_energy_j."""
    parts = [energy_to_target(trials, t) for t in targets]
    return pd.concat(parts, ignore_index=True)[
        ["study", "strategy", "seed", "target", "reached", "energy_to_target_j",
         "total_energy_j"]]


def fig_runtime_ecdf(trials: pd.DataFrame, target: float, n_targets: int = N_TARGETS,
                     title: str = "") -> Figure:
    """Share of (seed, target) pairs reached vs cumulative charged energy (log x), one step
    line per strategy (module docstring)."""
    import matplotlib.pyplot as plt

    require(trials, ("study", "strategy", "trial", "accuracy", "energy_j"), "fig_runtime_ecdf")
    targets = ecdf_targets(trials, target, n_targets)
    pairs = runtime_ecdf(trials, targets)
    order = strategy_order(trials)
    many = len(order) > 6
    fig, ax = plt.subplots(figsize=(10.0 if many else 7.5, 4.8))
    hit = pairs.loc[pairs["reached"].astype(bool), "energy_to_target_j"]
    positive = hit[hit > 0]
    left = float(positive.min()) / 1.5 if len(positive) else 1.0
    right = float(pairs["total_energy_j"].max()) * 1.2 if len(pairs) else 10.0
    for strategy in order:
        s = pairs[pairs["strategy"] == strategy]
        if s.empty:
            continue
        c, ls = strategy_color(strategy, order), strategy_linestyle(strategy)
        e = np.sort(s.loc[s["reached"].astype(bool), "energy_to_target_j"].to_numpy())
        share = np.arange(1, len(e) + 1) / len(s)
        x = np.r_[left, np.maximum(e, left), right]
        y = np.r_[0.0, share, share[-1] if len(share) else 0.0]
        final = y[-1]
        n_seeds = s["study"].nunique()
        ax.step(x, y, where="post", color=c, ls=ls, lw=2.0,
                label=f"{strategy}: {final:.0%} of {len(s)} pairs ({n_seeds} seeds)")
        budget = float(s.drop_duplicates("study")["total_energy_j"].median())
        if math.isfinite(budget):
            ax.plot([budget], [np.searchsorted(e, budget, side="right") / len(s)], marker="x",
                    color=c, ms=9, mew=2, ls="none")
    ax.set_xscale("log")
    ax.set_xlim(left, right)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"cumulative energy of the search: {charged_what(trials)} (J, log scale)")
    ax.set_ylabel("share of (seed, target) pairs reached")
    ax.grid(alpha=0.3, which="both")
    way = "<=" if direction_of(trials) == MINIMIZE else ">="
    ts = ", ".join(f"{t:.4g}" for t in targets)
    ax.set_title(title or "Runtime ECDF (data profile)", fontsize=10)
    ax.text(0.01, 0.98, f"targets: {metric_of(trials)} {way} {ts}\nx: median search's end",
            transform=ax.transAxes, fontsize=8, va="top")
    if many:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0)
    else:
        ax.legend(loc="lower right", fontsize=8)
    return finish(fig, method_label(trials))

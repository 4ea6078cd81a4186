"""Energy to target, and the charged energy it adds up, from the trials table (table.py).

Energy-to-target (`energy_to_target`, the one definition every output uses): the cumulative
charged energy (training + proposing + storage) of every finished trial of a study, in
finishing order, up to and including the first trial whose accuracy reaches the target,
i.e. what a user running that search would have paid to get there. A trial whose training
energy is unknown adds its measured proposing and storage energy and is counted
(`n_unmeasured`): the energy to target is then a lower bound, marked "≥" wherever it is
shown. A table without
`propose_energy_j` (results from elsewhere) counts training energy alone, and
`energy_counted` says so. A study's total energy is its charged energy too;
`training_energy_j` is labelled as training. A study that never reaches the target is
*censored*: it cost at least its total energy. Summaries across seeds treat it as
infinitely expensive (`inf`), so a median is only finite when more than half of the seeds
reached the target.
"""

from __future__ import annotations

import math

import pandas as pd

from tuning_energy.analysis.metric import (
    best_of,
    direction_of,
    metric_of,
    near_best,
    reaches,
    running_best,
)
from tuning_energy.analysis.table import energy_methods, require
from tuning_energy.energy.accounting import (
    CHARGED_PARTS,
    PROPOSING,
    STORING,
    TRAINING,
    charged_co2_g,
    charged_energy_j,
    charged_known_j,
)
from tuning_energy.errors import TuningEnergyError


def _ordered(trials: pd.DataFrame) -> pd.DataFrame:
    return trials.sort_values(["study", "trial"], kind="stable").reset_index(drop=True)


def charged_parts(trials: pd.DataFrame) -> list[str]:
    """The parts of a trial's charge (accounting.CHARGED_PARTS) that the table carries."""
    return [c for c in CHARGED_PARTS if c in trials.columns and trials[c].notna().any()]


def with_charged_energy(trials: pd.DataFrame) -> pd.DataFrame:
    """The table with `charged_energy_j` (accounting.charged_energy_j of each row: training
    + proposing + storage energy, whichever columns the table has; NaN where the training
    energy is unknown) and `charged_known_j` (accounting.charged_known_j: the measured parts,
    what totals add up). A table from the store has them already; one from elsewhere gets
    them."""
    if "charged_energy_j" in trials.columns and "charged_known_j" in trials.columns:
        return trials
    require(trials, (TRAINING,), "charged energy")
    cols = [c for c in CHARGED_PARTS if c in trials.columns]
    records = trials[cols].to_dict("records")
    out = {}
    for name, fn in (("charged_energy_j", charged_energy_j), ("charged_known_j", charged_known_j)):
        if name not in trials.columns:
            out[name] = pd.Series([fn(r) for r in records], index=trials.index, dtype=float)
    return trials.assign(**out)


def charged_co2_total_g(trials: pd.DataFrame) -> float | None:
    """g CO2e of the table's charged energy: accounting.charged_co2_g of each trial (its
    `charged_known_j` at its own window's intensity when it has one, else at its study's,
    times its study's PUE), the one definition budgets, run summaries and `show` use. The
    study's intensity and PUE are the table's `carbon_intensity_g_per_kwh` / `pue` columns;
    a study without them (a table exported before they were columns) is priced at what its
    trials' `co2_g` was priced at (co2_g / energy_j, PUE included). None when no trial can
    be priced."""
    df = with_charged_energy(trials)
    study_i = _numeric(df, "carbon_intensity_g_per_kwh")
    pue = _numeric(df, "pue").fillna(1.0).where(study_i.notna(), 1.0)
    if study_i.isna().any() and "co2_g" in df.columns:
        own = _numeric(df, "co2_intensity_g_per_kwh")
        energy = _numeric(df, TRAINING)
        priced = (_numeric(df, "co2_g") / energy * 3.6e6).where((energy > 0) & own.isna())
        groups = df["study"] if "study" in df.columns else pd.Series(0, index=df.index)
        study_i = study_i.fillna(priced.groupby(groups).transform("first"))
    cols = [c for c in (*CHARGED_PARTS, "co2_intensity_g_per_kwh") if c in df.columns]
    values = [charged_co2_g(r, i, p)
              for r, i, p in zip(df[cols].to_dict("records"), study_i, pue, strict=True)]
    known = [v for v in values if v is not None and math.isfinite(v)]
    return float(sum(known)) if known else None


def _numeric(df: pd.DataFrame, column: str) -> pd.Series:
    """The column as floats (NaN where absent or not a number)."""
    if column not in df.columns:
        return pd.Series(math.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[column], errors="coerce").astype(float)


def unmeasured(trials: pd.DataFrame) -> pd.Series:
    """True for the rows whose training energy (`energy_j`) is unknown."""
    require(trials, (TRAINING,), "unmeasured")
    return trials[TRAINING].isna()


def charged_what(trials: pd.DataFrame) -> str:
    """'training + proposing + storage' (or the parts this table has): what is charged."""
    names = {TRAINING: "training", PROPOSING: "proposing", STORING: "storage"}
    return " + ".join(names[p] for p in charged_parts(trials)) or "training"


def energy_counted(trials: pd.DataFrame) -> str:
    """What energy to target and a search's total energy count in this table, in words."""
    text = (f"{charged_what(trials)} energy of every finished trial (complete, pruned and "
            f"failed), in finishing order")
    if PROPOSING not in charged_parts(trials):
        text += "; energy to target counts training energy only: the table has no proposing " \
                "energy (propose_energy_j)"
    return text


def unmeasured_text(trials: pd.DataFrame) -> str:
    """One sentence on the trials without a training-energy measurement; '' when none."""
    n = int(unmeasured(trials).sum()) if TRAINING in trials.columns else 0
    if not n:
        return ""
    return (f"{n} of {len(trials)} trial(s) have no training-energy measurement (energy_j "
            f"unknown): their measured proposing and storage energy is counted, their "
            f"training energy is not, so the energies marked ≥ are lower bounds.")


def best_so_far(trials: pd.DataFrame) -> pd.DataFrame:
    """Add `cum_energy_j` (the measured charged energy of this and all earlier trials of the
    study, `charged_known_j`), `cum_unmeasured` (how many of them have no training-energy
    measurement: while it is > 0, `cum_energy_j` is a lower bound) and
    `best_accuracy_so_far` (NaN until a trial has an accuracy).

    A trial whose training energy is unknown adds its measured proposing and storage energy
    and is counted in `cum_unmeasured`; its own `energy_j` stays NaN so that the gap stays
    visible.
    """
    require(trials, ("study", "trial", "accuracy", "energy_j"), "best_so_far")
    df = _ordered(with_charged_energy(trials))
    df["_unmeasured"] = unmeasured(df).astype(int)
    g = df.groupby("study", sort=False)
    # a row with no measured part at all adds nothing; cum_unmeasured says it is there
    df["cum_energy_j"] = g["charged_known_j"].transform(lambda s: s.fillna(0.0).cumsum())
    df["cum_unmeasured"] = g["_unmeasured"].cumsum()
    # the best so far (in the metric's direction, metric.py), carried over trials without
    # a value (PRUNED, FAIL)
    direction = direction_of(df)
    df["best_accuracy_so_far"] = g["accuracy"].transform(lambda s: running_best(s, direction))
    return df.drop(columns="_unmeasured")


def target_from_best(trials: pd.DataFrame, fraction: float = 0.99) -> float:
    """An absolute target near the best value any trial reached: `fraction` x the best
    accuracy (a maximised metric), the best / `fraction` for a minimised one (metric.py)."""
    require(trials, ("accuracy",), "target_from_best")
    if not 0 < fraction <= 1:
        raise TuningEnergyError(f"target fraction = {fraction!r}: must be in (0, 1]")
    direction = direction_of(trials)
    best = best_of(trials["accuracy"], direction)
    if pd.isna(best):
        raise TuningEnergyError("target_from_best: no trial has an accuracy (all failed?)")
    return float(near_best(best, fraction, direction))


def energy_to_target(trials: pd.DataFrame, target: float) -> pd.DataFrame:
    """One row per study: did it reach `target`, after how many trials and joules.

    The one definition of energy to target, which every report, figure and note uses: the
    cumulative charged energy (`with_charged_energy`: training + proposing + storage, as
    far as the table has them) of every finished trial (COMPLETE, PRUNED, FAIL) in finishing
    order, up to and including the first trial whose accuracy (the metric) reaches `target`:
    at or above it, or at or below it for a minimised metric (metric.py).

    A trial whose training energy is unknown adds its measured parts (`charged_known_j`) and
    is counted: `n_unmeasured` counts those among the trials up to the target (all trials
    when it was never reached), and while it is > 0 `energy_to_target_j` is a lower bound
    ("≥" in every report); `n_unmeasured_total` does the same for `total_energy_j`.

    Columns: study, strategy, seed, target, reached, trials_to_target (1-based count of
    finished trials up to and including the first with accuracy >= target; NaN when never
    reached), energy_to_target_j (NaN when never reached), n_unmeasured, total_energy_j (the
    measured charged energy of the whole search), n_unmeasured_total, training_energy_j
    (its measured training energy alone), best_accuracy, n_trials, energy_method (the
    study's methods, ", "-joined; None when the table has no energy_method column).
    """
    require(trials, ("study", "strategy", "seed", "trial", "accuracy", "energy_j"),
            "energy_to_target")
    df = best_so_far(trials)
    direction, metric = direction_of(df), metric_of(df)
    rows = []
    for study, s in df.groupby("study", sort=True):
        hit = s.index[reaches(s["accuracy"], target, direction).to_numpy()]
        first = hit[0] if len(hit) else None
        rows.append({
            "study": study,
            "strategy": s["strategy"].iloc[0],
            "seed": s["seed"].iloc[0],
            "target": float(target),
            "reached": first is not None,
            "trials_to_target": float(s.loc[first, "trial"] + 1) if first is not None
            else math.nan,
            "energy_to_target_j": float(s.loc[first, "cum_energy_j"]) if first is not None
            else math.nan,
            "n_unmeasured": int(s.loc[first, "cum_unmeasured"] if first is not None
                                else s["cum_unmeasured"].iloc[-1]),
            "total_energy_j": float(s["charged_known_j"].sum(min_count=1)),
            "n_unmeasured_total": int(s["cum_unmeasured"].iloc[-1]),
            "training_energy_j": float(s["energy_j"].sum(min_count=1)),
            "best_accuracy": best_of(s["accuracy"], direction),
            "n_trials": len(s),
            "energy_method": ", ".join(energy_methods(s)) or None,
            "direction": direction,
            "metric": metric,
        })
    return pd.DataFrame(rows, columns=["study", "strategy", "seed", "target", "reached",
                                       "trials_to_target", "energy_to_target_j",
                                       "n_unmeasured", "total_energy_j", "n_unmeasured_total",
                                       "training_energy_j", "best_accuracy", "n_trials",
                                       "energy_method", "direction", "metric"])


def censored_energy(ett: pd.DataFrame) -> pd.Series:
    """Energy-to-target with never-reached studies as +inf (they cost at least their total)."""
    require(ett, ("reached", "energy_to_target_j"), "censored_energy")
    return ett["energy_to_target_j"].where(ett["reached"].astype(bool), math.inf).astype(float)

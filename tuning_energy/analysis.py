"""The tidy trials table and the analyses on it.

`trials_table(storage_url)` reads an Optuna store into one row per finished trial
(COMPLETE, PRUNED and FAIL: a failed trial spent its energy too), in the order the trials
finished. Every other function here takes such a DataFrame and returns a DataFrame, so it
can analyse results that came from elsewhere (another tool's CSV) as long as the columns it
uses are there; a missing column raises `TuningEnergyError` naming it.

Columns of the trials table:

    comparison   the config name the study was run from (studies of one comparison share it)
    study        Optuna study name, `{comparison}-{strategy}-s{seed}`
    strategy, seed               from the study's user attrs; a study run with a pruner is
                                 labelled `{strategy}+{pruner}` (`tpe+asha`)
    trial        0-based finishing order within the study
    number       Optuna's trial number (order of creation)
    state        COMPLETE | PRUNED | FAIL
    accuracy     the trial's metric, its first objective's value (NaN when it has none,
                 e.g. FAIL): validation accuracy for the built-in CNN objective, a user's
                 `[objective] metric` otherwise (metric.py)
    metric, direction            that metric's name and `maximize` | `minimize` (from the
                                 study's config; `accuracy`, `maximize` before [objective])
    energy_j, duration_s         the trial's meter window: its training energy (NaN when
                                 not measured)
    charged_energy_j             what the trial is charged (accounting.charged_energy_j):
                                 energy_j + propose_energy_j + store_energy_j where recorded;
                                 NaN when its training energy is unknown
    charged_known_j              the measured parts of that charge (accounting.charged_known_j):
                                 what totals and energy to target add up
    energy_method                how energy_j was obtained (`estimate-cpu-tdp`, `rapl`, ...)
    environment                  where the study ran (study attr `environment`, see hardware.py)
    target_accuracy              the config's target as stored on the study, in the
                                 metric's units (`target_accuracy`, or `[objective] target`;
                                 NaN when it has none): the comparison's target by default
                                 (target.py)
    param_<name>                 every searched parameter
    <attr>       every numeric or boolean trial user attr (n_params, flops_per_sample,
                 epochs_run, diverged, propose_s, avg_power_w, energy_net_j, co2_g, ...)
    energy_dev_<device>_j        the trial's energy per device (cpu0, gpu0, ...), when recorded

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
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from .accounting import (
    CHARGED_PARTS,
    PROPOSING,
    STORING,
    TRAINING,
    charged_energy_j,
    charged_known_j,
)
from .energy.methods import MethodLabel, label
from .errors import TuningEnergyError
from .hardware import environment_of
from .metric import MINIMIZE, best_of, direction_of, metric_of, near_best, reaches, running_best

#: Yarally et al. (CAIN 2023), RQ2: eta^2 of energy per trial by layer kind.
PAPER_ETA_SQ: dict[str, dict[str, float]] = {
    "n_conv": {"fashion-mnist": 0.990, "cifar10": 0.976},
    "n_linear": {"fashion-mnist": 0.006, "cifar10": 0.016},
    "relu": {"fashion-mnist": 0.002, "cifar10": 0.003},
}
LAYER_FACTORS = ("n_conv", "n_linear", "relu")
FINISHED_STATES = ("COMPLETE", "PRUNED", "FAIL")
BOOTSTRAP_SEED = 20230324  # fixed: the same store gives the same confidence intervals


def require(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Raise TuningEnergyError naming the first column `what` needs that `df` lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise TuningEnergyError(
            f"{what}: column {missing[0]!r} is missing from the trials table "
            f"(it needs {', '.join(columns)}; it has {', '.join(map(str, df.columns)) or 'none'})"
        )


# ---------------------------------------------------------------- reading the store


def _select(names: list[str], studies: str | Sequence[str] | None) -> list[str]:
    if studies is None:
        return names
    if isinstance(studies, str):
        return [n for n in names if n.startswith(studies)]
    wanted = list(studies)
    unknown = [s for s in wanted if s not in names]
    if unknown:
        raise TuningEnergyError(
            f"studies: {unknown[0]!r} is not in the store; it has {', '.join(names) or 'none'}")
    return wanted


def _scalar(v: Any) -> bool:
    return isinstance(v, bool | int | float) and not isinstance(v, complex)


def strategy_label(study_attrs: dict[str, Any]) -> str | None:
    """The study's strategy, with its pruner when one was on: 'tpe', 'tpe+asha'."""
    strategy = study_attrs.get("strategy")
    pruner = ((study_attrs.get("config") or {}).get("pruning") or {}).get("pruner", "none")
    return strategy if strategy is None or pruner in (None, "none") else f"{strategy}+{pruner}"


def study_rows(name: str, attrs: dict[str, Any], trials: Iterable[Any]) -> list[dict[str, Any]]:
    """The trials table's rows of one study (`attrs`: its user attrs; `trials`: its
    FrozenTrials, any states: only finished ones become rows, in finishing order)."""
    from optuna.trial import TrialState

    config = attrs.get("config") or {}
    # the study's metric: the config's [objective] (the built-in CNN's accuracy before it)
    objective = config.get("objective") or {}
    metric = objective.get("metric") or "accuracy"
    direction = objective.get("direction") or "maximize"
    target = objective.get("target")
    target = config.get("target_accuracy") if target is None else target
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    done = sorted((t for t in trials if t.state in finished),
                  key=lambda t: (t.datetime_complete or datetime.max, t.number))
    rows: list[dict[str, Any]] = []
    for i, t in enumerate(done):
        row: dict[str, Any] = {
            "comparison": config.get("name", name),
            "study": name,
            "strategy": strategy_label(attrs),
            "seed": attrs.get("seed"),
            "trial": i,
            "number": t.number,
            "state": t.state.name,
            # values[0]: accuracy is the first objective of multi-objective studies too
            "accuracy": t.values[0] if t.state == TrialState.COMPLETE and t.values
            and t.values[0] is not None else math.nan,
            "energy_j": math.nan,
            "duration_s": math.nan,
            "target_accuracy": target,
            "metric": metric,
            "direction": direction,
        }
        for k, v in t.params.items():
            row[f"param_{k}"] = v
        for k, v in t.user_attrs.items():
            if _scalar(v):
                row[k] = v
            elif k == "energy_by_device_j" and isinstance(v, dict):
                for dev, e in v.items():
                    if _scalar(e):
                        row[f"energy_dev_{dev}_j"] = e
        row["energy_method"] = t.user_attrs.get("energy_method", attrs.get("energy_method"))
        row["environment"] = environment_of(attrs)
        # Provenance (runner.runs): which run and machine a trial came from, so that a study
        # resumed elsewhere is seen to pool two machines' energy.
        for k in PROVENANCE:
            row[k] = t.user_attrs.get(k)
        for k in ("energy_j", "duration_s"):
            if row[k] is None:
                row[k] = math.nan
        charged = charged_energy_j(t.user_attrs)
        row["charged_energy_j"] = math.nan if charged is None else charged
        known = charged_known_j(t.user_attrs)
        row["charged_known_j"] = math.nan if known is None else known
        rows.append(row)
    return rows


#: Per-trial text columns that say where a trial ran (None for stores before they existed).
PROVENANCE = ("run_id", "hardware_id")
TABLE_BASE = ["comparison", "study", "strategy", "seed", "trial", "number", "state", "accuracy",
              "energy_j", "duration_s", "charged_energy_j", "charged_known_j",
              "target_accuracy"]


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    tail = ["energy_method", "environment"]
    if df.empty:
        return pd.DataFrame(columns=[*TABLE_BASE, *tail])
    params = sorted(c for c in df.columns if c.startswith("param_"))
    rest = [c for c in df.columns if c not in TABLE_BASE and c not in params and c not in tail]
    df = df[[*TABLE_BASE, *params, *rest, *tail]]
    for c in ("accuracy", "energy_j", "duration_s", "charged_energy_j", "charged_known_j",
              "target_accuracy"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    return df.reset_index(drop=True)


def trials_table(storage_url: str, studies: str | Sequence[str] | None = None) -> pd.DataFrame:
    """One row per finished trial of the store, in finishing order within each study.

    `studies`: None for all studies, a string for the studies whose name starts with it, or
    a list of exact study names.
    """
    import optuna

    from .storage import open_storage

    storage = open_storage(storage_url, create=False)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, False)]
    rows: list[dict[str, Any]] = []
    for name in sorted(_select(names, studies)):
        study = optuna.load_study(study_name=name, storage=storage)
        rows += study_rows(name, study.user_attrs, study.get_trials(deepcopy=False))
    return _frame(rows)


def study_table(study: Any, trials: Iterable[Any] | None = None) -> pd.DataFrame:
    """The trials table of one loaded Optuna study (`trials`: its trials, if already read)."""
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    return _frame(study_rows(study.study_name, study.user_attrs, trials))


def tidy(trials: pd.DataFrame) -> pd.DataFrame:
    """A subset of the table (e.g. one comparison) without the columns that are empty in it,
    and with integer parameters back as integers where no value is missing."""
    df = trials.dropna(axis=1, how="all").reset_index(drop=True)
    for c in df.columns:
        if c.startswith("param_") and df[c].dtype.kind == "f" and df[c].notna().all() \
                and (df[c] == df[c].round()).all():
            df[c] = df[c].astype("int64")
    return df


def studies_info(storage_url: str, studies: str | Sequence[str] | None = None) -> pd.DataFrame:
    """One row per study: name, comparison, strategy, seed, energy_method and the study attrs
    that describe the setup (`hardware`, `meter`, `config` as stored, versions)."""
    import optuna

    from .storage import open_storage

    storage = open_storage(storage_url, create=False)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, False)]
    rows = []
    for name in sorted(_select(names, studies)):
        a = optuna.load_study(study_name=name, storage=storage).user_attrs
        config = a.get("config") or {}
        rows.append({"study": name, "comparison": config.get("name", name),
                     "strategy": a.get("strategy"), "seed": a.get("seed"),
                     "energy_method": a.get("energy_method"), "hardware": a.get("hardware"),
                     "meter": a.get("meter"), "config": config,
                     "tuning_energy_version": a.get("tuning_energy_version"),
                     "torch_version": a.get("torch_version"),
                     "torch_threads": a.get("torch_threads"),
                     "environment": environment_of(a)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- curves and targets


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


def method_label(trials: pd.DataFrame) -> MethodLabel:
    """The table's energy methods and which of their devices were estimated (from the
    `energy_dev_<device>_j` columns where the table has them)."""
    if "energy_method" not in trials.columns:
        return label([])
    dev_cols = {c: c[len("energy_dev_"):-len("_j")] for c in trials.columns
                if c.startswith("energy_dev_") and c.endswith("_j")}
    devices: dict[str, set[str]] = {}
    for method, g in trials.groupby(trials["energy_method"].astype(str), sort=True):
        devices[method] = {d for c, d in dev_cols.items() if g[c].notna().any()}
    return label(trials["energy_method"].dropna(), devices)


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


# ---------------------------------------------------------------- across seeds


def censored_energy(ett: pd.DataFrame) -> pd.Series:
    """Energy-to-target with never-reached studies as +inf (they cost at least their total)."""
    require(ett, ("reached", "energy_to_target_j"), "censored_energy")
    return ett["energy_to_target_j"].where(ett["reached"].astype(bool), math.inf).astype(float)


def bootstrap_median_ci(values: Sequence[float], n_boot: int = 10_000, level: float = 0.95,
                        seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """Median and percentile-bootstrap CI of the median; `inf` values allowed (censored)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    meds = np.median(rng.choice(x, size=(n_boot, x.size), replace=True), axis=1)
    alpha = (1 - level) / 2
    # inverted_cdf: no interpolation, so inf bounds stay inf instead of becoming NaN
    lo, hi = np.quantile(meds, [alpha, 1 - alpha], method="inverted_cdf")
    return float(np.median(x)), float(lo), float(hi)


RATIO_SEED = 20_230_323  # fixed: the same store gives the same ratio intervals


def ratio_ci(a: Sequence[float], b: Sequence[float], n_boot: int = 10_000,
             level: float = 0.95, seed: int = RATIO_SEED) -> tuple[float, float, float]:
    """median(a) / median(b) with a percentile bootstrap CI (seeds resampled per group).

    Never-reached seeds are inf in a and b; a ratio with an inf median is inf or 0, and
    undefined (nan) when both medians are inf (or both 0). A resample whose ratio is
    undefined could have any ratio: it counts as 0 for the low bound and inf for the high
    one, so the high end is unbounded unless a's median reaches the target in at least
    (1 + level) / 2 of the resamples. Empty a or b: all nan."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    if x.size == 0 or y.size == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        point = float(np.median(x) / np.median(y))
        bx = np.median(rng.choice(x, (n_boot, x.size)), axis=1)
        by = np.median(rng.choice(y, (n_boot, y.size)), axis=1)
        r = bx / by
    undefined = np.isnan(r)
    # Percentiles as order statistics (no interpolation): a bound among the resamples whose
    # reference or own is inf is inf (unbounded), not inf - inf = nan.
    lo = np.quantile(np.where(undefined, 0.0, r), (1 - level) / 2, method="inverted_cdf")
    hi = np.quantile(np.where(undefined, math.inf, r), (1 + level) / 2, method="inverted_cdf")
    return point, float(lo), float(hi)


def strategy_summary(ett: pd.DataFrame, n_boot: int = 10_000, level: float = 0.95,
                     seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """Per strategy across seeds, from `energy_to_target`'s table.

    Columns: strategy, n_seeds, reached, reached_share, median_energy_to_target_j,
    ci_low_j, ci_high_j (percentile bootstrap of the median, `level`, fixed rng seed;
    never-reached seeds count as inf, so a bound or the median can be inf),
    median_trials_to_target (same rule), median_total_energy_j, total_energy_j (the
    search's charged energy, median over seeds and sum over seeds: what the comparison
    spent on this strategy), best_accuracy (the best over seeds, in the metric's
    direction),
    median_best_accuracy; n_unmeasured (trials without a training-energy measurement that
    the energies to target count, summed over seeds), lower_bound (the median energy to
    target and its CI are lower bounds: a seed that reached the target has such a trial
    before it), total_lower_bound (the same for the search energy: some seed has such a
    trial). A table without the n_unmeasured columns counts none.
    """
    require(ett, ("strategy", "reached", "energy_to_target_j", "trials_to_target",
                  "total_energy_j", "best_accuracy"), "strategy_summary")
    n_eta = ett["n_unmeasured"] if "n_unmeasured" in ett.columns else \
        pd.Series(0, index=ett.index)
    n_total = ett["n_unmeasured_total"] if "n_unmeasured_total" in ett.columns else n_eta
    rows = []
    energy = censored_energy(ett)
    trials = ett["trials_to_target"].where(ett["reached"].astype(bool), math.inf)
    direction = direction_of(ett)
    for strategy, s in ett.groupby("strategy", sort=True):
        med, lo, hi = bootstrap_median_ci(energy[s.index], n_boot, level, seed)
        rows.append({
            "strategy": strategy, "n_seeds": len(s), "reached": int(s["reached"].sum()),
            "reached_share": float(s["reached"].mean()),
            "median_energy_to_target_j": med, "ci_low_j": lo, "ci_high_j": hi,
            "median_trials_to_target": float(np.median(trials[s.index].astype(float))),
            "median_total_energy_j": float(s["total_energy_j"].median()),
            "total_energy_j": float(s["total_energy_j"].sum()),
            "best_accuracy": best_of(s["best_accuracy"], direction),
            "median_best_accuracy": float(s["best_accuracy"].median()),
            "n_unmeasured": int(n_eta[s.index].sum()),
            "lower_bound": bool(((n_eta[s.index] > 0) & s["reached"].astype(bool)).any()),
            "total_lower_bound": bool((n_total[s.index] > 0).any()),
        })
    return pd.DataFrame(rows)


def a12(a: Sequence[float], b: Sequence[float]) -> float:
    """Vargha-Delaney A12: P(X > Y) + 0.5 P(X = Y), X from `a`, Y from `b`.

    0.5 = no difference. For energy (lower is better) A12 < 0.5 means `a` tends to need
    less energy than `b`.
    """
    x = np.asarray(a, dtype=float)[:, None]
    y = np.asarray(b, dtype=float)[None, :]
    if x.size == 0 or y.size == 0:
        return math.nan
    return float(((x > y).sum() + 0.5 * (x == y).sum()) / (x.size * y.size))


def a12_magnitude(value: float) -> str:
    """Vargha and Delaney's thresholds on |A12 - 0.5|: .06 small, .14 medium, .21 large."""
    if math.isnan(value):
        return ""
    d = abs(value - 0.5)
    return "negligible" if d < 0.06 else "small" if d < 0.14 else "medium" if d < 0.21 \
        else "large"


def strategy_tests(ett: pd.DataFrame, value: str = "energy_to_target_j") -> pd.DataFrame:
    """Do the strategies differ in `value` across seeds?

    Rows: one Kruskal-Wallis H test across all strategies, then two-sided Mann-Whitney U for
    every pair with Holm-corrected p-values and Vargha-Delaney A12 (group_a vs group_b).
    For `energy_to_target_j` never-reached seeds count as inf (worse than any energy).
    Columns: test, value, group_a, group_b, n_a, n_b, statistic, p_value, p_holm, a12,
    a12_magnitude, note.
    """
    require(ett, ("strategy", value), "strategy_tests")
    from scipy import stats
    from statsmodels.stats.multitest import multipletests

    v = censored_energy(ett) if value == "energy_to_target_j" else ett[value].astype(float)
    groups = {k: v[s.index].to_numpy() for k, s in ett.groupby("strategy", sort=True)}
    names = list(groups)
    rows: list[dict[str, Any]] = []
    kw: dict[str, Any] = {"test": "Kruskal-Wallis H", "value": value, "group_a": "all",
                          "group_b": "", "n_a": sum(len(g) for g in groups.values()),
                          "n_b": math.nan, "statistic": math.nan, "p_value": math.nan,
                          "p_holm": math.nan, "a12": math.nan, "a12_magnitude": "", "note": ""}
    if len(names) < 2:
        kw["note"] = "needs at least two strategies"
    else:
        try:
            h, p = stats.kruskal(*groups.values())
            kw.update(statistic=float(h), p_value=float(p))
        except ValueError as exc:  # all values identical
            kw["note"] = str(exc)
    rows.append(kw)
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            row = {"test": "Mann-Whitney U (two-sided)", "value": value, "group_a": a,
                   "group_b": b, "n_a": len(groups[a]), "n_b": len(groups[b]),
                   "statistic": math.nan, "p_value": math.nan, "p_holm": math.nan,
                   "a12": a12(groups[a], groups[b]), "note": ""}
            try:
                u, p = stats.mannwhitneyu(groups[a], groups[b], alternative="two-sided")
                row.update(statistic=float(u), p_value=float(p))
            except ValueError as exc:
                row["note"] = str(exc)
            row["a12_magnitude"] = a12_magnitude(row["a12"])
            pairs.append(row)
    ps = [r["p_value"] for r in pairs]
    ok = [i for i, p in enumerate(ps) if not math.isnan(p)]
    if ok:
        adjusted = multipletests([ps[i] for i in ok], method="holm")[1]
        for i, p in zip(ok, adjusted, strict=True):
            pairs[i]["p_holm"] = float(p)
    rows += pairs
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- RQ2: layers


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


def energy_methods(trials: pd.DataFrame) -> list[str]:
    """The distinct energy methods in the table (sorted), or [] when the column is absent."""
    if "energy_method" not in trials.columns:
        return []
    return sorted(str(m) for m in trials["energy_method"].dropna().unique())

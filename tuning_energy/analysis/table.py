"""Reading an Optuna store into the tidy trials table: one row per counted trial.

`trials_table(storage_url)` reads an Optuna store into one row per counted trial
(`COUNTED_STATES`: COMPLETE, PRUNED and FAIL, as a failed trial spent its energy too; the
budget's "finished" trials, run/summary.FINISHED, are COMPLETE and PRUNED only), in the
order the trials ended. Every other function here takes such a DataFrame and returns a
DataFrame, so it can analyse results that came from elsewhere (another tool's CSV) as long
as the columns it uses are there; a missing column raises `TuningEnergyError` naming it.

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
    energy_method                how energy_j was obtained (`estimate-cpu-tdp-tree`, `rapl`, ...)
    environment                  where the study ran (study attr `environment`, see hardware.py)
    target_accuracy              the config's target as stored on the study, in the
                                 metric's units (`target_accuracy`, or `[objective] target`;
                                 NaN when it has none): the comparison's target by default
                                 (target.py)
    param_<name>                 every searched parameter
    <attr>       every numeric or boolean trial user attr (n_params, flops_per_sample,
                 epochs_run, diverged, propose_s, avg_power_w, energy_net_j, co2_g, ...)
    energy_dev_<device>_j        the trial's energy per device (cpu0, gpu0, ...), when recorded

The rest of the analyses take this table (to_target.py: energy to target; stats.py: across
seeds; energy_factors.py: what costs energy); `analysis` re-exports all of them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from tuning_energy.energy.accounting import charged_energy_j, charged_known_j
from tuning_energy.energy.hardware import environment_of
from tuning_energy.energy.methods import MethodLabel, label
from tuning_energy.errors import TuningEnergyError
from tuning_energy.store.url import StoreURL

COUNTED_STATES = ("COMPLETE", "PRUNED", "FAIL")  # the trials the table has a row for


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
    FrozenTrials, any states: those in COUNTED_STATES become rows, in the order they ended)."""
    from optuna.trial import TrialState

    config = attrs.get("config") or {}
    # the study's metric: the config's [objective] (the built-in CNN's accuracy before it)
    objective = config.get("objective") or {}
    metric = objective.get("metric") or "accuracy"
    direction = objective.get("direction") or "maximize"
    target = objective.get("target")
    target = config.get("target_accuracy") if target is None else target
    counted = tuple(TrialState[s] for s in COUNTED_STATES)
    done = sorted((t for t in trials if t.state in counted),
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
            # the study's carbon intensity and PUE: what its trials' CO2 is priced at
            # (accounting.charged_co2_g; a trial's own window intensity comes with its attrs)
            "carbon_intensity_g_per_kwh": attrs.get("carbon_intensity_g_per_kwh"),
            "pue": attrs.get("pue"),
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


def trials_table(storage_url: StoreURL | str,
                 studies: str | Sequence[str] | None = None) -> pd.DataFrame:
    """One row per counted trial of the store, in the order they ended within each study.

    `studies`: None for all studies, a string for the studies whose name starts with it, or
    a list of exact study names.
    """
    import optuna

    from tuning_energy.store.storage import open_storage

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


def studies_info(storage_url: StoreURL | str,
                 studies: str | Sequence[str] | None = None) -> pd.DataFrame:
    """One row per study: name, comparison, strategy, seed, energy_method and the study attrs
    that describe the setup (`hardware`, `meter`, `carbon_source`: where its carbon intensity
    came from, `config` as stored, versions)."""
    import optuna

    from tuning_energy.store.storage import open_storage

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
                     "carbon_source": a.get("carbon_source"),
                     "tuning_energy_version": a.get("tuning_energy_version"),
                     "torch_version": a.get("torch_version"),
                     "torch_threads": a.get("torch_threads"),
                     "environment": environment_of(a)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- its energy methods


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


def energy_methods(trials: pd.DataFrame) -> list[str]:
    """The distinct energy methods in the table (sorted), or [] when the column is absent."""
    if "energy_method" not in trials.columns:
        return []
    return sorted(str(m) for m in trials["energy_method"].dropna().unique())

"""The configuration each search selected, and its accuracy on the held-out test set.

A study selects its trial with the best validation accuracy (the first to finish, on a tie):
what a user of that search would deploy. Its `test_accuracy` (trial attr: the test set,
evaluated once when the trial's training ended) is what that choice is worth on data the
search never looked at, unless the study selected on the test set itself
(`data.validation = "test"`, Yarally et al.'s protocol), which the report then says.
Takes and returns DataFrames (the trials table, table.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from tuning_energy.analysis.metric import MINIMIZE, direction_of
from tuning_energy.analysis.table import require

COLUMNS = ["study", "strategy", "seed", "environment", "number", "accuracy", "test_accuracy"]


def selected(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per study: its selected trial's number, validation `accuracy` and
    `test_accuracy` (NaN where the trial has none, e.g. stored before it was recorded)."""
    require(trials, ("study", "trial", "accuracy"), "selected")
    done = trials[trials["accuracy"].notna()].sort_values(["study", "trial"], kind="stable")
    if done.empty:
        return pd.DataFrame(columns=COLUMNS)
    minimized = direction_of(done) == MINIMIZE  # a user's minimised metric (metric.py)
    pick = "idxmin" if minimized else "idxmax"
    best = done.loc[getattr(done.groupby("study", sort=True)["accuracy"], pick)()]
    out = pd.DataFrame({c: best[c] if c in best.columns else math.nan for c in COLUMNS})
    out["test_accuracy"] = pd.to_numeric(out["test_accuracy"], errors="coerce").astype(float)
    return out.reset_index(drop=True)


def summary(sel: pd.DataFrame, by: str = "strategy") -> pd.DataFrame:
    """Per `by` across studies: n_studies, median_accuracy (validation, of the selected
    trials), median_test_accuracy, min_test_accuracy, max_test_accuracy, n_with_test."""
    require(sel, (by, "accuracy", "test_accuracy"), "selection summary")
    rows = []
    for key, s in sel.groupby(by, sort=True):
        test = s["test_accuracy"].dropna()
        rows.append({by: key, "n_studies": len(s),
                     "median_accuracy": float(s["accuracy"].median()),
                     "median_test_accuracy": float(np.median(test)) if len(test) else math.nan,
                     "min_test_accuracy": float(test.min()) if len(test) else math.nan,
                     "max_test_accuracy": float(test.max()) if len(test) else math.nan,
                     "n_with_test": len(test)})
    return pd.DataFrame(rows, columns=[by, "n_studies", "median_accuracy",
                                       "median_test_accuracy", "min_test_accuracy",
                                       "max_test_accuracy", "n_with_test"])


def _user_objective(info: pd.DataFrame) -> bool:
    """Some study of `info` ran a user's objective (`[objective] function`, or a plain
    Optuna objective under metered(), whose config has no [data]), not the built-in CNN."""
    if info.empty or "config" not in info.columns:
        return False
    return any(((c or {}).get("objective") or {}).get("function") or "data" not in (c or {})
               for c in info["config"])


def validations(info: pd.DataFrame, studies: Iterable[str] | None = None) -> set[str]:
    """The `data.validation` modes of the studies in `info` (studies_info), or of those of
    them named in `studies`; a study stored before the key existed counts as 'unrecorded'."""
    if info.empty or "config" not in info.columns:
        return set()
    if studies is not None and "study" in info.columns:
        info = info[info["study"].isin(set(studies))]
    return {((c or {}).get("data") or {}).get("validation", "unrecorded")
            for c in info["config"]}


SUMMARY_COLUMNS = {"strategy": "strategy", "n_studies": "seeds",
                   "median_accuracy": "median validation accuracy (selected)",
                   "median_test_accuracy": "median test accuracy (selected)",
                   "min_test_accuracy": "min test", "max_test_accuracy": "max test"}


def report_lines(trials: pd.DataFrame, info: pd.DataFrame,
                 md_table: Callable[[pd.DataFrame, dict[str, str]], str]) -> list[str]:
    """The report's subsection on the selected configurations' test accuracy (`info`: the
    studies' setup, studies_info; `md_table`: the report's table renderer)."""
    if "test_accuracy" not in trials.columns and _user_objective(info):
        return []  # a user's function reports no test set: nothing to say
    lines = ["### The selected configurations on the test set", ""]
    sel = selected(trials)
    if sel.empty:
        return lines + ["No completed trial: nothing was selected.", ""]
    if sel["test_accuracy"].isna().all():
        return lines + ["These trials carry no `test_accuracy` (stored before it was "
                        "recorded): rerun the studies to see the selected configurations "
                        "on the test set.", ""]
    lines += ["Each seed's selected configuration is its trial with the best validation "
              "accuracy; its test accuracy is that trial's `test_accuracy`, evaluated once "
              "on the held-out test set when its training ended (inside its energy window).",
              "", md_table(summary(sel), SUMMARY_COLUMNS), ""]
    modes = validations(info, trials["study"].unique())
    if "test" in modes:
        lines += ["**Selected on the test set**: `data.validation = \"test\"` (Yarally et al.'s "
                  "protocol) made the test set the validation set, so these test accuracies "
                  "are the accuracies the strategies selected on and are optimistic. "
                  "`data.validation = \"split\"` selects on part of the training set "
                  "instead.", ""]
    return lines

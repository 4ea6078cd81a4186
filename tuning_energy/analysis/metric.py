"""The metric a comparison's studies optimise, and its direction, read from the trials table.

The trials table's `accuracy` column holds each trial's metric (the study's first
objective's value: validation accuracy for the built-in CNN objective, a user's
`[objective] metric` otherwise); its `metric` and `direction` columns say what it is and
which way is better. A table without them (results from elsewhere, older code) is accuracy,
maximised. Every comparison with a target or a "best" goes through here, so that a
minimised loss reaches its target at or below it.
"""

from __future__ import annotations

import pandas as pd

from tuning_energy.errors import TuningEnergyError

MAXIMIZE, MINIMIZE = "maximize", "minimize"


def _one(trials: pd.DataFrame, column: str, default: str) -> str:
    if column not in trials.columns:
        return default
    values = [v for v in trials[column].dropna().unique()]
    if len(values) > 1:
        by = trials.groupby(column)["study"].first().to_dict() if "study" in trials.columns \
            else {}
        raise TuningEnergyError(
            f"the studies compared have different {column}s ("
            + ", ".join(f"{v!r}" + (f" in {by[v]}" if v in by else "") for v in values)
            + "); compare studies of one objective (--studies PREFIX)")
    return str(values[0]) if values else default


def direction_of(trials: pd.DataFrame) -> str:
    """`maximize` or `minimize`: the direction of every study in the table."""
    return _one(trials, "direction", MAXIMIZE)


def metric_of(trials: pd.DataFrame) -> str:
    """The metric's name (`accuracy` unless the table says otherwise)."""
    return _one(trials, "metric", "accuracy")


def reaches(values: pd.Series, target: float, direction: str) -> pd.Series:
    """True where a value is at or past the target: >= when maximised, <= when minimised
    (NaN: never)."""
    return values.le(target) if direction == MINIMIZE else values.ge(target)


def best_of(values: pd.Series, direction: str) -> float:
    """The best value (NaN when there is none)."""
    return float(values.min() if direction == MINIMIZE else values.max())


def running_best(values: pd.Series, direction: str) -> pd.Series:
    """The best value so far at each row, carried over rows without a value."""
    run = values.cummin() if direction == MINIMIZE else values.cummax()
    return run.ffill()


def better(a: float, b: float, direction: str) -> bool:
    """a is strictly better than b."""
    return a < b if direction == MINIMIZE else a > b


def near_best(best: float, fraction: float, direction: str) -> float:
    """A target `fraction` of the way to the best value: `fraction` x best when maximised
    (0.99 x the best accuracy), best / `fraction` when minimised (a loss 1% above the
    best's)."""
    return best / fraction if direction == MINIMIZE else fraction * best

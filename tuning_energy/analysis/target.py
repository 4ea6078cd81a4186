"""The target accuracy of a comparison: the one rule that report.md (`figures`), compare.md
and compare.json (`compare`) and the dashboard's study note all use.

In order:

1. `--target ACC` (`target=`): that accuracy, "given with --target".
2. `--target-fraction F` (`target_fraction=`): F x the best accuracy of any trial in the
   comparison, "given with --target-fraction".
3. By default, the config's `target_accuracy`, as stored on each study (the `config` user
   attr; the trials table's `target_accuracy` column). A question fixed before the data is
   in: adding seeds does not move it.
4. Only when the config has no `target_accuracy`: 0.99 x the best accuracy of any trial in
   the comparison, and the outputs say that the data set the target.

The studies of one comparison must agree on `target_accuracy` (a study stored without one
disagrees with one stored with one): otherwise `TargetError` names the studies and their
values rather than pick one. Rerunning `compare` with the config stores its value on every
study it resumes; `--target` answers without touching the store.

Every output shows `Target.text()` ("target accuracy 0.9800 from the config's
target_accuracy") beside its energy to target.

The target is in the comparison's metric (metric.py: accuracy for the built-in CNN
objective, a user's `[objective] metric` otherwise), reached at or past it in the metric's
direction: at or below it for a minimised loss. The config's target is `target_accuracy`
or `[objective] target` (the trials table's `target_accuracy` column carries either); for
a minimised metric the fraction rules take the best value / F (a loss 1% above the best's
for F = 0.99).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from tuning_energy.analysis.metric import MAXIMIZE, MINIMIZE, best_of, direction_of, metric_of
from tuning_energy.analysis.table import require
from tuning_energy.analysis.to_target import target_from_best
from tuning_energy.errors import ConfigError

#: The trials-table column (from the study's stored config) that carries the config's target.
CONFIG_COLUMN = "target_accuracy"
#: The fraction of the best accuracy used when the config sets no target.
FALLBACK_FRACTION = 0.99

# Target.source: where the accuracy came from
GIVEN = "--target"
FRACTION = "--target-fraction"
CONFIG = "config"
FALLBACK = "best"  # no target_accuracy in the config: set by the data

SHOWN_STUDIES = 6  # at most this many study names per value in an error


class TargetError(ConfigError):
    """The studies of one comparison were stored with different `target_accuracy` values."""


@dataclass(frozen=True)
class Target:
    """A comparison's target accuracy and how it was set.

    source: GIVEN, FRACTION, CONFIG or FALLBACK. rule: how, in words ("from the config's
    target_accuracy").
    """

    accuracy: float  # the target value, in the metric's units (the name it had first)
    source: str
    rule: str
    metric: str = "accuracy"
    direction: str = MAXIMIZE

    @property
    def value(self) -> float:
        return self.accuracy

    def text(self) -> str:
        """'target accuracy 0.9800 from the config's target_accuracy' (for every output);
        'target val_loss 0.5500 (at or below) from the config's objective.target'."""
        way = " (at or below)" if self.direction == MINIMIZE else ""
        return f"target {self.metric} {self.accuracy:.4f}{way} {self.rule}"

    def sentence(self) -> str:
        """'Target accuracy 0.9800 from the config's target_accuracy.'"""
        text = self.text()
        return f"{text[:1].upper()}{text[1:]}."


def _check_accuracy(value: float, what: str, metric: str = "accuracy") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not math.isfinite(value):
        raise ConfigError(f"{what} = {value!r}: must be a number")
    if metric == "accuracy" and not 0 < value <= 1:
        raise ConfigError(f"{what} = {value!r}: must be an accuracy in (0, 1]")
    return float(value)


def configured_target(trials: pd.DataFrame) -> float | None:
    """The `target_accuracy` every study of `trials` was stored with, or None when none was
    (or the table has no such column). Raises TargetError naming the studies when they
    disagree."""
    if CONFIG_COLUMN not in trials.columns or trials.empty:
        return None
    require(trials, ("study",), "target_accuracy")
    per_study = trials.groupby("study", sort=True)[CONFIG_COLUMN].agg(
        lambda s: s.dropna().iloc[0] if s.notna().any() else math.nan)
    values = {None if pd.isna(v) else float(v) for v in per_study}
    if values == {None}:
        return None
    if len(values) > 1:
        groups = []
        for v in sorted(values, key=lambda x: (x is None, x or 0.0)):
            names = [s for s, w in per_study.items()
                     if (pd.isna(w) if v is None else w == v)]
            shown = ", ".join(names[:SHOWN_STUDIES]) + \
                (f" and {len(names) - SHOWN_STUDIES} more" if len(names) > SHOWN_STUDIES else "")
            groups.append(f"{'none' if v is None else f'{v:g}'} ({shown})")
        raise TargetError(
            f"target_accuracy: the studies of this comparison were stored with different "
            f"values: {'; '.join(groups)}. Rerun `tuning-energy compare --config ...` so that "
            f"every study stores the config's target_accuracy, or pass --target ACC")
    (value,) = values
    return value


def comparison_target(trials: pd.DataFrame, target: float | None = None,
                      target_fraction: float | None = None,
                      fallback: bool = True) -> Target | None:
    """The comparison's target (the rule in this module's docstring).

    `fallback=False`: None instead of 0.99 x the best accuracy when neither an override nor
    the config sets one (the dashboard's note sees one study, not the comparison).
    """
    metric, direction = metric_of(trials), direction_of(trials)
    if target is not None and target_fraction is not None:
        raise ConfigError(f"--target = {target!r} and --target-fraction = "
                          f"{target_fraction!r}: give one of them, not both")
    if target is not None:
        return Target(_check_accuracy(target, "--target", metric), GIVEN,
                      "given with --target", metric, direction)
    key = "target_accuracy" if metric == "accuracy" else "objective.target"
    how = "x" if direction == MAXIMIZE else "/"  # the best's side of a fraction
    if target_fraction is not None:
        value = target_from_best(trials, _check_accuracy(target_fraction,
                                                            "--target-fraction"))
        best = best_of(trials["accuracy"], direction)
        return Target(value, FRACTION,
                      f"= {target_fraction:g} {how} the best {metric} of any trial in the "
                      f"comparison ({best:.4f}), given with --target-fraction", metric,
                      direction) if how == "x" else \
            Target(value, FRACTION, f"= the best {metric} of any trial in the comparison "
                   f"({best:.4f}) / {target_fraction:g}, given with --target-fraction",
                   metric, direction)
    configured = configured_target(trials)
    if configured is not None:
        return Target(configured, CONFIG, f"from the config's {key}", metric, direction)
    if not fallback:
        return None
    value = target_from_best(trials, FALLBACK_FRACTION)
    best = best_of(trials["accuracy"], direction)
    share = f"{FALLBACK_FRACTION:g} x the best {metric} of any trial in the comparison " \
        f"({best:.4f})" if how == "x" else \
        f"the best {metric} of any trial in the comparison ({best:.4f}) / {FALLBACK_FRACTION:g}"
    return Target(value, FALLBACK, f"= {share}, because the config has no {key}", metric,
                  direction)

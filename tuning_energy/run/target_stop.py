"""`budget.stop_at_target`: a study ends once one of its trials reaches the config's target.

A COMPLETE trial reaches the target when its value is at or past it in the metric's
direction (analysis/metric.py's rule, the one energy to target uses). The runner asks
before every claim, so that with several workers (journal, PostgreSQL) each one finishes the
trial it is running, sees the target reached, and stops claiming; a resumed study that has
already reached it runs nothing. Energy to target and ERT are unchanged (they stop counting
at that trial anyway); what is saved is the rest of the budget, the user's bill.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuning_energy.config import StudyConfig


def reached_target(study: optuna.Study, config: StudyConfig) -> FrozenTrial | None:
    """The first COMPLETE trial (by number) whose value reaches the config's target, or None
    (also when stop_at_target is off or no target is set)."""
    target = config.target
    if not config.budget.stop_at_target or target is None:
        return None
    maximize = config.direction == "maximize"
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        v = t.values[0] if t.values else None
        if v is not None and (v >= target if maximize else v <= target):
            return t
    return None


def stop_text(trial: FrozenTrial, config: StudyConfig) -> str:
    """The summary's stop reason."""
    return (f"target reached (budget.stop_at_target): trial {trial.number} has "
            f"{config.metric} {trial.values[0]:.4g}, target {config.target:g}")

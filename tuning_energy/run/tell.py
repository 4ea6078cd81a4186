"""The runner's tell: Optuna's `study.tell` without the trial read back after it.

`study.tell` stores the trial's state and values, then reads the trial back from the store
and deep-copies it (its two dozen attrs) to return it: a second read of the trial, each
trial, in the storage account of the next proposal, that the runner's loop does not use.
`tell` runs the same checks and writes (Optuna's `_tell_with_warning`, which `study.tell`
calls) and returns what was stored. (Before Optuna 4.5, `_tell_with_warning` itself reads
the trial back and returns it, alone (4.3) or with a message (4.4); there `tell` saves only
the deep copy.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState


@dataclass(frozen=True)
class Told:
    """What `tell` stored: the trial's state and values (as `summary.value` reads them)."""

    state: TrialState
    values: list[float] | None


def tell(study: optuna.Study, trial: optuna.Trial, values: Any, state: TrialState) -> Told:
    """`study.tell(trial, values, state=state)`, returning the state and values stored
    instead of the trial read back (module doc). The same checks, writes and warnings."""
    from optuna.study._tell import _tell_with_warning

    told = _tell_with_warning(study=study, trial=trial, value_or_values=values, state=state)
    if isinstance(told, tuple) and isinstance(told[0], optuna.trial.FrozenTrial):
        told = told[0]  # Optuna 4.4: (the trial read back, message)
    if isinstance(told, optuna.trial.FrozenTrial):  # Optuna 4.3, 4.4: read back itself
        return Told(told.state, told.values)
    return Told(told[0], told[1])  # Optuna >= 4.5: (state, values, message)

"""The contract between the runner and an objective function: `function(params, ctx)`.

    def objective(params: dict, ctx) -> float | dict:
        for step in range(20):
            ...train one step / epoch...
            if ctx.report(step, value):  # the pruner or the per-trial energy cap says stop
                break                    # return the best value so far
        return value  # or {"accuracy": value, "any_json_extra": ...}

`ctx` (a `TrialContext`):
    trial_number   the Optuna trial's number
    seed           a seed for this trial: reproducible per (study seed, trial number)
                   (seeds.trial_seed)
    device         `train.device` as the process sees it ("cpu", "cuda", "cuda:0", ...)
    pruning        True when a pruner is on (a function may skip per-step evaluation
                   when it is False and no energy cap is set)
    report(step, value) -> bool
                   the value after `step` (0, 1, ...): the trial's intermediate value
                   (stored at once with a pruner, else with the trial's attrs when it
                   ends), passed to the pruner, and the trial's energy so far checked
                   against `budget.max_trial_energy_j` (projected over `objective.steps`
                   reports when given); True: stop now. The trial is then recorded PRUNED
                   with the energy it spent (`pruned_reason` says why).
    user_attrs     a dict: anything JSON-able put here is stored on the trial too

The function runs inside the trial's meter window; what it returns is the metric (a
number, or a dict holding it under the metric's name plus JSON-able extras stored as
trial attrs). An exception makes the trial FAIL, with its energy kept, and the study goes
on (five failing trials in a row stop it: runner.py).

Breaking the contract stops the study at the first trial (`ContractError`: no five wasted
trainings): a function that cannot be called as `function(params, ctx)` (a plain Optuna
`f(trial)`: wrap that in `tuning_energy.metered()` instead), or that returns anything but
a number or such a dict (None, a string, a dict without the metric, extras that are not
JSON-able or that use a name the tool stores itself). The trial is recorded FAIL with the
message, which names the contract and what was returned.

A metric that is not a finite number (NaN, inf) means the trial diverged: it is recorded
FAIL with `fail_reason` and `diverged = true`, keeps its energy, and the study goes on
(`TrialDiverged`; it does not count towards the five failures in a row). A finite metric
is a COMPLETE trial, also when training diverged (the built-in CNN, whose loss went NaN,
returns the accuracy it reached with `diverged = true`).

`load_function("module:callable", folder)` imports a user's function (folder first on
sys.path).
"""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tuning_energy.errors import ConfigError, TuningEnergyError

CONTRACT = "function(params: dict, ctx) -> a number, or a dict holding the metric"


class ContractError(TuningEnergyError, TypeError):
    """The objective function broke the contract (see the module doc): the study stops."""


class TrialDiverged(Exception):
    """The metric is not a finite number: the trial is recorded FAIL with `fail_reason`
    and `diverged = true` (its attrs are written already), and the study goes on."""


@dataclass
class TrialContext:
    """What an objective function gets beside its parameters (see the module doc)."""

    trial_number: int
    seed: int
    device: str
    pruning: bool = False
    user_attrs: dict[str, Any] = field(default_factory=dict)
    # set by the objective: report(step, value) -> stop?
    _on_report: Callable[[int, float], str | None] | None = field(default=None, repr=False)
    stop_reason: str | None = field(default=None, init=False)
    n_reports: int = field(default=0, init=False)

    def report(self, step: int, value: float) -> bool:
        """Report the metric after `step`; True when the trial should stop now."""
        if self.stop_reason is not None:
            return True
        self.n_reports += 1
        if self._on_report is not None:
            self.stop_reason = self._on_report(int(step), float(value))
        return self.stop_reason is not None


def load_function(spec: str, folder: str | None = None) -> Callable[..., Any]:
    """`module:callable` imported, with `folder` (the config file's) first on sys.path."""
    module_name, _, attr = spec.partition(":")
    if folder and (not sys.path or sys.path[0] != folder):
        sys.path.insert(0, folder)
    where = f" (looked in {folder} first)" if folder else ""
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"objective.function = {spec!r}: cannot import module "
                          f"{module_name!r}{where}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"objective.function = {spec!r}: module {module_name!r} has no "
                              f"{attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"objective.function = {spec!r}: {attr!r} is not callable; it must "
                          f"be a function(params: dict, ctx)")
    return obj


def finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)

"""The study-wide budgets: `budget.max_energy_j` (J) and `budget.max_co2_g` (g CO2e).

One rule for both, checked before each trial starts (by the one process of a SQLite study
under its lock, by each worker under the workers' lock): no further trial may start when

    spent + to come from the running trials + the next trial > the budget

Spent: every trial's charged energy (training + proposing + storage; a running or killed
trial's energy so far included). To come: each running trial up to the predicted energy of
a trial (the median of the finished ones), and the next trial's. For CO2 a trial's joules
count at the intensity of its own window (`co2_intensity_g_per_kwh` with a
`meter.carbon_intensity_csv`, else the config's constant), and the joules to come at the
intensity now (the CSV's over the next trial's predicted duration).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState

from tuning_energy.energy.accounting import charged_co2_g, charged_energy_j, charged_known_j
from tuning_energy.energy.carbon import Carbon, resolve_carbon
from tuning_energy.run.summary import FINISHED
from tuning_energy.run.worker_energy import PARTIAL


def _projection(trials: Sequence[FrozenTrial], per_j: Callable[[FrozenTrial], float],
                next_per_j: float) -> tuple[float, float, float, int]:
    """(spent, to come from running trials, next trial, n running) in the budget's unit."""
    spent = sum(e * per_j(t) for t in trials if (e := charged_known_j(t.user_attrs)) is not None)
    done = [e for t in trials if t.state in FINISHED and not t.user_attrs.get(PARTIAL)
            and (e := charged_energy_j(t.user_attrs)) is not None]
    next_j = statistics.median(done) if done else 0.0
    running = [t for t in trials if t.state == TrialState.RUNNING]
    # what a running trial has been charged so far is in `spent` already
    to_come_j = sum(max(0.0, next_j - (charged_known_j(t.user_attrs) or 0.0)) for t in running)
    return spent, to_come_j * next_per_j, next_j * next_per_j, len(running)


def energy_budget_stop(trials: Sequence[FrozenTrial], max_energy_j: float) -> str | None:
    """Why no further trial may start under `budget.max_energy_j`; None while one may."""
    spent, to_come, nxt, running = _projection(trials, lambda t: 1.0, 1.0)
    if spent + to_come + nxt <= max_energy_j:
        return None
    return (f"energy budget: {spent:,.1f} J charged to the study's trials (training + "
            f"proposing + storage)"
            + (f", ~{to_come:,.1f} J more expected from {running} running" if running else "")
            + f"; the next trial (~{nxt:,.1f} J predicted) would pass "
              f"budget.max_energy_j = {max_energy_j:g} J")


def co2_budget_stop(trials: Sequence[FrozenTrial], max_co2_g: float,
                    carbon: Carbon) -> str | None:
    """Why no further trial may start under `budget.max_co2_g`; None while one may."""
    g_per_j = carbon.pue / 3.6e6

    def per_j(t: FrozenTrial) -> float:  # accounting.charged_co2_g per joule of the trial
        e = charged_known_j(t.user_attrs)
        return (charged_co2_g(t.user_attrs, carbon.intensity_g_per_kwh, carbon.pue) or 0.0) \
            / e if e else 0.0

    durations = [float(t.user_attrs["duration_s"]) for t in trials
                 if t.state in FINISHED and isinstance(t.user_attrs.get("duration_s"), float)]
    now = carbon.intensity_now(statistics.median(durations) if durations else 0.0)
    spent, to_come, nxt, running = _projection(trials, per_j, now * g_per_j)
    if spent + to_come + nxt <= max_co2_g:
        return None
    return (f"CO2 budget: {spent:,.3g} g CO2e from the study's charged energy"
            + (f", ~{to_come:,.3g} g more expected from {running} running" if running else "")
            + f"; the next trial (~{nxt:,.3g} g predicted at {now:g} g/kWh, "
              f"{carbon.source}) would pass budget.max_co2_g = {max_co2_g:g} g")


@dataclass(frozen=True)
class StudyBudget:
    """The budgets of one study, checked together."""

    max_energy_j: float | None = None
    max_co2_g: float | None = None
    carbon: Carbon | None = None

    def stop(self, trials: Sequence[FrozenTrial]) -> str | None:
        if self.max_energy_j is not None and (
                reason := energy_budget_stop(trials, self.max_energy_j)):
            return reason
        if self.max_co2_g is not None and self.carbon is not None:
            return co2_budget_stop(trials, self.max_co2_g, self.carbon)
        return None

    @classmethod
    def of(cls, config, carbon: Carbon | None = None) -> StudyBudget:
        """The budgets of a StudyConfig (its carbon resolved when max_co2_g asks for it)."""
        b = config.budget
        if b.max_co2_g is not None and carbon is None:
            carbon = resolve_carbon(config.meter)
        return cls(b.max_energy_j, b.max_co2_g, carbon)

    def __bool__(self) -> bool:
        return self.max_energy_j is not None or self.max_co2_g is not None

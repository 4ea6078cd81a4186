"""The strategy's own cost, apart from the storage around it.

Proposing a trial's parameters is two kinds of work:

- the strategy's own computation: the sampler's `before_trial`,
  `infer_relative_search_space`, `sample_relative` and `sample_independent` (GP fits,
  acquisition optimisation, TPE's density estimates, reading the history they need);
- storage round trips: Optuna's `ask` creates the trial and reads it back, each suggested
  parameter is one commit, a worker writes who runs the trial.

Building the sampler (its libraries' imports, a model template: `search.resumable.import_libraries`) is
metered by the runner and charged to the run's first proposal (`setup`); left to the first
GP proposal, skopt's import was charged to that trial instead.

`MeteredSampler` wraps the study's sampler and runs each of those four calls in a nested
meter window (windows nest: see energy/base.py), adding them up per trial. The objective
charges the sum as `propose_s` / `propose_energy_j` and the rest of the proposal window as
`store_s` / `store_energy_j` (objective.py, overhead.py). `after_trial` runs inside
Optuna's `tell`, after the finished trial takes no more attrs: it is metered too and its
cost goes to the next trial's proposal (whose window is open then: overhead.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from optuna.samplers import BaseSampler

from tuning_energy.energy import Measurement, Meter


@dataclass
class SamplerCost:
    """What the sampler's calls for one trial took: seconds and joules (None: unmeasured)."""

    duration_s: float = 0.0
    energy_j: float | None = 0.0
    n_calls: int = 0
    # of it, what ran before the proposal window opened: building the sampler (`setup`)
    outside_s: float = 0.0
    outside_j: float | None = 0.0


class MeteredSampler(BaseSampler):
    """`sampler`, with its proposing calls metered by `meter` per trial."""

    def __init__(self, sampler: BaseSampler, meter: Meter,
                 setup: Measurement | None = None) -> None:
        self.sampler = sampler
        self.meter = meter
        self._costs: dict[int, SamplerCost] = {}
        self._depth = 0  # a sampler calling back into the study is metered once
        # after_trial's, for the next trial; first, building the sampler (`setup`: its
        # libraries' imports, its model template), for the run's first proposal
        self._after: SamplerCost | None = None if setup is None else SamplerCost(
            setup.duration_s, setup.energy_j, 1, setup.duration_s, setup.energy_j)

    def _metered(self, trial: Any, call: Callable[..., Any], *args: Any,
                 cost: SamplerCost | None = None) -> Any:
        if self._depth:
            return call(*args)
        self._depth += 1
        window = self.meter.begin()
        try:
            return call(*args)
        finally:
            m = self.meter.end(window)
            self._depth -= 1
            if cost is None:
                cost = self._costs.setdefault(trial._trial_id, SamplerCost())
            cost.duration_s += m.duration_s
            cost.energy_j = None if cost.energy_j is None or m.energy_j is None \
                else cost.energy_j + m.energy_j
            cost.n_calls += 1

    def take_cost(self, trial_id: int) -> SamplerCost:
        """The cost of the calls made for trial `trial_id` so far (with the `after_trial`
        of the trial finished before), and forget it."""
        cost = self._costs.pop(trial_id, SamplerCost())
        after, self._after = self._after, None
        if after is not None:
            cost.duration_s += after.duration_s
            cost.energy_j = None if cost.energy_j is None or after.energy_j is None \
                else cost.energy_j + after.energy_j
            cost.n_calls += after.n_calls
            cost.outside_s, cost.outside_j = after.outside_s, after.outside_j
        return cost

    def _no_op(self, hook: str) -> bool:
        """The wrapped sampler's `hook` is BaseSampler's, which does nothing: no window (a
        window's two readings cost more than the call)."""
        return getattr(type(self.sampler), hook) is getattr(BaseSampler, hook)

    # -- the strategy's own computation, metered
    def before_trial(self, study, trial) -> None:
        if not self._no_op("before_trial"):
            self._metered(trial, self.sampler.before_trial, study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._metered(trial, self.sampler.infer_relative_search_space, study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._metered(trial, self.sampler.sample_relative, study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._metered(trial, self.sampler.sample_independent, study, trial, param_name,
                             param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        if self._no_op("after_trial"):
            return
        self._after = self._after or SamplerCost()
        self._metered(trial, self.sampler.after_trial, study, trial, state, values,
                      cost=self._after)

    # -- passed through

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()

    def __getattr__(self, name: str) -> Any:  # the wrapped sampler's own attributes
        if name == "sampler":  # not set yet (copy / unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.sampler, name)

    def __str__(self) -> str:
        return f"Metered({self.sampler})"

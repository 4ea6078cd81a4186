"""The one energy-metered objective that every strategy calls.

It takes the trial's parameters, opens the meter window around the objective function
(`function(params, ctx)`, context.py: the built-in CNN objective, cnn/function.py, or the
user's function named in `[objective]`), and stores on the trial:

value: the function's metric (`[objective] metric`, in its direction; the built-in CNN's is
       validation accuracy in [0, 1], maximised); for multi-objective studies
       (metric, energy_j)
user attrs, every one a trial can get:
  the measurement (energy_attrs): energy_j (None when not measured, never 0),
      energy_method, energy_by_device_j, energy_error (which device's energy is unknown
      and why), duration_s, avg_power_w, and what the meter adds (Measurement.extra):
      energy_partial (a worker's trial: true while energy_j is the energy so far written
      by the heartbeat, false once the final figures replace it; run/worker_energy.py),
      crosscheck_energy_j, crosscheck_method, crosscheck_by_device_j (`--cross-check
      codecarbon`: CodeCarbon's figure for the same window)
  the runner's on_measurement hook (energy/baseline.py): idle_power_w (the idle baseline in
      force), energy_net_j (energy_j - idle power x duration; None when idle is unknown),
      co2_g (gross energy x carbon intensity x PUE)
  the function's extras (a returned dict's other keys, and ctx.user_attrs); the built-in
      CNN's: n_params, flops_per_sample, epochs_run, diverged, train_loss, test_accuracy
      (the held-out test set, evaluated once when training ends, inside the energy window;
      None for a pruned trial), predicted_energy_j
  predicted_energy_epoch1_j: the energy after the first report, times the reports a trial
      makes (the CNN's epochs, or objective.steps; absent when that is not known)
  the proposal: propose_s, propose_energy_j, store_s, store_energy_j, and the run attrs
      the runner passes (run_id, hardware_id)
  a pruned trial: pruned_reason, energy_saved_j (when the number of reports is known),
      {metric}_at_stop (the value it returned when it stopped: accuracy_at_stop)
  a failed trial (written by the runner or a worker): error (the exception of a trial that
      raised), fail_reason (Ctrl-C, a run killed while the trial was RUNNING, a worker
      that died)

Three energies per trial, each from its own meter window, and together what the trial is
charged (accounting.py):
    energy_j          training and evaluation (the trial's own window)
    propose_energy_j  the strategy's own computation that proposed its parameters (the
                      sampler's calls, metered by MeteredSampler); propose_s its seconds
    store_energy_j    the storage round trips of proposing: Optuna's ask (creating the
                      trial), one commit per suggested parameter, a worker's claim attrs;
                      store_s its seconds. The commits that record these figures (the
                      propose/store attrs, the training attrs, Optuna's tell: one each) come
                      after their own windows and are not counted.
With a sampler that is not a MeteredSampler (a plain `study.optimize(objective)`), the
whole proposal window is propose_* and there is no store_*.

The energy attrs are written even when the function raises or is pruned: a failed or
pruned trial keeps the energy it spent.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from tuning_energy.config import StudyConfig
from tuning_energy.energy import Measurement, Meter, Window
from tuning_energy.errors import ConfigError
from tuning_energy.objective.context import TrialContext, finite
from tuning_energy.search.metered_sampler import MeteredSampler
from tuning_energy.search.strategies import suggest_params
from tuning_energy.seeds import trial_seed
from tuning_energy.store.storage import set_user_attrs

__all__ = ["Objective", "TrialOutcome", "energy_attrs", "trial_seed"]

#: Trial attrs the runner and the meters write: a function's extras may not use them.
RESERVED = frozenset({
    "energy_j", "energy_method", "energy_by_device_j", "energy_error", "duration_s",
    "avg_power_w", "energy_partial", "crosscheck_energy_j", "crosscheck_method",
    "crosscheck_by_device_j", "idle_power_w", "energy_net_j", "co2_g", "propose_s",
    "propose_energy_j", "store_s", "store_energy_j", "run_id", "hardware_id",
    "pruned_reason", "energy_saved_j", "error", "fail_reason", "predicted_energy_epoch1_j",
})


@dataclass
class TrialOutcome:
    value: float
    measurement: Measurement
    params: dict[str, Any]
    extras: dict[str, Any]

    @property
    def accuracy(self) -> float:  # the built-in objective's metric, by its name
        return self.value


def energy_attrs(m: Measurement) -> dict[str, Any]:
    """The trial attrs that describe a measurement (None stays None: never a made-up 0),
    with what the meter added to it (`Measurement.extra`: `energy_partial`, the
    `crosscheck_*` figures)."""
    return {
        "energy_j": m.energy_j,
        "energy_method": m.method,
        "energy_by_device_j": dict(m.by_device_j),
        "energy_error": m.energy_error,  # which device's energy is unknown and why (else None)
        "duration_s": m.duration_s,
        "avg_power_w": m.avg_power_w,
        **m.extra,
    }


def split_result(result: Any, metric: str) -> tuple[float, dict[str, Any]]:
    """(the metric, the JSON-able extras) of what a function returned."""
    extras: dict[str, Any] = {}
    value = result
    if isinstance(result, dict):
        if metric not in result:
            raise TypeError(f"the objective function returned a dict without {metric!r} "
                            f"(objective.metric); keys: {', '.join(map(str, result))}")
        extras = {str(k): _plain(k, v) for k, v in result.items() if k != metric}
        value = result[metric]
        clash = sorted(RESERVED & set(extras))
        if clash:
            raise TypeError(f"the objective function returned {clash[0]!r}: a name the tool "
                            f"stores itself (energy and proposal attrs); rename it")
    if hasattr(value, "item") and not isinstance(value, int | float):
        value = value.item()  # a NumPy or torch scalar
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"the objective function returned {value!r} for {metric!r}: must be a "
                        f"number (or a dict holding it under {metric!r})")
    return float(value), extras


def _plain(key: Any, value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, int | float | str | bool):
        value = value.item()  # a NumPy or torch scalar
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the objective function returned {key!r} = {value!r}: extras are "
                        f"stored as trial attrs and must be JSON-able ({exc})") from exc
    return value


class Objective:
    """Callable on an Optuna trial; the same for every strategy.

    function: `function(params, ctx)` (context.py). One with a `prepare(params, ctx)`
    method (the built-in CNN objective) is called in two steps: `prepare` outside the meter
    window (building the model), then the callable it returns inside it; its `observe(attrs)`
    (when it has one) sees each trial's stored attrs.
    """

    def __init__(self, config: StudyConfig, function: Callable[..., Any], meter: Meter,
                 seed: int = 0, device: str = "cpu",
                 on_measurement: Callable[[Measurement], dict[str, Any]] | None = None,
                 multi_objective: bool = False, run_attrs: dict[str, Any] | None = None):
        if not callable(function):
            raise ConfigError(f"objective function {function!r}: not callable")
        self.config = config
        self.function = function
        self.meter = meter
        self.seed = seed
        self.device = str(device)
        self.on_measurement = on_measurement
        self.multi_objective = multi_objective
        self.pruning = config.pruning.pruner != "none"
        self.metric = config.metric
        self.run_attrs = dict(run_attrs or {})  # written on every trial (which run made it)

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        """For `study.optimize`: propose, train, return the value(s)."""
        params = self.propose(trial, self.meter.begin())
        return self.values(self.run(trial, params))

    def propose(self, trial: optuna.Trial, window: Window) -> dict[str, Any]:
        """Ask the strategy for the parameters; `window` was opened before `study.ask()`.

        The strategy's own cost (GP fits, acquisition optimisation) is stored as
        `propose_s` / `propose_energy_j`: the search's energy, which Yarally et al. never
        counted, separate from the trial's training energy. The rest of the window (the
        storage round trips) is stored as `store_s` / `store_energy_j`. Both are written
        as soon as the window ends, so that a trial killed in training keeps them.
        """
        sampled = suggest_params(trial, self.config.search_space)
        sampler = trial.study.sampler
        if not isinstance(sampler, MeteredSampler):
            m = window.meter.end(window)
            set_user_attrs(trial, {"propose_s": m.duration_s, "propose_energy_j": m.energy_j,
                                   **self.run_attrs})
            return self.config.param_values(sampled)
        own = sampler.take_cost(trial._trial_id)
        m = window.meter.end(window)  # ask + suggest: the sampler's calls and the store's
        set_user_attrs(trial, {
            "propose_s": own.duration_s, "propose_energy_j": own.energy_j,
            "store_s": m.duration_s - own.duration_s,
            "store_energy_j": None if m.energy_j is None or own.energy_j is None
            else m.energy_j - own.energy_j,
            **self.run_attrs})
        return self.config.param_values(sampled)

    def values(self, outcome: TrialOutcome) -> float | tuple[float, float]:
        if self.multi_objective:
            return outcome.value, outcome.measurement.energy_j
        return outcome.value

    def run(self, trial: optuna.Trial, params: dict[str, Any]) -> TrialOutcome:
        """Run the function inside the meter window. Raises optuna.TrialPruned when it was
        told to stop (ctx.report returned True)."""
        ctx = TrialContext(trial.number, trial_seed(self.seed, trial.number), self.device,
                           pruning=self.pruning)
        prepare = getattr(self.function, "prepare", None)
        # Outside the window: what the function builds before its work (DB writes and
        # set-up are not the trial's energy).
        work = prepare(params, ctx) if prepare is not None else \
            functools.partial(self.function, params, ctx)
        window = self.meter.begin()
        notes: dict[str, Any] = {}
        ctx._on_report = self._on_report(trial, window, ctx, notes)
        value: float | None = None
        extras: dict[str, Any] = {}
        try:
            value, extras = split_result(work(), self.metric)
        finally:
            # Also when the function raised: a failed trial keeps the energy it spent.
            measurement = self.meter.end(window)
            attrs = {**ctx.user_attrs, **notes, **energy_attrs(measurement)}
            if self.on_measurement is not None:
                attrs.update(self.on_measurement(measurement))
            attrs.update(extras)
            if ctx.stop_reason is not None:
                attrs["pruned_reason"] = ctx.stop_reason
                e, n, steps = measurement.energy_j, ctx.n_reports, self.config.n_steps
                attrs["energy_saved_j"] = None if e is None or not n or steps is None \
                    else e / n * max(0, steps - n)
                if value is not None:
                    attrs[f"{self.metric}_at_stop"] = value
            set_user_attrs(trial, attrs)
        observe = getattr(self.function, "observe", None)
        if observe is not None:
            observe(attrs)
        if ctx.stop_reason is not None:
            raise optuna.TrialPruned(f"{ctx.stop_reason} after report {ctx.n_reports}")
        return TrialOutcome(value, measurement, params, extras)

    def _on_report(self, trial: optuna.Trial, window: Window, ctx: TrialContext,
                   notes: dict[str, Any]) -> Callable[[int, float], str | None]:
        """Per report: the energy after the first, the per-trial energy cap, the pruner."""
        steps = self.config.n_steps
        cap_j = self.config.budget.max_trial_energy_j

        def on_report(step: int, value: float) -> str | None:
            n = ctx.n_reports
            if n == 1 or cap_j is not None:
                so_far = self.meter.peek(window).energy_j
                if so_far is not None and steps is not None:
                    projected = so_far / n * steps
                    if n == 1:
                        notes["predicted_energy_epoch1_j"] = projected
                    if cap_j is not None and projected > cap_j and n < steps:
                        return (f"energy cap: projected {projected:.3g} J > "
                                f"max_trial_energy_j {cap_j:g} J")
                elif so_far is not None and cap_j is not None and so_far > cap_j:
                    return f"energy cap: {so_far:.3g} J so far > max_trial_energy_j {cap_j:g} J"
            # Optuna keeps one value per step; multi-objective trials take none.
            if finite(value) and not self.multi_objective:
                trial.report(value, step)
            if self.pruning and trial.should_prune():
                return f"pruner {self.config.pruning.pruner}"
            return None

        return on_report

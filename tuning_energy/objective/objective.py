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
  the proposal: propose_s, propose_energy_j, store_s, store_energy_j, prepare_s,
      prepare_energy_j (see below), and the run attrs the runner passes (run_id,
      hardware_id)
  a pruned trial: pruned_reason, energy_saved_j (when the number of reports is known),
      {metric}_at_stop (the value it returned when it stopped: accuracy_at_stop)
  a failed trial (written by the runner or a worker): error (the exception of a trial that
      raised, or the contract it broke: context.py), fail_reason (Ctrl-C, a run killed
      while the trial was RUNNING, a worker that died, or `diverged: the metric ... is
      nan`, with diverged = true: a metric that is not a finite number, context.py)

Three energies per trial, together what the trial is charged (accounting.py), from meter
windows that cover the runner's trial loop end to end (overhead.py), so that their sum
over the trials (and the last trial's recording, the study's `tail_store_energy_j`) is
everything the study's process spent in its trial loop:
    energy_j          training and evaluation (the trial's own window), less the storage
                      writes of each ctx.report (with a pruner)
    propose_energy_j  the strategy's own computation that proposed its parameters (the
                      sampler's calls, metered by MeteredSampler, with its after_trial of
                      the trial before), and the objective's preparation (`prepare`: the
                      CNN's model build; prepare_s / prepare_energy_j say how much of
                      propose_* it was); on a run's first trial also building the sampler
                      (setup_s / setup_energy_j); propose_s its seconds
    store_energy_j    the storage round trips: recording the trial before (its attrs,
                      Optuna's tell), the budget check, Optuna's ask (creating the trial),
                      the parameters (with the proposal's attrs, one commit on SQLite:
                      trial_writes.written_at_once), a worker's claim attrs, and with
                      a pruner the writes of each ctx.report (Optuna's report and
                      should_prune; without one the values are written with the trial's
                      attrs, in one transaction); store_s its seconds
With a sampler that is not a MeteredSampler (a plain `study.optimize(objective)`), the
whole proposal window is propose_* and store_* holds the report writes only (with a
pruner; without one, none).

The energy attrs are written even when the function raises or is pruned: a failed or
pruned trial keeps the energy it spent.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from tuning_energy.config import StudyConfig
from tuning_energy.energy import Measurement, Meter, Window
from tuning_energy.energy.base import carve
from tuning_energy.errors import ConfigError
from tuning_energy.objective.context import (
    CONTRACT,
    ContractError,
    TrialContext,
    TrialDiverged,
    finite,
)
from tuning_energy.objective.overhead import TrialBooks
from tuning_energy.search.metered_sampler import MeteredSampler
from tuning_energy.search.strategies import suggest_params
from tuning_energy.seeds import trial_seed
from tuning_energy.store.trial_writes import set_user_attrs, written_at_once

__all__ = ["ContractError", "Objective", "TrialDiverged", "TrialOutcome", "energy_attrs",
           "trial_seed"]

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
    """(the metric, the JSON-able extras) of what a function returned; ContractError when
    it is neither a number nor a dict holding the metric (context.py)."""
    extras: dict[str, Any] = {}
    value = result
    if isinstance(result, dict):
        if metric not in result:
            raise ContractError(
                f"the objective function returned a dict without {metric!r} "
                f"(objective.metric); its keys: {', '.join(map(str, result)) or 'none'}. "
                f"The contract: {CONTRACT} under {metric!r}")
        extras = {str(k): _plain(k, v) for k, v in result.items() if k != metric}
        value = result[metric]
        clash = sorted(RESERVED & set(extras))
        if clash:
            raise ContractError(
                f"the objective function returned {clash[0]!r}: a name the tool stores "
                f"itself (energy and proposal attrs); rename it. The contract: {CONTRACT} "
                f"and JSON-able extras under other names")
    if hasattr(value, "item") and not isinstance(value, int | float):
        value = value.item()  # a NumPy or torch scalar
    if isinstance(value, bool) or not isinstance(value, int | float):
        what = f"{value!r} ({type(value).__name__})"
        raise ContractError(
            f"the objective function returned {what[:200]}"
            + (f" for {metric!r}" if isinstance(result, dict) else "")
            + f": the contract is {CONTRACT} {metric!r} (objective.metric)")
    return float(value), extras


def _plain(key: Any, value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, int | float | str | bool):
        value = value.item()  # a NumPy or torch scalar
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise ContractError(
            f"the objective function returned {key!r} = {value!r}: extras are stored as "
            f"trial attrs and must be JSON-able ({exc}). The contract: {CONTRACT} and "
            f"JSON-able extras") from exc
    return value


def check_callable_as_contract(function: Callable[..., Any], params: dict[str, Any],
                               ctx: TrialContext) -> None:
    """ContractError when `function` cannot be called as function(params, ctx) (e.g. a
    plain Optuna objective f(trial)), before it runs."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a builtin without a signature: it is called as is
        return
    try:
        signature.bind(params, ctx)
    except TypeError as exc:
        name = getattr(function, "__qualname__", None) or repr(function)
        raise ContractError(
            f"the objective function {name}{signature} cannot be called as "
            f"function(params, ctx) ({exc}): the contract is {CONTRACT}; a plain Optuna "
            f"objective f(trial) is metered with tuning_energy.metered(f) instead") from None


class Objective:
    """Callable on an Optuna trial; the same for every strategy.

    function: `function(params, ctx)` (context.py). One with a `prepare(params, ctx)`
    method (the built-in CNN objective) is called in two steps: `prepare` in the proposal
    window (building the model: charged as preparation, overhead.py), then the callable it
    returns inside the training window; its `observe(attrs)` (when it has one) sees each
    trial's stored attrs.
    meter: the training window's; overhead_meter (default: meter) the windows around it
    (proposal, preparation, report writes: overhead.py), e.g. without a cross-check.
    """

    def __init__(self, config: StudyConfig, function: Callable[..., Any], meter: Meter,
                 seed: int = 0, device: str = "cpu",
                 on_measurement: Callable[[Measurement], dict[str, Any]] | None = None,
                 multi_objective: bool = False, run_attrs: dict[str, Any] | None = None,
                 overhead_meter: Meter | None = None):
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
        self.overhead_meter = overhead_meter if overhead_meter is not None else meter
        self._chained = False  # begin_proposal in use: windows cover the loop end to end
        self._next: Window | None = None  # open since the last training window closed
        self._books: dict[int, TrialBooks] = {}  # trial id -> its books, propose to run

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        """For `study.optimize`: propose, train, return the value(s) (NaN for a trial that
        diverged: Optuna records it FAIL and goes on)."""
        params = self.propose(trial, self.overhead_meter.begin())
        try:
            return self.values(self.run(trial, params))
        except TrialDiverged:
            return (math.nan, math.nan) if self.multi_objective else math.nan

    def begin_proposal(self) -> Window:
        """The next proposal's window: the one open since the previous trial's training
        window closed (recording that trial, Optuna's tell, the loop: overhead.py), else a
        new one. The runner's trial sources call it before `study.ask()`."""
        self._chained = True
        window, self._next = self._next, None
        return window if window is not None else self.overhead_meter.begin()

    def end_tail(self) -> Measurement | None:
        """Close the window open since the last training window closed (the recording of
        the last trial, on no trial); None when there is none."""
        window, self._next = self._next, None
        if window is None:
            return None
        # A shared ledger books it as no trial's (shared.py)
        return getattr(window.meter, "end_off_trial", window.meter.end)(window)

    def propose(self, trial: optuna.Trial, window: Window) -> dict[str, Any]:
        """Ask the strategy for the parameters; `window` was opened before `study.ask()`
        (begin_proposal) and stays open until the training window begins (overhead.py).

        The strategy's own cost (GP fits, acquisition optimisation) is stored as
        `propose_s` / `propose_energy_j`: the search's energy, which Yarally et al. never
        counted, separate from the trial's training energy. The rest of the window (the
        storage round trips) is stored as `store_s` / `store_energy_j`. Both are written
        at once (the window so far), so that a trial killed in training keeps them, and
        rewritten with the whole window when the trial ends.
        """
        with written_at_once(trial):  # the parameters and these attrs: one commit
            try:
                sampled = suggest_params(trial, self.config.search_space)
            except BaseException:  # no window left open: it would hide the next trial's
                m = window.meter.end(window)
                set_user_attrs(trial, {"store_s": m.duration_s, "store_energy_j": m.energy_j})
                raise
            sampler = trial.study.sampler
            own = sampler.take_cost(trial._trial_id) if isinstance(sampler, MeteredSampler) \
                else None
            books = self._books[trial._trial_id] = TrialBooks(window, own)
            set_user_attrs(trial, {**books.attrs(), **self.run_attrs})
        return self.config.param_values(sampled)

    def values(self, outcome: TrialOutcome) -> float | tuple[float, float]:
        if self.multi_objective:
            return outcome.value, outcome.measurement.energy_j
        return outcome.value

    def run(self, trial: optuna.Trial, params: dict[str, Any]) -> TrialOutcome:
        """Run the function inside the meter window. Raises optuna.TrialPruned when it was
        told to stop (ctx.report returned True), TrialDiverged when its metric is not a
        finite number (the attrs are written: the runner records the trial FAIL),
        ContractError when it broke the contract (context.py)."""
        ctx = TrialContext(trial.number, trial_seed(self.seed, trial.number), self.device,
                           pruning=self.pruning)
        books = self._books.pop(trial._trial_id, None) or TrialBooks(None, None)
        try:
            work = self._prepare(params, ctx, books)
        except BaseException:
            books.close()
            set_user_attrs(trial, books.attrs())
            raise
        books.close()  # the proposal window ends where the training window begins
        window = self.meter.begin()
        held: dict[int, float] = {}  # without a pruner: written with the attrs at the end
        if hasattr(self.overhead_meter, "partial_attrs"):  # a kill keeps the whole window
            self.overhead_meter.partial_attrs = functools.partial(books.attrs, reports=False)
            # ... and the curve so far (the heartbeat's writes show it while the trial runs)
            self.overhead_meter.partial_steps = held.copy
        notes: dict[str, Any] = {}
        ctx._on_report = self._on_report(trial, window, ctx, notes, books.reports, held)
        value: float | None = None
        extras: dict[str, Any] = {}
        diverged: str | None = None
        try:
            value, extras = split_result(work(), self.metric)
            if not finite(value) and ctx.stop_reason is None:
                diverged = (f"diverged: the metric {self.metric!r} is {value} (not a finite "
                            f"number)")
        finally:
            # Also when the function raised: a failed trial keeps the energy it spent.
            whole = self.meter.end(window)
            if hasattr(self.overhead_meter, "partial_attrs"):
                self.overhead_meter.partial_attrs = self.overhead_meter.partial_steps = None
            if self._chained:  # recording this trial is the next proposal's storage
                self._next = self.overhead_meter.begin()
            measurement = carve(whole, books.reports)  # less the report writes
            attrs = {**ctx.user_attrs, **notes, **energy_attrs(measurement), **books.attrs()}
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
            if diverged is not None:
                attrs.update(diverged=True, fail_reason=diverged)
            set_user_attrs(trial, attrs, held)
        observe = getattr(self.function, "observe", None)
        if observe is not None:
            observe(attrs)
        if ctx.stop_reason is not None:
            raise optuna.TrialPruned(f"{ctx.stop_reason} after report {ctx.n_reports}")
        if diverged is not None:
            raise TrialDiverged(diverged)
        return TrialOutcome(value, measurement, params, extras)

    def _prepare(self, params: dict[str, Any], ctx: TrialContext,
                 books: TrialBooks) -> Callable[[], Any]:
        """The work to meter as training: `prepare`'s (metered as preparation), or the
        function's called as the contract says."""
        prepare = getattr(self.function, "prepare", None)
        if prepare is None:
            check_callable_as_contract(self.function, params, ctx)
            return functools.partial(self.function, params, ctx)
        window = self.overhead_meter.begin()
        try:
            return prepare(params, ctx)
        finally:
            books.prepare = window.meter.end(window)

    def _on_report(self, trial: optuna.Trial, window: Window, ctx: TrialContext,
                   notes: dict[str, Any], reports: list[Measurement],
                   held: dict[int, float]) -> Callable[[int, float], str | None]:
        """Per report: the energy after the first, the per-trial energy cap, the pruner.

        With a pruner, its storage writes (Optuna's report, should_prune) are each metered in
        a window of their own, added to `reports`: storage, not training (overhead.py).
        Without one, no pruner reads the values while the trial runs: they are kept in `held`
        and written with the trial's attrs when it ends, in the same transaction
        (trial_writes.py), instead of one commit per step; a worker's heartbeat writes the
        curve so far with its partial energy (worker_energy.py), so the dashboard shows a
        running trial's curve at each heartbeat, and a killed trial keeps it."""
        steps = self.config.n_steps
        cap_j = self.config.budget.max_trial_energy_j

        def on_report(step: int, value: float) -> str | None:
            n = ctx.n_reports
            if n == 1 or cap_j is not None:
                so_far = carve(self.meter.peek(window), reports).energy_j
                if so_far is not None and steps is not None:
                    projected = so_far / n * steps
                    if n == 1:
                        notes["predicted_energy_epoch1_j"] = projected
                    if cap_j is not None and projected > cap_j and n < steps:
                        return (f"energy cap: projected {projected:.3g} J > "
                                f"max_trial_energy_j {cap_j:g} J")
                elif so_far is not None and cap_j is not None and so_far > cap_j:
                    return f"energy cap: {so_far:.3g} J so far > max_trial_energy_j {cap_j:g} J"
            # Optuna keeps the first value per step; multi-objective trials take none.
            kept = finite(value) and not self.multi_objective
            if not self.pruning:
                if step < 0:  # as trial.report refuses it
                    raise ValueError(f"The `step` argument is {step} but cannot be negative.")
                if kept:
                    held.setdefault(step, value)
                return None
            writes = self.overhead_meter.begin()
            try:
                if kept:
                    trial.report(value, step)
                stop = trial.should_prune()
            finally:
                reports.append(writes.meter.end(writes))
            return f"pruner {self.config.pruning.pruner}" if stop else None

        return on_report

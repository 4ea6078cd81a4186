"""Where the runner's trial loop gets its trials: one small interface, two sources.

The loop (runner.py) is the same for one process and for one of several workers; what
differs is behind a `TrialSource`:

- `LocalTrials`: one process on a SQLite store. The study is locked for this run
  (`storage.run_lock`), trials it finds RUNNING are from a killed run and are marked FAIL
  (`fail_stale_running`), the energy budget is checked before each trial, and a training
  trial's energy so far is written on it every `partial_energy_s`.
- `WorkerContext` (workers.py): one of several processes sharing a journal or
  PostgreSQL store. It claims trials under the workers' lock (the budget checked against
  the store, dead workers' trials re-queued), beats a heartbeat while a trial runs, and uses
  its share of the cores, the GPUs and the meter.

A source answers `claim()` with a `Claim` (a trial to run, and how to get its parameters),
a string (why the study stops now), or None (nothing to take now: ask again).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from tuning_energy.config import MeterConfig
from tuning_energy.energy import MeterChoice, build_meter
from tuning_energy.run.budget import StudyBudget
from tuning_energy.run.summary import FINISHED
from tuning_energy.run.worker_energy import PartialEnergyWriter, TrialWindowMeter
from tuning_energy.store.storage import run_lock, storage_kind

#: Seconds between writes of a training trial's energy so far (single-process runs).
PARTIAL_ENERGY_S = 10.0

Begin = Callable[[], Any]  # opens the proposal's meter window
Propose = Callable[[optuna.Trial, Any], dict[str, Any]]  # Objective.propose


@dataclass
class Claim:
    """A trial to run; `params()` gives its parameters (proposing them if not done yet)."""

    trial: optuna.Trial
    params: Callable[[], dict[str, Any]]


class TrialSource:
    """What the runner's loop asks of the process it runs in (see the module doc)."""

    torch_threads: int | None = None  # None: the config's train.torch_threads

    def lock(self, study_name: str) -> contextlib.AbstractContextManager:
        """Held for the whole run."""
        return contextlib.nullcontext()

    def train_device(self, name: str) -> str:
        """train.device as this process names it."""
        return name

    def meter_choice(self, config: MeterConfig, use_gpus: bool | None = None,
                     cuda_index: int | None = None) -> MeterChoice:
        return build_meter(config, use_gpus=use_gpus, cuda_index=cuda_index)

    def storage(self) -> BaseStorage | None:
        """The storage to open the study on (None: from the URL)."""
        return None

    def prepare(self, study: optuna.Study, out) -> None:
        """Once the study is open, before the first trial."""

    def idle_attrs(self, idle_power_w: float | None, idle_s: float) -> dict[str, Any]:
        """Study attrs for this process's idle baseline."""
        return {"idle_power_w": idle_power_w}

    def claim(self, study: optuna.Study, n_budget: int, begin: Begin, propose: Propose,
              budget: StudyBudget | None = None) -> Claim | str | None:
        raise NotImplementedError

    def running(self, trial: optuna.Trial) -> contextlib.AbstractContextManager:
        """Entered while the trial trains."""
        return contextlib.nullcontext()

    def n_finished(self, study: optuna.Study, counted: int) -> int:
        """Finished trials of the study, `counted` being this process's own count."""
        return counted


def fail_stale_running(study: optuna.Study) -> int:
    """Mark RUNNING trials FAIL: left by a process killed hard (single-process stores).

    Call it only while holding the study's `run_lock`: then no other live run has trials.
    """
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(t._trial_id, "fail_reason",
                                           "left RUNNING by a process that was killed")
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        n += 1
    return n


class LocalTrials(TrialSource):
    """The only process running the study (SQLite, under `run_lock`).

    partial_energy_s: how often a training trial's energy so far is written on it
    (`energy_partial`); None or 0: never.
    """

    def __init__(self, storage_url: str, partial_energy_s: float | None = PARTIAL_ENERGY_S,
                 out=None):
        self.storage_url = storage_url
        self.partial_energy_s = partial_energy_s
        self.out = out
        self._writer: Callable[[optuna.Trial], Any] | None = None

    def lock(self, study_name: str) -> contextlib.AbstractContextManager:
        return run_lock(self.storage_url, study_name)

    def meter_choice(self, config: MeterConfig, use_gpus: bool | None = None,
                     cuda_index: int | None = None) -> MeterChoice:
        choice = build_meter(config, use_gpus=use_gpus, cuda_index=cuda_index)
        if not self.partial_energy_s:
            return choice
        meter = TrialWindowMeter(choice.meter)  # the trial window known to the writer
        self._writer = functools.partial(PartialEnergyWriter, meter,
                                         interval_s=self.partial_energy_s, out=self.out)
        return dataclasses.replace(choice, meter=meter)

    def prepare(self, study: optuna.Study, out) -> None:
        # Under run_lock: no other live run of this study exists.
        if storage_kind(self.storage_url) == "sqlite":
            if stale := fail_stale_running(study):
                print(f"marked {stale} trial(s) left RUNNING by a killed run as FAIL", file=out)

    def claim(self, study: optuna.Study, n_budget: int, begin: Begin, propose: Propose,
              budget: StudyBudget | None = None) -> Claim | str | None:
        if budget:
            # Stop before a trial that would overrun the energy or CO2 budget: the one
            # rule (budget.py), on the study's trials in the store.
            if reason := budget.stop(study.get_trials(deepcopy=False)):
                return reason
        window = begin()  # ask + suggest: the strategy's and the store's cost
        trial = study.ask()
        return Claim(trial, functools.partial(propose, trial, window))

    def running(self, trial: optuna.Trial) -> contextlib.AbstractContextManager:
        # While it trains, the trial's energy so far is written on it.
        return self._writer(trial) if self._writer else contextlib.nullcontext()


__all__ = ["FINISHED", "PARTIAL_ENERGY_S", "Claim", "LocalTrials", "TrialSource",
           "fail_stale_running"]
